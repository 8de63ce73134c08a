//! The relay's policy as a sans-IO core: who may open a relayed
//! connection, how many at once, how fast, and when one is idle.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::discovery::budget::Budget;

/// Relayed connections at once per mesh interface: a newcomer needs one
/// (its enrolment, then its session until it has a link and an exit),
/// and a cell rarely has more than a few routers enrolling through the
/// same neighbour at once; a stranger flooding a cell gets these few.
pub const MAX_PER_INTERFACE: usize = 4;
/// Relayed connections at once over all mesh interfaces.
pub const MAX_ON_MESH_INTERFACES: usize = 16;
/// Relayed connections at once on the overlay addresses: an exit carries
/// the permanent sessions of the routers behind it that have no underlay
/// route (a district's worth), so this cap is larger; only enrolled mesh
/// members reach the overlay (the forwarding engine drops spoofed
/// sources), so it only bounds a hostile member.
pub const MAX_ON_OVERLAY: usize = 128;
/// New connections one source on a mesh interface may open in a burst …
pub const SOURCE_BURST: u32 = 4;
/// … and then one per this interval: a router retrying with the control
/// client's backoff (1 s doubling) stays well inside it.
pub const SOURCE_REFILL: Duration = Duration::from_secs(5);
/// On the overlay a source is an enrolled member, and one that relays
/// itself (a router whose neighbours enrol through it, using this node as
/// its exit) opens a connection for each of them: a larger burst and
/// rate, still bounded.
pub const OVERLAY_SOURCE_BURST: u32 = 32;
pub const OVERLAY_SOURCE_REFILL: Duration = Duration::from_millis(250);
/// Sources whose rate is tracked at once; a flood of invented source
/// addresses fills this table and then waits (bounded memory: about a
/// hundred bytes per source).
pub const MAX_TRACKED_SOURCES: usize = 1024;
/// A source unheard for this long has a full bucket again and is
/// forgotten when the table needs room.
const SOURCE_FORGET: Duration = Duration::from_secs(20);
/// The table is swept for forgettable sources at most this often, so a
/// flood of new sources costs one sweep per interval, not one per source.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes per second one relayed connection may carry (both directions
/// together) once its burst is spent: a control session needs a few
/// hundred bytes a minute; a full route sync of a large mesh fits the
/// burst.
pub const BYTES_PER_SECOND: u64 = 64 * 1024;
/// The burst of a fresh connection (the controller's full state after a
/// Welcome).
pub const BYTE_BURST: u64 = 512 * 1024;
/// A relayed connection that carried nothing for this long is closed:
/// the control channel pings every 25 s and gives up after 90 s of
/// silence, so a live session never idles this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(100);

/// Where a connection arrived, as the shell classifies its local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A link-local address on this mesh interface.
    MeshInterface(String),
    /// One of this node's overlay addresses.
    Overlay,
    /// Anything else (the underlay, loopback): never relayed.
    Other,
}

/// Where relayed bytes go: the one place a relay ever connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// A controller endpoint this node's own session reaches directly:
    /// the relay writes the preamble naming itself first.
    Controller(SocketAddr),
    /// Another relay (an exit's overlay address or a neighbour's
    /// link-local relay) this node's own session runs through.
    Relay(SocketAddr),
}

impl Upstream {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Controller(a) | Self::Relay(a) => *a,
        }
    }
}

/// One relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelayId(pub u64);

/// Why a connection is not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not addressed to a mesh interface's link-local address or an overlay address")]
    NotServed,
    #[error("this node has no control session to relay to")]
    NoUpstream,
    #[error("{MAX_PER_INTERFACE} relayed connections on this interface already")]
    InterfaceFull,
    #[error("the relay's connection cap is reached")]
    Full,
    #[error("this source opens connections too fast")]
    SourceRate,
    #[error("too many sources are opening connections")]
    TooManySources,
}

