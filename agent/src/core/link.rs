//! One link: the WireGuard session with one neighbour, its underlay endpoint
//! and its counters.
//!
//! A link is a thin wrapper around boringtun's `Tunn` that adds what a mesh
//! needs on top of WireGuard: the peer's current endpoint (updated when an
//! authenticated packet arrives from a new address, i.e. roaming), which inner
//! source addresses the peer may send from, and its counters.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::Tunn;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;
use serde::Serialize;

use super::LinkId;
use super::liveness::{Liveness, Profile, State};
use super::tunnel::{Tunnel, TunnelKind};

/// How many of our own `LinkState` clock values a link remembers, so an
/// echo can be checked against what we really sent. A neighbour echoes
/// the newest value it received when it next reports (every state-refresh
/// period, or at once on a change); both ends refresh at the same period,
/// so an honest echo is one of our last two or three values, and eight
/// leave room for bursts of state changes and reordering.
pub const SENT_CLOCKS_REMEMBERED: usize = 8;

#[derive(Debug, Default, Clone, Copy, Serialize, serde::Deserialize)]
pub struct LinkCounters {
    /// Inner (decrypted) packets and bytes received.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Inner packets and bytes sent.
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

pub(crate) struct Link {
    pub id: LinkId,
    pub name: String,
    pub peer: PublicKeyBytes,
    pub tunn: Tunnel,
    pub endpoint: Option<SocketAddr>,
    pub liveness: Liveness,
    /// Inner source prefixes the peer may send from; empty means any (a mesh
    /// neighbour carries transit traffic from the whole mesh).
    pub allowed_sources: Vec<IpNet>,
    pub counters: LinkCounters,
    /// When the last authenticated packet (data, keepalive or handshake)
    /// arrived.
    pub last_authenticated_rx: Option<Instant>,
    /// Sequence number of the last mesh message we sent on this link.
    pub mesh_tx_sequence: u32,
    /// `(incarnation, sequence)` of the newest mesh message accepted.
    pub mesh_rx_last: Option<(u32, u32)>,
    /// The neighbour's clock from its last `LinkState`, and when it came.
    pub peer_clock: Option<(u32, Instant)>,
    /// Smoothed round-trip time from `LinkState` exchanges.
    pub rtt: Option<Duration>,
    /// The smallest recent round trip: what the controller routes by.
    pub rtt_floor: RttFloor,
    /// The clock values we sent in our last `LinkState`s, newest last: an
    /// echo must be one of them (see [`SENT_CLOCKS_REMEMBERED`]).
    pub sent_clocks: Vec<u32>,
    /// The controller took this link away; its slot is kept (link ids are
    /// stable) and reused if the same neighbour is assigned again.
    pub retired: bool,
    /// When to send the first handshake again if it got no answer
    /// ([`EARLY_HANDSHAKE_RETRY`]); `None` once done.
    pub early_retry_at: Option<Instant>,
}

/// A new link's first handshake is sent again after this long (twice
/// this at the end with the larger key) if nothing answered, instead of
/// after WireGuard's 5 s. Two routers that discover
/// each other at the same moment (a town restarting at once) each send an
/// initiation before the other has the link, and both are dropped as from
/// an unknown key; the town lab saw such links come up exactly 5 s late.
/// One extra 148-byte initiation per new link.
pub const EARLY_HANDSHAKE_RETRY: Duration = Duration::from_millis(300);

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("peer", &self.peer)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Link {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: LinkId,
        name: String,
        secret: &StaticSecret,
        peer: PublicKeyBytes,
        endpoint: Option<SocketAddr>,
        keepalive: Option<u16>,
        index: u32,
        rate_limiter: Arc<RateLimiter>,
        kind: TunnelKind,
    ) -> Self {
        let tunn = match kind {
            TunnelKind::WireGuard => Tunnel::WireGuard(Tunn::new(
                secret.clone(),
                PublicKey::from(peer.0),
                None,
                keepalive,
                index,
                Some(rate_limiter),
            )),
            #[cfg(feature = "sim")]
            TunnelKind::Simulated => Tunnel::Simulated(super::tunnel::SimTunnel::new(
                PublicKeyBytes(PublicKey::from(secret).to_bytes()),
                index,
                keepalive,
            )),
        };
        Self {
            id,
            name,
            peer,
            tunn,
            endpoint,
            liveness: Liveness::new(Profile::DEFAULT),
            allowed_sources: Vec::new(),
            counters: LinkCounters::default(),
            last_authenticated_rx: None,
            mesh_tx_sequence: 0,
            mesh_rx_last: None,
            retired: false,
            early_retry_at: None,
            peer_clock: None,
            rtt: None,
            rtt_floor: RttFloor::default(),
            sent_clocks: Vec::with_capacity(SENT_CLOCKS_REMEMBERED),
        }
    }

    pub fn allows_source(&self, src: IpAddr) -> bool {
        self.allowed_sources.is_empty() || self.allowed_sources.iter().any(|net| net.contains(&src))
    }

    /// Notes a clock value sent in a `LinkState`, forgetting the oldest.
    pub fn remember_sent_clock(&mut self, clock_us: u32) {
        if self.sent_clocks.len() == SENT_CLOCKS_REMEMBERED {
            self.sent_clocks.remove(0);
        }
        self.sent_clocks.push(clock_us);
    }

