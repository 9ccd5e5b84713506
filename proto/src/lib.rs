//! hearsay's protocol, with no I/O: the wire format and the gossip engine that native nodes
//! and browser peers both drive.
//!
//! - [`id`]: node and message ids; a message id is a hash of what the message is.
//! - [`wire`]: the JSON frames of v1 (the seed's `MESSAGE`/`SOCKETS`) and v2 (`HELLO`,
//!   `GOSSIP`, `PEERS`, `PING`/`PONG`), and canonical peer addresses.
//! - [`seen`]: the bounded, expiring set of message ids already delivered.
//! - [`engine`]: one node's state machine. Events go in (connection accepted/opened/closed,
//!   frame received, publish, timeout) with the current time; [`Output`]s come out (send,
//!   dial, close, deliver) for the driver to carry out.
//! - [`sync`]: range-based set reconciliation, so peers converge on the same messages.
//! - [`topology`]: the network map, learned from records every peer floods about itself.
//! - [`sim`]: a deterministic discrete-event simulation of many engines (and seed nodes) on a
//!   virtual clock, used by the tests and for measuring the protocol.
//!
//! Data flow in a driver: socket bytes → [`Engine::frame`] → [`Engine::poll_output`] →
//! `Send` to other sockets / `Deliver` to the store. Time is milliseconds since the Unix epoch
//! ([`Millis`]), supplied by the caller and never read here, so the crate builds for wasm32.

#![forbid(unsafe_code)]

pub mod engine;
pub mod id;
pub mod seen;
pub mod sim;
pub mod sync;
pub mod topology;
pub mod wire;

pub use engine::{
    AddressError, Config, ConnId, Direction, Engine, LinkInfo, LinkState, Output, PeerInfo,
    Protocol, PublishError, Stats,
};
pub use id::{MsgId, NodeId, V1_ORIGIN};
pub use wire::{Frame, Message, PeerKind, canonical_address};

/// Milliseconds since the Unix epoch, as the driver's clock (real or virtual) tells it.
pub type Millis = u64;
