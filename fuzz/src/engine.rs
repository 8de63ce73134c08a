//! The engine fuzz harness: one agent engine (node A) with three links and a
//! routing table, and real WireGuard sessions to its neighbours B and C,
//! held by bare boringtun `Tunn`s on the fuzzer's side (a link counts as up
//! only after a handshake, and routes over a link that is down are not
//! used). The fuzzer's bytes reach A as whole outer datagrams, as inner
//! packets B or C encrypted (so they come out of boringtun decrypted and
//! reach the mesh-message decoder, the source checks and forwarding), as
//! packets from A's own TUN device, and as time passing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_agent::core::packet::IpPacket;
use freimesh_agent::core::table::Hop;
use freimesh_agent::core::{DropReason, Engine, LinkSpec, Output, RouteSpec};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::segment::Segment;
use ipnet::IpNet;

/// Scratch for boringtun: the largest UDP payload plus its overhead.
const SCRATCH: usize = 65_536 + 32;
/// How many outputs of A (and answers of B) one step may exchange before the
/// harness stops pumping: a loop between A and B is a bug the fuzzer should
/// not hang on; the real shell would keep going, so this only bounds time.
const MAX_PUMP_ROUNDS: usize = 64;

/// What one chunk of fuzz input does (`op % OPS`).
pub mod op {
    /// Bytes as an outer UDP datagram from B's underlay address.
    pub const OUTER_FROM_B: u8 = 0;
    /// Bytes as an inner packet, encrypted by B: A decrypts and handles it.
    pub const INNER_FROM_B: u8 = 1;
    /// Bytes as a packet from A's own TUN device.
    pub const LOCAL: u8 = 2;
    /// Bytes as an outer datagram from an address that is no link's.
    pub const OUTER_FROM_STRANGER: u8 = 3;
    /// The first two bytes (big endian) as milliseconds passing, then A's
    /// timers run.
    pub const TIME: u8 = 4;
    /// Bytes as an inner packet from C, whose link restricts its sources.
    pub const INNER_FROM_C: u8 = 5;
    pub const OPS: u8 = 6;
}

/// A clamped X25519 secret from a seed byte (fixed keys: runs reproduce).
fn secret(n: u8) -> [u8; 32] {
    let mut s = [n; 32];
    s[0] &= 248;
    s[31] = (s[31] & 127) | 64;
    s
}

fn public(n: u8) -> PublicKeyBytes {
    PublicKeyBytes(PublicKey::from(&StaticSecret::from(secret(n))).to_bytes())
}

/// Underlay address of node `n`.
pub fn underlay(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 51820)
}

/// Overlay IPv4 address of node `n` (A is 1, B 2, C 3, D 4).
pub fn overlay4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, n)
}

/// Overlay IPv6 address of node `n`.
pub fn overlay6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, u16::from(n))
}

fn net(addr: impl Into<IpAddr>, len: u8) -> IpNet {
    IpNet::new(addr.into(), len).expect("prefix length within the family")
}

fn link(n: u8, allowed_sources: Vec<IpNet>) -> LinkSpec {
    LinkSpec {
        name: format!("n{n}"),
        peer: public(n),
        endpoint: Some(underlay(n)),
        keepalive: None,
        allowed_sources,
        profile: "fast".into(),
    }
}

/// The neighbours the fuzzer speaks for: B (any source) and C (its own
/// addresses only). D never answers: packets routed to it start a handshake
/// and wait.
const PEERS: [u8; 2] = [2, 3];

/// Node A with links to B, C and D, and routes for every segment.
pub struct Harness {
    engine: Engine,
    /// The fuzzer's side of the sessions with B and C, in [`PEERS`] order.
    peers: Vec<Tunn>,
    now: Instant,
    scratch: Vec<u8>,
}

