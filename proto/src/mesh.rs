//! Messages between neighbouring agents, carried inside their WireGuard
//! tunnel.
//!
//! WireGuard only carries IP packets, so each message travels as an IPv6
//! packet between two link-local addresses with next header 253 (reserved
//! for experiments, RFC 3692) and hop limit 255. No router forwards
//! link-local packets, so a message can never leave the tunnel it was sent
//! in, and the receiver knows it came from the neighbour at the other end.
//!
//! Payload layout (all integers big-endian):
//!
//! ```text
//! "FM" | version u8 (1) | kind u8 | incarnation u32 | sequence u32 | body
//! kind 1 LinkState: hears_you u8 (0/1) | clock u32 | echo u32 | held u32 | interval u32
//!                   (microseconds: the sender's clock now, the last clock
//!                   value it received from the receiver, and how long it
//!                   held that value: the receiver computes the round trip
//!                   as its clock now − echo − held, as NTP does; and the
//!                   sender's heartbeat interval in ms, so each end allows
//!                   for the slower of the two when judging silence)
//! kind 2 Withdraw:  count u16 | count × prefix
//! kind 3 Restore:   count u16 | count × prefix
//! kind 4 LostSet:   count u16 | count × prefix   (the complete set)
//! prefix: family u8 (4|6) | length u8 | 4 or 16 address bytes
//! ```
//!
//! `incarnation` is chosen at random when an agent starts and `sequence`
//! counts its messages on one link, so a receiver can ignore a message that
//! arrives after a newer one (WireGuard may reorder packets queued during a
//! handshake) and still accept the first message of a restarted neighbour.
//!
//! Heartbeats are not messages: an empty WireGuard keepalive is the smallest
//! authenticated packet there is (60 bytes on an IPv4 underlay), and any
//! authenticated packet proves the neighbour alive.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv6 next header value of mesh messages (RFC 3692 experimental).
pub const NEXT_HEADER: u8 = 253;
/// Source and destination of every mesh message: `fe80::f4ee:6d65:7368`.
pub const LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xf4ee, 0x6d65, 0x7368);
/// Version of the message layout.
pub const VERSION: u8 = 1;
/// Largest message we build, so it fits any tunnel MTU ≥ 1280; also the
/// largest [`MeshPacket::decode`] accepts, so a neighbour cannot make us
/// parse (or hold) more than an honest agent ever sends.
pub const MAX_PACKET: usize = 1200;

const MAGIC: [u8; 2] = *b"FM";
const IPV6_HEADER: usize = 40;
const HEADER: usize = 12;
/// Worst-case encoded size of one prefix (IPv6).
const PREFIX_MAX: usize = 18;
/// Smallest encoded size of one prefix (IPv4).
const PREFIX_MIN: usize = 6;
/// Prefixes that always fit in one message.
pub const PREFIXES_PER_MESSAGE: usize = (MAX_PACKET - IPV6_HEADER - HEADER - 2) / PREFIX_MAX;

/// A prefix as carried on the wire (address with host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WirePrefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// A message with its ordering information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshPacket {
    /// Random per agent run.
    pub incarnation: u32,
    /// Increases with every message the sender sends on this link.
    pub sequence: u32,
    pub message: MeshMessage,
}

impl MeshPacket {
    /// Whether this packet is newer than the last one accepted from the
    /// same neighbour (`(incarnation, sequence)`): a new incarnation always
    /// is.
    pub fn is_newer_than(&self, last: Option<(u32, u32)>) -> bool {
        match last {
            None => true,
            Some((incarnation, sequence)) => {
                incarnation != self.incarnation || self.sequence > sequence
            }
        }
    }
}

/// Round-trip measurement carried by `LinkState` (all in microseconds on
/// free-running 32-bit clocks; only differences matter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// The sender's clock when it sent the message.
    pub clock_us: u32,
    /// The receiver's clock value the sender saw last (0: none yet).
    pub echo_us: u32,
    /// How long the sender held `echo_us` before sending this message.
    pub held_us: u32,
    /// The sender's heartbeat interval in milliseconds (0: it sends none).
    pub interval_ms: u32,
}

