//! The seam around boringtun's `Tunn`: what a link needs from a WireGuard
//! session, with the time passed in.
//!
//! boringtun reads its own clock inside `Tunn` (handshake retries, session
//! expiry, the rate limiter; see `NOTES.md`), so an engine driven by a
//! virtual clock would run its WireGuard timers on wall time. [`Tunnel`] is
//! the one place the engine talks to a session. In production it is always
//! [`Tunnel::WireGuard`] and every call goes straight to `Tunn` (the `now`
//! argument is ignored: boringtun keeps its own time). With the `sim` cargo
//! feature (enabled by the whole-mesh simulator in `freimesh-testbed`, never
//! by the router build) there is a second variant, [`SimTunnel`], whose
//! timers follow the `now` the engine is given and which costs no crypto.
//! Both return boringtun's `TunnResult`, so the engine handles one set of
//! outcomes.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};

#[cfg(feature = "sim")]
pub use super::sim_tunnel::SimTunnel;

/// Which kind of session an engine builds for its links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunnelKind {
    /// boringtun: real WireGuard, its own clock.
    #[default]
    WireGuard,
    /// The simulator's session: same handshake and timer shape, plaintext,
    /// virtual time (feature `sim`).
    #[cfg(feature = "sim")]
    Simulated,
}

/// One link's session; see the module docs.
// `Tunn` stays inline (no box): the production path is exactly what it was.
#[allow(clippy::large_enum_variant)]
pub enum Tunnel {
    WireGuard(Tunn),
    #[cfg(feature = "sim")]
    Simulated(SimTunnel),
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tunnel::WireGuard(_) => f.write_str("Tunnel::WireGuard"),
            #[cfg(feature = "sim")]
            Tunnel::Simulated(t) => t.fmt(f),
        }
    }
}

impl Tunnel {
    /// Encrypts `src` for the peer, or queues it and starts a handshake.
    #[cfg_attr(not(feature = "sim"), allow(unused_variables))]
    pub fn encapsulate<'a>(
        &mut self,
        src: &[u8],
        dst: &'a mut [u8],
        now: Instant,
    ) -> TunnResult<'a> {
        match self {
            Tunnel::WireGuard(t) => t.encapsulate(src, dst),
            #[cfg(feature = "sim")]
            Tunnel::Simulated(t) => t.encapsulate(src, dst, now),
        }
    }

    /// One datagram from the peer at `from`; an empty `datagram` drains
    /// what was queued during a handshake.
    #[cfg_attr(not(feature = "sim"), allow(unused_variables))]
    pub fn decapsulate<'a>(
        &mut self,
        from: Option<IpAddr>,
        datagram: &[u8],
        dst: &'a mut [u8],
        now: Instant,
    ) -> TunnResult<'a> {
        match self {
            Tunnel::WireGuard(t) => t.decapsulate(from, datagram, dst),
            #[cfg(feature = "sim")]
            Tunnel::Simulated(t) => t.decapsulate(datagram, dst, now),
        }
    }

    /// WireGuard's timers: handshake retries, expiry, keepalives.
    #[cfg_attr(not(feature = "sim"), allow(unused_variables))]
    pub fn update_timers<'a>(&mut self, dst: &'a mut [u8], now: Instant) -> TunnResult<'a> {
        match self {
            Tunnel::WireGuard(t) => t.update_timers(dst),
            #[cfg(feature = "sim")]
            Tunnel::Simulated(t) => t.update_timers(dst, now),
        }
    }

    #[cfg_attr(not(feature = "sim"), allow(unused_variables))]
    pub fn format_handshake_initiation<'a>(
        &mut self,
        dst: &'a mut [u8],
        force: bool,
        now: Instant,
    ) -> TunnResult<'a> {
        match self {
            Tunnel::WireGuard(t) => t.format_handshake_initiation(dst, force),
            #[cfg(feature = "sim")]
            Tunnel::Simulated(t) => t.format_handshake_initiation(dst, force, now),
        }
    }

    /// Time since the last completed handshake.
    #[cfg_attr(not(feature = "sim"), allow(unused_variables))]
    pub fn since_handshake(&self, now: Instant) -> Option<Duration> {
        match self {
            Tunnel::WireGuard(t) => t.stats().0,
            #[cfg(feature = "sim")]
            Tunnel::Simulated(t) => t.since_handshake(now),
        }
    }

    /// WireGuard's estimate of packet loss, 0.0–1.0.
    pub fn loss(&self) -> f32 {
        match self {
            Tunnel::WireGuard(t) => t.stats().3,
            #[cfg(feature = "sim")]
            Tunnel::Simulated(_) => 0.0,
        }
    }
}
