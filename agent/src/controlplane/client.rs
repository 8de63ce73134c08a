//! The connection loop: connect, handshake, Hello, then frames both ways
//! until the connection fails; then back off and start again.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use freimesh_proto::control::{
    self, AgentMsg, ControllerMsg, ErrorMsg, Hello, LinkAssignment, LinkChange, LinkEvent,
    LinkTraffic, Report, Route, RouteChange, Transport, Welcome,
};
use freimesh_proto::{NodeId, PROTOCOL_VERSION, PublicKeyBytes};
use ipnet::IpNet;
use rand_core::{OsRng, RngCore as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::Backoff;
use crate::identity::PrivateKey;

/// Connecting and the handshake must finish within this; a controller that
/// accepts but never answers is as good as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The agent pings this often, well inside NAT and firewall idle timeouts
/// (WireGuard's persistent keepalive uses the same number).
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// Nothing heard for this long (three pings and a bit): reconnect.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The controller's underlay address (`[controller] endpoint`).
    pub endpoint: SocketAddr,
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
    /// A failover this node made, and when: kept (up to
    /// [`PENDING_FAILOVERS`]) while the controller is unreachable and sent
    /// with their age once it is back, so its history has no holes.
    Failover(LinkEvent, Instant),
    /// Byte counters per link; only the newest matter, so they are dropped
    /// while the controller is unreachable.
    Traffic(Vec<LinkTraffic>),
    /// A gateway's uplink came up or went down: sent at once, and the
    /// latest state again after every Welcome (first, so the controller
    /// stops routing through a dead uplink before anything else).
    Uplink(bool),
    /// How many public Wi-Fi clients hold a lease here (a count only, never
    /// who); the latest value is sent after every Welcome.
    Clients(u32),
}

/// Failovers kept for the controller while it is unreachable.
pub const PENDING_FAILOVERS: usize = 256;

/// The control-plane client; see the module docs.
#[derive(Debug)]
pub struct Client {
    cfg: ClientConfig,
    key: PrivateKey,
    events: mpsc::Sender<ControllerEvent>,
    upstream: mpsc::Receiver<Upstream>,
    last_report: Option<Report>,
    last_uplink: Option<bool>,
    last_clients: Option<u32>,
    pending_failovers: VecDeque<(LinkEvent, Instant)>,
    upstream_open: bool,
    /// A Welcome was seen in this process: stop sending the token.
    welcomed: bool,
    /// A Welcome was seen in the current session: reset the backoff.
    session_welcomed: bool,
}

/// Why a session ended.
enum End {
    /// The event receiver is gone: stop for good.
    Stop,
    Retry(String),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        Self::Retry(e.to_string())
    }
}

impl From<control::FrameError> for End {
    fn from(e: control::FrameError) -> Self {
        Self::Retry(e.to_string())
    }
}

