//! The forwarding engine: links + table + the rules for moving a packet.
//!
//! # Contract
//!
//! * Build with [`Engine::new`], install routes with [`Engine::insert_route`],
//!   then call [`Engine::start`] once so every link with a known endpoint
//!   begins its handshake.
//! * Feed it: [`Engine::handle_datagram`] for every UDP datagram from the
//!   underlay (with the real source address), [`Engine::handle_local_packet`]
//!   for every IP packet the local backend (TUN or smoltcp) wants sent, and
//!   [`Engine::handle_timeout`] every [`Engine::TICK`].
//! * After each call, drain [`Engine::poll_output`] until `None` and carry out
//!   each [`Output`] in order.
//!
//! A packet costs one decrypt, one validation, one table lookup and one
//! encrypt. Anything malformed, unauthenticated or unroutable is dropped and
//! counted under a [`DropReason`]; nothing a peer sends can make it panic.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::LinkId;
use super::link::{Link, LinkStatus};
use super::packet::{IpPacket, decrement_ttl};
use super::table::{ForwardingTable, Hop, TableError};

/// boringtun needs room for the largest datagram plus its overhead; a too
/// small buffer panics inside it (NOTES.md), so every scratch buffer is 64 KiB.
const SCRATCH_LEN: usize = 65_536;
/// Handshake messages per second, for the whole node, before boringtun's
/// limiter answers with cookies instead of doing Diffie-Hellman. Each
/// initiation is checked twice (once to find its link, once by the link's
/// `Tunn`), so this admits about 100 initiations per second, boringtun's own
/// device default.
const HANDSHAKE_RATE_LIMIT: u64 = 200;
/// Receiver indices are 24 bits wide in boringtun (`index << 8`).
const INDEX_MASK: u32 = 0x00ff_ffff;

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `datagram` over the underlay UDP socket to `to`.
    Transmit { to: SocketAddr, datagram: Vec<u8> },
    /// Hand this IP packet to the local backend (TUN or smoltcp).
    Local(Vec<u8>),
}

/// Why a datagram or packet was dropped. Each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// Not a WireGuard message at all (wrong type or length).
    MalformedDatagram,
    /// A WireGuard message that failed authentication (MAC, AEAD tag, replay).
    Unauthenticated,
    /// A valid handshake from a key that is not one of our links.
    UnknownPeer,
    /// A message for a receiver index that is not ours.
    UnknownIndex,
    /// A decrypted packet that is not a well-formed IPv4/IPv6 packet.
    MalformedPacket,
    /// A neighbour sent a packet from a source it may not use.
    SpoofedSource,
    /// The destination is link-local, multicast, broadcast or unspecified:
    /// a router never forwards those (the kernel sends some, such as IPv6
    /// router solicitations, into the TUN device).
    NotRoutable,
    NoRoute,
    TtlExpired,
    /// The best next hop is the link the packet came in on.
    Hairpin,
    /// The link has no endpoint yet (the peer has never contacted us).
    NoEndpoint,
    /// boringtun refused the packet for another reason (e.g. no session yet).
    TunnelError,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::MalformedDatagram,
        DropReason::Unauthenticated,
        DropReason::UnknownPeer,
        DropReason::UnknownIndex,
        DropReason::MalformedPacket,
        DropReason::SpoofedSource,
        DropReason::NotRoutable,
        DropReason::NoRoute,
        DropReason::TtlExpired,
        DropReason::Hairpin,
        DropReason::NoEndpoint,
        DropReason::TunnelError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::MalformedDatagram => "malformed_datagram",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::MalformedPacket => "malformed_packet",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NotRoutable => "not_routable",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::Hairpin => "hairpin",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::TunnelError => "tunnel_error",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
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
}

