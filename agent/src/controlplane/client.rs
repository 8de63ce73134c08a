//! The control-plane client's I/O shell: connects over TCP, runs the Noise
//! IK handshake, then moves frames between the socket and the [`Session`]
//! core until the connection fails; then backs off and starts again. Every
//! decision (Hello, pings, idle timeout, what waits for the controller,
//! which path to dial) lives in the cores.
//!
//! With [`Client::with_relay_paths`] it also dials through the mesh (the
//! control exits and neighbours' relays it is fed) and says where its
//! welcomed session runs, for this node's own relay
//! ([`crate::relay`]).

use std::future::Future;
use std::time::Duration;

use freimesh_proto::control::{self, AgentMsg, ControllerMsg, Transport};
use rand_core::{OsRng, RngCore as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use super::{
    ClientConfig, ControllerEvent, DialPath, Dialer, IDLE_TIMEOUT, Keepalive, PathKind, Session,
    Upstream,
};
use crate::clock::now;
use crate::identity::PrivateKey;
use crate::relay;

/// Connecting and the handshake must finish within this; a controller that
/// accepts but never answers is as good as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The TCP connect alone must finish within this: a path that drops SYNs
/// (a routing fault, a dead exit) must not hold up the next path for the
/// whole [`CONNECT_TIMEOUT`]; two SYN retransmits fit.
pub const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// After the relay paths change, the next round starts this long into the
/// backoff wait at the latest (the backoff's minimum).
const NEW_PATH_RETRY: Duration = super::backoff::BACKOFF_MIN;
/// Controller messages read ahead of the session: the reader task decodes
/// while the session applies, and a controller that sends faster than the
/// agent applies waits on TCP (each message is bounded by the protocol's
/// frame size, so this bounds the memory held too).
const READ_AHEAD: usize = 16;

/// The control-plane client; see the module docs.
#[derive(Debug)]
pub struct Client {
    session: Session,
    key: PrivateKey,
    events: mpsc::Sender<ControllerEvent>,
    upstream: mpsc::Receiver<Upstream>,
    upstream_open: bool,
    dialer: Dialer,
    relay_paths: Option<RelayPaths>,
}

/// The client's side of control through the mesh: what it dials besides
/// the configured endpoints, and where it tells this node's relay its
/// session runs.
#[derive(Debug)]
pub struct RelayPaths {
    /// The control exits the controller named (kept in the state file).
    pub exits: watch::Receiver<Vec<std::net::SocketAddr>>,
    /// Neighbours' link-local relays heard on the mesh interfaces.
    pub neighbours: watch::Receiver<Vec<std::net::SocketAddr>>,
    /// Set to the welcomed session's path, `None` between sessions.
    pub session_path: watch::Sender<Option<relay::Upstream>>,
    /// Bumped when the engine lost its route to the session's exit (the
    /// controller's routes took it away): the session cannot carry
    /// anything more, and waiting for its idle timeout would leave the
    /// router without routes for 90 s.
    pub path_lost: watch::Receiver<u64>,
}

impl RelayPaths {
    /// Where this node's relay sends what it relays, for a session over
    /// `path`: a configured endpoint is the controller itself; anything
    /// else is another relay.
    pub fn upstream_of(path: DialPath) -> relay::Upstream {
        match path.kind {
            PathKind::Underlay => relay::Upstream::Controller(path.addr),
            PathKind::Exit | PathKind::Neighbour => relay::Upstream::Relay(path.addr),
        }
    }
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

/// Completes when the relay paths change; never without them (or once
/// their senders are gone).
async fn relay_paths_changed(paths: Option<&mut RelayPaths>) {
    let Some(paths) = paths else {
        return std::future::pending().await;
    };
    let changed = tokio::select! {
        changed = paths.exits.changed() => changed,
        changed = paths.neighbours.changed() => changed,
    };
    if changed.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What the relay watches say during a session.
enum RelayWake {
    /// New exits or neighbours' relays.
    PathsChanged,
    /// The engine lost the route to the session's path.
    PathLost,
}

/// Completes with the next [`RelayWake`]; never without relay paths (or
/// once their senders are gone).
async fn relay_wake(paths: Option<&mut RelayPaths>) -> RelayWake {
    let Some(paths) = paths else {
        return std::future::pending().await;
    };
    let (changed, wake) = tokio::select! {
        changed = paths.exits.changed() => (changed, RelayWake::PathsChanged),
        changed = paths.neighbours.changed() => (changed, RelayWake::PathsChanged),
        changed = paths.path_lost.changed() => (changed, RelayWake::PathLost),
    };
    if changed.is_err() {
        std::future::pending::<()>().await;
    }
    wake
}

/// Completes at `deadline`; never without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Client {
    pub fn new(
        cfg: ClientConfig,
        key: PrivateKey,
        events: mpsc::Sender<ControllerEvent>,
        upstream: mpsc::Receiver<Upstream>,
    ) -> Self {
        Self {
            dialer: Dialer::new(cfg.controller_endpoints.clone()),
            session: Session::new(cfg),
            key,
            events,
            upstream,
            upstream_open: true,
            relay_paths: None,
        }
    }

    /// Dials through the mesh as well (see [`RelayPaths`]).
    #[must_use]
    pub fn with_relay_paths(mut self, paths: RelayPaths) -> Self {
        self.relay_paths = Some(paths);
        self
    }

    /// Takes the newest relay paths into the dialer.
    fn refresh_paths(&mut self) {
        if let Some(paths) = &mut self.relay_paths {
            let exits = paths.exits.borrow_and_update().clone();
            let neighbours = paths.neighbours.borrow_and_update().clone();
            self.dialer.handle_relay_paths(&exits, &neighbours);
        }
    }

    fn publish_session_path(&self, path: Option<DialPath>) {
        if let Some(paths) = &self.relay_paths {
            let upstream = path.map(RelayPaths::upstream_of);
            paths.session_path.send_if_modified(|current| {
                let changed = *current != upstream;
                *current = upstream;
                changed
            });
        }
    }

    /// Runs until `shutdown` completes or the event receiver is dropped.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.refresh_paths();
            let end = tokio::select! {
                () = &mut shutdown => return,
                end = self.session() => end,
            };
            self.publish_session_path(None);
            let reason = match end {
                End::Stop => return,
                End::Retry(reason) => reason,
            };
            let controller = self.dialer.endpoint();
            let retry_in = self
                .dialer
                .handle_session_end(self.session.session_welcomed(), OsRng.next_u64());
            let shown = |e: Option<std::net::SocketAddr>| {
                e.map_or_else(|| "none".to_owned(), |e| e.to_string())
            };
            tracing::info!(controller = %shown(controller), next = %shown(self.dialer.endpoint()), "control session ended: {reason}; retrying in {retry_in:?}");
            self.session.handle_disconnected(reason, retry_in);
            if self.forward_events().await.is_err() {
                return;
            }
            // Keep taking what the run loop sends while we wait, so it is
            // never blocked and failovers are kept for the controller.
            let waiting_since = tokio::time::Instant::now();
            let retry = tokio::time::sleep(retry_in);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = &mut retry => break,
                    item = self.upstream.recv(), if self.upstream_open => match item {
                        Some(item) => self.session.handle_upstream(item, now()),
                        None => self.upstream_open = false,
                    },
                    // A new way to the controller (a neighbour heard, an
                    // exit named) is worth trying soon, not after the
                    // backoff that the old paths earned; but no sooner
                    // than NEW_PATH_RETRY into the wait, so beacons from
                    // ever new addresses cannot make the client spin.
                    () = relay_paths_changed(self.relay_paths.as_mut()) => {
                        let soon = waiting_since + NEW_PATH_RETRY;
                        if soon < retry.deadline() {
                            retry.as_mut().reset(soon);
                        }
                    }
                }
            }
        }
    }

    /// Hands what the core heard to the run loop.
    async fn forward_events(&mut self) -> Result<(), End> {
        while let Some(event) = self.session.poll_event() {
            self.events.send(event).await.map_err(|_| End::Stop)?;
        }
        Ok(())
    }

    /// Hands the core's events on, then sends its frames.
    async fn flush(&mut self, w: &mut OwnedWriteHalf, t: &mut Transport) -> Result<(), End> {
        self.forward_events().await?;
        while let Some(msg) = self.session.poll_report() {
            send(w, t, &msg).await?;
        }
        Ok(())
    }

    async fn session(&mut self) -> End {
        match self.session_inner().await {
            Ok(()) => End::Retry("closed".into()),
            Err(end) => end,
        }
    }

    async fn session_inner(&mut self) -> Result<(), End> {
        let path = self
            .dialer
            .path()
            .ok_or_else(|| End::Retry("no path to the controller known yet".into()))?;
        let endpoint = path.addr;
        let controller_key = self.session.config().controller_key;
        let (stream, mut transport) = timeout(CONNECT_TIMEOUT, async {
            let stream = timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(endpoint))
                .await
                .map_err(|_| End::Retry(format!("connecting to {endpoint} timed out")))??;
            let _ = stream.set_nodelay(true);
            let (mut r, mut w) = stream.into_split();
            let (init, msg1) = control::Initiator::start(&self.key.bytes(), &controller_key)?;
            write_message(&mut w, &msg1).await?;
            let msg2 = read_message(&mut r).await?;
            let transport = init.finish(&msg2)?;
            Ok::<_, End>(((r, w), transport))
        })
        .await
        .map_err(|_| End::Retry("connect or handshake timed out".into()))??;
        let (mut r, mut w) = stream;
        let keepalive = match path.kind {
            PathKind::Underlay => Keepalive::DIRECT,
            PathKind::Exit | PathKind::Neighbour => Keepalive::THROUGH_MESH,
        };
        self.session.handle_connected_via(now(), keepalive);
        self.flush(&mut w, &mut transport).await?;

        let (in_tx, mut in_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(READ_AHEAD);
        let reader = tokio::spawn(async move {
            loop {
                let msg = read_message(&mut r).await;
                let stop = msg.is_err();
                if in_tx.send(msg).await.is_err() || stop {
                    return;
                }
            }
        });
        let result = self.serve(&mut w, &mut transport, &mut in_rx, path).await;
        reader.abort();
        result
    }

    async fn serve(
        &mut self,
        w: &mut OwnedWriteHalf,
        t: &mut Transport,
        in_rx: &mut mpsc::Receiver<std::io::Result<Vec<u8>>>,
        path: DialPath,
    ) -> Result<(), End> {
        let mut published = false;
        if let Some(paths) = &mut self.relay_paths {
            // Only a loss during this session counts.
            paths.path_lost.borrow_and_update();
        }
        loop {
            if !published && self.session.session_welcomed() {
                published = true;
                tracing::info!(path = %path.addr, kind = ?path.kind, "control session up");
                self.publish_session_path(Some(path));
                self.dialer.handle_welcomed(path, now());
            }
            let wake = self.session.poll_timeout().map_or_else(
                || tokio::time::Instant::now() + IDLE_TIMEOUT,
                tokio::time::Instant::from_std,
            );
            let leave = self.dialer.poll_leave().map(tokio::time::Instant::from_std);
            let ended = tokio::select! {
                got = in_rx.recv() => {
                    let sealed = match got {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => return Err(End::Retry(format!("connection lost: {e}"))),
                        None => return Err(End::Retry("connection lost".into())),
                    };
                    let frame = t.open(&sealed)?;
                    let msg: ControllerMsg = control::decode(&frame)
                        .map_err(|e| End::Retry(format!("bad frame from controller: {e}")))?;
                    self.session.handle_message(msg, now())
                }
                item = self.upstream.recv(), if self.upstream_open => {
                    // A closed channel just means nobody reports.
                    match item {
                        Some(item) => self.session.handle_upstream(item, now()),
                        None => self.upstream_open = false,
                    }
                    Ok(())
                }
                () = tokio::time::sleep_until(wake) => self.session.handle_tick(now()),
                // The controller names exits after the Welcome; the
                // dialer needs them to know when to leave a neighbour.
                wake = relay_wake(self.relay_paths.as_mut()) => match wake {
                    RelayWake::PathsChanged => {
                        self.refresh_paths();
                        Ok(())
                    }
                    RelayWake::PathLost => {
                        self.dialer.handle_path_lost();
                        tracing::info!(path = %path.addr, "no route to the control path any more; dialling the neighbours' relays");
                        return Err(End::Retry("no route to the control path".into()));
                    }
                },
                () = sleep_until_some(leave) => {
                    self.dialer.handle_leave();
                    tracing::info!(path = %path.addr, "leaving the neighbour's link-local relay for a control exit");
                    return Err(End::Retry("moving to a control exit".into()));
                }
            };
            self.flush(w, t).await?;
            ended.map_err(|e| End::Retry(e.to_string()))?;
        }
    }
}
