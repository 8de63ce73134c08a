//! One connection: Noise IK responder, the Hello check, then frames both
//! ways. Pings are answered here; everything else goes to the hub.

use std::net::SocketAddr;

use freimesh_proto::control::{self, AgentMsg, ControllerMsg, ErrorCode, ErrorMsg, Transport};
use freimesh_proto::relay::{PREAMBLE_LEN, RelayPreamble};
use freimesh_proto::{PROTOCOL_VERSION, PublicKeyBytes};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::admission::Ticket;
use super::limits::Limits;
use super::queue::{OverflowSignal, out_queue};
use super::shell::ToHub;
use crate::core::Outgoing;

/// Reads one length-prefixed message.
pub async fn read_message(r: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = r.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Reads what a connection starts with: an optional relay preamble
/// (`freimesh_proto::relay`), then the first length-prefixed message.
async fn read_first(r: &mut OwnedReadHalf) -> std::io::Result<(Option<PublicKeyBytes>, Vec<u8>)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    let mut relay = None;
    if RelayPreamble::starts(head) {
        let mut preamble = [0u8; PREAMBLE_LEN];
        preamble[..2].copy_from_slice(&head);
        r.read_exact(&mut preamble[2..]).await?;
        let decoded = RelayPreamble::decode(&preamble).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed relay preamble")
        })?;
        relay = Some(decoded.relay_key);
        r.read_exact(&mut head).await?;
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(head))];
    r.read_exact(&mut buf).await?;
    Ok((relay, buf))
}

/// Writes one length-prefixed message.
pub async fn write_message(w: &mut OwnedWriteHalf, msg: &[u8]) -> std::io::Result<()> {
    let buf = control::length_prefixed(msg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&buf).await
}

/// The write side of an authenticated session: every transport message
/// written within the write deadline, so an agent that stops reading cannot
/// hold the connection task (and its queue) forever.
/// Once the session has a queue, a write also gives up when the hub found
/// that queue full: a write blocked on an agent that stopped reading must not
/// keep the session alive past a full queue.
struct Writer {
    w: OwnedWriteHalf,
    transport: Transport,
    deadline: std::time::Duration,
    overflow: Option<OverflowSignal>,
}

/// Why a session's write did not happen.
#[derive(Debug)]
enum SendError {
    /// The hub found the session's queue full.
    QueueFull,
    Failed(String),
}

impl SendError {
    /// The log line of a session that ends on this error.
    fn log(&self, peer: SocketAddr, key: &PublicKeyBytes, queue: usize) {
        match self {
            Self::QueueFull => {
                tracing::warn!(%peer, %key, queue, "the agent fell too far behind (outgoing queue full); closing the session")
            }
            Self::Failed(e) => tracing::info!(%peer, %key, "send failed: {e}"),
        }
    }
}

