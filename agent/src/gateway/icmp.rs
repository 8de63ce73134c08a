//! The uplink checker's I/O shell: ICMP echo requests to the far-side
//! targets, sent through the uplink interface only (`SO_BINDTODEVICE`, so
//! the probes cannot take another way out when the uplink's routes go),
//! and the [`UplinkChecker`] fed with the answers.
//!
//! Raw ICMP sockets (the agent runs as root on gateways); where raw sockets
//! are not allowed, ICMP datagram ("ping") sockets, which need the group in
//! `net.ipv4.ping_group_range`.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use rand_core::{OsRng, RngCore as _};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    GatewayError,
    checker::{CheckerSettings, UplinkChecker},
};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Payload after the 8-byte ICMP header: a marker, so a capture shows
/// whose probes these are.
const PAYLOAD: &[u8; 8] = b"freimesh";

/// What the uplink checker probes and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkSettings {
    /// The uplink interface (e.g. `wan`, `eth1`).
    pub interface: String,
    /// Far-side addresses to ping (e.g. the ISP's first hop and a public
    /// resolver); any one answering is enough.
    pub targets: Vec<IpAddr>,
    pub checker: CheckerSettings,
}

/// An ICMP echo request with the given identifier and sequence number.
/// The IPv4 checksum is filled in; for IPv6 the kernel computes it (it
/// covers a pseudo-header only the kernel knows the source of).
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The (identifier, sequence) of an echo reply as a socket returns it: raw
/// IPv4 sockets include the IP header, IPv6 and datagram sockets do not.
pub fn parse_echo_reply(v6: bool, with_ip_header: bool, packet: &[u8]) -> Option<(u16, u16)> {
    let icmp = if with_ip_header {
        let header_len = usize::from(packet.first()? & 0x0f) * 4;
        packet.get(header_len..)?
    } else {
        packet
    };
    let expected = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp.len() < 8 || icmp[0] != expected || icmp[1] != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// The internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0xffff)
}

/// One ICMP socket of one family, bound to the uplink.
struct Prober {
    socket: UdpSocket,
    v6: bool,
    /// A raw socket: sees every echo reply to the host (so the identifier
    /// must match) and, for IPv4, the IP header.
    raw: bool,
}

impl Prober {
    fn open(v6: bool, interface: &str) -> Result<Self, GatewayError> {
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, raw) = match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(socket) => (socket, true),
            Err(raw_error) => match Socket::new(domain, Type::DGRAM, Some(protocol)) {
                Ok(socket) => (socket, false),
                Err(_) => return Err(GatewayError::IcmpSocket { cause: raw_error }),
            },
        };
        let setup = |socket: &Socket| -> io::Result<()> {
            socket.bind_device(Some(interface.as_bytes()))?;
            socket.set_nonblocking(true)
        };
        setup(&socket).map_err(|cause| GatewayError::BindUplink {
            interface: interface.to_owned(),
            cause,
        })?;
        // A tokio UDP socket is a thin readiness wrapper over any datagram
        // file descriptor: send_to/recv_from work on ICMP sockets as is.
        let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))
            .map_err(|cause| GatewayError::IcmpSocket { cause })?;
        Ok(Self { socket, v6, raw })
    }

    async fn send(&self, target: IpAddr, id: u16, seq: u16) {
        let packet = echo_request(self.v6, id, seq);
        if let Err(err) = self
            .socket
            .send_to(&packet, SocketAddr::new(target, 0))
            .await
        {
            // No route or no carrier on the uplink: the silence decides.
            tracing::trace!(%target, %err, "uplink probe not sent");
        }
    }
}

