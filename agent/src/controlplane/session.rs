//! One control session with the controller as a sans-IO core: the Hello,
//! the frames both ways, keepalive pings, the idle timeout, and what waits
//! for the controller while it is away.
//!
//! # Contract (call order)
//!
//! 1. [`Session::new`] once per process (the join token is sent until the
//!    first Welcome of the process, so the core outlives connections).
//! 2. When the transport is up (TCP + Noise IK handshake done):
//!    [`Session::handle_connected`]; the Hello is the first
//!    [`Session::poll_report`].
//! 3. Feed every decoded [`ControllerMsg`] to [`Session::handle_message`],
//!    everything the agent wants to tell the controller to
//!    [`Session::handle_upstream`] (connected or not), and call
//!    [`Session::handle_tick`] whenever [`Session::poll_timeout`] has passed.
//!    `handle_message` and `handle_tick` return [`SessionEnded`] when the
//!    session must close (Pending, Error, idle timeout).
//! 4. After each call drain [`Session::poll_report`] (frames to send, in
//!    order) and [`Session::poll_event`] (for the [`super::ControlCore`]).
//! 5. When the connection ends for any reason:
//!    [`Session::handle_disconnected`]; then back off and go to 2.
//!
//! Nothing is sent before the Welcome except the Hello, Pongs and Pings.
//! After a Welcome: the latest uplink state first (so the controller stops
//! routing through a dead uplink before anything else), the client count,
//! the latest link report, then the failovers kept while the controller
//! was away, each with its age, then the node information and the latest
//! statistics. Node information goes out only when it changed; statistics
//! at most once per [`MIN_STATISTICS_SPACING`], so a shell that collects
//! too often cannot flood the controller.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use freimesh_proto::control::{
    AgentMsg, ControllerMsg, ErrorMsg, Hello, LinkAssignment, LinkChange, LinkEvent, LinkTraffic,
    MAX_CONTROL_EXITS, MAX_REVOCATION_PAGES_PER_FRAME, NodeInfo, Report, Route, RouteChange,
    STATISTICS_INTERVAL_S, Statistics, Welcome,
};
use freimesh_proto::credential::{SignedCredential, SignedRevocationPage};
use freimesh_proto::{NodeId, PROTOCOL_VERSION, PublicKeyBytes};
use ipnet::IpNet;

/// The agent pings this often, well inside NAT and firewall idle timeouts
/// (WireGuard's persistent keepalive uses the same number).
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// Nothing heard for this long (three pings and a bit): reconnect.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How a session keeps itself alive and when it gives up on silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub idle_timeout: Duration,
}

impl Keepalive {
    /// Over the underlay: [`KEEPALIVE`] and [`IDLE_TIMEOUT`].
    pub const DIRECT: Self = Self {
        interval: KEEPALIVE,
        idle_timeout: IDLE_TIMEOUT,
    };
    /// Through the mesh (an exit or a neighbour's relay): the path depends
    /// on routes the controller itself hands out, and a change can leave
    /// it one-way (the town lab saw a router whose exit had lost the route
    /// back to it: its TCP got no acknowledgements, so not even its report
    /// that would have brought the route back left it). No NAT to keep
    /// open here, so a ping every 5 s costs only a few bytes, and a session
    /// that hears nothing for 15 s starts over on another path.
    pub const THROUGH_MESH: Self = Self {
        interval: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(15),
    };
}
/// Failovers kept for the controller while it is unreachable.
pub const PENDING_FAILOVERS: usize = 256;
/// Entries a chunked full set (links or routes) may hold before the session
/// is ended: a city of 10,000 nodes has ~30,000 routes, and at ~100 bytes
/// each this bound (about 25 MB) still fits a 128 MB router. A controller
/// that sends more is broken, and the agent keeps its last state.
pub const MAX_FULL_SET_ENTRIES: usize = 262_144;
/// The least time between two `Statistics` frames: half the protocol's
/// interval, so a shell tick that comes a little early is not dropped.
pub const MIN_STATISTICS_SPACING: Duration = Duration::from_secs(STATISTICS_INTERVAL_S / 2);

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where to reach the controller (`[controller] endpoints`), tried in
    /// this order by the [`super::Dialer`].
    pub controller_endpoints: Vec<SocketAddr>,
    /// The pinned controller key (`[controller] public_key`).
    pub controller_key: PublicKeyBytes,
    /// Sent until the first Welcome (`[controller] join_token`).
    pub join_token: Option<String>,
    pub hostname: String,
    /// Underlay endpoints the agent's WireGuard socket listens on.
    pub endpoints: Vec<SocketAddr>,
    /// Prefixes to announce (`node.local_prefixes`); must be approved.
    pub prefixes: Vec<IpNet>,
    /// Gateway, public Wi-Fi.
    pub roles: freimesh_proto::control::Roles,
    /// Specific overlay addresses to ask for at enrolment (usually empty).
    pub want_addresses: Vec<IpAddr>,
}