impl Harness {
    /// Builds A, installs its routes and completes B's handshake with it.
    pub fn new() -> Self {
        let now = Instant::now();
        let mut engine = Engine::new(
            secret(1),
            vec![
                link(2, Vec::new()),
                link(3, vec![net(overlay4(3), 32), net(overlay6(3), 128)]),
                link(4, Vec::new()),
            ],
            0x00ab_cd00,
            now,
        )
        .expect("engine with three distinct links");
        let id = |engine: &Engine, n: u8| {
            Hop::Link(engine.link_id(&format!("n{n}")).expect("configured link"))
        };
        let (b, c, d) = (id(&engine, 2), id(&engine, 3), id(&engine, 4));
        let spec = |hops: Vec<Hop>, segment| RouteSpec { hops, segment };
        let mut routes = BTreeMap::new();
        routes.insert(
            net(overlay4(2), 32),
            spec(vec![b, c], Segment::Infrastructure),
        );
        routes.insert(
            net(overlay4(3), 32),
            spec(vec![c, d], Segment::Infrastructure),
        );
        routes.insert(
            net(overlay6(3), 128),
            spec(vec![c], Segment::Infrastructure),
        );
        routes.insert(
            net(overlay4(4), 32),
            spec(vec![d, b], Segment::Infrastructure),
        );
        routes.insert(
            net(Ipv4Addr::new(10, 20, 4, 0), 24),
            spec(vec![d, c], Segment::Intranet),
        );
        routes.insert(
            net(Ipv4Addr::new(10, 77, 2, 0), 24),
            spec(vec![b], Segment::Public),
        );
        routes.insert(
            net(Ipv4Addr::UNSPECIFIED, 0),
            spec(vec![c, b], Segment::Internet),
        );
        routes.insert(
            net(Ipv6Addr::UNSPECIFIED, 0),
            spec(vec![b], Segment::Internet),
        );
        engine
            .set_routes(&routes)
            .expect("routes over configured links");
        for (prefix, len) in [
            (IpAddr::V4(overlay4(1)), 32),
            (IpAddr::V6(overlay6(1)), 128),
            (IpAddr::V4(Ipv4Addr::new(10, 20, 1, 0)), 24),
        ] {
            engine
                .insert_route(net(prefix, len), vec![Hop::Local])
                .expect("local route");
        }
        engine.start(now);
        let peers = PEERS
            .iter()
            .map(|&n| {
                Tunn::new(
                    StaticSecret::from(secret(n)),
                    PublicKey::from(public(1).0),
                    None,
                    None,
                    0x0012_3400 + u32::from(n),
                    None,
                )
            })
            .collect();
        let mut harness = Self {
            engine,
            peers,
            now,
            scratch: vec![0; SCRATCH],
        };
        harness.pump();
        for (i, &n) in PEERS.iter().enumerate() {
            let mut scratch = std::mem::take(&mut harness.scratch);
            if let TunnResult::WriteToNetwork(init) =
                harness.peers[i].format_handshake_initiation(&mut scratch, false)
            {
                let init = init.to_vec();
                harness.engine.handle_datagram(underlay(n), &init, now);
            }
            harness.scratch = scratch;
            harness.pump();
        }
        harness
    }

    /// Runs the fuzz input: chunks of `[op, len_hi, len_lo, bytes…]`.
    pub fn run(&mut self, mut input: &[u8]) {
        while let [op, hi, lo, rest @ ..] = input {
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
            let (bytes, tail) = rest.split_at(len);
            self.step(*op % op::OPS, bytes);
            input = tail;
        }
    }

    /// A's totals `(forwarded, delivered locally)`: lets the tests prove
    /// that the fuzzer's bytes reach forwarding.
    pub fn forwarded_and_delivered(&self) -> (u64, u64) {
        let counters = self.engine.counters();
        (counters.forwarded, counters.delivered_local)
    }

