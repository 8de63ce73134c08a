//! Reachability probes for the segment labs: an echo service (TCP and UDP)
//! and a client that says whether an echo came back, optionally from a
//! chosen source address (a spoofed one: the address must be on one of
//! the namespace's interfaces). Both run as hidden subcommands of
//! `freimesh-testbed` inside a lab's namespaces (`echo-serve`, `reach`).

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::Context as _;

/// What `reach` sends and expects back.
const PAYLOAD: &[u8] = b"freimesh-reach";

/// Serves TCP and UDP echo on `tcp`/`udp` until stdin closes.
pub fn serve(tcp: Option<SocketAddr>, udp: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = tcp {
        let listener = TcpListener::bind(addr).with_context(|| format!("binding TCP {addr}"))?;
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    if let Some(addr) = udp {
        let socket = UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        });
    }
    // Serve until the lab closes our stdin (it holds the other end).
    let mut line = String::new();
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read_line(&mut line), Ok(n) if n > 0) {
        line.clear();
    }
    Ok(())
}

/// Protocol of a reachability try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Whether an echo from `dst` comes back within `timeout`, sending from
/// `src` if given. `Ok(false)` = no answer (or refused); `Err` = the try
/// could not be made (e.g. `src` is not a local address).
pub fn try_echo(
    proto: Proto,
    dst: SocketAddr,
    src: Option<IpAddr>,
    timeout: Duration,
) -> anyhow::Result<bool> {
    match proto {
        Proto::Udp => {
            let bind = SocketAddr::new(
                src.unwrap_or(if dst.is_ipv4() {
                    IpAddr::from([0, 0, 0, 0])
                } else {
                    IpAddr::from([0u16; 8])
                }),
                0,
            );
            let socket = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
            socket.set_read_timeout(Some(timeout))?;
            // Three tries: one lost datagram is not unreachability.
            for _ in 0..3 {
                if socket.send_to(PAYLOAD, dst).is_err() {
                    continue;
                }
                let mut buf = [0u8; 256];
                if let Ok((n, from)) = socket.recv_from(&mut buf)
                    && from == dst
                    && &buf[..n] == PAYLOAD
                {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Proto::Tcp => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let socket = if dst.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                if let Some(src) = src {
                    socket
                        .bind(SocketAddr::new(src, 0))
                        .with_context(|| format!("binding {src}"))?;
                }
                let attempt = async {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut stream = socket.connect(dst).await?;
                    stream.write_all(PAYLOAD).await?;
                    let mut buf = vec![0u8; PAYLOAD.len()];
                    stream.read_exact(&mut buf).await?;
                    std::io::Result::Ok(buf == PAYLOAD)
                };
                Ok(matches!(
                    tokio::time::timeout(timeout, attempt).await,
                    Ok(Ok(true))
                ))
            })
        }
    }
}

/// A TCP round trip to an echo service, blocking (for positive controls
/// from the lab process itself, outside namespaces).
pub fn tcp_roundtrip(dst: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&dst, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = vec![0u8; PAYLOAD.len()];
    s.write_all(PAYLOAD).is_ok() && s.read_exact(&mut buf).is_ok() && buf == PAYLOAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_on_loopback_is_reached_and_a_closed_port_is_not() -> anyhow::Result<()> {
        let tcp_addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let udp_addr = UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        // Not yet serving: nothing answers.
        let short = Duration::from_millis(200);
        assert!(!try_echo(Proto::Udp, udp_addr, None, short)?);
        assert!(!try_echo(Proto::Tcp, tcp_addr, None, short)?);
        std::thread::spawn(move || serve(Some(tcp_addr), Some(udp_addr)));
        let ok = |p, a| {
            crate::traffic::retry(Duration::from_secs(5), || {
                try_echo(p, a, Some("127.0.0.1".parse()?), short)?
                    .then_some(())
                    .context("no echo")
            })
        };
        ok(Proto::Udp, udp_addr)?;
        ok(Proto::Tcp, tcp_addr)?;
        assert!(tcp_roundtrip(tcp_addr, short));
        // A source that is not ours cannot be used.
        assert!(try_echo(Proto::Udp, udp_addr, Some("192.0.2.1".parse()?), short).is_err());
        Ok(())
    }
}