/// What the controller told us, in order. Full state (`Links`, `Routes`)
/// follows every Welcome and replaces all controller-given state; deltas
/// patch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    /// Enrolled and connected: our node id, overlay addresses and the mesh
    /// prefixes. Comes first on every (re)connect.
    Welcome(Welcome),
    /// The controller holds us for operator approval; the client retries.
    Pending {
        node_id: NodeId,
    },
    /// The full set of links to hold (replaces the previous set).
    Links(Vec<LinkAssignment>),
    /// The full route table (replaces the previous controller routes).
    Routes(Vec<Route>),
    LinksDelta(Vec<LinkChange>),
    RoutesDelta(Vec<RouteChange>),
    /// This node's membership credential, new or renewed (v5); checked
    /// against the Welcome's signing key where it is applied
    /// ([`super::apply_to_membership`]).
    Credential(SignedCredential),
    /// Pages of the controller's revocation list (v5), at most
    /// [`MAX_REVOCATION_PAGES_PER_FRAME`].
    Revocations(Vec<SignedRevocationPage>),
    /// The control exits' overlay relay addresses (v6), at most
    /// [`MAX_CONTROL_EXITS`]: the whole list, replacing the previous one.
    ControlExits(Vec<SocketAddr>),
    /// This node's exit gateway (v7), replacing the previous one: what
    /// respondd reports as `statistics.gateway`.
    ExitGateway(Option<PublicKeyBytes>),
    /// The controller refused us (revoked, token expired, prefix not
    /// approved, …); the client retries with backoff.
    Refused(ErrorMsg),
    /// The connection ended; the last state stays valid (headless mode).
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
}

/// What the run loop sends up to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Link states, measurements and candidates; the newest one is sent
    /// again after every reconnect.
    Report(Report),
    /// The failovers one engine step made, each with when it happened (one
    /// message for all of them, so a burst never overruns the queue to the
    /// client): kept (up to [`PENDING_FAILOVERS`], the one bound on them)
    /// while the controller is unreachable and sent with their age once it
    /// is back, so its history has no holes.
    Failovers(Vec<(LinkEvent, Instant)>),
    /// Byte counters per link; only the newest matter, so they are dropped
    /// while the controller is unreachable.
    Traffic(Vec<LinkTraffic>),
    /// A gateway's uplink came up or went down: sent at once, and the
    /// latest state again after every Welcome.
    Uplink(bool),
    /// How many public Wi-Fi clients hold a lease here (a count only, never
    /// who); the latest value is sent after every Welcome.
    Clients(u32),
    /// What the router is: sent when it differs from the last one, and
    /// again after every Welcome.
    NodeInfo(NodeInfo),
    /// How the router is doing: sent at most once per
    /// [`MIN_STATISTICS_SPACING`]; the latest again after every Welcome.
    Statistics(Statistics),
}

/// Why a session must close; the shell reconnects with backoff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionEnded {
    #[error("pending approval")]
    Pending,
    #[error("{0}")]
    Refused(ErrorMsg),
    #[error("controller silent; idle timeout")]
    IdleTimeout,
    #[error("full set from the controller past {MAX_FULL_SET_ENTRIES} entries")]
    FullSetTooLarge,
    #[error(
        "{0} revocation pages in one frame from the controller; at most {MAX_REVOCATION_PAGES_PER_FRAME} are allowed"
    )]
    TooManyRevocationPages(usize),
    #[error("{0} control exits from the controller; at most {MAX_CONTROL_EXITS} are allowed")]
    TooManyControlExits(usize),
}

/// State of the connection in progress.
#[derive(Debug)]
struct Connected {
    /// A Welcome was seen on this connection: reports may go out.
    welcomed: bool,
    keepalive: Keepalive,
    next_ping: Instant,
    ping_seq: u64,
    last_heard: Instant,
    /// Chunks of a full set not closed by `last` yet.
    links: Vec<LinkAssignment>,
    routes: Vec<Route>,
}

/// The session core; see the module docs.
#[derive(Debug)]
pub struct Session {
    cfg: ClientConfig,
    /// A Welcome was seen in this process: stop sending the token.
    welcomed: bool,
    connected: Option<Connected>,
    last_report: Option<Report>,
    last_uplink: Option<bool>,
    last_clients: Option<u32>,
    last_node_info: Option<NodeInfo>,
    last_statistics: Option<Statistics>,
    /// When the last `Statistics` frame was queued.
    statistics_sent: Option<Instant>,
    pending_failovers: VecDeque<(LinkEvent, Instant)>,
    outbox: VecDeque<AgentMsg>,
    events: VecDeque<ControllerEvent>,
}

