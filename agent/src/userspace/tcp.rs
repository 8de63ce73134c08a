//! The stack side of carried TCP connections: a smoltcp socket joined to a
//! host connection task (see `host.rs`).
//!
//! [`Conn::service`] is called by the stack task after every poll of the
//! interface. It moves what it can without waiting, in both directions, and
//! says whether the connection is finished. Closing follows TCP: a FIN from
//! either side becomes a half-close on the other, and the connection is
//! removed once both directions are closed; a failure on either side (reset,
//! timeout, host error) resets the other.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Duration;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use super::host::{CHUNK, FromHost, HostLink};
use super::{UserspaceError, UserspaceSettings};

/// Per-direction buffer of each smoltcp TCP socket. 64 KiB keeps a full
/// window in flight on the mesh while the host side catches up; with
/// `MAX_CONNECTIONS` it bounds the stack's TCP memory at 32 MiB.
const TCP_BUFFER: usize = 64 * 1024;

/// Connections carried at once (forwards and exposes together). Each costs
/// two `TCP_BUFFER`s plus up to 128 KiB in the host channels: 256 of them
/// stay well inside a 128 MiB router.
pub(super) const MAX_CONNECTIONS: usize = 256;

/// A mesh peer that acknowledges nothing for this long is considered gone:
/// longer than any failover (a few seconds) plus TCP's own backoff.
const MESH_TIMEOUT: Duration = Duration::from_secs(60);

/// Keep-alive on idle connections, so `MESH_TIMEOUT` also catches a peer that
/// vanished while the connection was quiet.
const MESH_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// A fresh smoltcp TCP socket with our buffers and timers.
pub(super) fn new_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
    );
    socket.set_timeout(Some(MESH_TIMEOUT));
    socket.set_keep_alive(Some(MESH_KEEP_ALIVE));
    // Host reads arrive as chunks already; Nagle would only delay them.
    socket.set_nagle_enabled(false);
    // No delayed ACKs: the stack task takes in up to a batch of packets
    // before it transmits, which coalesces ACKs under load anyway; and an
    // immediate ACK of the peer's FIN lets TIME-WAIT sockets go at once.
    socket.set_ack_delay(None);
    socket
}

/// What the stack should do with a connection after servicing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    /// Remove the socket. `clean` is false if the host side must be reset.
    Remove {
        clean: bool,
    },
}

/// Host → mesh data not yet (fully) in the socket.
#[derive(Debug)]
enum Pending {
    Data { chunk: Vec<u8>, sent: usize },
    Eof,
}

#[derive(Debug)]
pub(super) struct Conn {
    socket: SocketHandle,
    /// The forward's ephemeral port, released on removal.
    local_port: Option<u16>,
    /// Where the connection goes (mesh target of a forward, host target of
    /// an expose), for logs.
    target: SocketAddr,
    from_host: mpsc::Receiver<FromHost>,
    /// `None` once the mesh peer half-closed and the host task was told so
    /// (by dropping the sender).
    to_host: Option<mpsc::Sender<Vec<u8>>>,
    abort: oneshot::Sender<()>,
    go: Option<oneshot::Sender<()>>,
    pending: Option<Pending>,
    /// The host half-closed and the socket was closed after it.
    upstream_done: bool,
    failed: bool,
    /// Seen in TIME-WAIT once: removed the next time, after the stack has
    /// let smoltcp transmit (the ACK of the peer's FIN).
    time_wait_seen: bool,
}

impl Conn {
    pub(super) fn new(
        socket: SocketHandle,
        local_port: Option<u16>,
        target: SocketAddr,
        link: HostLink,
    ) -> Self {
        Self {
            socket,
            local_port,
            target,
            from_host: link.from_host,
            to_host: Some(link.to_host),
            abort: link.abort,
            go: link.go,
            pending: None,
            upstream_done: false,
            failed: false,
            time_wait_seen: false,
        }
    }

    pub(super) fn socket(&self) -> SocketHandle {
        self.socket
    }

    pub(super) fn local_port(&self) -> Option<u16> {
        self.local_port
    }

    /// Tells the host task to reset its connection (if it still runs).
    pub(super) fn abort_host(self) {
        let _ = self.abort.send(());
    }

    /// Moves data both ways without waiting. Returns whether anything
    /// changed, and what to do with the connection.
    pub(super) fn service(&mut self, socket: &mut tcp::Socket<'_>) -> (bool, Verdict) {
        if socket.state() == State::Listen {
            // The handshake of an accepted connection was reset and smoltcp
            // made the socket listen again: there is nothing to carry.
            return (true, Verdict::Remove { clean: false });
        }
        let mut progress = false;
        if socket.may_send()
            && let Some(go) = self.go.take()
        {
            // Handshake done: the host task may connect to the target.
            let _ = go.send(());
            progress = true;
        }
        if !self.failed {
            progress |= self.downstream(socket);
        }
        if !self.failed && !self.upstream_done {
            progress |= self.upstream(socket);
        }
        let (changed, verdict) = self.verdict(socket);
        (progress || changed, verdict)
    }

    /// Mesh → host.
    fn downstream(&mut self, socket: &mut tcp::Socket<'_>) -> bool {
        let Some(to_host) = &self.to_host else {
            return false;
        };
        if to_host.is_closed() {
            return self.fail(socket, "host connection ended");
        }
        let mut progress = false;
        let mut host_gone = false;
        while socket.can_recv() {
            let permit = match to_host.try_reserve() {
                Ok(permit) => permit,
                // The host task notifies us once it has taken a chunk.
                Err(TrySendError::Full(())) => break,
                Err(TrySendError::Closed(())) => {
                    host_gone = true;
                    break;
                }
            };
            let received = socket.recv(|buf| {
                let n = buf.len().min(CHUNK);
                (n, buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default())
            });
            match received {
                Ok(chunk) if !chunk.is_empty() => {
                    permit.send(chunk);
                    progress = true;
                }
                _ => break,
            }
        }
        if host_gone {
            return self.fail(socket, "host connection ended");
        }
        let peer_closed = matches!(
            socket.state(),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        );
        if peer_closed && !socket.can_recv() {
            // Dropping the sender makes the host task shut down its write
            // half once the queued chunks are written.
            self.to_host = None;
            progress = true;
        }
        progress
    }

