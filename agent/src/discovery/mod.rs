//! Neighbour discovery on the interfaces a router meshes on
//! (`mesh_interfaces`): beacons out, neighbours in, links up and down.
//!
//! * [`Discovery`] is the sans-IO core: fed beacons, revocation requests
//!   and pages (`handle_*`, with the time), drained for datagrams to send
//!   ([`Discovery::poll_transmit`]) and links to bring up or down
//!   ([`Discovery::poll_action`]). It decides which neighbours get a link
//!   (the dense-cell policy in [`policy`]), rate-limits everything a
//!   stranger can trigger, and passes revocation pages between neighbours.
//!   It reads [`crate::membership::Membership`] (handed in by the caller)
//!   for the own credential and to check neighbours' credentials.
//! * [`shell`] moves the bytes: one UDP socket on [`DISCOVERY_PORT`] joined
//!   to [`DISCOVERY_GROUP`] on each mesh interface, and carries out the
//!   actions on the engine (link, host routes to the neighbour's overlay
//!   addresses).
//!
//! The wire format is `freimesh_proto::discovery`; the design and its
//! numbers are in `docs/protocol.md` ("Neighbour discovery") and
//! `docs/decisions.md`.
//!
//! [`DISCOVERY_PORT`]: freimesh_proto::discovery::DISCOVERY_PORT
//! [`DISCOVERY_GROUP`]: freimesh_proto::discovery::DISCOVERY_GROUP

pub(crate) mod budget;
mod core;
pub mod policy;
pub mod shell;
#[cfg(test)]
mod tests;

pub use self::core::MAX_RELAYS_PER_INTERFACE;
pub use self::core::{
    BEACON_INTERVAL, Destination, Discovery, DiscoveryAction, DiscoveryCounters, DownReason,
    MAX_NEIGHBOURS_PER_INTERFACE, MAX_REJECTED_PER_INTERFACE, NEIGHBOUR_TIMEOUT, Transmit,
};
pub use self::policy::DEFAULT_MAX_DISCOVERED_LINKS;
