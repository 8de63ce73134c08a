//! The forwarding path: from a datagram to a decision. One decrypt, one
//! validation, one lookup, one encrypt per packet; every reason to drop a
//! packet has its own counter.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::mesh::MeshPacket;

use super::{DropReason, Engine, INDEX_MASK, Ingress, MessageKind, Output};
use crate::core::LinkId;
use crate::core::packet::{IpPacket, decrement_ttl};
use crate::core::table::Hop;

impl Engine {
    /// Finds the link a datagram belongs to, or counts why there is none.
    pub(super) fn classify(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<(LinkId, MessageKind)> {
        #[cfg(feature = "sim")]
        if self.tunnels == super::TunnelKind::Simulated {
            return self.classify_simulated(datagram);
        }
        let packet = match Tunn::parse_incoming_packet(datagram) {
            Ok(packet) => packet,
            Err(_) => {
                self.drop_packet(DropReason::MalformedDatagram);
                return None;
            }
        };
        let (receiver_index, kind) = match packet {
            Packet::HandshakeInit(ref init) => {
                // Check the cheap MAC (and the cookie under load) before the
                // Diffie-Hellman that identifies the initiator.
                match self.rate_limiter.verify_packet(
                    Some(from.ip()),
                    datagram,
                    &mut self.tx_scratch,
                ) {
                    Ok(_) => {}
                    Err(TunnResult::WriteToNetwork(cookie)) => {
                        self.outputs.push_back(Output::Transmit {
                            to: from,
                            datagram: self.buffers.copy_of(cookie),
                        });
                        return None;
                    }
                    Err(_) => {
                        self.drop_packet(DropReason::Unauthenticated);
                        return None;
                    }
                }
                let Ok(half) = parse_handshake_anon(&self.secret, &self.public, init) else {
                    self.drop_packet(DropReason::Unauthenticated);
                    return None;
                };
                let peer = PublicKeyBytes(half.peer_static_public);
                return match self.links.iter().find(|l| l.peer == peer && !l.retired) {
                    Some(link) => Some((link.id, MessageKind::HandshakeInit)),
                    None => {
                        tracing::debug!(%from, %peer, "handshake from a key that is not a link");
                        self.drop_packet(DropReason::UnknownPeer);
                        None
                    }
                };
            }
            Packet::HandshakeResponse(ref p) => (p.receiver_idx, MessageKind::HandshakeResponse),
            Packet::PacketCookieReply(ref p) => (p.receiver_idx, MessageKind::CookieReply),
            Packet::PacketData(ref p) => (p.receiver_idx, MessageKind::Data),
        };
        self.link_at_index(receiver_index).map(|l| (l, kind))
    }

    /// The link a receiver index belongs to, or counts an unknown index.
    pub(super) fn link_at_index(&mut self, receiver_index: u32) -> Option<LinkId> {
        let slot = (receiver_index >> 8).wrapping_sub(self.index_base) & INDEX_MASK;
        match usize::try_from(slot)
            .ok()
            .filter(|s| self.links.get(*s).is_some_and(|l| !l.retired))
        {
            Some(slot) => Some(LinkId(slot)),
            None => {
                self.drop_packet(DropReason::UnknownIndex);
                None
            }
        }
    }

    pub(super) fn decapsulate(
        &mut self,
        link_id: LinkId,
        kind: MessageKind,
        from: SocketAddr,
        datagram: &[u8],
        rx: &mut [u8],
        now: Instant,
    ) {
        let link = &mut self.links[link_id.0];
        match link.tunn.decapsulate(Some(from.ip()), datagram, rx, now) {
            TunnResult::WriteToNetwork(reply) => {
                // We answer a handshake initiation with a response (type 2)
                // and a response with a keepalive (type 4): both mean the
                // peer proved its key. A cookie reply (type 3) proves nothing.
                let reply_type = reply.first().copied();
                let proven = matches!(
                    (kind, reply_type),
                    (MessageKind::HandshakeInit, Some(2))
                        | (MessageKind::HandshakeResponse, Some(4))
                );
                let reply = self.buffers.copy_of(reply);
                if proven {
                    self.authenticated(link_id, from, now);
                }
                self.outputs.push_back(Output::Transmit {
                    to: from,
                    datagram: reply,
                });
                self.flush_queued(link_id, rx, now);
            }
            TunnResult::WriteToTunnelV4(packet, _) | TunnResult::WriteToTunnelV6(packet, _) => {
                let len = packet.len();
                self.authenticated(link_id, from, now);
                let link = &mut self.links[link_id.0];
                link.counters.rx_packets += 1;
                link.counters.rx_bytes += len as u64;
                if MeshPacket::is_mesh_packet(&rx[..len]) {
                    match MeshPacket::decode(&rx[..len]) {
                        Ok(packet) => {
                            let link = &mut self.links[link_id.0];
                            // WireGuard can deliver a message queued during a
                            // handshake after a newer one: keep the newest.
                            if packet.is_newer_than(link.mesh_rx_last) {
                                link.mesh_rx_last = Some((packet.incarnation, packet.sequence));
                                self.handle_mesh_message(link_id, packet.message, now);
                            }
                        }
                        Err(err) => {
                            tracing::debug!(link = %self.links[link_id.0].name, %err, "bad mesh message");
                            self.drop_packet(DropReason::MalformedPacket);
                        }
                    }
                    return;
                }
                self.route(&mut rx[..len], Ingress::Link(link_id), now);
            }
            TunnResult::Done => {
                // An empty data message is a keepalive: proof of life, and
                // the neighbour's heartbeat, which ours may answer.
                if kind == MessageKind::Data {
                    self.authenticated(link_id, from, now);
                    self.follow_neighbour(link_id, now);
                }
            }
            TunnResult::Err(err) => {
                let reason = match err {
                    WireGuardError::InvalidPacket => DropReason::MalformedPacket,
                    WireGuardError::InvalidMac
                    | WireGuardError::InvalidAeadTag
                    | WireGuardError::InvalidCounter
                    | WireGuardError::DuplicateCounter
                    | WireGuardError::WrongKey
                    | WireGuardError::WrongIndex
                    | WireGuardError::WrongTai64nTimestamp
                    | WireGuardError::InvalidTai64nTimestamp => DropReason::Unauthenticated,
                    _ => DropReason::TunnelError,
                };
                tracing::trace!(link = %self.links[link_id.0].name, %from, ?err, "datagram dropped");
                self.drop_packet(reason);
            }
        }
    }

    pub(super) fn authenticated(&mut self, link_id: LinkId, from: SocketAddr, now: Instant) {
        let link = &mut self.links[link_id.0];
        if let Some(previous) = link.authenticated(from, now) {
            tracing::info!(link = %link.name, ?previous, endpoint = %from, "peer endpoint updated");
            self.outputs.push_back(Output::ResolveUnderlay {
                link: link_id,
                peer: from.ip(),
            });
        }
        if let Some(transition) = self.links[link_id.0].liveness.heard(now) {
            self.apply_transition(link_id, transition, now);
        }
        if self.links[link_id.0].liveness.take_hearing_resumed() {
            self.send_link_state(link_id, now);
        }
    }

    /// Sends the packets boringtun queued while a handshake was in flight.
    pub(super) fn flush_queued(&mut self, link_id: LinkId, scratch: &mut [u8], now: Instant) {
        let link = &mut self.links[link_id.0];
        while let TunnResult::WriteToNetwork(datagram) =
            link.tunn.decapsulate(None, &[], scratch, now)
        {
            match link.endpoint {
                Some(to) => self.outputs.push_back(Output::Transmit {
                    to,
                    datagram: self.buffers.copy_of(datagram),
                }),
                None => {
                    self.drops[DropReason::NoEndpoint.slot()] += 1;
                }
            }
        }
    }

    pub(super) fn initiate(&mut self, link_id: LinkId, force: bool, now: Instant) {
        let link = &mut self.links[link_id.0];
        let Some(to) = link.endpoint else {
            return;
        };
        link.liveness.sent(now);
        if let TunnResult::WriteToNetwork(datagram) =
            link.tunn
                .format_handshake_initiation(&mut self.tx_scratch, force, now)
        {
            self.outputs.push_back(Output::Transmit {
                to,
                datagram: self.buffers.copy_of(datagram),
            });
        }
    }

    /// Validates, routes and sends one packet.
    pub(super) fn route(&mut self, packet: &mut [u8], ingress: Ingress, now: Instant) {
        let header = match IpPacket::parse(packet) {
            Ok(header) => header,
            Err(err) => {
                tracing::trace!(ingress = %self.ingress_name(ingress), %err, "malformed packet dropped");
                self.drop_packet(DropReason::MalformedPacket);
                return;
            }
        };
        let packet = &mut packet[..header.len];
        if !is_routable(header.dst) {
            self.drop_packet(DropReason::NotRoutable);
            return;
        }
        if !self.admit(header.src, header.dst, ingress) {
            return;
        }
        let Some(hop) = self.table.lookup(header.dst) else {
            // The segment, never the address: it may be a public client's.
            tracing::trace!(ingress = %self.ingress_name(ingress), dst_segment = ?self.segments.segment(header.dst), "no route");
            self.drop_packet(DropReason::NoRoute);
            return;
        };
        match (hop, ingress) {
            (Hop::Local, Ingress::Local) => {
                // The backend only hands us packets for elsewhere; one for
                // ourselves means its routes disagree with the table.
                self.drop_packet(DropReason::Hairpin);
            }
            // Out through this gateway's uplink: its kernel forwards (and
            // NATs) it. From the local backend too: a gateway's own public
            // clients reach the TUN by policy routing, and the kernel sends
            // what comes back out of it by its main table.
            (Hop::Local, Ingress::Link(_)) | (Hop::Uplink, _) => {
                self.counters.delivered_local += 1;
                self.outputs.push_back(Output::Local(packet.to_vec()));
            }
            (Hop::Link(out), Ingress::Link(inbound)) if out == inbound => {
                // The neighbour that sent it is our next hop: its table and
                // ours disagree (routes from different moments, say a
                // router that restarted from an older state file). Sending
                // it back would bounce it until its TTL ran out; a live
                // alternate of the route breaks the two-router loop.
                match self.u_turn_alternate(header.dst, inbound) {
                    Some(alternate) => {
                        if decrement_ttl(packet).is_err() {
                            self.drop_packet(DropReason::TtlExpired);
                            return;
                        }
                        self.counters.forwarded += 1;
                        self.counters.u_turns += 1;
                        self.send_on_link(alternate, packet, now);
                    }
                    None => self.drop_packet(DropReason::Hairpin),
                }
            }
            (Hop::Link(out), Ingress::Link(_)) => {
                if decrement_ttl(packet).is_err() {
                    self.drop_packet(DropReason::TtlExpired);
                    return;
                }
                self.counters.forwarded += 1;
                self.send_on_link(out, packet, now);
            }
            (Hop::Link(out), Ingress::Local) => self.send_on_link(out, packet, now),
            (Hop::Unreachable, _) => self.drop_packet(DropReason::NoRoute),
        }
    }

    /// The first live next hop toward `dst` other than `inbound`, the
    /// neighbour a packet came from (see the hairpin case in
    /// [`Self::route`]).
    fn u_turn_alternate(&self, dst: IpAddr, inbound: LinkId) -> Option<LinkId> {
        self.table
            .lookup_group(dst)?
            .hops()
            .iter()
            .find_map(|hop| match hop {
                Hop::Link(l) if *l != inbound && self.table.is_link_up(*l) => Some(*l),
                _ => None,
            })
    }

    pub(super) fn send_on_link(&mut self, link_id: LinkId, packet: &[u8], now: Instant) {
        self.links[link_id.0].liveness.sent(now);
        self.encapsulate_to(link_id, packet, now);
    }

    /// Encrypts `packet` for `link_id` and queues the datagram, without
    /// telling liveness (heartbeats schedule themselves).
    pub(super) fn encapsulate_to(&mut self, link_id: LinkId, packet: &[u8], now: Instant) {
        let link = &mut self.links[link_id.0];
        match link.tunn.encapsulate(packet, &mut self.tx_scratch, now) {
            TunnResult::WriteToNetwork(datagram) => {
                link.counters.tx_packets += 1;
                link.counters.tx_bytes += packet.len() as u64;
                match link.endpoint {
                    Some(to) => self.outputs.push_back(Output::Transmit {
                        to,
                        datagram: self.buffers.copy_of(datagram),
                    }),
                    None => self.drops[DropReason::NoEndpoint.slot()] += 1,
                }
            }
            // Queued inside boringtun until the handshake completes.
            TunnResult::Done => {}
            TunnResult::Err(_) => self.drop_packet(DropReason::TunnelError),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
    }
}

/// Whether a router may forward a packet to `dst` at all.
pub(super) fn is_routable(dst: std::net::IpAddr) -> bool {
    match dst {
        std::net::IpAddr::V4(a) => {
            !(a.is_multicast() || a.is_broadcast() || a.is_unspecified() || a.is_link_local())
        }
        std::net::IpAddr::V6(a) => {
            !(a.is_multicast() || a.is_unspecified() || a.is_unicast_link_local())
        }
    }
}
