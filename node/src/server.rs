//! Starting and stopping a node: bind-free (listeners are passed in, so tests bind port 0),
//! one warp server per listener, the engine's timer, and a shutdown that waits for every task.

use crate::clock::Clock;
use crate::driver::Shared;
use crate::http;
use crate::store::{DiskStore, MemoryStore, Store, StoreError};
use hearsay_proto::{Config as EngineConfig, Engine, NodeId};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What a node needs beyond its listeners.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Addresses to dial at start and keep dialing (`--peer`).
    pub peers: Vec<String>,
    /// Where other nodes should dial us: a host (the node's own port and scheme are added),
    /// or a whole `ws://` / `wss://` URL, path included, for a node behind a reverse proxy;
    /// `none` for a node nobody can dial (behind NAT): it dials out only, and is never named
    /// to others to dial. Defaults to the listener's IP (or 127.0.0.1 when it listens on
    /// every interface).
    pub advertise_host: Option<String>,
    /// Engine tunables; listen addresses are filled in here.
    pub engine: EngineConfig,
    /// Folder for the message store; `None` keeps messages in memory only.
    pub data: Option<PathBuf>,
    /// A store made by the embedder, used in place of the one `data` would open (`data`
    /// still keeps the node's key): a redb database over another backend, say
    /// ([`crate::store::DiskStore::open_with`]).
    pub store: Option<ProvidedStore>,
    /// Apply the per-address HTTP rate limit to loopback clients too (by default the
    /// operator, `hearsay demo` and benchmarks on this machine are not limited).
    pub limit_loopback: bool,
    /// Most inbound WebSocket connections at once, and from one address (0: the defaults,
    /// 4,096 and 64).
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Lift the private and loopback dialing rules (`--allow-private-dials`; see `dialing`).
    pub allow_private_dials: bool,
    /// Web apps allowed to write through this node (`--allow-origin`; see `origin`).
    pub origins: crate::origin::Origins,
    /// Serve HTTPS and WSS with this certificate chain and key (PEM files); the node is
    /// then advertised as `wss://` (`--tls-cert`, `--tls-key`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Roots trusted for `wss://` dials besides the web PKI's (`--tls-ca`).
    pub tls_ca: Vec<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` (or `Forwarded`, with `proxy_header`) names
    /// the client (`--trust-proxy`, `--proxy-header`; see `door`).
    pub trust_proxies: Vec<String>,
    pub proxy_header: crate::door::ProxyHeader,
    /// Names this node answers to besides its advertised host (`--host-name`; see `door`).
    pub host_names: Vec<String>,
    /// How long an address `/add` pinned may go unreached before it is unpinned (zero: the
    /// default, `pins::UNPIN_AFTER`).
    pub unpin_after: std::time::Duration,
    /// The settings as the operator gave them, for `/api/status` (null when started as a
    /// library).
    pub shown: serde_json::Value,
    /// The demo this node is part of (`hearsay demo`): it notes each delivery in the demo's
    /// journal, keeps to its side of a cut, and passes the page's controls on.
    pub demo: Option<Arc<crate::hub::Hub>>,
}

/// A store handed to [`start`] ([`NodeConfig::store`]).
#[derive(Clone)]
pub struct ProvidedStore(pub Arc<dyn Store>);

impl std::fmt::Debug for ProvidedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProvidedStore")
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] crate::keyfile::KeyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error("{0}")]
    BadProxy(String),
    #[error("--advertise {0:?} is not a host or a ws:// or wss:// URL")]
    BadAdvertise(String),
    #[error("--peer {0}")]
    BadPeer(String),
}

/// A node that is running. Dropping it does not stop it: call [`RunningNode::stop`].
pub struct RunningNode {
    pub addr: SocketAddr,
    pub v1_addr: Option<SocketAddr>,
    pub id: NodeId,
    /// The key this node signs with (its id is the key's first half).
    pub key: hearsay_proto::PublicKey,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl RunningNode {
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:3000`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The canonical WebSocket address other nodes dial.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops the node and waits until every connection and task has ended and the ports are
    /// closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Resolves when the node has stopped (after [`RunningNode::stop`] or a shutdown signal).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Publishes `text` from this node, and waits until it is stored; says why not if it
    /// is refused.
    pub async fn publish(&self, text: &str) -> Result<hearsay_proto::Message, String> {
        match self.shared.publish(text).await {
            Ok(Ok(msg)) => Ok(msg),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts a node on `listener` (HTTP + WebSockets) and, if given, `v1_listener` (the seed's
/// WebSocket-only port). Returns once both are accepting.
pub fn start(
    listener: TcpListener,
    v1_listener: Option<TcpListener>,
    config: NodeConfig,
    shutdown: CancellationToken,
) -> Result<RunningNode, StartError> {
    let addr = listener.local_addr()?;
    let v1_addr = v1_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    // Linux copies TCP_NODELAY from a listening socket to the sockets it accepts; warp does not
    // set it, and small gossip frames must not wait for Nagle.
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    if let Some(l) = &v1_listener {
        socket2::SockRef::from(l).set_tcp_nodelay(true)?;
    }

    // A whole URL: the node is dialed there (a proxy's host, port and path), and its host
    // sets the dialing rules' scope.
    let advertised_url = match config.advertise_host.as_deref() {
        Some(a) if a.contains("://") => Some(
            hearsay_proto::canonical_address(a)
                .ok_or_else(|| StartError::BadAdvertise(a.to_owned()))?,
        ),
        _ => None,
    };
    let from_url = advertised_url.as_deref().and_then(|u| {
        url::Url::parse(u)
            .ok()?
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
    });
    let unlisted = config.advertise_host.as_deref() == Some("none");
    let host = from_url
        .or(config.advertise_host.clone().filter(|_| !unlisted))
        .unwrap_or_else(|| {
            if addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                addr.ip().to_string()
            }
        });
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let serving_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => return Err(StartError::HalfTls),
    };
    let dialing_tls = crate::tls::client_config(&config.tls_ca)?;
    let proxies = crate::door::Proxies::new(&config.trust_proxies, config.proxy_header)
        .map_err(StartError::BadProxy)?;
    if let Some(why) = config
        .peers
        .iter()
        .find_map(|p| crate::dialing::never_dialed(p))
    {
        return Err(StartError::BadPeer(why));
    }
    let mut engine_config = config.engine.clone();
    // Canonical address first; the seed-compatible port is an alias, so that a node reached
    // by a seed at one is never named to that seed by the other. With a certificate the main
    // port speaks TLS (wss://); the seed's port never does (seeds dial plain ws://).
    let scheme = if serving_tls.is_some() { "wss" } else { "ws" };
    let main = advertised_url.unwrap_or_else(|| format!("{scheme}://{host}:{}", addr.port()));
    engine_config.listen_addresses = std::iter::once(main)
        .chain(v1_addr.map(|a| format!("ws://{host}:{}", a.port())))
        .filter(|_| !unlisted)
        .collect();

    let store: Arc<dyn Store> = match (&config.store, &config.data) {
        (Some(provided), _) => Arc::clone(&provided.0),
        (None, Some(dir)) => Arc::new(DiskStore::open(dir)?),
        (None, None) => Arc::new(MemoryStore::default()),
    };
    // The node's key is its identity: kept in the data folder, so a restarted node is the
    // same node, and made afresh for a node that keeps nothing.
    let key = match &config.data {
        Some(dir) => {
            let (key, created) = crate::keyfile::load_or_create(dir)?;
            if created {
                tracing::info!(path = %crate::keyfile::path(dir).display(), "created this node's key");
            }
            key
        }
        None => hearsay_proto::Keypair::from_secret(rand::random()),
    };
    let public = key.public();
    let id = public.node_id();
    let clock = Clock::new();
    let mut engine = Engine::new(
        engine_config,
        hearsay_proto::Identity::node(key),
        rand::random(),
        clock.now(),
    );
    // What the store holds is not new (a copy arriving again is neither stored nor delivered),
    // and it is what reconciliation offers peers.
    let held = store.keys()?;
    for &(key, bytes) in &held {
        engine.note_held(key, bytes);
    }
    if let Some(floor) = store.evicted_floor()? {
        engine.note_floor(floor);
    }
    let http_limit =
        crate::limit::PerAddress::new(config.engine.limits.http_messages, config.limit_loopback);
    let caps = crate::limit::ConnectionCaps::new(
        nonzero_or(config.max_connections, 4_096),
        nonzero_or(config.max_connections_per_address, 64),
        config.limit_loopback,
    );
    // The names the node answers to: the host it is advertised at (when that is a name) and
    // every --host-name (see `door`).
    let hosts = Arc::new(crate::door::Hosts::new(
        std::iter::once(host.clone())
            .filter(|_| !unlisted)
            .chain(config.host_names.iter().cloned()),
        config.origins.clone(),
    ));
    let door = crate::accept::Door {
        proxies: Arc::new(proxies),
        hosts: Arc::clone(&hosts),
        caps: crate::accept::Door::caps(),
    };
    let unpin_after = if config.unpin_after.is_zero() {
        crate::pins::UNPIN_AFTER
    } else {
        config.unpin_after
    };
    let pins = crate::pins::Pins::new(
        config
            .peers
            .iter()
            .filter_map(|p| hearsay_proto::canonical_address(p)),
        unpin_after,
    );
    let dial_rules =
        crate::dialing::DialRules::new(&host, config.allow_private_dials).dialing_from(addr.ip());
    for peer in &config.peers {
        dial_rules.trust(peer);
    }
    let guards = crate::driver::Guards {
        http_limit,
        caps,
        dial_rules,
        origins: config.origins.clone(),
        tls: dialing_tls,
        pins,
        hosts,
        demo: config.demo.clone().map(|hub| crate::hub::Member {
            hub,
            node: id,
            ip: addr.ip(),
        }),
    };
    let (shared, dials) = Shared::new(engine, store, clock, shutdown.clone(), guards);
    let _ = shared.settings.set(config.shown.clone());

    for peer in &config.peers {
        if let Err(e) = shared.drive(|engine, now| engine.add_peer(peer, now)) {
            tracing::warn!(peer, error = %e, "ignoring --peer");
        }
    }

    let tracker = shared.tracker.clone();
    tracker.spawn(crate::accept::serve(
        listener,
        http::routes(Arc::clone(&shared)),
        serving_tls,
        door.clone(),
        shutdown.clone(),
    ));
    if let Some(v1) = v1_listener {
        tracker.spawn(crate::accept::serve(
            v1,
            http::v1_routes(Arc::clone(&shared)),
            None,
            door,
            shutdown.clone(),
        ));
    }
    tracker.spawn(Arc::clone(&shared).run_timer());
    tracker.spawn(Arc::clone(&shared).run_unpinning());
    if let Some(failures) = shared.store.failures() {
        tracker.spawn(Arc::clone(&shared).run_forgetting(failures));
    }
    tracker.spawn(crate::conn::dialer(Arc::clone(&shared), dials));
    tracing::info!(%id, fingerprint = %public.fingerprint(), %addr, ?v1_addr, messages = held.len(), data = ?config.data, "node started");

    let kept = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        shared.shutdown.cancelled().await;
        shared.tracker.close();
        shared.tracker.wait().await;
        // Every connection has ended: finish queued writes and release the store's file.
        let store = Arc::clone(&shared.store);
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!(%id, "node stopped");
    });
    Ok(RunningNode {
        addr,
        v1_addr,
        id,
        key: public,
        shutdown,
        task,
        shared: kept,
    })
}

fn nonzero_or(n: usize, default: usize) -> usize {
    if n == 0 { default } else { n }
}
