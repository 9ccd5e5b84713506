//! HTTP: the seed's paths (`/add`, `/commit`, the status page at `/`), the JSON API under
//! `/api/`, and the WebSocket upgrade at `/ws` and `/`.
//!
//! Filters are small functions returning `impl Filter`; every rejection is turned into a
//! JSON body `{"error": "..."}` with a 4xx status by [`recover`], so a client always learns
//! what was wrong.

use crate::conn;
use crate::door::Client;
use crate::driver::Shared;
use crate::page;
use crate::store::{FEED_BACKLOG, PageError, StoreError};
use hearsay_proto::dedup::Recent;
use hearsay_proto::{MsgId, PeerInfo, canonical_address};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};

/// Messages per page of `GET /api/messages` when no `limit` is given.
pub const DEFAULT_PAGE: usize = 100;
/// The largest `limit` accepted.
pub const MAX_PAGE: usize = 1000;
/// Most bytes of messages one `GET /api/messages` answers with (beyond, the page is cut and
/// says `more`): a thousand texts at the size limit would be 64 MB.
pub const MAX_PAGE_BYTES: usize = 1 << 20;
/// Largest request body accepted by `POST /api/messages`.
const MAX_BODY: u64 = 256 * 1024;

/// A request that was understood but is wrong; becomes a 4xx with a JSON error.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds, for a `Retry-After` header (429).
    retry_after: Option<u64>,
}

impl warp::reject::Reject for ApiError {}

fn bad_request(message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
        retry_after: None,
    })
}

fn with_shared(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (Arc<Shared>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&shared))
}

/// `GET`, or `HEAD` (monitors and link checkers use it; hyper leaves the body out).
fn read() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
}

/// Refuses a cross-site write with 403 (see [`crate::origin`]).
fn same_site_write(shared: Arc<Shared>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(with_shared(shared))
        .and_then(
            |headers: warp::http::HeaderMap, shared: Arc<Shared>| async move {
                match shared.origins.refuse_write(&headers) {
                    Some(message) => Err(warp::reject::custom(ApiError {
                        status: StatusCode::FORBIDDEN,
                        message,
                        retry_after: None,
                    })),
                    None => Ok(()),
                }
            },
        )
        .untuple_one()
}

type Query = HashMap<String, String>;

fn query() -> impl Filter<Extract = (Query,), Error = Infallible> + Clone {
    // Parse leniently and validate by hand, so errors can say which parameter was wrong.
    warp::query::raw()
        .map(|raw: String| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&raw).unwrap_or_default()
        })
        .or(warp::any().map(Vec::new))
        .unify()
        .map(|pairs: Vec<(String, String)>| pairs.into_iter().collect())
}

