//! The host side of carried TCP connections: forward listeners, and one task
//! per connection that moves bytes between a host `TcpStream` and the stack
//! task.
//!
//! The stack task and a connection task share two bounded channels and one
//! abort signal (a [`HostLink`] on the stack side):
//!
//! * host → mesh: [`FromHost::Data`] chunks, then [`FromHost::Eof`] when the
//!   host half-closes. The channel closing *without* `Eof` means the host
//!   side failed; the stack then resets the mesh side.
//! * mesh → host: chunks; the stack drops its sender once the mesh peer has
//!   closed and everything was handed over, and the task then shuts down the
//!   host socket's write half (half-close). A closed receiver tells the stack
//!   the task has failed.
//! * abort: the mesh side failed (reset, timeout); the task resets the host
//!   connection (`SO_LINGER` 0) and ends.
//!
//! The task notifies the stack's [`Notify`](tokio::sync::Notify) whenever it
//! has queued a chunk, taken one, or ended, because the stack task sleeps
//! until something happens.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::stack::{Command, Shared};

/// Largest chunk moved through the channels in one message.
pub(super) const CHUNK: usize = 16 * 1024;

/// Chunks in flight per direction: 4 × 16 KiB, as much again as one TCP
/// buffer, so the channel never is the bottleneck but memory stays bounded.
const CHANNEL_CHUNKS: usize = 4;

/// How long an exposed port waits for the host target to accept. A local
/// service either answers at once or is down; 10 s covers a busy host.
const HOST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (typically EMFILE), so a forward listener
/// does not spin while the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(super) enum FromHost {
    Data(Vec<u8>),
    Eof,
}

/// Where the host connection comes from.
#[derive(Debug)]
pub(super) enum HostOrigin {
    /// Accepted by a forward listener.
    Accepted(TcpStream),
    /// To be opened to an exposed port's target.
    Connect(SocketAddr),
}

/// The stack's ends of a connection task's channels.
#[derive(Debug)]
pub(super) struct HostLink {
    pub(super) from_host: mpsc::Receiver<FromHost>,
    pub(super) to_host: mpsc::Sender<Vec<u8>>,
    pub(super) abort: oneshot::Sender<()>,
    /// For [`HostOrigin::Connect`]: send once the mesh handshake completed,
    /// so that stray or spoofed SYNs never reach the host target.
    pub(super) go: Option<oneshot::Sender<()>>,
}

impl HostLink {
    /// Channels with nobody on the host side: the connection fails at its
    /// first service and the mesh side is reset. Used to refuse a connection.
    pub(super) fn refused() -> Self {
        Self::channels().0
    }

    fn channels() -> (Self, HostEnds) {
        let (from_host_tx, from_host) = mpsc::channel(CHANNEL_CHUNKS);
        let (to_host, to_host_rx) = mpsc::channel(CHANNEL_CHUNKS);
        let (abort, abort_rx) = oneshot::channel();
        let (go, go_rx) = oneshot::channel();
        let link = Self {
            from_host,
            to_host,
            abort,
            go: Some(go),
        };
        let ends = HostEnds {
            from_host: from_host_tx,
            to_host: to_host_rx,
            abort: abort_rx,
            go: go_rx,
        };
        (link, ends)
    }
}

/// The connection task's ends of the same channels.
struct HostEnds {
    from_host: mpsc::Sender<FromHost>,
    to_host: mpsc::Receiver<Vec<u8>>,
    abort: oneshot::Receiver<()>,
    go: oneshot::Receiver<()>,
}

/// Spawns the task for one host connection and returns the stack's ends.
pub(super) fn spawn_host(origin: HostOrigin, shared: Arc<Shared>) -> HostLink {
    let (mut link, ends) = HostLink::channels();
    if matches!(origin, HostOrigin::Accepted(_)) {
        link.go = None;
    }
    tokio::spawn(host_task(origin, ends, shared));
    link
}

/// Wakes the stack task when the connection task ends, however it ends.
struct WakeOnDrop(Arc<Shared>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.wake.notify_one();
    }
}

