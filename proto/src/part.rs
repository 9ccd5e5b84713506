//! The contract every part of the engine keeps (as str0m and quinn-proto pull each
//! component): a part takes its inputs through its own methods, queues what it wants done as
//! its own [`Part::Out`], and keeps its own timers. The engine ([`crate::Engine`]) feeds it,
//! pulls its outputs with [`Part::poll`] and routes them, in one place, to other parts or to
//! the driver; it asks [`Part::poll_timeout`] for the part's next deadline and calls
//! [`Part::handle_timeout`] when it is due.
//!
//! A part that reads what another part owns when its timers fire (the tree reads
//! Plumtree's links, reconciliation the messages held, the map this peer's links) is handed
//! it as its [`Part::Context`]: read at that moment, never kept.

use crate::Millis;

pub trait Part {
    /// What the part asks for: frames to send, links to open or close, word for other parts.
    type Out;
    /// What the part reads of the rest of the engine when its timers fire (`()` if nothing).
    type Context<'a>;

    /// The next thing the part wants done, if any.
    fn poll(&mut self) -> Option<Self::Out>;
    /// The part's earliest deadline, if it has one.
    fn poll_timeout(&self) -> Option<Millis>;
    /// Runs whatever of the part's is due at `now`.
    fn handle_timeout(&mut self, now: Millis, cx: Self::Context<'_>);
}