/// Every route of the main port.
pub fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let ws = warp::path("ws")
        .and(warp::path::end())
        .or(warp::path::end())
        .unify()
        .and(websocket(Arc::clone(&shared)));
    // `/` is the browser peer's page when it was built into this binary, else the status page
    // (which then says how to build the page). `/status` is always the plain status page.
    let index = read()
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .map(|shared: Arc<Shared>| match page::index() {
            Some(page) => page.into_response(),
            None => status_page(shared).into_response(),
        });
    let status_page = read()
        .and(warp::path("status"))
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .map(|shared: Arc<Shared>| status_page(shared).into_response());
    let assets = read()
        .and(warp::path::tail())
        .and_then(|tail: warp::path::Tail| async move {
            page::asset(tail.as_str()).ok_or_else(warp::reject::not_found)
        });
    let add = warp::get()
        .and(warp::path("add"))
        .and(warp::path::end())
        .and(same_site_write(Arc::clone(&shared)))
        .and(query())
        .and(crate::accept::client())
        .and(with_shared(Arc::clone(&shared)))
        .and_then(add);
    let commit = warp::get()
        .and(warp::path("commit"))
        .and(warp::path::end())
        .and(same_site_write(Arc::clone(&shared)))
        .and(query())
        .and(crate::accept::client())
        .and(with_shared(Arc::clone(&shared)))
        .and_then(commit);
    let api = warp::path("api").and(api(Arc::clone(&shared)));
    let metrics = read()
        .and(warp::path("metrics"))
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .map(|shared: Arc<Shared>| {
            let (stats, broadcast, peers) = shared.read(|s| {
                (
                    s.engine.stats().clone(),
                    s.engine.broadcast_stats().clone(),
                    s.engine.peers(),
                )
            });
            let stored = shared.store.len().unwrap_or(0);
            let text = shared.metrics.render(&stats, &broadcast, &peers, stored);
            warp::reply::with_header(
                text,
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        });
    let healthz = read()
        .and(warp::path("healthz"))
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .map(|shared: Arc<Shared>| {
            // Healthy while the store answers; a node that cannot read its store is not.
            match shared.store.len() {
                Ok(_) => warp::reply::with_status(
                    warp::reply::json(&json!({ "status": "ok" })),
                    StatusCode::OK,
                ),
                Err(e) => warp::reply::with_status(
                    warp::reply::json(&json!({ "status": "unhealthy", "error": e.to_string() })),
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
            }
        });
    // Matched by method alone, so it must not reject other methods as "not allowed": that
    // would hide every other route's "not found".
    let preflight = warp::method()
        .and_then(|m: warp::http::Method| async move {
            if m == warp::http::Method::OPTIONS {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::header::optional::<String>("origin"))
        .and(with_shared(Arc::clone(&shared)))
        .and_then(preflight);
    let origins = Arc::clone(&shared);
    let routes = ws
        .or(preflight)
        .or(index)
        .or(status_page)
        .or(add)
        .or(commit)
        .or(api)
        .or(metrics)
        .or(healthz)
        .or(assets)
        .recover(recover);
    warp::header::headers_cloned()
        .and(routes)
        .map(move |headers: warp::http::HeaderMap, reply| {
            let origin = headers
                .get(warp::http::header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .filter(|o| origins.origins.allows(o))
                .map(str::to_owned);
            secured(reply, origin)
        })
}

/// Every response: the security headers, and a CORS answer for an allowed web app.
fn secured(reply: impl Reply, allowed_origin: Option<String>) -> warp::reply::Response {
    use warp::http::header;
    let mut response = reply.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        crate::origin::content_security_policy().clone(),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(origin) = allowed_origin.and_then(|o| o.parse().ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// `OPTIONS`: a CORS preflight, answered for the web apps `--allow-origin` names.
async fn preflight(origin: Option<String>, shared: Arc<Shared>) -> Result<impl Reply, Rejection> {
    use warp::http::header;
    match origin {
        Some(o) if shared.origins.allows(&o) => {
            let mut response =
                warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
            let h = response.headers_mut();
            for (name, value) in [
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, POST"),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "content-type, last-event-id",
                ),
                (header::ACCESS_CONTROL_MAX_AGE, "600"),
            ] {
                h.insert(name, HeaderValue::from_static(value));
            }
            Ok(response)
        }
        Some(o) => Err(warp::reject::custom(ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "{o} is not allowed to call this node's API (its operator can allow it with --allow-origin)"
            ),
            retry_after: None,
        })),
        None => Err(bad_request(
            "OPTIONS is for CORS preflights, which carry an Origin header",
        )),
    }
}

/// The routes of the seed-compatible port (PORT+1): WebSockets at any path, nothing else.
pub fn v1_routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    websocket(shared).recover(recover)
}

fn websocket(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::ws()
        .and(crate::accept::client())
        .and(warp::header::optional::<String>("origin"))
        .and(with_shared(shared))
        .and_then(
            |ws: warp::ws::Ws,
             client: Option<Client>,
             origin: Option<String>,
             shared: Arc<Shared>| async move {
                // A browser acting for another site is counted as a stranger, wherever it is.
                let foreign = client.is_some_and(|c| c.foreign);
                // The address group what it sends is metered under (seed text): the one it
                // is capped as, loopback included.
                let source = client.map(|c| c.limited_as());
                // In a demo cut in two, a page is on the side of the node that served it
                // (its origin), wherever its socket comes from: else a page linked to
                // both halves would carry messages across.
                let peer = shared
                    .demo
                    .as_ref()
                    .and(origin.as_deref())
                    .and_then(|o| url::Url::parse(o).ok()?.host_str()?.parse().ok())
                    .or(client.and_then(|c| c.ip));
                if let Some(why) = shared
                    .demo
                    .as_ref()
                    .zip(peer)
                    .and_then(|(demo, peer)| demo.refuses(peer))
                {
                    return Err(warp::reject::custom(ApiError {
                        status: StatusCode::FORBIDDEN,
                        message: why,
                        retry_after: None,
                    }));
                }
                let place =
                    shared
                        .caps
                        .open(client.map(|c| c.limited_as()))
                        .map_err(|message| {
                            warp::reject::custom(ApiError {
                                status: StatusCode::SERVICE_UNAVAILABLE,
                                message,
                                retry_after: Some(10),
                            })
                        })?;
                let upgrade = ws
                    .max_message_size(hearsay_proto::wire::MAX_FRAME_BYTES)
                    .max_frame_size(hearsay_proto::wire::MAX_FRAME_BYTES)
                    .on_upgrade(move |socket| {
                        let tracker = shared.tracker.clone();
                        // Tracked so that shutdown waits for every connection to close; the
                        // place is given back when it has.
                        tracker.track_future(async move {
                            let addresses = conn::Addresses {
                                capped: place.address(),
                                metered: source,
                                peer,
                            };
                            conn::run(shared, None, addresses, foreign, socket).await;
                            drop(place);
                        })
                    });
                Ok::<_, Rejection>(upgrade)
            },
        )
}

fn api(shared: Arc<Shared>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let peers = read()
        .and(warp::path("peers"))
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .map(|shared: Arc<Shared>| {
            let (peers, links) = shared.read(|s| (s.engine.peers(), s.engine.links()));
            let peers: Vec<PeerJson> = peers.into_iter().map(PeerJson::from).collect();
            // Every address this node dials, and why the last attempt failed if it did; and
            // what /add pinned that was never reached and was let go.
            let unpinned = shared.pins.unpinned();
            warp::reply::json(&json!({ "peers": peers, "links": links, "unpinned": unpinned }))
        });
    let list = read()
        .and(warp::path("messages"))
        .and(warp::path::end())
        .and(query())
        .and(with_shared(Arc::clone(&shared)))
        .and_then(list_messages);
    let post = warp::post()
        .and(warp::path("messages"))
        .and(warp::path::end())
        .and(same_site_write(Arc::clone(&shared)))
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(crate::accept::client())
        .and(with_shared(Arc::clone(&shared)))
        .and_then(post_message);
    let topology = read()
        .and(warp::path("topology"))
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .map(|shared: Arc<Shared>| {
            let nodes = shared.read(|s| s.engine.topology());
            warp::reply::json(&json!({ "nodes": nodes }))
        });
    let stream = read()
        .and(warp::path("stream"))
        .and(warp::path::end())
        .and(query())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(with_shared(Arc::clone(&shared)))
        .and_then(stream_messages);
    let status = read()
        .and(warp::path("status"))
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .map(|shared: Arc<Shared>| warp::reply::json(&status(&shared)));
    peers
        .or(list)
        .or(post)
        .or(topology)
        .or(stream)
        .or(status)
        .or(demo_api(shared))
}

/// A 4xx with a JSON error saying why.
fn refusal(status: StatusCode, message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError {
        status,
        message: message.into(),
        retry_after: None,
    })
}

/// The demo's part of the API: `GET /api/journey?id=ID` (who took a message, when and from
/// whom), `GET /api/demo` (its nodes), and its controls, `POST /api/demo/ACTION` with
/// `kill?share=PERCENT` or `kill?node=ID`, `restart`, `split`, `heal`, `add?count=N`,
/// `burst?count=N`. Controls are taken from this node's own pages only (or from a tool on
/// this machine that sends no Origin); every answer is the demo's status, and what was done.
/// A node outside a demo answers 404 with why.
fn demo_api(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let journey = read()
        .and(warp::path("journey"))
        .and(warp::path::end())
        .and(query())
        .and(with_shared(Arc::clone(&shared)))
        .and_then(|q: Query, shared: Arc<Shared>| async move {
            let demo = in_demo(&shared)?;
            let id = q
                .get("id")
                .ok_or_else(|| bad_request("missing `id`: a message id"))?;
            let id = id
                .parse::<MsgId>()
                .map_err(|_| bad_request(format!("`id` {id:?} is not a message id")))?;
            // At most MAX_REACHED deliveries: about 100 bytes each.
            match demo.hub.journey(id) {
                Some(journey) => Ok(warp::reply::json(&journey)),
                None => Err(refusal(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no journey of {id}: the demo keeps those of its newest {} messages",
                        hearsay_proto::journey::MAX_JOURNEYS
                    ),
                )),
            }
        });
    let status = read()
        .and(warp::path("demo"))
        .and(warp::path::end())
        .and(with_shared(Arc::clone(&shared)))
        .and_then(|shared: Arc<Shared>| async move {
            let demo = in_demo(&shared)?;
            control(&demo, crate::hub::Command::Status).await
        });
    let act = warp::post()
        .and(warp::path("demo"))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::header::headers_cloned())
        .and(query())
        .and(with_shared(shared))
        .and_then(
            |action: String, headers: warp::http::HeaderMap, q: Query, shared: Arc<Shared>| async move {
                let demo = in_demo(&shared)?;
                if let Some(why) = crate::origin::refuse_cross_origin(&headers) {
                    return Err(refusal(StatusCode::FORBIDDEN, why));
                }
                let number = |name: &str| -> Result<Option<u32>, Rejection> {
                    q.get(name)
                        .map(|v| {
                            v.parse::<u32>().map_err(|_| {
                                bad_request(format!("`{name}` {v:?} is not a whole number"))
                            })
                        })
                        .transpose()
                };
                use crate::hub::Command;
                let command = match action.as_str() {
                    "kill" => Command::Kill {
                        share: number("share")?,
                        node: q.get("node").cloned(),
                        except: Some(demo.node),
                    },
                    "restart" => Command::Restart,
                    "split" => Command::Split,
                    "heal" => Command::Heal,
                    "add" => match number("count")?.unwrap_or(10) {
                        0 => return Err(bad_request("`count`: add at least one node")),
                        count => Command::Add { count },
                    },
                    "burst" => match number("count")?.unwrap_or(100) {
                        count @ 1..=crate::hub::MAX_BURST => Command::Burst { count },
                        _ => {
                            return Err(bad_request(format!(
                                "`count`: a burst is 1 to {} messages",
                                crate::hub::MAX_BURST
                            )));
                        }
                    },
                    other => {
                        return Err(refusal(
                            StatusCode::NOT_FOUND,
                            format!("no demo control {other:?}: kill, restart, split, heal, add or burst"),
                        ));
                    }
                };
                control(&demo, command).await
            },
        );
    journey.or(status).or(act)
}