async fn host_task(origin: HostOrigin, ends: HostEnds, shared: Arc<Shared>) {
    let HostEnds {
        from_host,
        to_host,
        abort,
        go,
    } = ends;
    let _wake = WakeOnDrop(Arc::clone(&shared));
    // A dropped abort sender means the stack removed a cleanly finished
    // connection: only an explicit send aborts.
    let aborted = async {
        if abort.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(aborted);

    let mut stream = match origin {
        HostOrigin::Accepted(stream) => stream,
        HostOrigin::Connect(target) => {
            tokio::select! {
                () = &mut aborted => return,
                go = go => if go.is_err() {
                    return; // the handshake failed: the connection is gone
                },
            }
            let connect = tokio::time::timeout(HOST_CONNECT_TIMEOUT, TcpStream::connect(target));
            tokio::select! {
                () = &mut aborted => return,
                connected = connect => match connected {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%target, %error, "userspace expose: host connect failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%target, "userspace expose: host connect timed out");
                        return;
                    }
                },
            }
        }
    };
    // Chunks arrive already coalesced; Nagle would only add latency.
    let _ = stream.set_nodelay(true);

    let outcome = {
        let (read, write) = stream.split();
        let io = async {
            tokio::try_join!(
                upstream(read, &from_host, &shared),
                downstream(write, to_host, &shared)
            )
        };
        tokio::select! {
            () = &mut aborted => Err(io::Error::other("mesh side failed")),
            done = io => done.map(|_| ()),
        }
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, "userspace connection reset on the host side");
        // Reset rather than close, so the host application sees the failure.
        let _ = stream.set_zero_linger();
    }
}

/// Host → mesh. Returns after queueing `Eof`; fails if the host read fails or
/// the stack is gone.
async fn upstream(
    mut read: ReadHalf<'_>,
    from_host: &mpsc::Sender<FromHost>,
    shared: &Shared,
) -> io::Result<()> {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = tokio::select! {
            n = read.read(&mut buf) => n?,
            () = from_host.closed() => return Err(io::Error::other("userspace stack stopped")),
        };
        let message = match buf.get(..n) {
            Some(data) if n > 0 => FromHost::Data(data.to_vec()),
            _ => FromHost::Eof,
        };
        let eof = matches!(message, FromHost::Eof);
        if from_host.send(message).await.is_err() {
            return Err(io::Error::other("userspace stack stopped"));
        }
        shared.wake.notify_one();
        if eof {
            return Ok(());
        }
    }
}

/// Mesh → host. Ends with a half-close once the stack drops its sender.
///
/// While idle it also watches for the host resetting the connection: after
/// the host has half-closed, nobody reads, and a reset (say, the host app
/// closed with unread data) would otherwise go unnoticed until the mesh sends
/// again.
async fn downstream(
    mut write: WriteHalf<'_>,
    mut to_host: mpsc::Receiver<Vec<u8>>,
    shared: &Shared,
) -> io::Result<()> {
    loop {
        let chunk = tokio::select! {
            chunk = to_host.recv() => chunk,
            ready = write.ready(Interest::ERROR) => {
                ready?;
                return Err(write.as_ref().take_error()?.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::ConnectionReset, "host connection failed")
                }));
            }
        };
        let Some(chunk) = chunk else {
            return write.shutdown().await;
        };
        // Room in the channel again: the stack may move more data now.
        shared.wake.notify_one();
        write.write_all(&chunk).await?;
    }
}

/// Accepts host connections for one forward and hands them to the stack.
/// Ends when the stack task has stopped.
pub(super) async fn forward_listener(
    listener: TcpListener,
    local: SocketAddr,
    target: SocketAddr,
    commands: mpsc::Sender<Command>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = commands.closed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::debug!(listen = %local, %peer, %target, "userspace forward accepted");
                // Waits while the stack is busy: the host's accept backlog
                // then fills instead of our memory.
                if commands
                    .send(Command::Forward { stream, target })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(listen = %local, %error, "userspace forward: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
