//! The agent's sans-IO core: every forwarding decision, none of the I/O.
//!
//! [`Engine`] owns the node's links (one boringtun `Tunn` per neighbour) and
//! its [`ForwardingTable`]. The shells feed it datagrams from the underlay,
//! packets from the local backend and timer ticks, and drain what it wants
//! sent with [`Engine::poll_output`]. It opens no sockets and never reads the
//! clock itself: `now` is always an argument. (boringtun's `Tunn` does read
//! its own clock for WireGuard's timers; see `NOTES.md`.)

mod engine;
mod link;
pub mod liveness;
pub mod packet;
pub mod segments;
pub mod table;

use std::fmt;

pub use engine::{
    DropReason, Engine, EngineChange, EngineError, EngineStatus, Failover, LinkReport, LinkSpec,
    Output, RouteSpec,
};
pub use link::LinkStatus;
pub use table::{ForwardingTable, GroupChange, Hop, RouteView};

/// A link's slot in the engine; stable for the engine's lifetime.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct LinkId(pub usize);

impl fmt::Debug for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}