/// This node's place in a demo, or a 404 saying it has none.
fn in_demo(shared: &Shared) -> Result<crate::hub::Member, Rejection> {
    shared.demo.clone().ok_or_else(|| {
        refusal(
            StatusCode::NOT_FOUND,
            "this node is not part of a demo: journeys are recorded, and the network broken and healed, only by `hearsay demo`, whose nodes share one process",
        )
    })
}

async fn control(
    demo: &crate::hub::Member,
    command: crate::hub::Command,
) -> Result<warp::reply::Json, Rejection> {
    demo.hub
        .ask(command)
        .await
        .map(|status| warp::reply::json(&status))
        .map_err(|why| refusal(StatusCode::CONFLICT, why))
}

/// `GET /api/stream`: Server-Sent Events, one `message` event per message as this node stores
/// it (the JSON of `/api/messages`, the message id as event id). With `?after=ID` or a
/// `Last-Event-ID` header (what a browser's `EventSource` sends when it reconnects), it first
/// sends everything stored after that id, so a client that resumes loses nothing.
async fn stream_messages(
    q: Query,
    last_event_id: Option<String>,
    shared: Arc<Shared>,
) -> Result<impl Reply, Rejection> {
    let after = match q.get("after").cloned().or(last_event_id) {
        None => None,
        Some(raw) => Some(raw.parse::<MsgId>().map_err(|_| {
            bad_request(format!(
                "`after` (or Last-Event-ID) must be a message id (32 hex digits), got {raw:?}"
            ))
        })?),
    };
    // Subscribe before reading the history, so nothing falls between the two.
    let live = shared.store.subscribe();
    if let Some(id) = &after {
        shared.store.page(Some(id), 1).map_err(page_error)?;
    }
    let state = Feed {
        shared,
        cursor: after,
        replaying: after.is_some(),
        backlog: std::collections::VecDeque::new(),
        replayed: Recent::new(2 * FEED_BACKLOG, u64::MAX),
        live,
    };
    let events = futures_util::stream::unfold(state, Feed::next);
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)))
}

