//! # freimesh-agent
//!
//! The agent is what runs on every router of a freimesh mesh. It holds one
//! WireGuard session (a *link*) per neighbour and forwards mesh traffic from
//! tunnel to tunnel itself, choosing for every packet the first live next hop
//! of the longest matching prefix.
//!
//! The crate is split the way quinn and Firezone split theirs:
//!
//! * [`core`] decides. It is sans-IO: fed with datagrams, local packets and
//!   timer ticks, drained with `poll_*`; it opens no sockets and reads no clock
//!   of its own (boringtun's `Tunn` inside it does, see `NOTES.md`).
//! * The shell moves bytes: [`run`] drives the core over a UDP socket and
//!   serves the control socket; local traffic enters and leaves through one
//!   narrow interface, [`run::backend::LocalBackend`], implemented over
//!   [`linux`] (a TUN device configured over netlink), over [`userspace`] (a
//!   smoltcp stack inside the agent, no privileges needed) and by a test
//!   double that lets the shell be tested without root.
//! * [`controlplane`] is the path to the controller: sans-IO cores for the
//!   session (Hello, pings, what waits while the controller is away), the
//!   controller-given state (each delta becomes the
//!   [`core::EngineChange`]s it implies) and link reporting, driven by a
//!   thin tokio client.
//! * [`gateway`] and [`publicwifi`] are the Linux side of gateways (uplink
//!   checker, NAT) and public Wi-Fi nodes (client interface, dnsmasq).
//! * [`statefile`] keeps what the controller said (and the membership
//!   credentials) on disk, so a router restarts into its last mesh while
//!   the controller is away: a sans-IO core decides when to write.
//! * [`config`] and [`identity`] read what the operator wrote; [`control`]
//!   serves `freimesh-agent status` over a local socket.
//! * [`nodeinfo`] reads what the router is and how it is doing;
//!   [`respondd`] answers Freifunk's monitoring requests (yanic) with it.

pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod controlplane;
pub mod core;
pub mod discovery;
pub mod gateway;
pub mod identity;
pub mod linux;
pub mod membership;
pub mod nodeinfo;
pub mod ping;
pub mod publicwifi;
pub mod relay;
pub mod respondd;
pub mod run;
pub mod statefile;
#[cfg(feature = "userspace")]
pub mod userspace;
