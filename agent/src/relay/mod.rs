//! The control relay: how a router without an underlay route to the
//! controller reaches it through a neighbour (`docs/protocol.md`,
//! "Control through the mesh").
//!
//! Every agent under a controller listens on
//! [`CONTROL_RELAY_PORT`](freimesh_proto::discovery::CONTROL_RELAY_PORT)
//! (TCP) and serves two kinds of connection: those to a link-local address
//! of one of its mesh interfaces (a neighbour that is not enrolled yet, or
//! has no other way) and those to its overlay addresses (an enrolled router
//! using it as a control exit). Everything else is refused. An accepted
//! connection is piped, byte for byte, to the one place this node's own
//! control session runs through: the controller endpoint it dialled (then
//! the relay first writes a [`freimesh_proto::relay::RelayPreamble`]
//! naming itself) or the exit or neighbour relay it uses itself. The
//! Noise IK handshake runs end to end, so the relay sees ciphertext only
//! and a stranger reaches nothing but the controller's responder.
//!
//! * [`RelayCore`]: the policy, sans-IO: caps per interface and in total,
//!   per-source connection rate, byte rate per connection, idle timeout.
//! * [`shell`]: the listener and the byte pump.

mod core;
pub mod shell;
#[cfg(test)]
mod tests;

pub use self::core::{
    BYTE_BURST, BYTES_PER_SECOND, IDLE_TIMEOUT, MAX_ON_MESH_INTERFACES, MAX_ON_OVERLAY,
    MAX_PER_INTERFACE, MAX_TRACKED_SOURCES, OVERLAY_SOURCE_BURST, OVERLAY_SOURCE_REFILL, Origin,
    Refusal, RelayCore, RelayCounters, RelayId, RelayLimits, SOURCE_BURST, SOURCE_REFILL, Upstream,
};