/// Where a stream is: replaying the store from `cursor`, or following what is stored live.
struct Feed {
    shared: Arc<Shared>,
    cursor: Option<MsgId>,
    replaying: bool,
    backlog: std::collections::VecDeque<hearsay_proto::Message>,
    /// The newest ids sent while replaying: the live feed may repeat them (no more than its
    /// backlog: further behind, it reports a lag and the stream replays again).
    replayed: Recent<MsgId>,
    live: tokio::sync::broadcast::Receiver<Arc<hearsay_proto::Message>>,
}

impl Feed {
    const PAGE: usize = 500;

    async fn next(mut self) -> Option<(Result<warp::sse::Event, Infallible>, Feed)> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if self.replaying {
                if self.backlog.is_empty() {
                    match self.shared.store.page(self.cursor.as_ref(), Self::PAGE) {
                        Ok(page) if page.is_empty() => self.replaying = false,
                        Ok(page) => self.backlog.extend(page),
                        Err(e) => {
                            tracing::warn!(error = %e, "stream: cannot read the store");
                            return None;
                        }
                    }
                }
                if let Some(msg) = self.backlog.pop_front() {
                    self.cursor = Some(msg.id);
                    self.replayed.insert(msg.id, (), 0);
                    return Some((Ok(event(&msg)), self));
                }
                continue;
            }
            // A node that is stopping ends its streams (its shutdown waits for them).
            let next = tokio::select! {
                next = self.live.recv() => next,
                _ = self.shared.shutdown.cancelled() => return None,
            };
            match next {
                Ok(msg) => {
                    if self.replayed.contains(&msg.id) {
                        continue;
                    }
                    // Past the replay: everything from here on is new.
                    self.replayed.clear();
                    self.cursor = Some(msg.id);
                    return Some((Ok(event(&msg)), self));
                }
                // Too slow for the live feed: catch up from the store.
                Err(RecvError::Lagged(_)) => self.replaying = true,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn event(msg: &hearsay_proto::Message) -> warp::sse::Event {
    // Our own message always serializes.
    let json = serde_json::to_string(msg).unwrap_or_default();
    warp::sse::Event::default()
        .id(msg.id.to_string())
        .event("message")
        .data(json)
}

/// A peer as `/api/peers` shows it.
#[derive(Serialize)]
struct PeerJson {
    id: Option<String>,
    address: Option<String>,
    direction: hearsay_proto::Direction,
    protocol: hearsay_proto::Protocol,
    kind: Option<hearsay_proto::PeerKind>,
    /// In the active view (a node), held here (a page), or a page's link.
    neighbor: bool,
    /// Messages are pushed to it: a link of the broadcast tree.
    eager: bool,
    connected_at: u64,
}

impl From<PeerInfo> for PeerJson {
    fn from(p: PeerInfo) -> Self {
        Self {
            id: p.id.map(|id| id.to_string()),
            address: p.address,
            direction: p.direction,
            protocol: p.protocol,
            kind: p.kind,
            neighbor: p.neighbor,
            eager: p.eager,
            connected_at: p.connected_at,
        }
    }
}

fn status(shared: &Shared) -> serde_json::Value {
    shared.read(|s| {
        let map = s.engine.map_stats();
        json!({
            "id": s.engine.id().to_string(),
            "key": s.engine.public_key().to_string(),
            "fingerprint": s.engine.public_key().fingerprint(),
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": hearsay_proto::wire::PROTOCOL_VERSION,
            "addresses": s.engine.config().listen_addresses,
            "peers": s.engine.peers().len(),
            "neighbors": s.engine.neighbors().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "passive": s.engine.passive().iter().map(|r| &r.address).collect::<Vec<_>>(),
            "map": { "records": map.0, "bytes": map.1, "refused": map.2 },
            "root": s.engine.root().map(|r| r.to_string()),
            "strategy": s.engine.config().broadcast.strategy.to_string(),
            "links": s.engine.links(),
            "dialing": shared.dial_rules.status(),
            "door": {
                "host_names": shared.hosts.names(),
                "pinned_by_add": shared.pins.len(),
            },
            "cross_site_refused": shared.origins.refused(),
            "messages": shared.store.len().unwrap_or(0),
            "stats": s.engine.stats(),
            "limits": s.engine.config().limits,
            "settings": shared.settings.get(),
            "started_at": shared.started_at,
            "uptime_ms": shared.clock.now().saturating_sub(shared.started_at),
        })
    })
}

async fn add(
    q: Query,
    client: Option<Client>,
    shared: Arc<Shared>,
) -> Result<impl Reply, Rejection> {
    let forbidden = |message: String| {
        warp::reject::custom(ApiError {
            status: StatusCode::FORBIDDEN,
            message,
            retry_after: None,
        })
    };
    let address = q
        .get("address")
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| bad_request("missing `address`: try /add?address=ws://127.0.0.1:3001"))?;
    let Some(canonical) = canonical_address(address) else {
        return Err(bad_request(format!(
            "address must be a ws:// or wss:// URL, got {address:?}"
        )));
    };
    if let Some(why) = crate::dialing::never_dialed(&canonical) {
        return Err(forbidden(why));
    }
    // The operator at this machine is trusted to name any address (but link-local ones);
    // anyone else is held to the dialing rules (checked again at every dial, as names can
    // resolve differently).
    let client = client.unwrap_or(Client {
        ip: None,
        forwarded: false,
        foreign: false,
    });
    if client.is_local() {
        shared.dial_rules.trust(&canonical);
    } else {
        crate::dialing::resolve(&shared.dial_rules, &canonical)
            .await
            .map_err(forbidden)?;
    }
    let now = shared.clock.now();
    if shared
        .pins
        .admit(client.limited_as(), &canonical, now)
        .map_err(forbidden)?
        && let Err(e) = shared.drive(|e, now| e.add_peer(&canonical, now))
    {
        shared.pins.forget(&canonical);
        return Err(bad_request(e.to_string()));
    }
    Ok(warp::redirect::see_other(warp::http::Uri::from_static("/")))
}

async fn commit(
    q: Query,
    client: Option<Client>,
    shared: Arc<Shared>,
) -> Result<impl Reply, Rejection> {
    let msg = q
        .get("msg")
        .ok_or_else(|| bad_request("missing `msg`: try /commit?msg=hello"))?;
    charge(&shared, client)?;
    publish(&shared, msg).await?;
    Ok(warp::redirect::see_other(warp::http::Uri::from_static("/")))
}

/// Publishes and waits until the message is durably stored.
async fn publish(shared: &Arc<Shared>, text: &str) -> Result<hearsay_proto::Message, Rejection> {
    match shared.publish(text).await {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(e)) => Err(publish_error(e)),
        Err(e) => Err(unavailable(e)),
    }
}