impl Writer {
    async fn send(&mut self, msg: &ControllerMsg) -> Result<(), SendError> {
        let Self {
            w,
            transport,
            deadline,
            overflow,
        } = self;
        let failed = |e: &dyn std::fmt::Display| SendError::Failed(e.to_string());
        for frame in control::encode_controller_frames(msg).map_err(|e| failed(&e))? {
            let sealed = transport.seal(&frame).map_err(|e| failed(&e))?;
            let write = timeout(*deadline, write_message(w, &sealed));
            let written = match overflow {
                Some(overflow) => tokio::select! {
                    biased;
                    () = overflow.overflowed() => return Err(SendError::QueueFull),
                    written = write => written,
                },
                None => write.await,
            };
            match written {
                Ok(result) => result.map_err(|e| failed(&e))?,
                Err(_) => {
                    return Err(SendError::Failed(format!(
                        "the agent read nothing for {deadline:?} (write deadline)"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        let _ = timeout(self.deadline, self.w.shutdown()).await;
    }

    async fn send_error(
        &mut self,
        peer: SocketAddr,
        key: &PublicKeyBytes,
        code: ErrorCode,
        message: String,
    ) {
        tracing::warn!(%peer, %key, ?code, "closing: {message}");
        let _ = self
            .send(&ControllerMsg::Error(ErrorMsg { code, message }))
            .await;
        self.shutdown().await;
    }
}

/// Serves one TCP connection until it closes. `ticket` holds its place
/// among the unauthenticated connections until the peer has proven its key
/// and sent its Hello.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    private: [u8; 32],
    session: u64,
    hub: mpsc::Sender<ToHub>,
    limits: Limits,
    ticket: Ticket,
) {
    let _ = stream.set_nodelay(true);
    if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(limits.send_buffer_bytes) {
        tracing::debug!(%peer, "setting the send buffer: {e}");
    }
    let (mut r, mut w) = stream.into_split();
    // Message 1 comes at once or not at all; the rest of the handshake and
    // the Hello get the longer bound.
    let handshake_deadline = Instant::now() + limits.handshake_timeout;
    // Debug level: in a flood these happen by the thousand.
    let mut ticket = ticket;
    let first = timeout(limits.first_message_wait, read_first(&mut r)).await;
    let (relay, msg1) = match first {
        Ok(Ok((relay, m))) => (relay, m),
        Ok(Err(e)) => return tracing::debug!(%peer, "closed before the handshake: {e}"),
        Err(_) => {
            return tracing::debug!(%peer, wait = ?limits.first_message_wait, "no handshake message in time; closed");
        }
    };
    if let Some(relay) = relay
        && let Err(refusal) = ticket.relayed(relay)
    {
        return tracing::debug!(%peer, %relay, ?refusal, "too many relayed connections in the handshake; closed");
    }
    let gate = ticket.gate();
    let start = tokio::time::timeout_at(handshake_deadline, async {
        let (transport, key, msg2) =
            control::respond(&private, &msg1).map_err(|e| e.to_string())?;
        write_message(&mut w, &msg2)
            .await
            .map_err(|e| e.to_string())?;
        let sealed = read_message(&mut r).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((transport, key, sealed))
    })
    .await;
    let (mut transport, key, sealed) = match start {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::info!(%peer, "handshake failed: {e}"),
        Err(_) => return tracing::info!(%peer, "handshake timed out"),
    };
    let first = match transport.open(&sealed) {
        Ok(f) => f,
        Err(e) => return tracing::warn!(%peer, %key, "undecryptable first frame: {e}"),
    };
    let mut out = Writer {
        w,
        transport,
        deadline: limits.write_deadline,
        overflow: None,
    };
    let hello = match control::decode::<AgentMsg>(&first) {
        Ok(AgentMsg::Hello(h)) if h.version == PROTOCOL_VERSION => h,
        Ok(AgentMsg::Hello(h)) => {
            let msg = format!(
                "protocol version {} is not supported; this controller speaks {PROTOCOL_VERSION}",
                h.version
            );
            return out
                .send_error(peer, &key, ErrorCode::UnsupportedVersion, msg)
                .await;
        }
        Ok(_) => {
            let msg = "the first frame must be Hello".to_owned();
            return out.send_error(peer, &key, ErrorCode::Malformed, msg).await;
        }
        Err(e) => {
            let (code, msg) = match control::hello_version(&first) {
                Some(v) if v != PROTOCOL_VERSION => (
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {v} is not supported; this controller speaks {PROTOCOL_VERSION}"
                    ),
                ),
                _ => (ErrorCode::Malformed, format!("first frame: {e}")),
            };
            return out.send_error(peer, &key, code, msg).await;
        }
    };
    // Authenticated, with a Hello: from here on the peer is an agent and
    // no longer counts against the handshake caps.
    ticket.release();
    // A direct session is what a later relay preamble naming this key is
    // checked against (admission.rs).
    let _direct = match (relay, gate) {
        (None, Some(gate)) => Some(gate.direct_session(key, peer.ip())),
        _ => None,
    };
    let (out_tx, out_rx) = out_queue(limits.out_queue_messages);
    let mut queued_frames = out_rx.frames;
    let overflow = out_rx.overflow;
    out.overflow = Some(overflow.clone());
    if hub
        .send(ToHub::Hello {
            session,
            peer,
            key,
            hello,
            relay,
            out: out_tx,
        })
        .await
        .is_err()
    {
        return;
    }
    // The reader runs apart because read_exact is not cancel-safe.
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
    // Only what the agent sends moves this deadline: our own writes (routes,
    // Pongs) say nothing about whether the agent is still there.
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            biased;
            () = overflow.overflowed() => {
                // No orderly shutdown: its FIN would queue behind what the
                // agent does not read. Dropping the socket closes it.
                SendError::QueueFull.log(peer, &key, limits.out_queue_messages);
                break;
            }
            () = &mut idle => {
                tracing::info!(%peer, %key, "idle timeout: nothing from the agent for {:?}", limits.idle_timeout);
                break;
            }
            queued = queued_frames.recv() => match queued {
                Some(Outgoing::Frame(msg)) => {
                    if let Err(e) = out.send(&msg).await {
                        e.log(peer, &key, limits.out_queue_messages);
                        break;
                    }
                }
                Some(Outgoing::Close) | None => {
                    out.shutdown().await;
                    break;
                }
            },
            got = in_rx.recv() => {
                let sealed = match got {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => { tracing::info!(%peer, %key, "connection closed: {e}"); break; }
                    None => break,
                };
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                let frame = match out.transport.open(&sealed) {
                    Ok(f) => f,
                    Err(e) => {
                        out.send_error(peer, &key, ErrorCode::Malformed, format!("undecryptable frame: {e}")).await;
                        break;
                    }
                };
                match control::decode::<AgentMsg>(&frame) {
                    Ok(AgentMsg::Ping(n)) => {
                        if let Err(e) = out.send(&ControllerMsg::Pong(n)).await {
                            e.log(peer, &key, limits.out_queue_messages);
                            break;
                        }
                    }
                    Ok(AgentMsg::Pong(_)) => {}
                    Ok(msg) => {
                        if hub.send(ToHub::Frame { session, msg }).await.is_err() { break; }
                    }
                    Err(e) => {
                        out.send_error(peer, &key, ErrorCode::Malformed, format!("frame: {e}")).await;
                        break;
                    }
                }
            }
        }
    }
    reader.abort();
    let _ = hub.send(ToHub::Gone { session }).await;
}