impl Session {
    pub fn new(cfg: ClientConfig) -> Self {
        Self {
            cfg,
            welcomed: false,
            connected: None,
            last_report: None,
            last_uplink: None,
            last_clients: None,
            last_node_info: None,
            last_statistics: None,
            statistics_sent: None,
            pending_failovers: VecDeque::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The Hello this agent sends first on every connection.
    pub fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            join_token: if self.welcomed {
                None
            } else {
                self.cfg.join_token.clone()
            },
            hostname: self.cfg.hostname.clone(),
            endpoints: self.cfg.endpoints.clone(),
            prefixes: self.cfg.prefixes.clone(),
            want_addresses: self.cfg.want_addresses.clone(),
            roles: self.cfg.roles,
        }
    }

    /// Whether the current connection has been welcomed (the shell resets
    /// its backoff after such a session).
    pub fn session_welcomed(&self) -> bool {
        self.connected.as_ref().is_some_and(|c| c.welcomed)
    }

    /// A new connection is up: queues the Hello.
    pub fn handle_connected(&mut self, now: Instant) {
        self.handle_connected_via(now, Keepalive::DIRECT);
    }

    /// [`Session::handle_connected`] on a path that keeps itself alive
    /// with `keepalive`.
    pub fn handle_connected_via(&mut self, now: Instant, keepalive: Keepalive) {
        // Frames of an earlier connection were for that connection.
        self.outbox.clear();
        self.connected = Some(Connected {
            welcomed: false,
            keepalive,
            next_ping: now + keepalive.interval,
            ping_seq: 0,
            last_heard: now,
            links: Vec::new(),
            routes: Vec::new(),
        });
        self.outbox.push_back(AgentMsg::Hello(self.hello()));
    }

    /// One message from the controller.
    pub fn handle_message(&mut self, msg: ControllerMsg, now: Instant) -> Result<(), SessionEnded> {
        let Some(conn) = &mut self.connected else {
            return Ok(());
        };
        conn.last_heard = now;
        match msg {
            ControllerMsg::Welcome(welcome) => {
                tracing::info!(node_id = %welcome.node_id, addresses = ?welcome.addresses, "welcomed by the controller");
                self.welcomed = true;
                conn.welcomed = true;
                conn.links.clear();
                conn.routes.clear();
                self.events.push_back(ControllerEvent::Welcome(welcome));
                let uplink = self.last_uplink.map(|up| AgentMsg::Uplink { up });
                let clients = self.last_clients.map(|count| AgentMsg::Clients { count });
                let report = self.last_report.clone().map(AgentMsg::Report);
                self.outbox
                    .extend(uplink.into_iter().chain(clients).chain(report));
                self.flush_failovers(now);
                self.outbox
                    .extend(self.last_node_info.clone().map(AgentMsg::NodeInfo));
                if let Some(stats) = self.last_statistics {
                    self.outbox.push_back(AgentMsg::Statistics(stats));
                    self.statistics_sent = Some(now);
                }
            }
            ControllerMsg::Pending { node_id } => {
                tracing::info!(%node_id, "waiting for the operator's approval");
                self.events.push_back(ControllerEvent::Pending { node_id });
                return Err(SessionEnded::Pending);
            }
            ControllerMsg::Links { links, last } => {
                if conn.links.len() + links.len() > MAX_FULL_SET_ENTRIES {
                    return Err(SessionEnded::FullSetTooLarge);
                }
                conn.links.extend(links);
                if last {
                    let links = std::mem::take(&mut conn.links);
                    self.events.push_back(ControllerEvent::Links(links));
                }
            }
            ControllerMsg::Routes { routes, last } => {
                if conn.routes.len() + routes.len() > MAX_FULL_SET_ENTRIES {
                    return Err(SessionEnded::FullSetTooLarge);
                }
                conn.routes.extend(routes);
                if last {
                    let routes = std::mem::take(&mut conn.routes);
                    self.events.push_back(ControllerEvent::Routes(routes));
                }
            }
            ControllerMsg::LinksDelta(c) => self.events.push_back(ControllerEvent::LinksDelta(c)),
            ControllerMsg::RoutesDelta(c) => self.events.push_back(ControllerEvent::RoutesDelta(c)),
            ControllerMsg::Credential(c) => self.events.push_back(ControllerEvent::Credential(c)),
            ControllerMsg::Revocations(pages) => {
                if pages.len() > MAX_REVOCATION_PAGES_PER_FRAME {
                    return Err(SessionEnded::TooManyRevocationPages(pages.len()));
                }
                self.events.push_back(ControllerEvent::Revocations(pages));
            }
            ControllerMsg::ControlExits(exits) => {
                if exits.len() > MAX_CONTROL_EXITS {
                    return Err(SessionEnded::TooManyControlExits(exits.len()));
                }
                self.events.push_back(ControllerEvent::ControlExits(exits));
            }
            ControllerMsg::ExitGateway(gateway) => {
                self.events.push_back(ControllerEvent::ExitGateway(gateway));
            }
            ControllerMsg::Error(err) => {
                tracing::warn!(code = ?err.code, "controller refused: {}", err.message);
                self.events.push_back(ControllerEvent::Refused(err.clone()));
                return Err(SessionEnded::Refused(err));
            }
            ControllerMsg::Ping(n) => self.outbox.push_back(AgentMsg::Pong(n)),
            ControllerMsg::Pong(_) => {}
        }
        Ok(())
    }