fn publish_error(e: hearsay_proto::PublishError) -> Rejection {
    match e {
        hearsay_proto::PublishError::OverQuota { retry_after_ms, .. } => {
            warp::reject::custom(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: e.to_string(),
                retry_after: Some(retry_after_ms.div_ceil(1_000).max(1)),
            })
        }
        e => bad_request(e.to_string()),
    }
}

fn unavailable(e: StoreError) -> Rejection {
    warp::reject::custom(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: e.to_string(),
        retry_after: None,
    })
}

async fn list_messages(q: Query, shared: Arc<Shared>) -> Result<impl Reply, Rejection> {
    let limit = match q.get("limit") {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(bad_request(format!(
                    "`limit` must be a number from 1 to {MAX_PAGE}, got {raw:?}"
                )));
            }
        },
    };
    let cursor = |name: &str| -> Result<Option<MsgId>, Rejection> {
        q.get(name)
            .map(|raw| {
                raw.parse::<MsgId>().map_err(|_| {
                    bad_request(format!(
                        "`{name}` must be a message id (32 hex digits), got {raw:?}"
                    ))
                })
            })
            .transpose()
    };
    let (after, before) = (cursor("after")?, cursor("before")?);
    // Oldest first from `after` (or the start); newest first back from `before` (or the
    // end), which is how a reader opens a long history: the newest at once, older on demand.
    let newest_first = match (q.get("order").map(String::as_str), &after, &before) {
        (_, Some(_), Some(_)) => {
            return Err(bad_request(
                "give `after` (oldest first) or `before` (newest first), not both",
            ));
        }
        (None | Some("oldest"), _, None) => false,
        (None | Some("newest"), None, _) => true,
        (Some("newest"), Some(_), _) => {
            return Err(bad_request(
                "`after` pages oldest first; to page newest first, use `before`",
            ));
        }
        (Some("oldest"), _, Some(_)) => {
            return Err(bad_request(
                "`before` pages newest first; to page oldest first, use `after`",
            ));
        }
        (Some(other), _, _) => {
            return Err(bad_request(format!(
                "`order` must be `oldest` or `newest`, got {other:?}"
            )));
        }
    };
    let messages = if newest_first {
        shared.store.page_back(before.as_ref(), limit)
    } else {
        shared.store.page(after.as_ref(), limit)
    }
    .map_err(page_error)?;
    // Cut by bytes too: a page of texts at the size limit would otherwise be tens of MB,
    // built in memory for one small request. `more` says the page was cut short.
    let mut bytes = 0;
    let fits = messages
        .iter()
        .take_while(|m| {
            bytes += serde_json::to_string(m).map_or(m.data.len(), |j| j.len());
            bytes <= MAX_PAGE_BYTES
        })
        .count()
        .max(1)
        .min(messages.len());
    let more = fits < messages.len();
    let messages = &messages[..fits];
    Ok(warp::reply::json(
        &json!({ "messages": messages, "more": more }),
    ))
}

