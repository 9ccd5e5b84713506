//! hearsay's browser peer: a yew app that runs the same gossip engine as the native nodes,
//! in WebAssembly, over gloo-net WebSockets.
//!
//! - [`net`]: the driver. Fetches the serving node's id and history, starts an engine of kind
//!   `browser` pinned to that node, opens a WebSocket per `Dial`, feeds frames and timers in,
//!   and reports to the page as [`state::Action`]s.
//! - [`saved`]: the page's messages between visits, in the browser's IndexedDB.
//! - [`state`]: the page's `Reducible` state and its actions; pure, tested on the host.
//! - [`layout`]: the network map's layout, the broadcast tree from its root; pure, tested on
//!   the host.
//! - [`view`]: the part of the map in view (zoom and pan); pure, tested on the host.
//! - [`window`]: which rows of the message list to render (those near the viewport); pure,
//!   tested on the host.
//! - [`components`]: one component per file — the app, the composer, the message list, the
//!   links and the peers, the map and its journey counter, and (in a demo) the demo's
//!   controls.
//!
//! Data flow: socket frame → `Network::drive(engine.frame)` → outputs → other sockets and
//! `Action::Delivered` → reducer → render. Sending: composer → `Network::publish`. In a
//! demo, the latest message's journey as it happened comes from the node (`net::journey`,
//! `Action::Journey`) and the map replays it; the controls post to the node and the map shows
//! what they did.

#![forbid(unsafe_code)]

pub mod components;
pub mod layout;
pub mod net;
pub mod saved;
pub mod state;
pub mod view;
pub mod window;

/// Mounts the app on the page's `<body>`.
pub fn run() {
    // The engine's memory, for tools that measure the page (`scripts/web-report`): the JS
    // heap does not count it.
    if let Some(window) = web_sys::window() {
        let _ = js_sys::Reflect::set(&window, &"hearsayMemory".into(), &wasm_bindgen::memory());
    }
    yew::Renderer::<components::app::App>::new().render();
}
