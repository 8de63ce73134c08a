//! The forwarding engine: links + table + the rules for moving a packet.
//!
//! # Contract
//!
//! The engine is sans-IO: every input arrives through a method call with
//! the current instant (`now`, from whatever clock the caller runs on, real
//! or virtual), every output leaves through a `poll_*` method. It reads no
//! clock itself (boringtun's `Tunn` inside it does, see `NOTES.md`).
//!
//! 1. **Build.** [`Engine::new`]`(secret, links, index_seed, now)`, then
//!    install the configured routes with [`Engine::insert_route`] /
//!    [`Engine::insert_route_in`] (look links up with [`Engine::link_id`]).
//! 2. **Start.** [`Engine::start`]`(now)` once: every link with a known
//!    endpoint begins its handshake and asks for its underlay interface.
//! 3. **Feed it**, in any order, as things happen:
//!    * [`Engine::handle_datagram`] for every UDP datagram from the underlay
//!      (with its real source address);
//!    * [`Engine::handle_local_packet`] for every IP packet the local backend
//!      (TUN or smoltcp) wants sent into the mesh;
//!    * [`Engine::handle_carrier`] when an underlay interface loses carrier
//!      (the shell reports only losses it saw happen);
//!    * [`Engine::handle_timeout`] whenever the instant last returned by
//!      [`Engine::poll_timeout`] has passed (at the latest every
//!      [`Engine::TICK`] when it returns `None`).
//! 4. **Change it**, as the controller or the host decides:
//!    [`Engine::apply`] (one [`EngineChange`] at a time: the controller's
//!    links and routes, as `crate::controlplane::ControlCore` derives them
//!    from its deltas), or the underlying [`Engine::upsert_link`],
//!    [`Engine::retire_link`] (after removing the routes through the link),
//!    [`Engine::set_routes`] (a whole table, applied by difference; for
//!    callers that hold a full table, such as the fuzz harness),
//!    [`Engine::set_client_prefixes`],
//!    [`Engine::set_uplink`] (a gateway's uplink checker), and
//!    [`Engine::set_link_underlay`] to answer an [`Output::ResolveUnderlay`].
//! 5. **Drain it** after every call of 2–4: [`Engine::poll_output`] until
//!    `None`, carrying out each [`Output`] in order (transmits, local
//!    deliveries, underlay lookups); then [`Engine::poll_failover`] until
//!    `None`, each [`Failover`] being a report for the controller. Then ask
//!    [`Engine::poll_timeout`] when to call again. Hand the buffers of sent
//!    datagrams back with [`Engine::recycle`] (optional; it saves an
//!    allocation per datagram).
//! 6. **Look at it** at any time, without changing it: [`Engine::status`],
//!    [`Engine::link_states`], [`Engine::table`], [`Engine::counters`],
//!    [`Engine::drops`], [`Engine::client_prefixes`],
//!    [`Engine::link_by_peer`], [`Engine::public_key`].
//!
//! A packet costs one decrypt, one validation, one table lookup and one
//! encrypt. Anything malformed, unauthenticated or unroutable is dropped and
//! counted under a [`DropReason`]; nothing a peer sends can make it panic.
//!
//! Failover lives in [`repair`]: link liveness decides when a neighbour is
//! gone, the table switches every affected prefix to its first live
//! alternate in one step, and prefixes left with no path are withdrawn from
//! the neighbours so they switch too.

mod buffers;
mod changes;
mod drops;
mod feasible;
mod forward;
mod repair;
mod segments;
#[cfg(feature = "sim")]
mod simulated;
mod timers;
mod trace;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::segment::Segment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use self::changes::EngineChange;
pub use self::drops::DropReason;
use self::repair::{Event, Repair};
pub use self::repair::{EventView, Failover};
pub use self::trace::NextHop;
use super::LinkId;
use super::link::{EARLY_HANDSHAKE_RETRY, Link, LinkStatus};
use super::liveness::{Liveness, Profile};
use super::segments::SegmentTable;
use super::table::{self, ForwardingTable, Hop, TableError};
use super::tunnel::TunnelKind;

/// How many recent failover events the engine keeps for `status`.
const EVENT_HISTORY: usize = 64;

