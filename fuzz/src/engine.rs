//! The engine fuzz harness: one agent engine (node A) with three links and a
//! routing table, and a real WireGuard session to its neighbour B held by a
//! bare boringtun `Tunn` on the fuzzer's side. The fuzzer's bytes reach A as
//! whole outer datagrams, as inner packets B encrypted (so they come out of
//! boringtun decrypted and reach the mesh-message decoder, the source checks
//! and forwarding), as packets from A's own TUN device, and as time passing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_agent::core::packet::IpPacket;
use freimesh_agent::core::table::Hop;
use freimesh_agent::core::{Engine, LinkSpec, Output, RouteSpec};
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
    pub const OPS: u8 = 5;
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

/// Node A with links to B (session up), C and D (no session: packets routed
/// there start a handshake and wait), and routes for every segment.
pub struct Harness {
    engine: Engine,
    peer_b: Tunn,
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
            spec(vec![d], Segment::Intranet),
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
        let peer_b = Tunn::new(
            StaticSecret::from(secret(2)),
            PublicKey::from(public(1).0),
            None,
            None,
            0x0012_3400,
            None,
        );
        let mut harness = Self {
            engine,
            peer_b,
            now,
            scratch: vec![0; SCRATCH],
        };
        harness.pump();
        let mut scratch = std::mem::take(&mut harness.scratch);
        if let TunnResult::WriteToNetwork(init) = harness
            .peer_b
            .format_handshake_initiation(&mut scratch, false)
        {
            let init = init.to_vec();
            harness.engine.handle_datagram(underlay(2), &init, now);
        }
        harness.scratch = scratch;
        harness.pump();
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

    fn step(&mut self, op: u8, bytes: &[u8]) {
        match op {
            op::OUTER_FROM_B => self.engine.handle_datagram(underlay(2), bytes, self.now),
            op::INNER_FROM_B => {
                let mut scratch = std::mem::take(&mut self.scratch);
                if let TunnResult::WriteToNetwork(datagram) =
                    self.peer_b.encapsulate(bytes, &mut scratch)
                {
                    let datagram = datagram.to_vec();
                    self.engine
                        .handle_datagram(underlay(2), &datagram, self.now);
                }
                self.scratch = scratch;
            }
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

    /// Moves A's outputs: datagrams for B go through B's session (B answers
    /// handshakes and keepalives), the rest is checked and dropped.
    fn pump(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        for _ in 0..MAX_PUMP_ROUNDS {
            let Some(output) = self.engine.poll_output() else {
                break;
            };
            match output {
                Output::Transmit { to, datagram } if to == underlay(2) => {
                    let mut answers = Vec::new();
                    let mut result = self.peer_b.decapsulate(None, &datagram, &mut scratch);
                    while let TunnResult::WriteToNetwork(answer) = result {
                        answers.push(answer.to_vec());
                        result = self.peer_b.decapsulate(None, &[], &mut scratch);
                    }
                    for answer in answers {
                        self.engine.handle_datagram(underlay(2), &answer, self.now);
                    }
                }
                Output::Transmit { .. } | Output::ResolveUnderlay { .. } => {}
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
