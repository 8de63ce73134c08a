//! respondd: the agent answers the monitoring requests Freifunk's collectors
//! send (issue 15, item 4), so a community that runs yanic adds freimesh
//! routers to its map and Grafana without changing anything.
//!
//! The protocol is Gluon's (`net/respondd` in freifunk-gluon/packages): UDP
//! port [`RESPONDD_PORT`], requests to the link-local group
//! [`RESPONDD_GROUP`] on the mesh interfaces or unicast, answered to the
//! request's source address and port:
//!
//! * `GET nodeinfo statistics neighbours` (names separated by spaces; yanic
//!   sends exactly this) → one datagram, the **raw deflate** (RFC 1951, no
//!   zlib header) of one JSON object keyed by the known names asked for;
//! * a bare name (`nodeinfo`) → that object alone as plain JSON (what
//!   Gluon's own tools, e.g. its status page, ask for).
//!
//! Unknown names are left out; a request naming none gets no answer. The
//! JSON shapes are the ones yanic parses ([`answer`]; the mapping is in
//! `docs/api.md`).
//!
//! [`Respondd`] is the sans-IO core: request parsing, the source policy, the
//! rate limit and the answers, built from the latest [`Snapshot`] of what
//! the agent knows. The shell (`crate::run`'s respondd task and [`shell`])
//! owns the socket, joins the group, reads the snapshot and sends.
//!
//! Policy (`docs/security.md`): off unless `node.respondd = true`; only
//! sources that are link-local on a mesh interface or inside the mesh's
//! overlay prefixes (and not inside a public Wi-Fi client prefix) are
//! answered; requests, names per request, answers per second and answer
//! size are bounded. Nothing about clients but their count is in any answer.

pub mod answer;
pub mod shell;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::telemetry::{NodeInfo, Statistics};
use ipnet::{IpNet, Ipv6Net};

/// Gluon's respondd port; yanic sends to it and nothing else.
pub const RESPONDD_PORT: u16 = 1001;
/// The group Gluon's respondd joins on mesh interfaces (yanic's
/// `multicast_address` must name it: yanic's default is `ff05::2:1001`,
/// which Gluon joins on its client bridge only, where freimesh never
/// answers).
pub const RESPONDD_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 2, 0x1001);
/// The longest request read: Gluon's `REQUEST_MAXLEN` (256 bytes with its
/// terminating NUL); yanic's request is 34 bytes.
pub const MAX_REQUEST_BYTES: usize = 255;
/// The most names one request may list (there are three; repeating them
/// would only make an attacker's request cost more).
pub const MAX_NAMES_PER_REQUEST: usize = 8;
/// The largest answer sent: yanic reads datagrams into an 8192-byte
/// buffer and would inflate a truncated stream. The answers stay far below
/// it (every text field and the neighbour list are bounded; a test checks
/// the worst case); one that did not would be dropped and counted.
pub const MAX_ANSWER_BYTES: usize = 8_192;
/// Answers that may go out at once after a quiet time: one collector asks
/// once a minute, and a few collectors or a status page asking together
/// must all be answered.
pub const ANSWER_BURST: u32 = 10;
/// One more answer may go out per this interval (5 per second): a request
/// costs a deflate, and a flood from a neighbour must not turn the router
/// into an amplifier or a CPU sink.
pub const ANSWER_REFILL: Duration = Duration::from_millis(200);
/// Answers waiting for the shell; more are dropped (the shell drains the
/// queue after every request, so this only bounds a misuse of the core).
pub const MAX_QUEUED_ANSWERS: usize = 16;
/// The most neighbours in one `neighbours` answer (a router has a handful;
/// the bound keeps the answer under [`MAX_ANSWER_BYTES`]).
pub const MAX_NEIGHBOURS: usize = 64;

/// The three things a collector may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    NodeInfo,
    Statistics,
    Neighbours,
}

impl Section {
    pub const ALL: [Section; 3] = [Section::NodeInfo, Section::Statistics, Section::Neighbours];