/// A cursor this node never held is 404; one it held and evicted as it aged out of the
/// retention window is 410, so a client knows to start again from the oldest held.
fn page_error(e: PageError) -> Rejection {
    let status = match &e {
        PageError::UnknownCursor(_) => StatusCode::NOT_FOUND,
        PageError::Evicted(_) => StatusCode::GONE,
        PageError::Store(e) => return unavailable(e.clone()),
    };
    warp::reject::custom(ApiError {
        status,
        message: e.to_string(),
        retry_after: None,
    })
}

/// Charges a publish to the client's address: 429, saying when to try again, if it is over
/// its limit.
fn charge(shared: &Shared, client: Option<Client>) -> Result<(), Rejection> {
    let now = shared.clock.now();
    shared
        .http_limit
        .take(client.map(|c| c.limited_as()), now)
        .map_err(|wait_ms| {
            let rate = shared.http_limit.rate();
            let secs = wait_ms.div_ceil(1_000).max(1);
            warp::reject::custom(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "rate limited: one address may publish {} messages at once and {} a second; try again in {secs} s",
                    rate.burst, rate.per_second
                ),
                retry_after: Some(secs),
            })
        })
}

async fn post_message(
    body: bytes::Bytes,
    client: Option<Client>,
    shared: Arc<Shared>,
) -> Result<impl Reply, Rejection> {
    /// `{"data"}` for the node to sign, or a message an app signed with its own key.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Post {
        data: String,
        id: Option<MsgId>,
        author: Option<hearsay_proto::Author>,
        seq: Option<u64>,
        timestamp: Option<u64>,
        sig: Option<hearsay_proto::Signature>,
    }
    let post: Post = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "body must be JSON like {{\"data\":\"hello\"}}, or a signed message {{\"author\",\"seq\",\"timestamp\",\"data\",\"sig\"}}: {e}"
        ))
    })?;
    charge(&shared, client)?;
    let signed = post.author.is_some() || post.sig.is_some() || post.seq.is_some();
    if !signed {
        if post.timestamp.is_some() || post.id.is_some() {
            return Err(bad_request(
                "`id` and `timestamp` come with a signed message (author, seq, timestamp, data, sig); to have this node sign, send only `data`",
            ));
        }
        let msg = publish(&shared, &post.data).await?;
        return Ok(warp::reply::with_status(
            warp::reply::json(&json!({ "id": msg.id })),
            StatusCode::CREATED,
        ));
    }
    let (Some(author), Some(seq), Some(timestamp), Some(sig)) =
        (post.author, post.seq, post.timestamp, post.sig)
    else {
        return Err(bad_request(
            "a signed message needs all of author (64 hex digits), seq, timestamp, data and sig (128 hex digits)",
        ));
    };
    let hearsay_proto::Author::Key(key) = author else {
        return Err(bad_request(
            "author must be a public key (64 hex digits): seed texts come only from seed nodes",
        ));
    };
    let mut msg = hearsay_proto::Message::with_signature(key, seq, timestamp, post.data, sig);
    if let Some(id) = post.id {
        // An id the app sent is checked, not trusted: a wrong one is refused.
        msg.id = id;
    }
    let id = msg.id;
    let new = match shared.publish_signed(msg).await {
        Ok(Ok(new)) => new,
        Ok(Err(e)) => return Err(publish_error(e)),
        Err(e) => return Err(unavailable(e)),
    };
    Ok(warp::reply::with_status(
        warp::reply::json(&json!({ "id": id })),
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
    ))
}