    /// Host → mesh.
    fn upstream(&mut self, socket: &mut tcp::Socket<'_>) -> bool {
        let mut progress = false;
        loop {
            if self.pending.is_none() {
                self.pending = match self.from_host.try_recv() {
                    Ok(FromHost::Data(chunk)) => Some(Pending::Data { chunk, sent: 0 }),
                    Ok(FromHost::Eof) => Some(Pending::Eof),
                    Err(TryRecvError::Empty) => return progress,
                    Err(TryRecvError::Disconnected) => {
                        return self.fail(socket, "host connection failed");
                    }
                };
            }
            // Before the handshake completes (or once it failed) data waits.
            if !socket.may_send() {
                return progress;
            }
            match &mut self.pending {
                Some(Pending::Data { chunk, sent }) => {
                    let rest = chunk.get(*sent..).unwrap_or_default();
                    match socket.send_slice(rest) {
                        Ok(n) => {
                            progress |= n > 0;
                            *sent += n;
                            if *sent < chunk.len() {
                                return progress; // socket buffer full
                            }
                            self.pending = None;
                        }
                        Err(_) => return progress,
                    }
                }
                Some(Pending::Eof) => {
                    // FIN goes out after the data already in the buffer.
                    socket.close();
                    self.pending = None;
                    self.upstream_done = true;
                    return true;
                }
                None => return progress,
            }
        }
    }

    fn fail(&mut self, socket: &mut tcp::Socket<'_>, why: &'static str) -> bool {
        tracing::debug!(target = %self.target, why, "userspace connection reset on the mesh side");
        socket.abort();
        self.failed = true;
        true
    }

    /// Whether the connection is finished; `true` if that needs another look
    /// after the stack has let smoltcp transmit.
    fn verdict(&mut self, socket: &tcp::Socket<'_>) -> (bool, Verdict) {
        let downstream_done = self.to_host.is_none();
        let clean = !self.failed && self.upstream_done && downstream_done;
        match socket.state() {
            // After an abort the socket keeps its endpoints until its RST has
            // gone out; remove it only then.
            State::Closed if socket.local_endpoint().is_some() => (false, Verdict::Keep),
            State::Closed => (false, Verdict::Remove { clean }),
            // Both FINs are exchanged; waiting out TIME-WAIT would only hold
            // 128 KiB of buffers per connection. Hand over the last bytes and
            // send the last ACK first.
            State::TimeWait if downstream_done && self.time_wait_seen => {
                (false, Verdict::Remove { clean })
            }
            State::TimeWait if downstream_done => {
                self.time_wait_seen = true;
                (true, Verdict::Keep)
            }
            _ => (false, Verdict::Keep),
        }
    }
}

/// An exposed port: the listening socket waiting for the next connection.
#[derive(Debug)]
pub(super) struct Expose {
    pub(super) port: u16,
    pub(super) target: SocketAddr,
    pub(super) listener: SocketHandle,
}

/// Listening sockets for the exposed ports.
pub(super) fn listen_exposes(
    settings: &UserspaceSettings,
    sockets: &mut SocketSet<'static>,
) -> Result<Vec<Expose>, UserspaceError> {
    let mut exposes: Vec<Expose> = Vec::with_capacity(settings.tcp_exposes.len());
    for expose in &settings.tcp_exposes {
        let bad = |reason| UserspaceError::Expose {
            port: expose.port,
            target: expose.target,
            reason,
        };
        if exposes.iter().any(|e| e.port == expose.port) {
            return Err(bad("port exposed twice"));
        }
        let mut socket = new_socket();
        socket
            .listen(expose.port)
            .map_err(|_| bad("smoltcp cannot listen on it (port 0?)"))?;
        exposes.push(Expose {
            port: expose.port,
            target: expose.target,
            listener: sockets.add(socket),
        });
    }
    Ok(exposes)
}

/// Local ports for connections the stack opens (IANA dynamic range).
const EPHEMERAL_PORTS: RangeInclusive<u16> = 49152..=65535;

/// Hands out local ports for forwarded connections, round robin from a
/// random start, skipping ports in use and exposed ports.
#[derive(Debug)]
pub(super) struct Ports {
    next: u16,
    in_use: BTreeSet<u16>,
}

impl Ports {
    pub(super) fn new(seed: u64) -> Self {
        let span = u64::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        let offset = u16::try_from(seed % span).unwrap_or(0);
        Self {
            next: EPHEMERAL_PORTS.start().saturating_add(offset),
            in_use: BTreeSet::new(),
        }
    }

    /// A free port; [`take`](Self::take) it once the socket is open.
    pub(super) fn allocate(&mut self, exposes: &[Expose]) -> Option<u16> {
        for _ in EPHEMERAL_PORTS {
            let port = self.next;
            self.next = match port.checked_add(1) {
                Some(next) if EPHEMERAL_PORTS.contains(&next) => next,
                _ => *EPHEMERAL_PORTS.start(),
            };
            let exposed = exposes.iter().any(|e| e.port == port);
            if !exposed && !self.in_use.contains(&port) {
                return Some(port);
            }
        }
        None
    }

    pub(super) fn take(&mut self, port: u16) {
        self.in_use.insert(port);
    }

    pub(super) fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }
}