async fn read_message(r: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = r.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_message(w: &mut OwnedWriteHalf, msg: &[u8]) -> std::io::Result<()> {
    let buf = control::length_prefixed(msg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&buf).await
}

async fn send(w: &mut OwnedWriteHalf, t: &mut Transport, msg: &AgentMsg) -> Result<(), End> {
    let sealed = t.seal(&control::encode(msg)?)?;
    Ok(write_message(w, &sealed).await?)
}

impl Client {
    pub fn new(
        cfg: ClientConfig,
        key: PrivateKey,
        events: mpsc::Sender<ControllerEvent>,
        upstream: mpsc::Receiver<Upstream>,
    ) -> Self {
        Self {
            cfg,
            key,
            events,
            upstream,
            last_report: None,
            last_uplink: None,
            last_clients: None,
            pending_failovers: VecDeque::new(),
            upstream_open: true,
            welcomed: false,
            session_welcomed: false,
        }
    }

    /// Runs until `shutdown` completes or the event receiver is dropped.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::default();
        loop {
            self.session_welcomed = false;
            let end = tokio::select! {
                () = &mut shutdown => return,
                end = self.session() => end,
            };
            let reason = match end {
                End::Stop => return,
                End::Retry(reason) => reason,
            };
            if self.session_welcomed {
                backoff.reset();
            }
            let retry_in = backoff.next_delay(OsRng.next_u64());
            tracing::info!(controller = %self.cfg.endpoint, "control session ended: {reason}; retrying in {retry_in:?}");
            if self
                .events
                .send(ControllerEvent::Disconnected { reason, retry_in })
                .await
                .is_err()
            {
                return;
            }
            // Keep taking what the run loop sends while we wait, so it is
            // never blocked and failovers are kept for the controller.
            let retry = tokio::time::sleep(retry_in);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = &mut retry => break,
                    item = self.upstream.recv(), if self.upstream_open => match item {
                        Some(item) => self.absorb(item),
                        None => self.upstream_open = false,
                    },
                }
            }
        }
    }

    /// Folds what the run loop sent into what is to be sent.
    fn absorb(&mut self, item: Upstream) {
        match item {
            Upstream::Report(report) => self.last_report = Some(report),
            Upstream::Failover(event, at) => {
                if self.pending_failovers.len() == PENDING_FAILOVERS {
                    self.pending_failovers.pop_front();
                }
                self.pending_failovers.push_back((event, at));
            }
            Upstream::Traffic(_) => {}
            Upstream::Uplink(up) => self.last_uplink = Some(up),
            Upstream::Clients(count) => self.last_clients = Some(count),
        }
    }

    /// What goes to the controller right after a Welcome: the latest
    /// uplink state first, then the client count and the latest report.
    fn after_welcome(&self) -> Vec<AgentMsg> {
        let uplink = self.last_uplink.map(|up| AgentMsg::Uplink { up });
        let clients = self.last_clients.map(|count| AgentMsg::Clients { count });
        let report = self.last_report.clone().map(AgentMsg::Report);
        uplink.into_iter().chain(clients).chain(report).collect()
    }

    /// The failovers waiting to be sent, each with its age now.
    fn take_failovers(&mut self) -> Option<AgentMsg> {
        if self.pending_failovers.is_empty() {
            return None;
        }
        let now = Instant::now();
        Some(AgentMsg::Events(
            self.pending_failovers
                .drain(..)
                .map(|(event, at)| LinkEvent {
                    age_ms: u32::try_from(now.saturating_duration_since(at).as_millis())
                        .unwrap_or(u32::MAX),
                    ..event
                })
                .collect(),
        ))
    }

    async fn emit(&self, event: ControllerEvent) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::Stop)
    }

    async fn session(&mut self) -> End {
        match self.session_inner().await {
            Ok(()) => End::Retry("closed".into()),
            Err(end) => end,
        }
    }

    async fn session_inner(&mut self) -> Result<(), End> {
        let (stream, mut transport) = timeout(CONNECT_TIMEOUT, async {
            let stream = TcpStream::connect(self.cfg.endpoint).await?;
            let _ = stream.set_nodelay(true);
            let (mut r, mut w) = stream.into_split();
            let (init, msg1) =
                control::Initiator::start(&self.key.bytes(), &self.cfg.controller_key)?;
            write_message(&mut w, &msg1).await?;
            let msg2 = read_message(&mut r).await?;
            let transport = init.finish(&msg2)?;
            Ok::<_, End>(((r, w), transport))
        })
        .await
        .map_err(|_| End::Retry("connect or handshake timed out".into()))??;
        let (mut r, mut w) = stream;
        let hello = AgentMsg::Hello(Hello {
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
        });
        send(&mut w, &mut transport, &hello).await?;

        let (in_tx, mut in_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(16);
        let reader = tokio::spawn(async move {
            loop {
                let msg = read_message(&mut r).await;
                let stop = msg.is_err();
                if in_tx.send(msg).await.is_err() || stop {
                    return;
                }
            }
        });
        let result = self.serve(&mut w, &mut transport, &mut in_rx).await;
        reader.abort();
        result
    }

    async fn serve(
        &mut self,
        w: &mut OwnedWriteHalf,
        t: &mut Transport,
        in_rx: &mut mpsc::Receiver<std::io::Result<Vec<u8>>>,
    ) -> Result<(), End> {
        let mut ping = tokio::time::interval(KEEPALIVE);
        ping.tick().await;
        let mut ping_seq = 0u64;
        let mut links_buf: Vec<LinkAssignment> = Vec::new();
        let mut routes_buf: Vec<Route> = Vec::new();
        loop {
            tokio::select! {
                got = timeout(IDLE_TIMEOUT, in_rx.recv()) => {
                    let sealed = match got {
                        Ok(Some(Ok(m))) => m,
                        Ok(Some(Err(e))) => return Err(End::Retry(format!("connection lost: {e}"))),
                        Ok(None) => return Err(End::Retry("connection lost".into())),
                        Err(_) => return Err(End::Retry("controller silent; idle timeout".into())),
                    };
                    let frame = t.open(&sealed)?;
                    let msg: ControllerMsg = control::decode(&frame)
                        .map_err(|e| End::Retry(format!("bad frame from controller: {e}")))?;
                    match msg {
                        ControllerMsg::Welcome(welcome) => {
                            tracing::info!(node_id = %welcome.node_id, addresses = ?welcome.addresses, "welcomed by the controller");
                            self.welcomed = true;
                            self.session_welcomed = true;
                            self.emit(ControllerEvent::Welcome(welcome)).await?;
                            for msg in self.after_welcome() {
                                send(w, t, &msg).await?;
                            }
                            if let Some(events) = self.take_failovers() {
                                send(w, t, &events).await?;
                            }
                        }
                        ControllerMsg::Pending { node_id } => {
                            tracing::info!(%node_id, "waiting for the operator's approval");
                            self.emit(ControllerEvent::Pending { node_id }).await?;
                            return Err(End::Retry("pending approval".into()));
                        }
                        ControllerMsg::Links { links, last } => {
                            links_buf.extend(links);
                            if last {
                                self.emit(ControllerEvent::Links(std::mem::take(&mut links_buf))).await?;
                            }
                        }
                        ControllerMsg::Routes { routes, last } => {
                            routes_buf.extend(routes);
                            if last {
                                self.emit(ControllerEvent::Routes(std::mem::take(&mut routes_buf))).await?;
                            }
                        }
                        ControllerMsg::LinksDelta(c) => self.emit(ControllerEvent::LinksDelta(c)).await?,
                        ControllerMsg::RoutesDelta(c) => self.emit(ControllerEvent::RoutesDelta(c)).await?,
                        ControllerMsg::Error(err) => {
                            tracing::warn!(code = ?err.code, "controller refused: {}", err.message);
                            let reason = err.to_string();
                            self.emit(ControllerEvent::Refused(err)).await?;
                            return Err(End::Retry(reason));
                        }
                        ControllerMsg::Ping(n) => send(w, t, &AgentMsg::Pong(n)).await?,
                        ControllerMsg::Pong(_) => {}
                    }
                }
                item = self.upstream.recv(), if self.upstream_open => {
                    // A closed channel just means nobody reports.
                    let Some(item) = item else {
                        self.upstream_open = false;
                        continue;
                    };
                    // What to send now, if the session is welcomed.
                    let now_msg = match &item {
                        Upstream::Report(report) => Some(AgentMsg::Report(report.clone())),
                        Upstream::Traffic(counters) => Some(AgentMsg::Traffic(counters.clone())),
                        Upstream::Uplink(up) => Some(AgentMsg::Uplink { up: *up }),
                        Upstream::Clients(count) => Some(AgentMsg::Clients { count: *count }),
                        Upstream::Failover(..) => None,
                    };
                    self.absorb(item);
                    if !self.session_welcomed {
                        continue;
                    }
                    if let Some(msg) = now_msg {
                        send(w, t, &msg).await?;
                    }
                    if let Some(events) = self.take_failovers() {
                        send(w, t, &events).await?;
                    }
                }
                _ = ping.tick() => {
                    ping_seq += 1;
                    send(w, t, &AgentMsg::Ping(ping_seq)).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use freimesh_proto::api::DownCause;

    use super::*;

    fn client() -> Client {
        let (events, _) = mpsc::channel(1);
        let (_, upstream) = mpsc::channel(1);
        let cfg = ClientConfig {
            endpoint: "127.0.0.1:7700".parse().expect("addr"),
            controller_key: PublicKeyBytes([1; 32]),
            join_token: None,
            hostname: "t".into(),
            endpoints: Vec::new(),
            prefixes: Vec::new(),
            want_addresses: Vec::new(),
            roles: Default::default(),
        };
        Client::new(cfg, PrivateKey::generate(), events, upstream)
    }

    fn failover(peer: u8) -> LinkEvent {
        LinkEvent {
            peer: PublicKeyBytes([peer; 32]),
            cause: DownCause::Silence,
            detection_ms: 150,
            switch_us: 20,
            rerouted: 3,
            lost: 0,
            age_ms: 0,
        }
    }

    #[test]
    fn failovers_wait_for_the_controller_with_their_age_and_a_bound() {
        let mut client = client();
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(2))
            .expect("clock past 2 s");
        let overflow = 10;
        for i in 0..PENDING_FAILOVERS + overflow {
            let peer = u8::try_from(i % 256).expect("fits");
            client.absorb(Upstream::Failover(failover(peer), long_ago));
        }
        client.absorb(Upstream::Traffic(Vec::new()));
        let Some(AgentMsg::Events(events)) = client.take_failovers() else {
            panic!("pending failovers are sent as one Events frame");
        };
        assert_eq!(events.len(), PENDING_FAILOVERS, "bounded");
        // The oldest were dropped first.
        assert_eq!(events[0].peer, PublicKeyBytes([10; 32]));
        assert!(
            events.iter().all(|e| e.age_ms >= 2_000),
            "age counts the wait"
        );
        assert_eq!(client.take_failovers(), None, "sent once");
    }

    #[test]
    fn the_newest_report_is_kept_for_the_next_session() {
        let mut client = client();
        client.absorb(Upstream::Report(Report::default()));
        let newer = Report {
            links: Vec::new(),
            candidates: vec![control::Candidate {
                peer: PublicKeyBytes([2; 32]),
                endpoint: None,
            }],
        };
        client.absorb(Upstream::Report(newer.clone()));
        assert_eq!(client.last_report, Some(newer));
    }

    #[test]
    fn uplink_and_clients_keep_their_latest_value_and_uplink_goes_first() {
        let mut client = client();
        assert!(client.after_welcome().is_empty(), "nothing to say yet");
        client.absorb(Upstream::Report(Report::default()));
        client.absorb(Upstream::Clients(4));
        client.absorb(Upstream::Uplink(false));
        client.absorb(Upstream::Clients(7));
        client.absorb(Upstream::Uplink(true));
        client.absorb(Upstream::Uplink(false));
        assert_eq!(
            client.after_welcome(),
            vec![
                AgentMsg::Uplink { up: false },
                AgentMsg::Clients { count: 7 },
                AgentMsg::Report(Report::default()),
            ]
        );
    }
}