fn status_page(shared: Arc<Shared>) -> impl Reply {
    use html_escape::encode_text as esc;
    use std::fmt::Write;
    let (id, fingerprint, addresses, peers) = shared.read(|s| {
        (
            s.engine.id().to_string(),
            s.engine.public_key().fingerprint(),
            s.engine.config().listen_addresses.clone(),
            s.engine.peers(),
        )
    });
    let recent = shared.store.page_back(None, 100).unwrap_or_default();
    let total = shared.store.len().unwrap_or(0);
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>hearsay node</title><link rel=\"icon\" href=\"data:,\">\
         <style>body{font:15px/1.45 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}\
         code{font-size:90%}li{margin:.2rem 0}.m{color:#666;font-size:85%}</style></head><body>",
    );
    let _ = write!(
        html,
        "<h1>hearsay node</h1><p>id <code>{}</code> · key <code>{}</code>",
        esc(&id),
        esc(&fingerprint)
    );
    for a in &addresses {
        let _ = write!(html, " · <code>{}</code>", esc(a));
    }
    if !page::embedded() {
        html.push_str(
            "</p><p class=\"m\">This node was built without its web page. Build it with \
             <code>./scripts/run</code> (or <code>bash scripts/build-web</code>, then rebuild the \
             node) to join the network from the browser.",
        );
    }
    html.push_str("</p><form action=\"/commit\"><input name=\"msg\" placeholder=\"say something\" required> <button>send</button></form>");
    let _ = write!(html, "<h2>Peers ({})</h2><ul>", peers.len());
    for p in &peers {
        let _ = write!(
            html,
            "<li><code>{}</code> {} {:?} {:?}</li>",
            esc(p.address.as_deref().unwrap_or("(no address)")),
            esc(&p.id.map(|i| i.to_string()).unwrap_or_default()),
            p.direction,
            p.protocol
        );
    }
    let _ = write!(html, "</ul><h2>Messages ({total})</h2><ul>");
    for m in &recent {
        let _ = write!(
            html,
            "<li>{} <span class=\"m\">from {}</span></li>",
            esc(&m.data),
            esc(&short_author(&m.author))
        );
    }
    html.push_str("</ul><p class=\"m\">JSON: <a href=\"/api/status\">/api/status</a> · <a href=\"/api/peers\">/api/peers</a> · <a href=\"/api/messages\">/api/messages</a></p></body></html>");
    warp::reply::html(html)
}