    /// How many packets A dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.engine.drops(reason)
    }

    fn step(&mut self, op: u8, bytes: &[u8]) {
        match op {
            op::OUTER_FROM_B => self.engine.handle_datagram(underlay(2), bytes, self.now),
            op::INNER_FROM_B => self.inner(0, bytes),
            op::INNER_FROM_C => self.inner(1, bytes),
            op::LOCAL => {
                let mut packet = bytes.to_vec();
                self.engine.handle_local_packet(&mut packet, self.now);
            }
            op::OUTER_FROM_STRANGER => {
                self.engine.handle_datagram(underlay(99), bytes, self.now);
            }
            _ => {
                let ms = match bytes {
                    [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                    [lo] => u16::from(*lo),
                    [] => 100,
                };
                self.now += Duration::from_millis(u64::from(ms));
                self.engine.handle_timeout(self.now);
            }
        }
        self.pump();
    }

    /// `bytes` encrypted by the peer `PEERS[index]` and given to A.
    fn inner(&mut self, index: usize, bytes: &[u8]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        if let TunnResult::WriteToNetwork(datagram) =
            self.peers[index].encapsulate(bytes, &mut scratch)
        {
            let datagram = datagram.to_vec();
            self.engine
                .handle_datagram(underlay(PEERS[index]), &datagram, self.now);
        }
        self.scratch = scratch;
    }

    /// Moves A's outputs: datagrams for B and C go through their sessions
    /// (they answer handshakes and keepalives), the rest is checked and
    /// dropped.
    fn pump(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        for _ in 0..MAX_PUMP_ROUNDS {
            let Some(output) = self.engine.poll_output() else {
                break;
            };
            match output {
                Output::Transmit { to, datagram } => {
                    let Some(index) = PEERS.iter().position(|&n| underlay(n) == to) else {
                        continue;
                    };
                    let peer = &mut self.peers[index];
                    let mut answers = Vec::new();
                    let mut result = peer.decapsulate(None, &datagram, &mut scratch);
                    while let TunnResult::WriteToNetwork(answer) = result {
                        answers.push(answer.to_vec());
                        result = peer.decapsulate(None, &[], &mut scratch);
                    }
                    for answer in answers {
                        self.engine.handle_datagram(to, &answer, self.now);
                    }
                }
                Output::ResolveUnderlay { .. } => {}
                Output::Local(packet) => {
                    // The engine hands its TUN device only packets it parsed.
                    assert!(
                        IpPacket::parse(&packet).is_ok(),
                        "engine delivered a malformed packet locally: {packet:02x?}"
                    );
                }
            }
        }
        self.scratch = scratch;
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeds;

    /// The seeds as the fuzzer first runs them: inner packets from B reach
    /// A's own addresses and its forwarding, mesh messages decode.
    #[test]
    fn seeds_reach_delivery_forwarding_and_the_mesh_decoder() {
        let (mut forwarded, mut delivered, mut malformed) = (0, 0, 0);
        for seed in seeds::engine() {
            let mut harness = Harness::new();
            harness.run(&seed);
            let (f, d) = harness.forwarded_and_delivered();
            forwarded += f;
            delivered += d;
            malformed += harness.drops(DropReason::MalformedPacket);
        }
        assert!(forwarded >= 5, "forwarded {forwarded}");
        assert!(delivered >= 2, "delivered {delivered}");
        assert_eq!(malformed, 0);
    }

    /// A garbled inner packet is dropped as malformed: decryption worked,
    /// so the fuzzer's bytes reach the inner parser.
    #[test]
    fn inner_garbage_reaches_the_packet_parser() {
        let mut harness = Harness::new();
        let mut packet = vec![0x45; 40];
        packet[2..4].copy_from_slice(&[0, 40]);
        harness.run(&[&[op::INNER_FROM_B, 0, 40][..], &packet].concat());
        let dropped: u64 = DropReason::ALL.iter().map(|r| harness.drops(*r)).sum();
        assert!(dropped >= 1, "nothing dropped");
        assert_eq!(harness.drops(DropReason::Unauthenticated), 0);
    }
}
