//! Why the engine drops a datagram or packet: one counter per reason,
//! shown by `freimesh-agent status` (counters, not logs, on the hot path).

/// Why a datagram or packet was dropped. Each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// Not a WireGuard message at all (wrong type or length).
    MalformedDatagram,
    /// A WireGuard message that failed authentication (MAC, AEAD tag, replay).
    Unauthenticated,
    /// A valid handshake from a key that is not one of our links.
    UnknownPeer,
    /// A message for a receiver index that is not ours.
    UnknownIndex,
    /// A decrypted packet that is not a well-formed IPv4/IPv6 packet.
    MalformedPacket,
    /// A neighbour sent a packet from a source it may not use.
    SpoofedSource,
    /// The destination is link-local, multicast, broadcast or unspecified:
    /// a router never forwards those (the kernel sends some, such as IPv6
    /// router solicitations, into the TUN device).
    NotRoutable,
    NoRoute,
    TtlExpired,
    /// The best next hop is the link the packet came in on.
    Hairpin,
    /// The link has no endpoint yet (the peer has never contacted us).
    NoEndpoint,
    /// boringtun refused the packet for another reason (e.g. no session yet).
    TunnelError,
    /// The source's segment may not reach the destination's
    /// ([`Segment::may_reach`](freimesh_proto::segment::Segment::may_reach)),
    /// e.g. a public client toward the intranet.
    SegmentPolicy,
    /// A mesh neighbour sent a packet from a source it is not a next hop
    /// toward (primary or alternate): a spoofed source, see
    /// `Engine::source_feasible`.
    SourceNotFeasible,
}

impl DropReason {
    pub const ALL: [DropReason; 14] = [
        DropReason::MalformedDatagram,
        DropReason::Unauthenticated,
        DropReason::UnknownPeer,
        DropReason::UnknownIndex,
        DropReason::MalformedPacket,
        DropReason::SpoofedSource,
        DropReason::NotRoutable,
        DropReason::NoRoute,
        DropReason::TtlExpired,
        DropReason::Hairpin,
        DropReason::NoEndpoint,
        DropReason::TunnelError,
        DropReason::SegmentPolicy,
        DropReason::SourceNotFeasible,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::MalformedDatagram => "malformed_datagram",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::MalformedPacket => "malformed_packet",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NotRoutable => "not_routable",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::Hairpin => "hairpin",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::TunnelError => "tunnel_error",
            DropReason::SegmentPolicy => "segment_policy",
            DropReason::SourceNotFeasible => "source_not_feasible",
        }
    }

    pub(super) fn slot(self) -> usize {
        self as usize
    }
}