/// The caps; [`RelayLimits::default`] holds the named constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    pub per_interface: usize,
    pub on_mesh_interfaces: usize,
    pub on_overlay: usize,
    pub source_burst: u32,
    pub source_refill: Duration,
    pub overlay_source_burst: u32,
    pub overlay_source_refill: Duration,
    pub max_sources: usize,
    pub bytes_per_second: u64,
    pub byte_burst: u64,
    pub idle_timeout: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            per_interface: MAX_PER_INTERFACE,
            on_mesh_interfaces: MAX_ON_MESH_INTERFACES,
            on_overlay: MAX_ON_OVERLAY,
            source_burst: SOURCE_BURST,
            source_refill: SOURCE_REFILL,
            overlay_source_burst: OVERLAY_SOURCE_BURST,
            overlay_source_refill: OVERLAY_SOURCE_REFILL,
            max_sources: MAX_TRACKED_SOURCES,
            bytes_per_second: BYTES_PER_SECOND,
            byte_burst: BYTE_BURST,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

#[derive(Debug)]
struct Connection {
    origin: Origin,
    last_active: Instant,
    /// Byte budget: may go negative (a read that was already made is
    /// forwarded after the wait it owes).
    bytes: i64,
    bytes_at: Instant,
    closing: bool,
}

#[derive(Debug)]
struct Source {
    budget: Budget,
    last_seen: Instant,
}

/// Totals, for status and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayCounters {
    pub accepted: u64,
    pub refused: u64,
    pub idle_closed: u64,
    pub bytes: u64,
}

/// The relay core.
///
/// Contract: tell it where this node's own control session runs
/// ([`RelayCore::handle_upstream`], `None` while there is none). For each
/// accepted TCP connection call [`RelayCore::handle_accept`]; on success
/// connect to the [`Upstream`] it names (never anywhere else), and before
/// forwarding each chunk of bytes call [`RelayCore::handle_transfer`] and
/// wait the delay it returns. Call [`RelayCore::handle_tick`] when
/// [`RelayCore::poll_timeout`] comes due and close every connection
/// [`RelayCore::poll_close`] names; report every closed connection with
/// [`RelayCore::handle_closed`].
#[derive(Debug)]
pub struct RelayCore {
    limits: RelayLimits,
    upstream: Option<Upstream>,
    connections: BTreeMap<RelayId, Connection>,
    sources: BTreeMap<IpAddr, Source>,
    last_sweep: Option<Instant>,
    next_id: u64,
    closes: VecDeque<RelayId>,
    counters: RelayCounters,
}