/// One message between neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshMessage {
    /// Whether the sender currently hears the receiver. Sent when that
    /// changes and periodically, so a one-way failure is known on both
    /// ends.
    LinkState { hears_you: bool, timing: Timing },
    /// The sender lost every path to these prefixes: stop using it for them.
    Withdraw(Vec<WirePrefix>),
    /// The sender has a path to these prefixes again.
    Restore(Vec<WirePrefix>),
    /// Every prefix the sender lacks, replacing what it withdrew before:
    /// repeated periodically, it repairs a lost or reordered Withdraw or
    /// Restore.
    LostSet(Vec<WirePrefix>),
}

/// Why bytes were not a mesh message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    #[error("not an IPv6 packet from and to the mesh link-local address with next header 253")]
    NotMeshPacket,
    #[error("hop limit {0} is not 255: the packet was forwarded")]
    Forwarded(u8),
    #[error("truncated mesh message")]
    Truncated,
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported mesh message version {0}")]
    Version(u8),
    #[error("unknown mesh message kind {0}")]
    Kind(u8),
    #[error("bad prefix: family {family}, length {len}")]
    Prefix { family: u8, len: u8 },
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("mesh message of {0} bytes is larger than the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    #[error(
        "mesh message lists {0} prefixes, more than the {PREFIXES_PER_MESSAGE} one message may carry"
    )]
    TooManyPrefixes(u16),
    #[error("mesh message lists {count} prefixes but only {bytes} bytes follow")]
    CountMismatch { count: u16, bytes: usize },
}

impl MeshPacket {
    /// Whether `packet` is addressed as a mesh message (cheap check before
    /// [`MeshPacket::decode`]).
    pub fn is_mesh_packet(packet: &[u8]) -> bool {
        packet.len() >= IPV6_HEADER
            && packet[0] >> 4 == 6
            && packet[6] == NEXT_HEADER
            && packet[24..40] == LINK_LOCAL.octets()
    }

