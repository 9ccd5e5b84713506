//! The native hearsay node: warp + tokio driving the `hearsay-proto` engine.
//!
//! - [`cli`]: command-line arguments (`hearsay PORT [--peer WS_URL]...`).
//! - [`config`]: `--config FILE` (TOML), the flags over it, and the settings in effect.
//! - [`demo`]: `hearsay demo`, a whole network in one process, and its controls (kill and
//!   restart nodes, cut the network in two and heal it, add nodes, a burst); its nodes share
//!   a [`hub::Hub`]: the journal of each message's journey, the cut, the way to the controls.
//! - [`hub`]: what a demo's nodes share, and the controls' commands (its own module, so the
//!   node's HTTP and server parts need not reach into the demo that starts them).
//! - [`simulate`]: `hearsay sim`, the protocol's simulator with figures.
//! - [`server`]: [`server::start`] takes already-bound listeners (tests bind port 0), serves
//!   HTTP + WebSockets on one and seed-style WebSockets on the other, runs the timer, and
//!   stops every task on shutdown.
//! - [`accept`]: the accept loop for each listener (HTTP/1.1 with WebSocket upgrades, over
//!   TLS when the node has a certificate): timeouts, caps on HTTP connections, and each
//!   request told who sent it.
//! - [`door`]: who a request is from (the client behind a trusted proxy, in the one header
//!   that proxy sets), which names the node is served as (against DNS rebinding), and
//!   whether a browser acts for another site.
//! - [`tls`]: rustls settings: the roots `wss://` dials are checked against (`--tls-ca`), and
//!   the certificate the node serves with (`--tls-cert`, `--tls-key`).
//! - [`http`]: routes — the seed's `/add` and `/commit`, the status page, `/api/*` (with
//!   `/api/stream`, Server-Sent Events of what the store takes in), and the WebSocket upgrade
//!   at `/ws` and `/`.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format.
//! - [`page`]: the browser peer's page (`dist/`, from `scripts/build-web`), embedded at compile time.
//! - [`driver`]: owns the engine (behind a short-held mutex), drains its outputs through
//!   `hearsay_proto::Driver`: frames into per-peer queues, dials (handed to `conn`'s dialer),
//!   closes, deliveries into the store; wakes the engine at its next deadline.
//! - [`conn`]: one task per WebSocket, accepted or dialed: bounded queue out, frames in; and
//!   the dialer. It calls the driver, never the other way round.
//! - [`origin`]: which browsers may write (no cross-site writes; `--allow-origin` and CORS)
//!   and the security headers (CSP) on everything served.
//! - [`dialing`]: where the node may dial (no link-local addresses ever; private and
//!   loopback ones only from a node that lives there), checked after DNS resolution.
//! - [`pins`]: what `/add` may pin: a share per client and in all, and addresses never
//!   reached let go.
//! - [`limit`]: the rate limits the node applies itself (HTTP publishers per address; the
//!   engine limits pages and seeds).
//! - [`store`]: the message history behind the [`store::Store`] interface, with a feed of
//!   what it stores and a channel of what it failed to (which the driver has the engine
//!   forget, so it is fetched again).
//! - [`clock`]: monotonic Unix-epoch milliseconds for the engine.
//! - [`keyfile`]: the node's ed25519 key in its data folder (its id derives from it; every
//!   message it publishes is signed with it), and `hearsay key show|export|import`.
//!
//! Data flow: socket → `accept` (the door) → `conn` → `Shared::drive(engine.inbound)` → outputs → other peers' queues
//! and the store; HTTP handlers publish and read through the same `Shared`.

#![forbid(unsafe_code)]

pub mod accept;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod demo;
pub mod dialing;
pub mod door;
pub mod driver;
pub mod http;
pub mod hub;
pub mod keyfile;
pub mod limit;
pub mod metrics;
pub mod origin;
pub mod page;
pub mod pins;
pub mod server;
pub mod simulate;
pub mod store;
pub mod tls;
