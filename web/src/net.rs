//! The browser's driver for the gossip engine: the same `hearsay_proto::Engine` the native
//! node runs, fed by gloo-net WebSockets and a gloo timer, reporting to the page through
//! [`Action`]s.
//!
//! Start-up ([`start`]): show what this browser kept from earlier visits ([`Saved`]), ask
//! the serving node who it is (`/api/status`) and what it holds (`/api/messages`, newest
//! first: the first simple catch-up), then start an engine of kind `browser` whose home is
//! that node, pinned to `ws(s)://<page host>/ws`. Nodes tell it of others (`PEERS`);
//! it keeps its home plus two more links: messages are pushed to it over one and announced
//! over the others, and it gives any of them what they ask it for (a leaf of the tree).
//!
//! Everything runs on the page's one thread, so the engine lives in a `RefCell`; callbacks to
//! the page are collected while it is borrowed and sent after. Outputs are drained through
//! [`PageDriver`], the page's side of `hearsay_proto::Driver`; one browser timeout is kept set
//! for the engine's next deadline; at each, what changed is written to [`Saved`].

use crate::saved::Saved;
use crate::state::{Action, Traffic};
use futures::channel::mpsc;
use futures::future::{Either, select};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::{Message as WsMessage, State as WsState, futures::WebSocket};
use hearsay_proto::{
    Author, CloseReason, Config, ConnId, Driver, Engine, Identity, Keypair, Message, MsgId, NodeId,
    PeerKind, PublicKey, Tab,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use yew::Callback;

/// Frames queued for one link before it counts as too slow.
const QUEUE: usize = 256;
/// The most messages a page holds: the newest. Older history stays on the nodes, so a tab's
/// memory and start-up do not grow with the network's history (its engine evicts the oldest
/// past this and never fetches older ones back).
const PAGE_KEEP: usize = 2_000;
/// History fetched at start-up, at most (pages of 1000, the newest first).
const HISTORY_PAGES: usize = PAGE_KEEP.div_ceil(1_000);
/// Messages fetched each time a reader scrolls to the end of the list.
const OLDER_PAGE: usize = 200;
/// How often the page is told what it has received and sent, in ms.
const TRAFFIC_EVERY: u64 = 5_000;

enum Outgoing {
    Text(Arc<str>),
    Close(String),
}

struct Inner {
    engine: Engine,
    sockets: HashMap<ConnId, mpsc::Sender<Outgoing>>,
    /// Every message this page holds, to answer peers' `WANT`s from.
    held: HashMap<MsgId, Message>,
    /// Where the page keeps them between visits (none where the browser refuses storage).
    saved: Option<Saved>,
    /// What is still to be written there: new messages, and the time before which
    /// messages were let go.
    unsaved: Unsaved,
    /// The engine's deadline a timer is waiting for, and that timer's number: a timer
    /// whose number is no longer current wakes to nothing.
    timer_at: Option<u64>,
    timer_gen: u64,
    /// When the map was last copied out to the page (see `flush`).
    topology_at: u64,
    /// When the page was last told what it has received and sent (see `flush`), and when
    /// the engine started.
    traffic_at: u64,
    started: u64,
}

/// Changes not yet written to [`Saved`].
#[derive(Default)]
struct Unsaved {
    messages: Vec<Message>,
    before: Option<u64>,
}

/// The page's side of the driver contract: frames into the sockets' queues, dials started
/// after the engine is released, deliveries and receipts reported to the page.
struct PageDriver<'a> {
    sockets: &'a mut HashMap<ConnId, mpsc::Sender<Outgoing>>,
    held: &'a mut HashMap<MsgId, Message>,
    unsaved: &'a mut Unsaved,
    /// This browser's key: what this tab publishes is "mine".
    me: Author,
    actions: Vec<Action>,
    dials: Vec<(ConnId, String)>,
}

