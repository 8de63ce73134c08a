//! Strict parsing of the IP packets that cross a node, and the one header
//! edit a router makes to them (TTL / hop limit).
//!
//! Every packet that leaves a tunnel or the local stack passes through
//! [`IpPacket::parse`] before the engine looks at it. A packet the parser
//! rejects is dropped and counted by the engine, never forwarded, so a peer
//! cannot make a node send malformed packets on, and nothing here can panic on
//! hostile input: all offsets are checked against the slice first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of an IPv4 header without options.
pub const IPV4_MIN_HEADER: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER: usize = 40;

/// Why a packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("empty packet")]
    Empty,
    #[error("IP version {0} is neither 4 nor 6")]
    UnknownVersion(u8),
    #[error("{len} bytes is shorter than the {needed}-byte header")]
    TruncatedHeader { len: usize, needed: usize },
    #[error("IPv4 header length field {0} is below the minimum of 5 words")]
    BadHeaderLength(u8),
    #[error("length field says {claimed} bytes but {len} arrived")]
    LengthMismatch { claimed: usize, len: usize },
    #[error("IPv4 header checksum does not match")]
    BadChecksum,
}

/// A validated view of an IP packet: addresses and lengths have been checked
/// against the bytes, and `len` is the packet's own length (a datagram may carry
/// trailing padding, which is not forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Length of the packet per its own header; `<=` the slice it came in.
    pub len: usize,
}

impl IpPacket {
    /// Parses and validates the header of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, PacketError> {
        let first = *bytes.first().ok_or(PacketError::Empty)?;
        match first >> 4 {
            4 => Self::parse_v4(bytes),
            6 => Self::parse_v6(bytes),
            other => Err(PacketError::UnknownVersion(other)),
        }
    }

    fn parse_v4(bytes: &[u8]) -> Result<Self, PacketError> {
        let header: &[u8; IPV4_MIN_HEADER] = bytes
            .get(..IPV4_MIN_HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or(PacketError::TruncatedHeader {
                len: bytes.len(),
                needed: IPV4_MIN_HEADER,
            })?;
        let ihl = header[0] & 0x0f;
        if ihl < 5 {
            return Err(PacketError::BadHeaderLength(ihl));
        }
        let header_len = usize::from(ihl) * 4;
        let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if header_len > bytes.len() {
            return Err(PacketError::TruncatedHeader {
                len: bytes.len(),
                needed: header_len,
            });
        }
        if total_len < header_len || total_len > bytes.len() {
            return Err(PacketError::LengthMismatch {
                claimed: total_len,
                len: bytes.len(),
            });
        }
        if internet_checksum(&bytes[..header_len]) != 0 {
            return Err(PacketError::BadChecksum);
        }
        Ok(Self {
            src: IpAddr::V4(Ipv4Addr::new(
                header[12], header[13], header[14], header[15],
            )),
            dst: IpAddr::V4(Ipv4Addr::new(
                header[16], header[17], header[18], header[19],
            )),
            ttl: header[8],
            len: total_len,
        })
    }

    fn parse_v6(bytes: &[u8]) -> Result<Self, PacketError> {
        let header: &[u8; IPV6_HEADER] = bytes
            .get(..IPV6_HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or(PacketError::TruncatedHeader {
            len: bytes.len(),
            needed: IPV6_HEADER,
        })?;
        let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let total_len = IPV6_HEADER + payload_len;
        if total_len > bytes.len() {
            return Err(PacketError::LengthMismatch {
                claimed: total_len,
                len: bytes.len(),
            });
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&header[8..24]);
        dst.copy_from_slice(&header[24..40]);
        Ok(Self {
            src: IpAddr::V6(Ipv6Addr::from(src)),
            dst: IpAddr::V6(Ipv6Addr::from(dst)),
            ttl: header[7],
            len: total_len,
        })
    }
}

/// The packet's TTL or hop limit would reach zero on this hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("TTL expired in transit")]
pub struct TtlExpired;

/// Decrements the TTL (IPv4, with an incremental checksum update per
/// RFC 1624) or the hop limit (IPv6) of a packet already validated by
/// [`IpPacket::parse`]. A packet whose TTL would become zero must not be
/// forwarded: the caller drops it.
pub fn decrement_ttl(packet: &mut [u8]) -> Result<(), TtlExpired> {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= IPV4_MIN_HEADER => {
            let ttl = packet[8];
            if ttl <= 1 {
                return Err(TtlExpired);
            }
            packet[8] = ttl - 1;
            // The TTL is the high byte of the 16-bit word at offset 8, so the
            // word drops by 0x0100; the one's-complement sum rises by the same.
            let old = u16::from_be_bytes([packet[10], packet[11]]);
            let sum = u32::from(old) + 0x0100;
            let folded = (sum & 0xffff) + (sum >> 16);
            let [hi, lo] = u16::try_from(folded & 0xffff).unwrap_or(0).to_be_bytes();
            packet[10] = hi;
            packet[11] = lo;
            Ok(())
        }
        Some(6) if packet.len() >= IPV6_HEADER => {
            let hop_limit = packet[7];
            if hop_limit <= 1 {
                return Err(TtlExpired);
            }
            packet[7] = hop_limit - 1;
            Ok(())
        }
        _ => Err(TtlExpired),
    }
}