    /// Folds one round-trip sample into the smoothed RTT (weight 1/8, as
    /// TCP's SRTT) and into the recent minimum.
    pub fn rtt_sample(&mut self, sample: Duration, now: Instant) {
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(rtt) => (rtt * 7 + sample) / 8,
        });
        self.rtt_floor.sample(sample, now);
    }

    /// WireGuard's own estimate of packet loss on this link, in parts per
    /// million.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn loss_ppm(&self) -> u32 {
        let loss = self.tunn.loss();
        if !loss.is_finite() {
            return 0;
        }
        // Clamped to [0, 1] first, so the product lies in [0, 1e6] and the
        // cast is exact.
        (loss.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
    }

    /// Records proof of life from the peer at `from`; returns the previous
    /// endpoint if the peer roamed.
    pub fn authenticated(&mut self, from: SocketAddr, now: Instant) -> Option<Option<SocketAddr>> {
        self.last_authenticated_rx = Some(now);
        if self.endpoint == Some(from) {
            None
        } else {
            Some(self.endpoint.replace(from))
        }
    }

    pub fn status(&self, now: Instant) -> LinkStatus {
        let since_handshake = self.tunn.since_handshake(now);
        let state = match self.liveness.state {
            _ if self.liveness.profile.interval.is_none() => "up (unmonitored)".to_owned(),
            State::Starting => "starting".to_owned(),
            State::Up { .. } => "up".to_owned(),
            State::Down { cause, .. } => format!(
                "down ({})",
                serde_json::to_value(cause)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            State::HoldDown { until, .. } => format!(
                "hold-down {}ms",
                millis(until.saturating_duration_since(now))
            ),
        };
        LinkStatus {
            name: self.name.clone(),
            peer: self.peer.to_base64(),
            endpoint: self.endpoint,
            profile: self.liveness.profile.name.to_owned(),
            state,
            handshake_age_ms: since_handshake.map(millis),
            rtt_us: self
                .rtt
                .map(|r| u64::try_from(r.as_micros()).unwrap_or(u64::MAX)),
            last_rx_age_ms: self
                .last_authenticated_rx
                .map(|t| millis(now.saturating_duration_since(t))),
            counters: self.counters,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A link as `freimesh-agent status` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LinkStatus {
    pub name: String,
    pub peer: String,
    pub endpoint: Option<SocketAddr>,
    pub profile: String,
    /// Liveness: `up`, `starting`, `down (cause)`, `hold-down Nms`.
    #[serde(default)]
    pub state: String,
    /// Time since the last completed WireGuard handshake.
    pub handshake_age_ms: Option<u64>,
    /// Smoothed round-trip time inside the tunnel, once measured.
    #[serde(default)]
    pub rtt_us: Option<u64>,
    /// Time since the last authenticated packet from the peer.
    pub last_rx_age_ms: Option<u64>,
    pub counters: LinkCounters,
}

/// How long one bucket of [`RttFloor`] collects samples: the minimum
/// covers the last one to two of these.
pub const RTT_FLOOR_BUCKET: Duration = Duration::from_secs(10);

/// The smallest round trip of the last 10–20 s ([`RTT_FLOOR_BUCKET`]),
/// kept in two buckets. Queues and a busy CPU only ever add to a round
/// trip, so the minimum is the link's own delay: routes computed from it
/// do not move every time a router is busy (a smoothed RTT on a loaded
/// router swings between 1 and 40 ms, and every swing that reached the
/// controller moved routes, which the routers then held from different
/// moments). A link that really got slower shows within two buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttFloor {
    bucket_start: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl RttFloor {
    pub fn sample(&mut self, sample: Duration, now: Instant) {
        match self.bucket_start {
            Some(start) if now.saturating_duration_since(start) < RTT_FLOOR_BUCKET => {}
            Some(start) if now.saturating_duration_since(start) < 2 * RTT_FLOOR_BUCKET => {
                self.previous = self.current;
                self.current = None;
                self.bucket_start = Some(now);
            }
            _ => {
                // First sample, or silent for two buckets: older minima
                // say nothing about the link now.
                self.previous = None;
                self.current = None;
                self.bucket_start = Some(now);
            }
        }
        self.current = Some(self.current.map_or(sample, |c| c.min(sample)));
    }

    /// The minimum over the current and the previous bucket.
    pub fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod rtt_floor_tests {
    use super::*;

    #[test]
    fn keeps_the_recent_minimum_and_forgets_old_ones() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut floor = RttFloor::default();
        assert_eq!(floor.get(), None);
        floor.sample(ms(5), t0);
        floor.sample(ms(40), t0 + ms(100));
        floor.sample(ms(2), t0 + ms(200));
        floor.sample(ms(30), t0 + ms(300));
        assert_eq!(floor.get(), Some(ms(2)), "a busy moment adds nothing");
        // Next bucket: the old minimum still counts.
        floor.sample(ms(9), t0 + RTT_FLOOR_BUCKET + ms(1));
        assert_eq!(floor.get(), Some(ms(2)));
        // One more bucket: the link got slower, and it shows.
        floor.sample(ms(9), t0 + 2 * RTT_FLOOR_BUCKET + ms(2));
        assert_eq!(floor.get(), Some(ms(9)));
        // Silent for two buckets: start over.
        floor.sample(ms(20), t0 + 10 * RTT_FLOOR_BUCKET);
        assert_eq!(floor.get(), Some(ms(20)));
    }
}