    /// Something for the controller: sent now if the session is welcomed,
    /// else kept as the rules of [`Upstream`] say.
    pub fn handle_upstream(&mut self, item: Upstream, now: Instant) {
        let now_msg = match &item {
            Upstream::Report(report) => Some(AgentMsg::Report(report.clone())),
            Upstream::Traffic(counters) => Some(AgentMsg::Traffic(counters.clone())),
            Upstream::Uplink(up) => Some(AgentMsg::Uplink { up: *up }),
            Upstream::Clients(count) => Some(AgentMsg::Clients { count: *count }),
            Upstream::NodeInfo(info) => {
                if self.last_node_info.as_ref() == Some(info) {
                    return;
                }
                Some(AgentMsg::NodeInfo(info.clone()))
            }
            Upstream::Statistics(stats) => {
                let spaced = self
                    .statistics_sent
                    .is_none_or(|at| now.saturating_duration_since(at) >= MIN_STATISTICS_SPACING);
                (spaced && self.session_welcomed()).then_some(AgentMsg::Statistics(*stats))
            }
            Upstream::Failovers(..) => None,
        };
        match item {
            Upstream::Report(report) => self.last_report = Some(report),
            Upstream::Failovers(failovers) => {
                for failover in failovers {
                    if self.pending_failovers.len() == PENDING_FAILOVERS {
                        self.pending_failovers.pop_front();
                    }
                    self.pending_failovers.push_back(failover);
                }
            }
            Upstream::Traffic(_) => {}
            Upstream::Uplink(up) => self.last_uplink = Some(up),
            Upstream::Clients(count) => self.last_clients = Some(count),
            Upstream::NodeInfo(info) => self.last_node_info = Some(info),
            Upstream::Statistics(stats) => {
                self.last_statistics = Some(stats);
                if now_msg.is_some() {
                    self.statistics_sent = Some(now);
                }
            }
        }
        if !self.session_welcomed() {
            return;
        }
        self.outbox.extend(now_msg);
        self.flush_failovers(now);
    }

    /// Time passed: pings when due, ends a silent session.
    pub fn handle_tick(&mut self, now: Instant) -> Result<(), SessionEnded> {
        let Some(conn) = &mut self.connected else {
            return Ok(());
        };
        if now.saturating_duration_since(conn.last_heard) >= conn.keepalive.idle_timeout {
            return Err(SessionEnded::IdleTimeout);
        }
        if now >= conn.next_ping {
            conn.ping_seq += 1;
            conn.next_ping = now + conn.keepalive.interval;
            self.outbox.push_back(AgentMsg::Ping(conn.ping_seq));
        }
        Ok(())
    }

    /// When [`Session::handle_tick`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.connected.as_ref()?;
        Some(
            conn.next_ping
                .min(conn.last_heard + conn.keepalive.idle_timeout),
        )
    }

    /// The connection ended; the agent retries in `retry_in`.
    pub fn handle_disconnected(&mut self, reason: String, retry_in: Duration) {
        self.connected = None;
        self.outbox.clear();
        self.events
            .push_back(ControllerEvent::Disconnected { reason, retry_in });
    }

    /// The next frame for the controller.
    pub fn poll_report(&mut self) -> Option<AgentMsg> {
        self.outbox.pop_front()
    }

    /// The next event for the control core.
    pub fn poll_event(&mut self) -> Option<ControllerEvent> {
        self.events.pop_front()
    }

    /// Queues the failovers kept so far as one Events frame, each with its
    /// age at `now`.
    fn flush_failovers(&mut self, now: Instant) {
        if self.pending_failovers.is_empty() {
            return;
        }
        let events = self
            .pending_failovers
            .drain(..)
            .map(|(event, at)| LinkEvent {
                age_ms: u32::try_from(now.saturating_duration_since(at).as_millis())
                    .unwrap_or(u32::MAX),
                ..event
            })
            .collect();
        self.outbox.push_back(AgentMsg::Events(events));
    }
}

#[cfg(test)]
mod tests;