/// boringtun needs room for the largest datagram plus its overhead; a too
/// small buffer panics inside it (NOTES.md), so every scratch buffer is 64 KiB.
const SCRATCH_LEN: usize = 65_536;
/// Handshake messages per second, for the whole node, before boringtun's
/// limiter answers with cookies instead of doing Diffie-Hellman. Each
/// initiation is checked twice (once to find its link, once by the link's
/// `Tunn`), so this admits about 100 initiations per second, boringtun's own
/// device default.
const HANDSHAKE_RATE_LIMIT: u64 = 200;
/// The window [`HANDSHAKE_RATE_LIMIT`] counts over: boringtun's limiter
/// counts handshakes until its owner resets it, and its limit is per
/// second.
const RATE_LIMITER_WINDOW: Duration = Duration::from_secs(1);
/// Receiver indices are 24 bits wide in boringtun (`index << 8`).
const INDEX_MASK: u32 = 0x00ff_ffff;

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `datagram` over the underlay UDP socket to `to`.
    Transmit { to: SocketAddr, datagram: Vec<u8> },
    /// Hand this IP packet to the local backend (TUN or smoltcp).
    Local(Vec<u8>),
    /// Find out which underlay interface reaches `peer` and report it with
    /// [`Engine::set_link_underlay`], so carrier loss there takes the link
    /// down at once. Asked at start and whenever a link's endpoint moves.
    ResolveUnderlay {
        link: LinkId,
        peer: std::net::IpAddr,
    },
}

/// Errors building the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("link {name:?}: peer {peer} is already the peer of link {other:?}")]
    DuplicatePeer {
        name: String,
        other: String,
        peer: PublicKeyBytes,
    },
    #[error("link {name:?}: the peer key is this node's own key")]
    OwnKey { name: String },
    #[error(transparent)]
    Route(#[from] TableError),
    #[error("route {prefix}: next hop {link:?} is not a link of this engine")]
    UnknownLink { prefix: IpNet, link: LinkId },
    #[error("link {name:?}: unknown profile {profile:?}")]
    UnknownProfile { name: String, profile: String },
}

/// A link's state as the controller needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkReport {
    pub peer: PublicKeyBytes,
    pub up: bool,
    /// The smallest recent round trip inside the tunnel, once measured
    /// (`crate::core::link::RttFloor`: queueing does not move routes).
    pub rtt: Option<Duration>,
    pub loss_ppm: u32,
    /// Inner bytes sent and received on the link since the agent started.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// What the operator configured for one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub name: String,
    pub peer: PublicKeyBytes,
    pub endpoint: Option<SocketAddr>,
    /// WireGuard persistent keepalive in seconds (for peers behind NAT).
    pub keepalive: Option<u16>,
    pub allowed_sources: Vec<IpNet>,
    pub profile: String,
}

/// Where a packet entered the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ingress {
    Local,
    Link(LinkId),
}

/// Which kind of WireGuard message arrived; decides what counts as proof
/// that the peer holds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    HandshakeInit,
    HandshakeResponse,
    CookieReply,
    Data,
}

/// Totals over the engine's life.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct EngineCounters {
    pub datagrams_in: u64,
    pub forwarded: u64,
    pub delivered_local: u64,
    pub sent_from_local: u64,
    /// Packets that came from the neighbour our route names first and
    /// went on through an alternate instead of back (tables that
    /// disagree; `route` in `forward.rs`).
    #[serde(default)]
    pub u_turns: u64,
}

/// A route as `freimesh-agent status` shows it, with hops by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteStatus {
    pub prefix: IpNet,
    pub via: Vec<String>,
    pub active: Option<String>,
}

/// Everything `freimesh-agent status` shows about the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineStatus {
    pub public_key: String,
    pub links: Vec<LinkStatus>,
    pub routes: Vec<RouteStatus>,
    pub counters: EngineCounters,
    pub drops: BTreeMap<String, u64>,
    /// Recent failover events, newest last.
    #[serde(default)]
    pub events: Vec<EventView>,
    /// Prefixes this node has no path to and has withdrawn from its
    /// neighbours.
    #[serde(default)]
    pub lost_prefixes: Vec<IpNet>,
    /// On a gateway, whether its uplink is in service; `None` elsewhere.
    #[serde(default)]
    pub uplink_up: Option<bool>,
    /// Public Wi-Fi client prefixes assigned to this node.
    #[serde(default)]
    pub client_prefixes: Vec<IpNet>,
    /// Withdrawals of more specific prefixes ignored because their
    /// neighbour already made us install as many repair routes as one link
    /// may (a neighbour flooding withdrawals shows up here).
    #[serde(default)]
    pub withdrawals_over_cap: u64,
}

/// A route as the controller (or the operator) gives it: next hops,
/// primary first, and the destination's segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub hops: Vec<Hop>,
    pub segment: Segment,
}