impl RelayCore {
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            limits,
            upstream: None,
            connections: BTreeMap::new(),
            sources: BTreeMap::new(),
            last_sweep: None,
            next_id: 0,
            closes: VecDeque::new(),
            counters: RelayCounters::default(),
        }
    }

    pub fn counters(&self) -> RelayCounters {
        self.counters
    }

    /// Relayed connections open now.
    pub fn open(&self) -> usize {
        self.connections.len()
    }

    /// Sources whose rate is tracked now.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Where this node's own control session runs now (`None`: it has
    /// none; new connections are refused, open ones stay until they end).
    pub fn handle_upstream(&mut self, upstream: Option<Upstream>) {
        self.upstream = upstream;
    }

    /// A TCP connection from `source` arrived at `origin`: relay it (to
    /// the returned upstream) or refuse it.
    pub fn handle_accept(
        &mut self,
        origin: Origin,
        source: IpAddr,
        now: Instant,
    ) -> Result<(RelayId, Upstream), Refusal> {
        let decided = self.decide(&origin, source, now);
        let upstream = match decided {
            Ok(upstream) => upstream,
            Err(refusal) => {
                self.counters.refused += 1;
                return Err(refusal);
            }
        };
        self.next_id += 1;
        let id = RelayId(self.next_id);
        let burst = i64::try_from(self.limits.byte_burst).unwrap_or(i64::MAX);
        self.connections.insert(
            id,
            Connection {
                origin,
                last_active: now,
                bytes: burst,
                bytes_at: now,
                closing: false,
            },
        );
        self.counters.accepted += 1;
        Ok((id, upstream))
    }

    fn decide(
        &mut self,
        origin: &Origin,
        source: IpAddr,
        now: Instant,
    ) -> Result<Upstream, Refusal> {
        let open_on = |want: &dyn Fn(&Origin) -> bool| {
            self.connections
                .values()
                .filter(|c| want(&c.origin))
                .count()
        };
        match origin {
            Origin::Other => return Err(Refusal::NotServed),
            Origin::MeshInterface(name) => {
                if open_on(&|o| matches!(o, Origin::MeshInterface(_)))
                    >= self.limits.on_mesh_interfaces
                {
                    return Err(Refusal::Full);
                }
                if open_on(&|o| matches!(o, Origin::MeshInterface(n) if n == name))
                    >= self.limits.per_interface
                {
                    return Err(Refusal::InterfaceFull);
                }
            }
            Origin::Overlay => {
                if open_on(&|o| *o == Origin::Overlay) >= self.limits.on_overlay {
                    return Err(Refusal::Full);
                }
            }
        }
        let upstream = self.upstream.ok_or(Refusal::NoUpstream)?;
        let overlay = *origin == Origin::Overlay;
        self.take_source_token(source, overlay, now)?;
        Ok(upstream)
    }

    fn take_source_token(
        &mut self,
        source: IpAddr,
        overlay: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.limits.max_sources {
            let due = self
                .last_sweep
                .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_INTERVAL);
            if due {
                self.last_sweep = Some(now);
                self.sources
                    .retain(|_, s| now.saturating_duration_since(s.last_seen) < SOURCE_FORGET);
            }
            if self.sources.len() >= self.limits.max_sources {
                return Err(Refusal::TooManySources);
            }
        }
        let (burst, refill) = if overlay {
            (
                self.limits.overlay_source_burst,
                self.limits.overlay_source_refill,
            )
        } else {
            (self.limits.source_burst, self.limits.source_refill)
        };
        let entry = self.sources.entry(source).or_insert_with(|| Source {
            budget: Budget::new(burst, refill),
            last_seen: now,
        });
        entry.last_seen = now;
        if entry.budget.take(now) {
            Ok(())
        } else {
            Err(Refusal::SourceRate)
        }
    }

    /// `bytes` are about to be forwarded on `id` (either direction): how
    /// long to wait before forwarding them (the byte-rate limit); `None`
    /// for a connection the core does not know (closed, or never
    /// accepted): do not forward.
    pub fn handle_transfer(&mut self, id: RelayId, bytes: usize, now: Instant) -> Option<Duration> {
        let rate = i64::try_from(self.limits.bytes_per_second.max(1)).unwrap_or(i64::MAX);
        let burst = i64::try_from(self.limits.byte_burst).unwrap_or(i64::MAX);
        let conn = self.connections.get_mut(&id)?;
        if conn.closing {
            return None;
        }
        conn.last_active = now;
        let elapsed = now.saturating_duration_since(conn.bytes_at);
        let earned = i64::try_from(elapsed.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_mul(rate)
            / 1000;
        if earned > 0 {
            conn.bytes = conn.bytes.saturating_add(earned).min(burst);
            conn.bytes_at = now;
        }
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        conn.bytes = conn.bytes.saturating_sub(bytes);
        self.counters.bytes = self
            .counters
            .bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(0));
        if conn.bytes >= 0 {
            return Some(Duration::ZERO);
        }
        let owed_ms = conn.bytes.unsigned_abs().saturating_mul(1000) / rate.unsigned_abs();
        Some(Duration::from_millis(owed_ms))
    }

    /// The connection ended (either side closed, or the shell closed it).
    pub fn handle_closed(&mut self, id: RelayId) {
        self.connections.remove(&id);
    }

    /// Closes connections that were idle for too long.
    pub fn handle_tick(&mut self, now: Instant) {
        let idle = self.limits.idle_timeout;
        for (id, conn) in &mut self.connections {
            if !conn.closing && now.saturating_duration_since(conn.last_active) >= idle {
                conn.closing = true;
                self.counters.idle_closed += 1;
                self.closes.push_back(*id);
            }
        }
    }

    /// When [`RelayCore::handle_tick`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.connections
            .values()
            .filter(|c| !c.closing)
            .map(|c| c.last_active + self.limits.idle_timeout)
            .min()
    }

    /// A connection to close now.
    pub fn poll_close(&mut self) -> Option<RelayId> {
        self.closes.pop_front()
    }
}