/// The Internet checksum (RFC 1071) of `bytes`; 0 over a header that carries
/// a correct checksum.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A minimal valid IPv4 packet (UDP protocol number, no payload checks).
    pub(crate) fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let total = IPV4_MIN_HEADER + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
        p[8] = ttl;
        p[9] = 17;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        let checksum = internet_checksum(&p[..IPV4_MIN_HEADER]);
        p[10..12].copy_from_slice(&checksum.to_be_bytes());
        p[IPV4_MIN_HEADER..].copy_from_slice(payload);
        p
    }

    /// A minimal valid IPv6 packet.
    pub(crate) fn ipv6_packet(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![0u8; IPV6_HEADER + payload.len()];
        p[0] = 0x60;
        p[4..6].copy_from_slice(
            &u16::try_from(payload.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        p[6] = 17;
        p[7] = hop_limit;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p[IPV6_HEADER..].copy_from_slice(payload);
        p
    }

    #[test]
    fn parses_ipv4_and_ignores_padding() {
        let mut p = ipv4_packet(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            64,
            b"hi",
        );
        p.extend_from_slice(&[0, 0, 0]);
        let parsed = IpPacket::parse(&p).expect("valid");
        assert_eq!(parsed.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parsed.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(parsed.ttl, 64);
        assert_eq!(parsed.len, 22);
    }

    #[test]
    fn rejects_bad_ipv4() {
        let good = ipv4_packet(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 64, b"x");
        let mut bad_sum = good.clone();
        bad_sum[10] ^= 0xff;
        assert_eq!(IpPacket::parse(&bad_sum), Err(PacketError::BadChecksum));
        let mut long = good.clone();
        long[3] = 200;
        assert!(matches!(
            IpPacket::parse(&long),
            Err(PacketError::LengthMismatch { .. })
        ));
        let mut ihl = good.clone();
        ihl[0] = 0x44;
        assert_eq!(IpPacket::parse(&ihl), Err(PacketError::BadHeaderLength(4)));
        assert!(matches!(
            IpPacket::parse(&good[..10]),
            Err(PacketError::TruncatedHeader { .. })
        ));
        assert_eq!(IpPacket::parse(&[]), Err(PacketError::Empty));
        assert_eq!(
            IpPacket::parse(&[0x10; 40]),
            Err(PacketError::UnknownVersion(1))
        );
    }

    #[test]
    fn parses_and_rejects_ipv6() {
        let src: Ipv6Addr = "fd99::1".parse().expect("addr");
        let dst: Ipv6Addr = "fd99::2".parse().expect("addr");
        let p = ipv6_packet(src, dst, 5, b"payload");
        let parsed = IpPacket::parse(&p).expect("valid");
        assert_eq!(
            (parsed.src, parsed.dst, parsed.ttl, parsed.len),
            (src.into(), dst.into(), 5, 47)
        );
        assert!(matches!(
            IpPacket::parse(&p[..45]),
            Err(PacketError::LengthMismatch { .. })
        ));
        assert!(matches!(
            IpPacket::parse(&p[..30]),
            Err(PacketError::TruncatedHeader { .. })
        ));
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid_and_stops_at_one() {
        let mut p = ipv4_packet(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
            2,
            b"abc",
        );
        decrement_ttl(&mut p).expect("ttl 2 forwards");
        assert_eq!(IpPacket::parse(&p).expect("checksum still valid").ttl, 1);
        assert_eq!(decrement_ttl(&mut p), Err(TtlExpired));
        let mut v6 = ipv6_packet(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 1, b"");
        assert_eq!(decrement_ttl(&mut v6), Err(TtlExpired));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = IpPacket::parse(&bytes);
            let mut copy = bytes.clone();
            let _ = decrement_ttl(&mut copy);
        }

        #[test]
        fn decrement_keeps_any_ipv4_checksum_valid(
            ttl in 2u8..=255,
            ident in any::<u16>(),
            a in any::<[u8; 4]>(),
            b in any::<[u8; 4]>(),
        ) {
            let mut p = ipv4_packet(Ipv4Addr::from(a), Ipv4Addr::from(b), ttl, &ident.to_be_bytes());
            p[4..6].copy_from_slice(&ident.to_be_bytes());
            let sum = internet_checksum(&{ let mut h = p[..20].to_vec(); h[10] = 0; h[11] = 0; h });
            p[10..12].copy_from_slice(&sum.to_be_bytes());
            decrement_ttl(&mut p).expect("ttl >= 2");
            prop_assert_eq!(internet_checksum(&p[..20]), 0);
            prop_assert_eq!(p[8], ttl - 1);
        }
    }
}
