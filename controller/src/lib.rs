//! # freimesh-controller
//!
//! The controller owns the mesh registry, assigns addresses and computes routes
//! with loop-free alternates (see `ARCHITECTURE.md`, "Control plane"). Until the
//! controller issue lands, agents run in static mode from their own config
//! files; this crate only fixes the protocol version it will speak.

/// The protocol version the controller will negotiate with agents.
pub const SPEAKS_PROTOCOL: u16 = freimesh_proto::PROTOCOL_VERSION;