/// What the operator configured for one link.
#[derive(Debug, Clone)]
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
    rx_scratch: Vec<u8>,
    tx_scratch: Vec<u8>,
    drops: [u64; DropReason::ALL.len()],
    counters: EngineCounters,
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
    /// How often the shell must call [`Engine::handle_timeout`]. boringtun
    /// wants its timers serviced every 100–250 ms.
    pub const TICK: Duration = Duration::from_millis(100);

    /// Builds an engine for the node holding `secret`. `index_seed` (random in
    /// production, fixed in tests) spreads WireGuard receiver indices so a
    /// restarted agent does not reuse the indices of its previous run.
    pub fn new(
        secret: [u8; 32],
        specs: Vec<LinkSpec>,
        index_seed: u32,
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
            let index = index_base.wrapping_add(u32::try_from(id.0).unwrap_or(0)) & INDEX_MASK;
            let mut link = Link::new(
                id,
                spec.name,
                &secret,
                spec.peer,
                spec.endpoint,
                spec.keepalive,
                index,
                rate_limiter.clone(),
            );
            link.profile = spec.profile;
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
            rx_scratch: vec![0; SCRATCH_LEN],
            tx_scratch: vec![0; SCRATCH_LEN],
            drops: [0; DropReason::ALL.len()],
            counters: EngineCounters::default(),
        })
    }

    pub fn public_key(&self) -> PublicKeyBytes {
        PublicKeyBytes(self.public.to_bytes())
    }

    /// The link with this name.
    pub fn link_id(&self, name: &str) -> Option<LinkId> {
        self.links.iter().find(|l| l.name == name).map(|l| l.id)
    }

    /// Installs or replaces the route for `prefix`.
    pub fn insert_route(&mut self, prefix: IpNet, hops: Vec<Hop>) -> Result<(), EngineError> {
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
        Ok(self.table.insert(prefix, hops)?)
    }

    pub fn table(&self) -> &ForwardingTable {
        &self.table
    }

    /// Marks a link up or down for forwarding (liveness decisions arrive
    /// here); returns how many next-hop groups switched.
    pub fn set_link_up(&mut self, link: LinkId, up: bool) -> usize {
        self.table.set_link_up(link, up)
    }

    /// Starts a handshake on every link whose endpoint is known, so transit
    /// paths are ready before the first packet needs them.
    pub fn start(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            self.initiate(LinkId(i), false, now);
        }
    }

    /// The next output for the shell, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
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

    /// Services WireGuard's timers (rekey, keepalive, retries) and re-starts
    /// handshakes that boringtun gave up on.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_rate_limiter_reset.is_none_or(|t| now >= t) {
            self.rate_limiter.reset_count();
            self.next_rate_limiter_reset = Some(now + Duration::from_secs(1));
        }
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            match link.tunn.update_timers(&mut self.tx_scratch) {
                TunnResult::WriteToNetwork(datagram) => {
                    if let Some(to) = link.endpoint {
                        self.outputs.push_back(Output::Transmit {
                            to,
                            datagram: datagram.to_vec(),
                        });
                    }
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) => {
                    // boringtun retried every 5 s for 90 s and gave up. A
                    // mesh neighbour may come back at any time, so start a
                    // new attempt at once: one 148-byte initiation per 5 s
                    // to a dead neighbour, WireGuard's own retry cadence.
                    self.initiate(LinkId(i), true, now);
                }
                _ => {}
            }
        }
    }

    /// A snapshot for `freimesh-agent status`.
    pub fn status(&self, now: Instant) -> EngineStatus {
        let hop_name = |hop: Hop| match hop {
            Hop::Local => "local".to_owned(),
            Hop::Link(id) => self
                .links
                .get(id.0)
                .map_or_else(|| format!("{id:?}"), |l| l.name.clone()),
        };
        EngineStatus {
            public_key: self.public_key().to_base64(),
            links: self.links.iter().map(|l| l.status(now)).collect(),
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
        }
    }

    fn drop_packet(&mut self, reason: DropReason) {
        self.drops[reason.slot()] += 1;
    }

    /// Finds the link a datagram belongs to, or counts why there is none.
    fn classify(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<(LinkId, MessageKind)> {
        let packet = match Tunn::parse_incoming_packet(datagram) {
            Ok(packet) => packet,
            Err(_) => {
                self.drop_packet(DropReason::MalformedDatagram);
                return None;
            }
        };
        let (receiver_index, kind) = match packet {
            Packet::HandshakeInit(ref init) => {
                // Check the cheap MAC (and the cookie under load) before the
                // Diffie-Hellman that identifies the initiator.
                match self.rate_limiter.verify_packet(
                    Some(from.ip()),
                    datagram,
                    &mut self.tx_scratch,
                ) {
                    Ok(_) => {}
                    Err(TunnResult::WriteToNetwork(cookie)) => {
                        self.outputs.push_back(Output::Transmit {
                            to: from,
                            datagram: cookie.to_vec(),
                        });
                        return None;
                    }
                    Err(_) => {
                        self.drop_packet(DropReason::Unauthenticated);
                        return None;
                    }
                }
                let Ok(half) = parse_handshake_anon(&self.secret, &self.public, init) else {
                    self.drop_packet(DropReason::Unauthenticated);
                    return None;
                };
                let peer = PublicKeyBytes(half.peer_static_public);
                return match self.links.iter().find(|l| l.peer == peer) {
                    Some(link) => Some((link.id, MessageKind::HandshakeInit)),
                    None => {
                        tracing::debug!(%from, %peer, "handshake from a key that is not a link");
                        self.drop_packet(DropReason::UnknownPeer);
                        None
                    }
                };
            }
            Packet::HandshakeResponse(ref p) => (p.receiver_idx, MessageKind::HandshakeResponse),
            Packet::PacketCookieReply(ref p) => (p.receiver_idx, MessageKind::CookieReply),
            Packet::PacketData(ref p) => (p.receiver_idx, MessageKind::Data),
        };
        let slot = (receiver_index >> 8).wrapping_sub(self.index_base) & INDEX_MASK;
        match usize::try_from(slot).ok().filter(|s| *s < self.links.len()) {
            Some(slot) => Some((LinkId(slot), kind)),
            None => {
                self.drop_packet(DropReason::UnknownIndex);
                None
            }
        }
    }

    fn decapsulate(
        &mut self,
        link_id: LinkId,
        kind: MessageKind,
        from: SocketAddr,
        datagram: &[u8],
        rx: &mut [u8],
        now: Instant,
    ) {
        let link = &mut self.links[link_id.0];
        match link.tunn.decapsulate(Some(from.ip()), datagram, rx) {
            TunnResult::WriteToNetwork(reply) => {
                // We answer a handshake initiation with a response (type 2)
                // and a response with a keepalive (type 4): both mean the
                // peer proved its key. A cookie reply (type 3) proves nothing.
                let reply_type = reply.first().copied();
                let proven = matches!(
                    (kind, reply_type),
                    (MessageKind::HandshakeInit, Some(2))
                        | (MessageKind::HandshakeResponse, Some(4))
                );
                let reply = reply.to_vec();
                if proven {
                    self.authenticated(link_id, from, now);
                }
                self.outputs.push_back(Output::Transmit {
                    to: from,
                    datagram: reply,
                });
                self.flush_queued(link_id, rx);
            }
            TunnResult::WriteToTunnelV4(packet, _) | TunnResult::WriteToTunnelV6(packet, _) => {
                let len = packet.len();
                self.authenticated(link_id, from, now);
                let link = &mut self.links[link_id.0];
                link.counters.rx_packets += 1;
                link.counters.rx_bytes += len as u64;
                self.route(&mut rx[..len], Ingress::Link(link_id), now);
            }
            TunnResult::Done => {
                // An empty data message is a keepalive: proof of life.
                if kind == MessageKind::Data {
                    self.authenticated(link_id, from, now);
                }
            }
            TunnResult::Err(err) => {
                let reason = match err {
                    WireGuardError::InvalidPacket => DropReason::MalformedPacket,
                    WireGuardError::InvalidMac
                    | WireGuardError::InvalidAeadTag
                    | WireGuardError::InvalidCounter
                    | WireGuardError::DuplicateCounter
                    | WireGuardError::WrongKey
                    | WireGuardError::WrongIndex
                    | WireGuardError::WrongTai64nTimestamp
                    | WireGuardError::InvalidTai64nTimestamp => DropReason::Unauthenticated,
                    _ => DropReason::TunnelError,
                };
                tracing::trace!(link = %self.links[link_id.0].name, %from, ?err, "datagram dropped");
                self.drop_packet(reason);
            }
        }
    }

    fn authenticated(&mut self, link_id: LinkId, from: SocketAddr, now: Instant) {
        let link = &mut self.links[link_id.0];
        if let Some(previous) = link.authenticated(from, now) {
            tracing::info!(link = %link.name, ?previous, endpoint = %from, "peer endpoint updated");
        }
    }

    /// Sends the packets boringtun queued while a handshake was in flight.
    fn flush_queued(&mut self, link_id: LinkId, scratch: &mut [u8]) {
        let link = &mut self.links[link_id.0];
        while let TunnResult::WriteToNetwork(datagram) = link.tunn.decapsulate(None, &[], scratch) {
            match link.endpoint {
                Some(to) => self.outputs.push_back(Output::Transmit {
                    to,
                    datagram: datagram.to_vec(),
                }),
                None => {
                    self.drops[DropReason::NoEndpoint.slot()] += 1;
                }
            }
        }
    }

    fn initiate(&mut self, link_id: LinkId, force: bool, _now: Instant) {
        let link = &mut self.links[link_id.0];
        let Some(to) = link.endpoint else {
            return;
        };
        if let TunnResult::WriteToNetwork(datagram) = link
            .tunn
            .format_handshake_initiation(&mut self.tx_scratch, force)
        {
            self.outputs.push_back(Output::Transmit {
                to,
                datagram: datagram.to_vec(),
            });
        }
    }

    /// Validates, routes and sends one packet.
    fn route(&mut self, packet: &mut [u8], ingress: Ingress, _now: Instant) {
        let header = match IpPacket::parse(packet) {
            Ok(header) => header,
            Err(err) => {
                tracing::trace!(?ingress, %err, "malformed packet dropped");
                self.drop_packet(DropReason::MalformedPacket);
                return;
            }
        };
        let packet = &mut packet[..header.len];
        if let Ingress::Link(id) = ingress
            && !self.links[id.0].allows_source(header.src)
        {
            self.drop_packet(DropReason::SpoofedSource);
            return;
        }
        if !is_routable(header.dst) {
            self.drop_packet(DropReason::NotRoutable);
            return;
        }
        let Some(hop) = self.table.lookup(header.dst) else {
            tracing::trace!(?ingress, src = %header.src, dst = %header.dst, "no route");
            self.drop_packet(DropReason::NoRoute);
            return;
        };
        match (hop, ingress) {
            (Hop::Local, Ingress::Local) => {
                // The backend only hands us packets for elsewhere; one for
                // ourselves means its routes disagree with the table.
                self.drop_packet(DropReason::Hairpin);
            }
            (Hop::Local, Ingress::Link(_)) => {
                self.counters.delivered_local += 1;
                self.outputs.push_back(Output::Local(packet.to_vec()));
            }
            (Hop::Link(out), Ingress::Link(inbound)) if out == inbound => {
                self.drop_packet(DropReason::Hairpin);
            }
            (Hop::Link(out), Ingress::Link(_)) => {
                if decrement_ttl(packet).is_err() {
                    self.drop_packet(DropReason::TtlExpired);
                    return;
                }
                self.counters.forwarded += 1;
                self.send_on_link(out, packet);
            }
            (Hop::Link(out), Ingress::Local) => self.send_on_link(out, packet),
        }
    }

    fn send_on_link(&mut self, link_id: LinkId, packet: &[u8]) {
        let link = &mut self.links[link_id.0];
        match link.tunn.encapsulate(packet, &mut self.tx_scratch) {
            TunnResult::WriteToNetwork(datagram) => {
                link.counters.tx_packets += 1;
                link.counters.tx_bytes += packet.len() as u64;
                match link.endpoint {
                    Some(to) => self.outputs.push_back(Output::Transmit {
                        to,
                        datagram: datagram.to_vec(),
                    }),
                    None => self.drops[DropReason::NoEndpoint.slot()] += 1,
                }
            }
            // Queued inside boringtun until the handshake completes.
            TunnResult::Done => {}
            TunnResult::Err(_) => self.drop_packet(DropReason::TunnelError),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
    }
}

/// Whether a router may forward a packet to `dst` at all.
fn is_routable(dst: std::net::IpAddr) -> bool {
    match dst {
        std::net::IpAddr::V4(a) => {
            !(a.is_multicast() || a.is_broadcast() || a.is_unspecified() || a.is_link_local())
        }
        std::net::IpAddr::V6(a) => {
            !(a.is_multicast() || a.is_unspecified() || a.is_unicast_link_local())
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