    /// The name in requests and answers.
    pub fn name(self) -> &'static str {
        match self {
            Section::NodeInfo => "nodeinfo",
            Section::Statistics => "statistics",
            Section::Neighbours => "neighbours",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET a b …`: the known names, in request order without repeats;
    /// answered deflated.
    Get(Vec<Section>),
    /// A bare name: answered as plain JSON.
    Plain(Section),
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request longer than {MAX_REQUEST_BYTES} bytes")]
    TooLong,
    #[error("request is not text")]
    NotText,
    #[error("request names more than {MAX_NAMES_PER_REQUEST} sections")]
    TooManyNames,
    #[error("request names no known section")]
    NothingKnown,
    #[error("source is neither link-local on a mesh interface nor in the mesh")]
    Source,
    #[error("answer rate limit reached")]
    RateLimited,
    #[error("nothing collected yet")]
    NotReady,
    #[error("answer larger than {MAX_ANSWER_BYTES} bytes")]
    AnswerTooLarge,
}

/// Parses a request the way Gluon's respondd does: `GET ` then names split
/// on spaces, or one bare name. A trailing line end is forgiven (someone
/// typing into netcat); anything else unknown is left out.
pub fn parse_request(bytes: &[u8]) -> Result<Request, Refusal> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(Refusal::TooLong);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Refusal::NotText)?;
    let text = text.trim_end_matches(['\r', '\n', '\0']);
    if let Some(names) = text.strip_prefix("GET ") {
        let names: Vec<&str> = names.split(' ').filter(|n| !n.is_empty()).collect();
        if names.len() > MAX_NAMES_PER_REQUEST {
            return Err(Refusal::TooManyNames);
        }
        let mut sections = Vec::new();
        for section in names.into_iter().filter_map(Section::from_name) {
            if !sections.contains(&section) {
                sections.push(section);
            }
        }
        if sections.is_empty() {
            return Err(Refusal::NothingKnown);
        }
        return Ok(Request::Get(sections));
    }
    Section::from_name(text)
        .map(Request::Plain)
        .ok_or(Refusal::NothingKnown)
}

/// Which sources are answered: link-local ones on a mesh interface, and
/// overlay addresses inside the mesh prefixes but outside the public Wi-Fi
/// client prefixes. IPv4 never (the socket is IPv6 only anyway).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Interface indexes of the mesh interfaces that exist now.
    pub mesh_ifindexes: BTreeSet<u32>,
    /// The mesh's overlay prefixes (IPv6).
    pub mesh_prefixes: Vec<Ipv6Net>,
    /// Public Wi-Fi client prefixes: refused even inside the mesh prefixes.
    pub client_prefixes: Vec<Ipv6Net>,
}

impl SourcePolicy {
    /// A policy from the agent's prefixes: IPv4 ones are left out.
    pub fn new(mesh_prefixes: &[IpNet], client_prefixes: &[IpNet]) -> Self {
        let v6 = |nets: &[IpNet]| {
            nets.iter()
                .filter_map(|n| match n {
                    IpNet::V6(n) => Some(n.trunc()),
                    IpNet::V4(_) => None,
                })
                .collect()
        };
        Self {
            mesh_ifindexes: BTreeSet::new(),
            mesh_prefixes: v6(mesh_prefixes),
            client_prefixes: v6(client_prefixes),
        }
    }

    pub fn allows(&self, from: &SocketAddrV6) -> bool {
        let ip = from.ip();
        if from.port() == 0 || ip.is_multicast() || ip.is_unspecified() {
            return false;
        }
        if crate::discovery::shell::is_link_local(ip) {
            // The scope id is the interface the request arrived on.
            return self.mesh_ifindexes.contains(&from.scope_id());
        }
        self.mesh_prefixes.iter().any(|p| p.contains(ip))
            && !self.client_prefixes.iter().any(|p| p.contains(ip))
    }
}

/// Who this node is, fixed for the agent's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnNode {
    pub key: PublicKeyBytes,
    /// `node.name`.
    pub hostname: String,
    /// Overlay addresses (`network.addresses`).
    pub addresses: Vec<IpAddr>,
    /// A gateway (yanic's `is_gateway` comes from nodeinfo `vpn`).
    pub is_gateway: bool,
}

/// One link to a neighbour as respondd shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourLink {
    pub peer: PublicKeyBytes,
    /// Measured loss inside the tunnel, parts per million.
    pub loss_ppm: u32,
}

/// What the agent knows now, refreshed by the shell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub info: NodeInfo,
    pub stats: Statistics,
    /// Links that are up.
    pub links: Vec<NeighbourLink>,
    /// Public Wi-Fi clients holding a lease (a count, never who).
    pub clients: Option<u32>,
    /// The active first hop of the default route: a neighbour, or this
    /// node itself when it leaves through its own uplink.
    pub gateway_nexthop: Option<PublicKeyBytes>,
    /// The exit gateway the controller named last
    /// (`ControllerMsg::ExitGateway`).
    pub gateway: Option<PublicKeyBytes>,
}

/// An answer for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub to: SocketAddrV6,
    pub datagram: Vec<u8>,
}

/// What the core did, for `freimesh-agent status` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RespondCounters {
    pub answered: u64,
    pub refused_source: u64,
    pub malformed: u64,
    pub rate_limited: u64,
    pub dropped: u64,
}

/// A token bucket on the core's clock.
#[derive(Debug, Clone)]
struct TokenBucket {
    tokens: u32,
    refilled_at: Option<Instant>,
}

impl TokenBucket {
    fn new() -> Self {
        Self {
            tokens: ANSWER_BURST,
            refilled_at: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let since = *self.refilled_at.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        let earned = elapsed.as_nanos() / ANSWER_REFILL.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(ANSWER_BURST);
            // A full bucket banks nothing; otherwise keep the fraction of
            // an interval already earned.
            self.refilled_at = Some(if self.tokens == ANSWER_BURST {
                now
            } else {
                since + ANSWER_REFILL * earned
            });
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The respondd core.
///
/// Contract: [`Respondd::handle_snapshot`] whenever the shell has read the
/// agent's state again (before it, requests go unanswered);
/// [`Respondd::handle_mesh_interfaces`] whenever the mesh interfaces'
/// indexes change; [`Respondd::handle_request`] for every datagram
/// received, then [`Respondd::poll_answer`] until it returns `None`. The
/// core reads no clock: `now` drives the rate limit.
#[derive(Debug)]
pub struct Respondd {
    own: OwnNode,
    policy: SourcePolicy,
    snapshot: Option<Snapshot>,
    bucket: TokenBucket,
    queue: VecDeque<Answer>,
    counters: RespondCounters,
}

impl Respondd {
    pub fn new(own: OwnNode, policy: SourcePolicy) -> Self {
        Self {
            own,
            policy,
            snapshot: None,
            bucket: TokenBucket::new(),
            queue: VecDeque::new(),
            counters: RespondCounters::default(),
        }
    }

    pub fn handle_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = Some(snapshot);
    }

    /// The indexes the mesh interfaces have now (link-local sources are
    /// answered only on these).
    pub fn handle_mesh_interfaces(&mut self, ifindexes: impl IntoIterator<Item = u32>) {
        self.policy.mesh_ifindexes = ifindexes.into_iter().collect();
    }

    /// One datagram from `from`: queues its answer, or says why not.
    pub fn handle_request(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), Refusal> {
        let refusal = match self.answer(from, bytes, now) {
            Ok(answer) => {
                if self.queue.len() >= MAX_QUEUED_ANSWERS {
                    self.counters.dropped += 1;
                } else {
                    self.counters.answered += 1;
                    self.queue.push_back(answer);
                }
                return Ok(());
            }
            Err(refusal) => refusal,
        };
        match refusal {
            Refusal::Source => self.counters.refused_source += 1,
            Refusal::RateLimited => self.counters.rate_limited += 1,
            Refusal::AnswerTooLarge | Refusal::NotReady => self.counters.dropped += 1,
            Refusal::TooLong | Refusal::NotText | Refusal::TooManyNames | Refusal::NothingKnown => {
                self.counters.malformed += 1;
            }
        }
        Err(refusal)
    }

    fn answer(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> Result<Answer, Refusal> {
        let from = match from {
            SocketAddr::V6(from) if self.policy.allows(&from) => from,
            _ => return Err(Refusal::Source),
        };
        let request = parse_request(bytes)?;
        let snapshot = self.snapshot.as_ref().ok_or(Refusal::NotReady)?;
        // Checked last: a refused or malformed request costs no token.
        if !self.bucket.take(now) {
            return Err(Refusal::RateLimited);
        }
        let datagram = match request {
            Request::Get(sections) => answer::deflated(&self.own, snapshot, &sections),
            Request::Plain(section) => answer::plain(&self.own, snapshot, section),
        };
        if datagram.len() > MAX_ANSWER_BYTES {
            return Err(Refusal::AnswerTooLarge);
        }
        Ok(Answer { to: from, datagram })
    }

    pub fn poll_answer(&mut self) -> Option<Answer> {
        self.queue.pop_front()
    }

    pub fn counters(&self) -> RespondCounters {
        self.counters
    }
}