/// Waits for a datagram on the prober, or forever without one.
async fn receive(prober: Option<&Prober>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match prober {
        Some(prober) => prober.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The uplink checker's sockets, open and bound to the uplink.
pub struct UplinkProbe {
    settings: UplinkSettings,
    v4: Option<Prober>,
    v6: Option<Prober>,
}

impl std::fmt::Debug for UplinkProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkProbe")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl UplinkProbe {
    /// Opens one ICMP socket per family the targets need, bound to the
    /// uplink interface. Fails if the interface does not exist.
    pub fn open(settings: UplinkSettings) -> Result<Self, GatewayError> {
        if settings.targets.is_empty() {
            return Err(GatewayError::NoTargets);
        }
        let v4 = settings
            .targets
            .iter()
            .any(IpAddr::is_ipv4)
            .then(|| Prober::open(false, &settings.interface))
            .transpose()?;
        let v6 = settings
            .targets
            .iter()
            .any(IpAddr::is_ipv6)
            .then(|| Prober::open(true, &settings.interface))
            .transpose()?;
        Ok(Self { settings, v4, v6 })
    }

    /// Probes until the receiver of `changes` goes away, sending every
    /// change of the verdict (`true` = up).
    pub async fn run(self, changes: mpsc::Sender<bool>) {
        let Self { settings, v4, v6 } = self;
        let id = u16::try_from(OsRng.next_u32() & 0xffff).unwrap_or(0);
        let mut seq: u16 = 0;
        // Answers to probes older than the down deadline prove nothing new.
        let window = u16::try_from(settings.checker.misses.saturating_add(1)).unwrap_or(u16::MAX);
        let mut checker = UplinkChecker::new(settings.checker, Instant::now());
        let mut buf_v4 = vec![0u8; 1500];
        let mut buf_v6 = vec![0u8; 1500];
        tracing::info!(
            interface = %settings.interface, targets = ?settings.targets,
            interval_ms = settings.checker.interval.as_millis(), misses = settings.checker.misses,
            "uplink checker started"
        );
        loop {
            let wake = tokio::time::Instant::from_std(checker.poll_timeout());
            let (received, v6_socket) = tokio::select! {
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    let change = checker.handle_timeout(now);
                    if let Some(up) = change
                        && changes.send(up).await.is_err()
                    {
                        return;
                    }
                    if checker.probe_due(now) {
                        seq = seq.wrapping_add(1);
                        for target in &settings.targets {
                            let prober = if target.is_ipv6() { v6.as_ref() } else { v4.as_ref() };
                            if let Some(prober) = prober {
                                prober.send(*target, id, seq).await;
                            }
                        }
                    }
                    continue;
                }
                received = receive(v4.as_ref(), &mut buf_v4) => (received, false),
                received = receive(v6.as_ref(), &mut buf_v6) => (received, true),
            };
            let (len, from) = match received {
                Ok(received) => received,
                Err(err) => {
                    tracing::trace!(%err, "uplink probe socket error");
                    continue;
                }
            };
            let (prober, buf) = if v6_socket {
                (v6.as_ref(), &buf_v6)
            } else {
                (v4.as_ref(), &buf_v4)
            };
            let Some(prober) = prober else { continue };
            let with_header = prober.raw && !prober.v6;
            let Some((reply_id, reply_seq)) = parse_echo_reply(prober.v6, with_header, &buf[..len])
            else {
                continue;
            };
            // Datagram sockets get only their own replies, with the identifier
            // the kernel chose.
            let ours = (!prober.raw || reply_id == id)
                && settings.targets.contains(&from.ip())
                && seq.wrapping_sub(reply_seq) <= window;
            if ours
                && let Some(up) = checker.handle_answer(Instant::now())
                && changes.send(up).await.is_err()
            {
                return;
            }
        }
    }
}

/// Opens the probe and runs it; see [`UplinkProbe`].
pub async fn run_checker(
    settings: UplinkSettings,
    changes: mpsc::Sender<bool>,
) -> Result<(), GatewayError> {
    UplinkProbe::open(settings)?.run(changes).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_v4_has_a_valid_checksum() {
        let packet = echo_request(false, 0x1234, 7);
        assert_eq!(
            &packet[..8],
            &[8, 0, packet[2], packet[3], 0x12, 0x34, 0, 7]
        );
        // A packet with its checksum in place sums to zero.
        assert_eq!(checksum(&packet), 0);
        assert_ne!(u16::from_be_bytes([packet[2], packet[3]]), 0);
    }

    #[test]
    fn echo_request_v6_leaves_the_checksum_to_the_kernel() {
        let packet = echo_request(true, 1, 2);
        assert_eq!(&packet[..8], &[128, 0, 0, 0, 0, 1, 0, 2]);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // Odd length pads with zero.
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn replies_are_parsed_with_and_without_ip_header() {
        let mut reply = echo_request(false, 0xbeef, 42);
        reply[0] = ECHO_REPLY_V4;
        assert_eq!(parse_echo_reply(false, false, &reply), Some((0xbeef, 42)));
        let mut with_header = vec![0x45; 1];
        with_header.extend_from_slice(&[0; 19]);
        with_header.extend_from_slice(&reply);
        assert_eq!(
            parse_echo_reply(false, true, &with_header),
            Some((0xbeef, 42))
        );

        let mut reply6 = echo_request(true, 9, 10);
        reply6[0] = ECHO_REPLY_V6;
        assert_eq!(parse_echo_reply(true, false, &reply6), Some((9, 10)));
    }

    #[test]
    fn requests_errors_and_short_packets_are_not_replies() {
        assert_eq!(
            parse_echo_reply(false, false, &echo_request(false, 1, 1)),
            None
        );
        assert_eq!(
            parse_echo_reply(true, false, &echo_request(true, 1, 1)),
            None
        );
        // Destination unreachable.
        assert_eq!(
            parse_echo_reply(false, false, &[3, 1, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(parse_echo_reply(false, false, &[0, 0, 0]), None);
        assert_eq!(parse_echo_reply(false, true, &[0x4f, 0, 0]), None);
        assert_eq!(parse_echo_reply(false, true, &[]), None);
    }
}