/// The sans-IO forwarding engine. See the module docs for the contract.
pub struct Engine {
    secret: StaticSecret,
    public: PublicKey,
    links: Vec<Link>,
    index_base: u32,
    table: ForwardingTable,
    rate_limiter: Arc<RateLimiter>,
    next_rate_limiter_reset: Option<Instant>,
    outputs: VecDeque<Output>,
    /// Buffers of sent datagrams, back from the shell for reuse.
    buffers: buffers::BufferPool,
    rx_scratch: Vec<u8>,
    tx_scratch: Vec<u8>,
    drops: [u64; DropReason::ALL.len()],
    counters: EngineCounters,
    repair: Repair,
    events: VecDeque<(Instant, Event)>,
    failovers: VecDeque<repair::Failover>,
    next_wireguard_tick: Option<Instant>,
    /// Underlay interface (ifindex) each link's endpoint is reached over.
    underlay: BTreeMap<LinkId, u32>,
    /// Random per run: lets neighbours tell our messages from those of a
    /// previous run.
    incarnation: u32,
    /// Zero of the microsecond clock used in RTT exchanges: the `now` given
    /// to [`Engine::new`].
    epoch: Instant,
    /// Source and destination classification (segments, ownership).
    segments: SegmentTable,
    /// The destination segment of every configured route.
    route_segments: BTreeMap<IpNet, Segment>,
    /// Per controller route, the neighbours beyond its hops that its
    /// sources may arrive through (repair paths; `Route::upstreams`), as
    /// keys: a neighbour whose link comes later counts from then on.
    route_upstreams: BTreeMap<IpNet, Vec<PublicKeyBytes>>,
    /// Public Wi-Fi client prefixes assigned to this node.
    client_prefixes: BTreeSet<IpNet>,
    /// Neighbours that were next hops toward a prefix until recently: still
    /// feasible sources for it (see [`feasible`]).
    former_hops: feasible::FormerHops,
    /// The kind of session new links get (WireGuard, or the simulator's).
    tunnels: TunnelKind,
    /// Links retired or revived so far: with the table's version, what
    /// [`Engine::forwarding_version`] counts.
    link_retirements: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("public", &PublicKeyBytes(self.public.to_bytes()))
            .field("links", &self.links)
            .field("routes", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// How often boringtun's timers are serviced (it wants 100–250 ms);
    /// [`Engine::poll_timeout`] is never later than this.
    pub const TICK: Duration = Duration::from_millis(100);

    /// Builds an engine for the node holding `secret`. `index_seed` (random in
    /// production, fixed in tests) spreads WireGuard receiver indices so a
    /// restarted agent does not reuse the indices of its previous run.
    /// `now` is the zero of the engine's microsecond clock (RTT exchanges).
    pub fn new(
        secret: [u8; 32],
        specs: Vec<LinkSpec>,
        index_seed: u32,
        now: Instant,
    ) -> Result<Self, EngineError> {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret);
        let rate_limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        let index_base = index_seed & INDEX_MASK;
        let mut links: Vec<Link> = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.peer.0 == public.to_bytes() {
                return Err(EngineError::OwnKey { name: spec.name });
            }
            if let Some(other) = links.iter().find(|l| l.peer == spec.peer) {
                return Err(EngineError::DuplicatePeer {
                    name: spec.name,
                    other: other.name.clone(),
                    peer: spec.peer,
                });
            }
            let id = LinkId(links.len());
            let index = receiver_index(index_base, id);
            let Some(profile) = Profile::by_name(&spec.profile) else {
                return Err(EngineError::UnknownProfile {
                    name: spec.name,
                    profile: spec.profile,
                });
            };
            let mut link = Link::new(
                id,
                spec.name,
                &secret,
                spec.peer,
                spec.endpoint,
                spec.keepalive,
                index,
                rate_limiter.clone(),
                TunnelKind::WireGuard,
            );
            link.liveness = Liveness::new(profile);
            link.allowed_sources = spec.allowed_sources;
            links.push(link);
        }
        Ok(Self {
            secret,
            public,
            links,
            index_base,
            table: ForwardingTable::new(),
            rate_limiter,
            next_rate_limiter_reset: None,
            outputs: VecDeque::new(),
            buffers: buffers::BufferPool::default(),
            rx_scratch: vec![0; SCRATCH_LEN],
            tx_scratch: vec![0; SCRATCH_LEN],
            drops: [0; DropReason::ALL.len()],
            counters: EngineCounters::default(),
            repair: Repair::default(),
            events: VecDeque::new(),
            failovers: VecDeque::new(),
            next_wireguard_tick: None,
            underlay: BTreeMap::new(),
            incarnation: index_seed,
            epoch: now,
            segments: SegmentTable::default(),
            route_segments: BTreeMap::new(),
            route_upstreams: BTreeMap::new(),
            client_prefixes: BTreeSet::new(),
            former_hops: feasible::FormerHops::default(),
            tunnels: TunnelKind::WireGuard,
            link_retirements: 0,
        })
    }

    pub fn public_key(&self) -> PublicKeyBytes {
        PublicKeyBytes(self.public.to_bytes())
    }

    /// The link with this name.
    pub fn link_id(&self, name: &str) -> Option<LinkId> {
        self.links
            .iter()
            .find(|l| l.name == name && !l.retired)
            .map(|l| l.id)
    }

    /// The link to the neighbour holding `peer`.
    pub fn link_by_peer(&self, peer: &PublicKeyBytes) -> Option<LinkId> {
        self.links
            .iter()
            .find(|l| l.peer == *peer && !l.retired)
            .map(|l| l.id)
    }

    /// Adds a link, or updates the one to the same neighbour (endpoint,
    /// profile), as the controller assigns them. A changed profile restarts
    /// the link's liveness.
    pub fn upsert_link(&mut self, spec: LinkSpec, now: Instant) -> Result<LinkId, EngineError> {
        if spec.peer.0 == self.public.to_bytes() {
            return Err(EngineError::OwnKey { name: spec.name });
        }
        let Some(profile) = Profile::by_name(&spec.profile) else {
            return Err(EngineError::UnknownProfile {
                name: spec.name,
                profile: spec.profile,
            });
        };
        if let Some(link) = self.links.iter_mut().find(|l| l.peer == spec.peer) {
            let id = link.id;
            let revived = std::mem::replace(&mut link.retired, false);
            self.link_retirements += u64::from(revived);
            if revived || link.liveness.profile != profile {
                link.liveness = Liveness::new(profile);
                if !link.liveness.is_up() {
                    self.table.set_link_up(id, false);
                }
            }
            link.allowed_sources = spec.allowed_sources;
            if let Some(endpoint) = spec.endpoint
                && link.endpoint != Some(endpoint)
            {
                link.endpoint = Some(endpoint);
                self.outputs.push_back(Output::ResolveUnderlay {
                    link: id,
                    peer: endpoint.ip(),
                });
            }
            if revived {
                self.initiate(id, false, now);
                self.arm_early_retry(id, now);
            }
            return Ok(id);
        }
        let id = LinkId(self.links.len());
        let index = receiver_index(self.index_base, id);
        let mut link = Link::new(
            id,
            spec.name,
            &self.secret,
            spec.peer,
            spec.endpoint,
            spec.keepalive,
            index,
            self.rate_limiter.clone(),
            self.tunnels,
        );
        link.liveness = Liveness::new(profile);
        link.allowed_sources = spec.allowed_sources;
        let starts_down = !link.liveness.is_up();
        self.links.push(link);
        if starts_down {
            self.table.set_link_up(id, false);
        }
        if let Some(endpoint) = spec.endpoint {
            self.outputs.push_back(Output::ResolveUnderlay {
                link: id,
                peer: endpoint.ip(),
            });
        }
        self.initiate(id, false, now);
        self.arm_early_retry(id, now);
        Ok(id)
    }

    /// Takes a link out of service (the controller no longer assigns it).
    /// Routes through it should be removed first; any left lose this hop.
    pub fn retire_link(&mut self, link: LinkId) {
        if let Some(state) = self.links.get_mut(link.0) {
            self.link_retirements += u64::from(!state.retired);
            state.retired = true;
            self.table.set_link_up(link, false);
            self.underlay.remove(&link);
        }
    }

    /// Replaces every route that is not one of this node's own (`local`)
    /// with `routes`: the table the controller computed. Unchanged routes
    /// are left alone, so forwarding and any local repair in progress are
    /// not disturbed.
    pub fn set_routes(&mut self, routes: &BTreeMap<IpNet, RouteSpec>) -> Result<(), EngineError> {
        let stale: Vec<IpNet> = self
            .repair
            .configured
            .iter()
            .filter(|(prefix, hops)| {
                hops.as_slice() != [Hop::Local] && !routes.contains_key(*prefix)
            })
            .map(|(prefix, _)| *prefix)
            .collect();
        for prefix in stale {
            self.remove_route(prefix);
        }
        for (prefix, spec) in routes {
            let hops = segments::table_hops(*prefix, spec.hops.clone());
            let prefix = prefix.trunc();
            if self.repair.configured.get(&prefix) != Some(&hops)
                || self.route_segments.get(&prefix) != Some(&spec.segment)
            {
                self.insert_route_in(prefix, spec.hops.clone(), spec.segment)?;
            }
        }
        // A default route that no longer leaves through our uplink needs
        // no poison toward its next hop; the next lost-set refresh
        // restores it there.
        let configured = &self.repair.configured;
        for prefixes in self.repair.poisoned.values_mut() {
            prefixes.retain(|p| configured.get(p).is_some_and(|h| h.contains(&Hop::Uplink)));
        }
        self.repair.poisoned.retain(|_, p| !p.is_empty());
        Ok(())
    }

    /// Liveness of every link in service, by neighbour key: what the agent
    /// reports to the controller.
    pub fn link_states(&self) -> Vec<LinkReport> {
        self.links
            .iter()
            .filter(|l| !l.retired)
            .map(|l| LinkReport {
                peer: l.peer,
                up: l.liveness.is_up(),
                rtt: l.rtt_floor.get(),
                loss_ppm: l.loss_ppm(),
                tx_bytes: l.counters.tx_bytes,
                rx_bytes: l.counters.rx_bytes,
            })
            .collect()
    }

    /// Installs or replaces the route for `prefix`: the primary next hop
    /// first, then the loop-free alternates. Its segment is implied: a
    /// host route delivered here is one of the node's overlay addresses
    /// (infrastructure), another prefix delivered here lies behind the node
    /// (intranet), anything else is infrastructure; use
    /// [`Engine::insert_route_in`] to say otherwise. `Hop::Local` at the
    /// head of a default route (length 0) is the node's uplink: this node
    /// is a gateway, see [`Engine::set_uplink`].
    pub fn insert_route(&mut self, prefix: IpNet, hops: Vec<Hop>) -> Result<(), EngineError> {
        let segment = segments::implied_segment(prefix, &hops);
        self.insert_route_in(prefix, hops, segment)
    }

    /// [`Engine::insert_route`] with the destination's segment stated.
    /// A route delivered here (`[Hop::Local]`) makes the prefix one of this
    /// node's own: packets from the local backend may use it as source.
    pub fn insert_route_in(
        &mut self,
        prefix: IpNet,
        hops: Vec<Hop>,
        segment: Segment,
    ) -> Result<(), EngineError> {
        let hops = segments::table_hops(prefix, hops);
        for hop in &hops {
            if let Hop::Link(link) = hop
                && link.0 >= self.links.len()
            {
                return Err(EngineError::UnknownLink {
                    prefix,
                    link: *link,
                });
            }
        }
        let prefix = prefix.trunc();
        // Validate before recording: the table refuses empty or repeated hops.
        table::validate_hops(prefix, &hops)?;
        let old = self
            .repair
            .configured
            .get(&prefix)
            .cloned()
            .unwrap_or_default();
        self.former_hops.route_changed(prefix, &old, &hops);
        self.repair.configured.insert(prefix, hops);
        self.route_segments.insert(prefix, segment);
        self.reapply(prefix);
        self.reclassify(prefix);
        Ok(())
    }

    /// Schedules the early second initiation of a new link. The end with
    /// the smaller key goes after [`EARLY_HANDSHAKE_RETRY`], the other
    /// after twice that: two routers that discovered each other at the
    /// same moment would otherwise initiate at the same moment again.
    fn arm_early_retry(&mut self, link: LinkId, now: Instant) {
        let ours_first = self.public_key() < self.links[link.0].peer;
        let delay = if ours_first {
            EARLY_HANDSHAKE_RETRY
        } else {
            2 * EARLY_HANDSHAKE_RETRY
        };
        self.links[link.0].early_retry_at = Some(now + delay);
    }

    pub fn table(&self) -> &ForwardingTable {
        &self.table
    }

    /// Starts a handshake on every link whose endpoint is known, so transit
    /// paths are ready before the first packet needs them, and asks the
    /// shell which underlay interface each endpoint is reached over.
    pub fn start(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            self.initiate(LinkId(i), false, now);
            self.arm_early_retry(LinkId(i), now);
            if let Some(endpoint) = self.links[i].endpoint {
                self.outputs.push_back(Output::ResolveUnderlay {
                    link: LinkId(i),
                    peer: endpoint.ip(),
                });
            }
            // Links without liveness (plain WireGuard peers) never change
            // state; every other link starts unused until heard.
            if !self.links[i].liveness.is_up() {
                self.table.set_link_up(LinkId(i), false);
            }
        }
        let lost: Vec<IpNet> = self.repair.configured.keys().copied().collect();
        for prefix in lost {
            self.reapply(prefix);
        }
        self.next_wireguard_tick = Some(now);
    }

    /// Records which underlay interface reaches a link's endpoint.
    pub fn set_link_underlay(&mut self, link: LinkId, ifindex: u32) {
        if link.0 < self.links.len() {
            self.underlay.insert(link, ifindex);
        }
    }

    /// An underlay interface lost or regained carrier. Loss takes every link
    /// over it down at once; regaining it changes nothing until the
    /// neighbours are heard again.
    pub fn handle_carrier(&mut self, ifindex: u32, carrier: bool, now: Instant) {
        if carrier {
            return;
        }
        let affected: Vec<LinkId> = self
            .underlay
            .iter()
            .filter(|(_, i)| **i == ifindex)
            .map(|(l, _)| *l)
            .collect();
        for link in affected {
            if let Some(transition) = self.links[link.0].liveness.carrier_lost(now) {
                self.apply_transition(link, transition, now);
            }
        }
    }

    /// The next output for the shell, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Gives the buffer of a sent [`Output::Transmit`] back for reuse, so
    /// that steady traffic (heartbeats) allocates nothing. Optional: a
    /// caller that keeps or drops its buffers loses only the reuse.
    pub fn recycle(&mut self, datagram: Vec<u8>) {
        self.buffers.give_back(datagram);
    }

    /// Drops counted so far for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.slot()]
    }

    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// One datagram from the underlay UDP socket, with its real source.
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        self.counters.datagrams_in += 1;
        let Some((link_id, kind)) = self.classify(from, datagram) else {
            return;
        };
        let mut rx = std::mem::take(&mut self.rx_scratch);
        self.decapsulate(link_id, kind, from, datagram, &mut rx, now);
        self.rx_scratch = rx;
    }

    /// One IP packet from the local backend, to be routed into the mesh.
    pub fn handle_local_packet(&mut self, packet: &mut [u8], now: Instant) {
        self.counters.sent_from_local += 1;
        self.route(packet, Ingress::Local, now);
    }

    /// A snapshot for `freimesh-agent status`.
    pub fn status(&self, now: Instant) -> EngineStatus {
        let hop_name = |hop: Hop| match hop {
            Hop::Local => "local".to_owned(),
            Hop::Uplink => "uplink".to_owned(),
            Hop::Unreachable => "unreachable".to_owned(),
            Hop::Link(id) => self
                .links
                .get(id.0)
                .map_or_else(|| format!("{id:?}"), |l| l.name.clone()),
        };
        EngineStatus {
            public_key: self.public_key().to_base64(),
            links: self
                .links
                .iter()
                .filter(|l| !l.retired)
                .map(|l| l.status(now))
                .collect(),
            routes: self
                .table
                .routes()
                .into_iter()
                .map(|r| RouteStatus {
                    prefix: r.prefix,
                    via: r.hops.iter().map(|h| hop_name(*h)).collect(),
                    active: r.active.map(hop_name),
                })
                .collect(),
            counters: self.counters,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), self.drops[r.slot()]))
                .collect(),
            events: self
                .events
                .iter()
                .map(|(at, event)| event.view(now.saturating_duration_since(*at), &hop_name))
                .collect(),
            lost_prefixes: self.repair.lost.iter().copied().collect(),
            uplink_up: self.is_gateway().then(|| self.uplink_up()),
            client_prefixes: self.client_prefixes(),
            withdrawals_over_cap: self.repair.refused_derived,
        }
    }

    fn drop_packet(&mut self, reason: DropReason) {
        self.drops[reason.slot()] += 1;
    }
}

/// The WireGuard receiver index of `link`: consecutive from the run's
/// random base, within boringtun's 24 bits.
fn receiver_index(index_base: u32, link: LinkId) -> u32 {
    // A link count beyond u32 cannot happen (memory runs out first); 0
    // would only make two indices collide, which boringtun tolerates.
    index_base.wrapping_add(u32::try_from(link.0).unwrap_or(0)) & INDEX_MASK
}

#[cfg(test)]
mod tests;
