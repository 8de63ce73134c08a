//! # freimesh-proto: the words every freimesh component agrees on
//!
//! This crate holds the wire-level vocabulary shared by the agent, the
//! controller and the terminal UI: node identities, WireGuard key encoding and
//! the protocol version with its changelog. It does no I/O and has no opinion
//! on how bytes move; the agent and controller crates own that.
//!
//! ```
//! use freimesh_proto::{NodeId, PublicKeyBytes};
//!
//! let key = PublicKeyBytes::from_base64("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=").unwrap();
//! let id = NodeId::of(&key);
//! assert_eq!(id.to_string().len(), 16);
//! ```
//!
//! ## Protocol versions
//!
//! | version | date | what it added |
//! |---|---|---|
//! | 1 | 2026-11-22 | node identity (`NodeId`), WireGuard key encoding; in-tunnel mesh messages (`mesh`: link state, withdraw, restore) |
//! | 2 | 2026-11-22 | control channel (`control`): Noise IK over TCP, Hello/Welcome, full links and routes, deltas, reports, errors, keepalive |
//! | 3 | 2026-11-23 | agent → controller `Events` (failovers with detection and switch time) and `Traffic` (bytes per link); admin API types (`api`) |
//! | 4 | 2026-11-23 | gateways and public Wi-Fi: `Hello.roles`, `Welcome.client_prefixes`, `Route.segment` (`segment::Segment`), `LinkAssignment.allowed_sources` (standard WireGuard sites), `Uplink` and `Clients` reports; a node's own key in `Route.via` means "deliver here" |
//! | 5 | 2026-12-06 | membership credentials (`credential`): `Welcome.signing_key` (the controller's Ed25519 key), `Credential` (this node's signed credential, after every Welcome and on renewal), `Revocations` (signed revocation pages, the whole list after every Welcome and on change, ≤ 16 pages per frame); fleet telemetry (`telemetry`): agent → controller `NodeInfo` (version, firmware, model, CPUs, location and contact with consent flags, autoupdater branch, domain; after every Welcome and on change) and `Statistics` (uptime, load, memory, root filesystem; every 60 s) |
//! | 6 | 2026-12-06 | control through the mesh: `ControlExits` (the overlay addresses of routers that relay the control channel to the controller, ≤ 16, after every Welcome and on change); the control relay (`discovery::CONTROL_RELAY_PORT`, `relay::RelayPreamble`: what an exit's relay writes before the piped bytes so the controller knows the session is relayed) |
//! | 7 | 2026-12-06 | `Route.upstreams`: the neighbours, beyond the next hops, through which the route's sources may arrive on a repair path (≤ `control::MAX_ROUTE_UPSTREAMS`); the feasible-source rule accepts them; `ExitGateway`: the node's exit gateway, after every Welcome and on change (respondd reports it as `statistics.gateway`) |

pub mod api;
pub mod control;
pub mod credential;
pub mod discovery;
mod key;
pub mod mesh;
mod noise;
pub mod relay;
pub mod roles;
pub mod segment;
pub mod telemetry;

pub use key::{KEY_LEN, KeyError, NodeId, PublicKeyBytes, decode_key, encode_key};

/// The protocol version this build speaks. Bump it, and add a row to the
/// changelog in this crate's docs, whenever a message changes shape.
pub const PROTOCOL_VERSION: u16 = 7;