/// An author as people read it: a key's fingerprint, or "a seed node".
fn short_author(author: &hearsay_proto::Author) -> String {
    match author.key() {
        Some(key) => key.fingerprint(),
        None => "a seed node".to_owned(),
    }
}

/// Turns every rejection into a JSON error with the right status.
async fn recover(err: Rejection) -> Result<impl Reply, Infallible> {
    // Most specific first: a route that matched the path and then refused the request says
    // more than the other routes' "wrong method".
    let retry_after = err.find::<ApiError>().and_then(|e| e.retry_after);
    let (status, message) = if let Some(e) = err.find::<ApiError>() {
        (e.status, e.message.clone())
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {MAX_BODY} bytes"),
        )
    } else if err.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required".to_owned(),
        )
    } else if err.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not found: see / for this node's paths".to_owned(),
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_owned(),
        )
    } else if err.find::<warp::reject::MissingHeader>().is_some()
        || err.find::<warp::reject::InvalidHeader>().is_some()
    {
        (
            StatusCode::BAD_REQUEST,
            "this path expects a WebSocket upgrade".to_owned(),
        )
    } else {
        (StatusCode::BAD_REQUEST, format!("bad request: {err:?}"))
    };
    let reply = warp::reply::with_status(warp::reply::json(&json!({ "error": message })), status);
    let mut response = reply.into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(warp::http::header::RETRY_AFTER, secs.into());
    }
    Ok(response)
}