impl Driver for PageDriver<'_> {
    fn send(&mut self, conn: ConnId, frame: Arc<str>) -> bool {
        match self.sockets.get_mut(&conn) {
            Some(tx) => tx.try_send(Outgoing::Text(frame)).is_ok(),
            None => true,
        }
    }
    // A browser cannot send WebSocket pings; the engine is told so (`transport_ping`).
    fn ping(&mut self, _conn: ConnId) {}
    fn dial(&mut self, conn: ConnId, address: String) {
        self.dials.push((conn, address));
    }
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(mut tx) = self.sockets.remove(&conn) {
            let _ = tx.try_send(Outgoing::Close(reason.to_string()));
        }
    }
    fn deliver(&mut self, msg: Message, hops: Option<u32>, _from: Option<NodeId>) {
        // Published here (another tab of this browser writes under the same key, but its
        // receipts go to that tab).
        let mine = hops == Some(0) && msg.author == self.me;
        self.held.insert(msg.id, msg.clone());
        self.unsaved.messages.push(msg.clone());
        self.actions.push(Action::Delivered {
            msg,
            mine,
            live: hops.is_some(),
        });
    }
    fn acked(&mut self, id: MsgId, by: NodeId) {
        self.actions.push(Action::Acked { id, by });
    }
    fn refused(&mut self, _by: NodeId, reason: &str, id: Option<MsgId>, _retry: Option<u64>) {
        if let Some(id) = id {
            self.actions.push(Action::Refused {
                id,
                reason: reason.to_owned(),
            });
        }
    }
    fn fetch(&mut self, _conn: ConnId, ids: Vec<MsgId>) -> Option<Vec<Message>> {
        Some(
            ids.iter()
                .filter_map(|id| self.held.get(id).cloned())
                .collect(),
        )
    }
    fn evict(&mut self, before: u64, _count: usize) {
        // Aged out of the network's window, or older than the newest the page keeps: no
        // longer offered to peers, saved, or shown.
        let kept = |m: &Message| hearsay_proto::sync::key_of(m).0 >= before;
        self.held.retain(|_, m| kept(m));
        self.unsaved.messages.retain(kept);
        self.unsaved.before = self.unsaved.before.max(Some(before));
        self.actions.push(Action::Evicted { before });
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// A handle on the running engine, cheap to clone, given to the components that publish.
#[derive(Clone)]
pub struct Network {
    inner: Rc<RefCell<Inner>>,
    report: Callback<Action>,
}

impl PartialEq for Network {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Milliseconds since the Unix epoch, from the browser's clock.
pub fn now() -> u64 {
    js_sys::Date::now() as u64
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let crypto = web_sys::window().and_then(|w| w.crypto().ok());
    match crypto {
        Some(c) if c.get_random_values_with_u8_array(&mut out).is_ok() => {}
        // Without WebCrypto (very old browsers) fall back to Math.random. That is no secret
        // key, but such a browser has no WebCrypto to do better with.
        _ => out
            .iter_mut()
            .for_each(|b| *b = (js_sys::Math::random() * 256.0) as u8),
    }
    out
}

/// The page's WebSocket URL for the node that served it: `ws://` or `wss://` to match.
pub fn home_ws_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws", location.host().ok()?))
}

#[derive(serde::Deserialize)]
struct Status {
    id: NodeId,
    key: PublicKey,
}

/// Where this browser keeps its key (the secret, as hex): every tab of this site shares it,
/// so a person is one author across tabs and reloads.
const KEY_STORAGE: &str = "hearsay:key";

/// This browser's key, made and saved on its first visit. Without storage (a private
/// window that refuses it) the page still runs, under a key of its own for this visit.
fn browser_key() -> Keypair {
    let saved = storage().and_then(|s| s.get_item(KEY_STORAGE).ok().flatten());
    if let Some(text) = saved {
        let mut secret = [0u8; 32];
        if hex::decode_to_slice(text.trim(), &mut secret).is_ok() {
            return Keypair::from_secret(secret);
        }
    }
    let key = Keypair::from_secret(random_bytes());
    if let Some(s) = storage() {
        let _ = s.set_item(KEY_STORAGE, &hex::encode(key.secret()));
    }
    key
}

#[derive(serde::Deserialize)]
struct Page {
    messages: Vec<Message>,
    /// The node cut the page short by bytes: there is more, though fewer came than asked.
    #[serde(default)]
    more: bool,
}

/// The home's newest messages, newest first: on a node with a long history the page starts
/// at its end (the list shows the newest first anyway).
async fn fetch_history() -> Result<Vec<Message>, String> {
    let mut all: Vec<Message> = Vec::new();
    for _ in 0..HISTORY_PAGES {
        let url = match all.last() {
            Some(m) => format!("/api/messages?limit=1000&before={}", m.id),
            None => "/api/messages?limit=1000&order=newest".to_owned(),
        };
        let page: Page = get_json(&url).await?;
        let done = page.messages.len() < 1000 && !page.more;
        all.extend(page.messages);
        if done {
            break;
        }
    }
    Ok(all)
}

/// Messages older than what the page keeps, for a reader scrolling back: a page of the
/// home's history before `before`, newest first, and whether it was the last. They are shown,
/// not held: the engine keeps only the newest.
pub async fn older(before: MsgId) -> Result<(Vec<Message>, bool), String> {
    let page: Page = get_json(&format!("/api/messages?limit={OLDER_PAGE}&before={before}")).await?;
    let done = page.messages.len() < OLDER_PAGE && !page.more;
    Ok((page.messages, done))
}

/// What the demo the page's node is part of says of itself; an error if it is not a demo's.
pub async fn demo_status() -> Result<crate::state::DemoStatus, String> {
    get_json("/api/demo").await
}

/// Message `id`'s journey as the demo recorded it.
pub async fn journey(id: MsgId) -> Result<hearsay_proto::journey::Journey, String> {
    get_json(&format!("/api/journey?id={id}")).await
}

/// Asks the demo to carry out a control (`kill?share=10`, `split`, ...): its status after.
pub async fn demo_control(action: &str) -> Result<crate::state::DemoStatus, String> {
    let url = format!("/api/demo/{action}");
    let response = gloo_net::http::Request::post(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    read_json(&url, response).await
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, String> {
    let response = gloo_net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    read_json(url, response).await
}

/// A JSON answer, or what the node said was wrong.
async fn read_json<T: serde::de::DeserializeOwned>(
    url: &str,
    response: gloo_net::http::Response,
) -> Result<T, String> {
    if !response.ok() {
        // The node says what was wrong in `{"error": ...}`.
        #[derive(serde::Deserialize)]
        struct Refusal {
            error: String,
        }
        return Err(match response.json::<Refusal>().await {
            Ok(r) => r.error,
            Err(_) => format!("{url}: HTTP {}", response.status()),
        });
    }
    response.json().await.map_err(|e| format!("{url}: {e}"))
}

/// Joins the network from this page. Reports progress through `report`; returns the handle
/// to publish with.
pub async fn start(report: Callback<Action>) -> Result<Network, String> {
    let url = home_ws_url().ok_or("this page has no location to connect to")?;
    // What this browser kept from earlier visits shows as soon as it is read; the node is
    // asked meanwhile (one after the other, the two waits added up on a cold start).
    let kept = async {
        let store = Saved::open().await.ok();
        let saved = match &store {
            Some(store) => store.load().await,
            None => Vec::new(),
        };
        if !saved.is_empty() {
            report.emit(Action::History(saved.clone()));
        }
        (store, saved)
    };
    let asked = async {
        let status: Status = get_json("/api/status").await?;
        Ok::<_, String>((status, fetch_history().await?))
    };
    let ((store, saved), asked) = futures::join!(kept, asked);
    let (status, fetched) = asked?;
    let mut history = fetched.clone();
    history.extend(saved);

    let config = Config {
        kind: PeerKind::Browser,
        home: Some(status.id),
        transport_ping: false,
        // A person is watching: come back quickly when a node returns.
        backoff_max: 5_000,
        // Served over https, the browser opens only wss:// (no mixed content).
        membership: hearsay_proto::membership::Config {
            client_secure_only: url.starts_with("wss://"),
            ..Default::default()
        },
        history: hearsay_proto::History {
            max_messages: Some(PAGE_KEEP),
            // Checked often: what reconciliation brings in before the first check is let go
            // soon after.
            evict_every: 5_000,
            ..Default::default()
        },
        ..Config::default()
    };
    // One key per browser, one id per tab: two tabs are two peers of one author.
    let identity = Identity::page(browser_key(), Tab::from_bytes(random_bytes()));
    let me = identity.id();
    let key = identity.key.public();
    let seed = u64::from_le_bytes(random_bytes());
    let mut engine = Engine::new(config, identity, seed, now());
    let mut held = HashMap::new();
    for m in &history {
        if held.insert(m.id, m.clone()).is_none() {
            engine.note_held(hearsay_proto::sync::key_of(m), m.data.len());
        }
    }
    report.emit(Action::Started {
        me,
        key,
        home: status.id,
        home_key: status.key,
    });
    report.emit(Action::History(history.clone()));

    let net = Network {
        inner: Rc::new(RefCell::new(Inner {
            engine,
            sockets: HashMap::new(),
            held,
            saved: store,
            // What came from the home is kept too.
            unsaved: Unsaved {
                messages: fetched,
                before: None,
            },
            timer_at: None,
            topology_at: 0,
            traffic_at: 0,
            started: now(),
            timer_gen: 0,
        })),
        report,
    };
    net.drive(|e, now| e.add_peer(&url, now).map(|_| ()).map_err(|e| e.to_string()))?;
    Ok(net)
}

impl Network {
    /// Publishes from this page; the message shows at once and is gossiped to every link.
    pub fn publish(&self, text: &str) -> Result<(), String> {
        self.drive(|e, now| e.publish(text, now).map(|_| ()).map_err(|e| e.to_string()))
    }

    /// Calls into the engine, then carries out what it asked for and tells the page.
    fn drive<R>(&self, f: impl FnOnce(&mut Engine, u64) -> R) -> R {
        let result = f(&mut self.inner.borrow_mut().engine, now());
        self.flush();
        result
    }

    /// Carries out the engine's outputs. Kept out of line: `drive` is instantiated once per
    /// call site, and inlining this into every copy multiplied the page's size.
    #[inline(never)]
    fn flush(&self) {
        let (actions, dials, timer) = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let mut driver = PageDriver {
                sockets: &mut inner.sockets,
                held: &mut inner.held,
                unsaved: &mut inner.unsaved,
                me: Author::Key(inner.engine.public_key()),
                actions: Vec::new(),
                dials: Vec::new(),
            };
            inner.engine.drain(&mut driver, now());
            let PageDriver {
                mut actions, dials, ..
            } = driver;
            actions.push(Action::Network {
                links: inner.engine.links(),
                peers: inner.engine.peers(),
            });
            // The map is copied out and redrawn at most every so often: at hundreds of peers
            // records change several times a second, and each copy is every record and each
            // redraw thousands of elements.
            let at = now();
            let every = if inner.engine.map_size() > 100 {
                1_000
            } else {
                250
            };
            if at >= inner.topology_at + every {
                inner.topology_at = at;
                actions.push(Action::Topology {
                    records: inner.engine.topology(),
                    root: inner.engine.root(),
                });
            }
            // What the page costs its reader's connection, told every few seconds (each
            // time the page is drawn again).
            if at >= inner.traffic_at + TRAFFIC_EVERY {
                inner.traffic_at = at;
                let stats = inner.engine.stats();
                actions.push(Action::Traffic(Traffic {
                    received: stats.bytes_in,
                    sent: stats.bytes_out,
                    since: inner.started,
                    at,
                }));
            }
            // Keep one timer waiting for the engine's next deadline.
            let next = inner.engine.poll_timeout();
            let timer = (next != inner.timer_at).then(|| {
                inner.timer_at = next;
                inner.timer_gen += 1;
                (next, inner.timer_gen)
            });
            (actions, dials, timer)
        };
        if let Some((Some(at), generation)) = timer {
            let net = self.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let wait = at.saturating_sub(now()).max(1);
                gloo_timers::future::sleep(std::time::Duration::from_millis(wait)).await;
                if net.inner.borrow().timer_gen == generation {
                    net.inner.borrow_mut().timer_at = None;
                    net.on_timer();
                }
            });
        }
        for (conn, address) in dials {
            let net = self.clone();
            wasm_bindgen_futures::spawn_local(async move { net.run_socket(conn, address).await });
        }
        for action in actions {
            self.report.emit(action);
        }
    }

    /// The engine's deadline came: run what is due, and keep the browser's copy of the
    /// history up to date (written at most once a deadline, not once per message).
    fn on_timer(&self) {
        self.drive(|e, now| e.handle_timeout(now));
        let mut inner = self.inner.borrow_mut();
        let Unsaved { messages, before } = std::mem::take(&mut inner.unsaved);
        if let Some(saved) = &inner.saved
            && (!messages.is_empty() || before.is_some())
        {
            saved.write(&messages, before);
        }
    }

    /// One WebSocket, from dial to close.
    async fn run_socket(&self, conn: ConnId, address: String) {
        let url = if address.ends_with("/ws") {
            address.clone()
        } else {
            format!("{address}/ws")
        };
        let mut ws = match WebSocket::open(&url) {
            Ok(ws) => ws,
            Err(e) => {
                let why = e.to_string();
                self.drive(|e, now| e.dial_failed(conn, &why, now));
                return;
            }
        };
        // The sink is ready once the socket has left CONNECTING, whether it opened or failed.
        if futures::future::poll_fn(|cx| {
            futures::Sink::<WsMessage>::poll_ready(std::pin::Pin::new(&mut ws), cx)
        })
        .await
        .is_err()
            || !matches!(ws.state(), WsState::Open)
        {
            self.drive(|e, now| e.dial_failed(conn, "could not connect", now));
            return;
        }
        let (tx, mut rx) = mpsc::channel(QUEUE);
        self.inner.borrow_mut().sockets.insert(conn, tx);
        self.drive(|e, now| e.opened(conn, now));

        let mut reason: Option<String> = None;
        loop {
            let event = {
                let out = rx.next();
                let inc = ws.next();
                futures::pin_mut!(out, inc);
                match select(out, inc).await {
                    Either::Left((out, _)) => Either::Left(out),
                    Either::Right((inc, _)) => Either::Right(inc),
                }
            };
            match event {
                Either::Left(Some(Outgoing::Text(frame))) => {
                    if ws.send(WsMessage::Text(frame.to_string())).await.is_err() {
                        reason = Some("send failed".to_owned());
                        break;
                    }
                }
                Either::Left(Some(Outgoing::Close(why))) => {
                    let _ = ws.close(Some(1000), Some(&why));
                    return; // The engine already forgot this link.
                }
                Either::Left(None) => break,
                Either::Right(Some(Ok(WsMessage::Text(text)))) => {
                    self.drive(|e, now| e.frame(conn, &text, now));
                }
                Either::Right(Some(Ok(WsMessage::Bytes(_)))) => {
                    self.drive(|e, now| e.unsupported_frame(conn, now))
                }
                Either::Right(Some(Err(gloo_net::websocket::WebSocketError::ConnectionClose(
                    ev,
                )))) => {
                    reason = Some(if ev.reason.is_empty() {
                        format!("code {}", ev.code)
                    } else {
                        ev.reason
                    });
                }
                Either::Right(Some(Err(e))) => reason = Some(e.to_string()),
                Either::Right(None) => break,
            }
        }
        self.inner.borrow_mut().sockets.remove(&conn);
        self.drive(|e, now| e.closed(conn, reason.as_deref(), now));
    }
}
