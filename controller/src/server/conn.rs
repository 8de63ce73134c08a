//! One connection: Noise IK responder, the Hello check, then frames both
//! ways. Pings are answered here; everything else goes to the hub.

use std::net::SocketAddr;

use freimesh_proto::control::{
    self, AgentMsg, ControllerMsg, ErrorCode, ErrorMsg, FrameError, Transport,
};
use freimesh_proto::{PROTOCOL_VERSION, PublicKeyBytes};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::hub::ToHub;
use super::{HANDSHAKE_TIMEOUT, IDLE_TIMEOUT};
use crate::core::Outgoing;

/// Reads one length-prefixed message.
pub async fn read_message(r: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = r.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one length-prefixed message.
pub async fn write_message(w: &mut OwnedWriteHalf, msg: &[u8]) -> std::io::Result<()> {
    let buf = control::length_prefixed(msg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&buf).await
}

/// Encodes a frame, splitting full state and deltas that do not fit one
/// transport message.
fn encode_frames(msg: &ControllerMsg) -> Result<Vec<Vec<u8>>, FrameError> {
    match msg {
        ControllerMsg::Links { links, last: true } => {
            control::chunked(links, &|links, last| ControllerMsg::Links { links, last })
        }
        ControllerMsg::Routes { routes, last: true } => {
            control::chunked(routes, &|routes, last| ControllerMsg::Routes {
                routes,
                last,
            })
        }
        ControllerMsg::LinksDelta(c) => control::chunked(c, &|c, _| ControllerMsg::LinksDelta(c)),
        ControllerMsg::RoutesDelta(c) => control::chunked(c, &|c, _| ControllerMsg::RoutesDelta(c)),
        other => control::encode(other).map(|f| vec![f]),
    }
}

async fn send(
    w: &mut OwnedWriteHalf,
    t: &mut Transport,
    msg: &ControllerMsg,
) -> Result<(), String> {
    for frame in encode_frames(msg).map_err(|e| e.to_string())? {
        let sealed = t.seal(&frame).map_err(|e| e.to_string())?;
        write_message(w, &sealed).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn send_error(
    w: &mut OwnedWriteHalf,
    t: &mut Transport,
    peer: SocketAddr,
    key: &PublicKeyBytes,
    code: ErrorCode,
    message: String,
) {
    tracing::warn!(%peer, %key, ?code, "closing: {message}");
    let _ = send(w, t, &ControllerMsg::Error(ErrorMsg { code, message })).await;
    let _ = w.shutdown().await;
}

/// Serves one TCP connection until it closes.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    private: [u8; 32],
    session: u64,
    hub: mpsc::Sender<ToHub>,
) {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    // Handshake and Hello, bounded in time.
    let start = timeout(HANDSHAKE_TIMEOUT, async {
        let msg1 = read_message(&mut r).await.map_err(|e| e.to_string())?;
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
    let hello = match control::decode::<AgentMsg>(&first) {
        Ok(AgentMsg::Hello(h)) if h.version == PROTOCOL_VERSION => h,
        Ok(AgentMsg::Hello(h)) => {
            let msg = format!(
                "protocol version {} is not supported; this controller speaks {PROTOCOL_VERSION}",
                h.version
            );
            return send_error(
                &mut w,
                &mut transport,
                peer,
                &key,
                ErrorCode::UnsupportedVersion,
                msg,
            )
            .await;
        }
        Ok(_) => {
            let msg = "the first frame must be Hello".to_owned();
            return send_error(
                &mut w,
                &mut transport,
                peer,
                &key,
                ErrorCode::Malformed,
                msg,
            )
            .await;
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
            return send_error(&mut w, &mut transport, peer, &key, code, msg).await;
        }
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    if hub
        .send(ToHub::Hello {
            session,
            peer,
            key,
            hello,
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
    loop {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some(Outgoing::Frame(msg)) => {
                    if let Err(e) = send(&mut w, &mut transport, &msg).await {
                        tracing::info!(%peer, %key, "send failed: {e}");
                        break;
                    }
                }
                Some(Outgoing::Close) | None => {
                    let _ = w.shutdown().await;
                    break;
                }
            },
            got = timeout(IDLE_TIMEOUT, in_rx.recv()) => {
                let sealed = match got {
                    Ok(Some(Ok(m))) => m,
                    Ok(Some(Err(e))) => { tracing::info!(%peer, %key, "connection closed: {e}"); break; }
                    Ok(None) => break,
                    Err(_) => { tracing::info!(%peer, %key, "idle timeout"); break; }
                };
                let frame = match transport.open(&sealed) {
                    Ok(f) => f,
                    Err(e) => {
                        send_error(&mut w, &mut transport, peer, &key, ErrorCode::Malformed, format!("undecryptable frame: {e}")).await;
                        break;
                    }
                };
                match control::decode::<AgentMsg>(&frame) {
                    Ok(AgentMsg::Ping(n)) => {
                        if send(&mut w, &mut transport, &ControllerMsg::Pong(n)).await.is_err() { break; }
                    }
                    Ok(AgentMsg::Pong(_)) => {}
                    Ok(msg) => {
                        if hub.send(ToHub::Frame { session, msg }).await.is_err() { break; }
                    }
                    Err(e) => {
                        send_error(&mut w, &mut transport, peer, &key, ErrorCode::Malformed, format!("frame: {e}")).await;
                        break;
                    }
                }
            }
        }
    }
    reader.abort();
    let _ = hub.send(ToHub::Gone { session }).await;
}