    /// Encodes as a complete IPv6 packet. Withdraw and Restore lists longer
    /// than [`PREFIXES_PER_MESSAGE`] must be split by the caller.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&MAGIC);
        body.push(VERSION);
        let kind_at = body.len();
        body.push(0);
        body.extend_from_slice(&self.incarnation.to_be_bytes());
        body.extend_from_slice(&self.sequence.to_be_bytes());
        match &self.message {
            MeshMessage::LinkState { hears_you, timing } => {
                body[kind_at] = 1;
                body.push(u8::from(*hears_you));
                for value in [
                    timing.clock_us,
                    timing.echo_us,
                    timing.held_us,
                    timing.interval_ms,
                ] {
                    body.extend_from_slice(&value.to_be_bytes());
                }
            }
            MeshMessage::Withdraw(prefixes)
            | MeshMessage::Restore(prefixes)
            | MeshMessage::LostSet(prefixes) => {
                body[kind_at] = match &self.message {
                    MeshMessage::Withdraw(_) => 2,
                    MeshMessage::Restore(_) => 3,
                    _ => 4,
                };
                let count = u16::try_from(prefixes.len()).unwrap_or(u16::MAX);
                body.extend_from_slice(&count.to_be_bytes());
                for prefix in prefixes.iter().take(usize::from(count)) {
                    match prefix.addr {
                        IpAddr::V4(a) => {
                            body.extend_from_slice(&[4, prefix.len]);
                            body.extend_from_slice(&a.octets());
                        }
                        IpAddr::V6(a) => {
                            body.extend_from_slice(&[6, prefix.len]);
                            body.extend_from_slice(&a.octets());
                        }
                    }
                }
            }
        }
        let mut packet = vec![0u8; IPV6_HEADER];
        packet[0] = 0x60;
        let payload_len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        packet[4..6].copy_from_slice(&payload_len.to_be_bytes());
        packet[6] = NEXT_HEADER;
        packet[7] = 255;
        packet[8..24].copy_from_slice(&LINK_LOCAL.octets());
        packet[24..40].copy_from_slice(&LINK_LOCAL.octets());
        packet.extend_from_slice(&body);
        packet
    }

    /// Decodes a complete IPv6 packet, strictly: nothing larger than
    /// [`MAX_PACKET`], no more than [`PREFIXES_PER_MESSAGE`] prefixes, and a
    /// prefix count the bytes that follow can hold, checked before anything
    /// is allocated.
    pub fn decode(packet: &[u8]) -> Result<Self, MeshError> {
        if packet.len() > MAX_PACKET {
            return Err(MeshError::TooLarge(packet.len()));
        }
        if !Self::is_mesh_packet(packet) || packet[8..24] != LINK_LOCAL.octets() {
            return Err(MeshError::NotMeshPacket);
        }
        if packet[7] != 255 {
            return Err(MeshError::Forwarded(packet[7]));
        }
        let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
        let body = packet
            .get(IPV6_HEADER..IPV6_HEADER + payload_len)
            .ok_or(MeshError::Truncated)?;
        let mut reader = Reader(body);
        if reader.take(2)? != MAGIC {
            return Err(MeshError::BadMagic);
        }
        let version = reader.byte()?;
        if version != VERSION {
            return Err(MeshError::Version(version));
        }
        let kind = reader.byte()?;
        let incarnation = reader.u32()?;
        let sequence = reader.u32()?;
        let message = match kind {
            1 => MeshMessage::LinkState {
                hears_you: reader.byte()? != 0,
                timing: Timing {
                    clock_us: reader.u32()?,
                    echo_us: reader.u32()?,
                    held_us: reader.u32()?,
                    interval_ms: reader.u32()?,
                },
            },
            kind @ (2..=4) => {
                let count = u16::from_be_bytes([reader.byte()?, reader.byte()?]);
                if usize::from(count) > PREFIXES_PER_MESSAGE {
                    return Err(MeshError::TooManyPrefixes(count));
                }
                if usize::from(count) * PREFIX_MIN > reader.0.len() {
                    return Err(MeshError::CountMismatch {
                        count,
                        bytes: reader.0.len(),
                    });
                }
                let mut prefixes = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    prefixes.push(reader.prefix()?);
                }
                match kind {
                    2 => MeshMessage::Withdraw(prefixes),
                    3 => MeshMessage::Restore(prefixes),
                    _ => MeshMessage::LostSet(prefixes),
                }
            }
            other => return Err(MeshError::Kind(other)),
        };
        if !reader.0.is_empty() {
            return Err(MeshError::Trailing(reader.0.len()));
        }
        Ok(MeshPacket {
            incarnation,
            sequence,
            message,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MeshError> {
        if self.0.len() < n {
            return Err(MeshError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, MeshError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, MeshError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn prefix(&mut self) -> Result<WirePrefix, MeshError> {
        let family = self.byte()?;
        let len = self.byte()?;
        let addr = match (family, len) {
            (4, 0..=32) => {
                let b = self.take(4)?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            (6, 0..=128) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(self.take(16)?);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            _ => return Err(MeshError::Prefix { family, len }),
        };
        Ok(WirePrefix { addr, len })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn wrap(message: MeshMessage) -> MeshPacket {
        MeshPacket {
            incarnation: 1,
            sequence: 1,
            message,
        }
    }

    fn prefix(s: &str, len: u8) -> WirePrefix {
        WirePrefix {
            addr: s.parse().expect("address"),
            len,
        }
    }

    #[test]
    fn round_trips() {
        for message in [
            MeshMessage::LinkState {
                hears_you: true,
                timing: Timing {
                    clock_us: 5,
                    echo_us: 3,
                    held_us: 1,
                    interval_ms: 50,
                },
            },
            MeshMessage::LinkState {
                hears_you: false,
                timing: Timing {
                    clock_us: 5,
                    echo_us: 3,
                    held_us: 1,
                    interval_ms: 50,
                },
            },
            MeshMessage::Withdraw(vec![prefix("10.99.0.4", 32), prefix("fd99::4", 128)]),
            MeshMessage::Restore(vec![]),
            MeshMessage::LostSet(vec![prefix("10.0.0.0", 8)]),
        ] {
            let packet = MeshPacket {
                incarnation: 7,
                sequence: 9,
                message,
            };
            let bytes = packet.encode();
            assert!(MeshPacket::is_mesh_packet(&bytes));
            assert_eq!(MeshPacket::decode(&bytes), Ok(packet));
        }
    }

    #[test]
    fn a_full_message_fits_the_budget() {
        let many = vec![prefix("fd99::4", 128); PREFIXES_PER_MESSAGE];
        assert!(wrap(MeshMessage::Withdraw(many)).encode().len() <= MAX_PACKET);
    }

    #[test]
    fn rejects_forwarded_and_malformed() {
        let mut packet = wrap(MeshMessage::LinkState {
            hears_you: true,
            timing: Timing {
                clock_us: 5,
                echo_us: 3,
                held_us: 1,
                interval_ms: 50,
            },
        })
        .encode();
        packet[7] = 254;
        assert_eq!(MeshPacket::decode(&packet), Err(MeshError::Forwarded(254)));
        let mut packet = wrap(MeshMessage::Withdraw(vec![prefix("10.0.0.0", 8)])).encode();
        packet[IPV6_HEADER + HEADER + 3] = 40;
        assert_eq!(
            MeshPacket::decode(&packet),
            Err(MeshError::Prefix { family: 4, len: 40 })
        );
        let mut packet = wrap(MeshMessage::LinkState {
            hears_you: true,
            timing: Timing {
                clock_us: 5,
                echo_us: 3,
                held_us: 1,
                interval_ms: 50,
            },
        })
        .encode();
        packet[IPV6_HEADER + 2] = 9;
        assert_eq!(MeshPacket::decode(&packet), Err(MeshError::Version(9)));
        let packet = wrap(MeshMessage::LinkState {
            hears_you: true,
            timing: Timing {
                clock_us: 5,
                echo_us: 3,
                held_us: 1,
                interval_ms: 50,
            },
        })
        .encode();
        assert_eq!(
            MeshPacket::decode(&packet[..packet.len() - 1]),
            Err(MeshError::Truncated)
        );
    }

    #[test]
    fn oversized_and_inconsistent_counts_are_refused() {
        // One prefix too many for a message.
        let too_many = vec![prefix("10.0.0.0", 8); PREFIXES_PER_MESSAGE + 1];
        let packet = wrap(MeshMessage::Withdraw(too_many)).encode();
        assert_eq!(
            MeshPacket::decode(&packet),
            Err(MeshError::TooManyPrefixes(
                u16::try_from(PREFIXES_PER_MESSAGE + 1).expect("small")
            ))
        );
        // A packet beyond the size limit, however well formed inside.
        let many_v6 = vec![prefix("fd99::4", 128); PREFIXES_PER_MESSAGE];
        let mut packet = wrap(MeshMessage::LostSet(many_v6)).encode();
        let padded = MAX_PACKET + 1 - packet.len();
        packet.extend(std::iter::repeat_n(0, padded));
        assert_eq!(
            MeshPacket::decode(&packet),
            Err(MeshError::TooLarge(MAX_PACKET + 1))
        );
        // A count the bytes cannot hold: refused before any allocation.
        let mut packet = wrap(MeshMessage::Restore(vec![prefix("10.0.0.0", 8)])).encode();
        let count_at = IPV6_HEADER + HEADER;
        packet[count_at..count_at + 2].copy_from_slice(&50u16.to_be_bytes());
        assert_eq!(
            MeshPacket::decode(&packet),
            Err(MeshError::CountMismatch {
                count: 50,
                bytes: 6
            })
        );
        // u16::MAX prefixes claimed in a tiny packet.
        packet[count_at..count_at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            MeshPacket::decode(&packet),
            Err(MeshError::TooManyPrefixes(u16::MAX))
        );
        // The largest honest message still decodes.
        let full = vec![prefix("fd99::4", 128); PREFIXES_PER_MESSAGE];
        let packet = wrap(MeshMessage::Withdraw(full.clone())).encode();
        assert_eq!(
            MeshPacket::decode(&packet).map(|p| p.message),
            Ok(MeshMessage::Withdraw(full))
        );
    }

    #[test]
    fn ordering() {
        let p = |incarnation, sequence| MeshPacket {
            incarnation,
            sequence,
            message: MeshMessage::Restore(vec![]),
        };
        assert!(p(1, 5).is_newer_than(None));
        assert!(p(1, 5).is_newer_than(Some((1, 4))));
        assert!(!p(1, 4).is_newer_than(Some((1, 4))));
        assert!(!p(1, 3).is_newer_than(Some((1, 4))));
        assert!(p(2, 1).is_newer_than(Some((1, 4))), "a restarted neighbour");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut packet = wrap(MeshMessage::LinkState { hears_you: true, timing: Timing { clock_us: 5, echo_us: 3, held_us: 1, interval_ms: 50 } }).encode();
            packet.truncate(IPV6_HEADER);
            packet.extend_from_slice(&bytes);
            let len = u16::try_from(bytes.len()).unwrap_or(0);
            packet[4..6].copy_from_slice(&len.to_be_bytes());
            let _ = MeshPacket::decode(&packet);
            let _ = MeshPacket::decode(&bytes);
        }
    }
}
