//! The data-plane half of the adversary lab: an honest agent engine `h`
//! with an honest neighbour `n` (a second engine, owner of the building LAN
//! 10.20.0.0/24) and a hostile neighbour `a` that is a real WireGuard peer
//! (boringtun `Tunn` driven by the test) sending whatever it likes inside
//! its tunnel: spoofed intranet sources, withdrawal floods, lying RTT
//! echoes and malformed mesh messages. Datagrams move in memory.
//!
//! ```text
//!   a (hostile, 10.99.0.9) ── h (10.99.0.1) ── n (10.99.0.2, LAN 10.20.0.0/24)
//! ```
//!
//! `h`'s routes are what the controller would give it: the LAN and `n`
//! via `n`; `a` via `a`; and the mesh aggregate 10.0.0.0/8 via `n` with
//! `a` as its alternate, so `a` is a legitimate next hop for *some* traffic
//! (the case a withdrawal flood exploits).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_agent::core::table::Hop;
use freimesh_agent::core::{Engine, LinkSpec, Output};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::mesh::{MeshMessage, MeshPacket, PREFIXES_PER_MESSAGE, WirePrefix};
use ipnet::IpNet;

use super::underlay;

const H: u8 = 1;
const N: u8 = 2;
const A: u8 = 9;
/// The flood: this many distinct /32s withdrawn by the hostile neighbour.
const WITHDRAWN_BY_FLOOD: u32 = 40_000;

fn secret(n: u8) -> [u8; 32] {
    let mut s = [n; 32];
    s[0] &= 248;
    s[31] = (s[31] & 127) | 64;
    s
}

fn public(n: u8) -> PublicKeyBytes {
    PublicKeyBytes(PublicKey::from(&StaticSecret::from(secret(n))).to_bytes())
}

fn overlay(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, n)
}

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn spec(n: u8) -> LinkSpec {
    LinkSpec {
        name: format!("n{n}"),
        peer: public(n),
        endpoint: Some(underlay(n)),
        keepalive: None,
        allowed_sources: Vec::new(),
        profile: "default".into(),
    }
}

/// Ones' complement sum for IPv4 header and UDP checksums.
fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded")
}

/// A well-formed IPv4/UDP packet.
fn udp4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).expect("len");
    let total = 20 + udp_len;
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&4000u16.to_be_bytes());
    udp.extend_from_slice(&5000u16.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = [
        &src.octets()[..],
        &dst.octets()[..],
        &[0, 17],
        &udp_len.to_be_bytes()[..],
    ]
    .concat();
    let c = checksum(&[&pseudo, &udp]);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

/// `h`, `n` and the hostile peer, with datagrams moved in memory.
struct Lab {
    h: Engine,
    n: Engine,
    a: Tunn,
    now: Instant,
    /// Packets `h` handed to its local stack.
    h_local: Vec<Vec<u8>>,
    /// Packets `n` handed to its local stack (the building LAN).
    n_local: Vec<Vec<u8>>,
    /// Inner packets the hostile peer received from `h`.
    a_inner: Vec<Vec<u8>>,
    incarnation: u32,
    sequence: u32,
}

impl Lab {
    fn new() -> Self {
        let now = Instant::now();
        let mut h = Engine::new(secret(H), vec![spec(N), spec(A)], 1000, now).expect("h");
        let (hn, ha) = (
            Hop::Link(h.link_id("n2").expect("n")),
            Hop::Link(h.link_id("n9").expect("a")),
        );
        for (prefix, hops) in [
            (net("10.99.0.1/32"), vec![Hop::Local]),
            (net("10.99.0.2/32"), vec![hn]),
            (net("10.20.0.0/24"), vec![hn]),
            (net("10.99.0.9/32"), vec![ha]),
            (net("10.0.0.0/8"), vec![hn, ha]),
        ] {
            h.insert_route(prefix, hops).expect("h route");
        }
        let mut n = Engine::new(secret(N), vec![spec(H)], 2000, now).expect("n");
        let nh = Hop::Link(n.link_id("n1").expect("h"));
        for (prefix, hops) in [
            (net("10.99.0.2/32"), vec![Hop::Local]),
            (net("10.20.0.0/24"), vec![Hop::Local]),
            (net("10.0.0.0/8"), vec![nh]),
        ] {
            n.insert_route(prefix, hops).expect("n route");
        }
        let a = Tunn::new(
            StaticSecret::from(secret(A)),
            PublicKey::from(public(H).0),
            None,
            None,
            9,
            None,
        );
        let mut lab = Self {
            h,
            n,
            a,
            now,
            h_local: Vec::new(),
            n_local: Vec::new(),
            a_inner: Vec::new(),
            incarnation: 0x0bad_0bad,
            sequence: 0,
        };
        lab.h.start(now);
        lab.n.start(now);
        lab.pump();
        lab
    }

    /// Moves datagrams until everyone is quiet.
    fn pump(&mut self) {
        let mut buf = vec![0u8; 65_536];
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(out) = self.h.poll_output() {
                moved = true;
                match out {
                    Output::Transmit { to, datagram } if to == underlay(N) => {
                        self.n.handle_datagram(underlay(H), &datagram, self.now);
                    }
                    Output::Transmit { to, datagram } if to == underlay(A) => {
                        let mut from_h = Some(datagram);
                        loop {
                            let input = from_h.take();
                            let result = self.a.decapsulate(
                                Some(underlay(H).ip()),
                                input.as_deref().unwrap_or(&[]),
                                &mut buf,
                            );
                            match result {
                                TunnResult::WriteToNetwork(d) => {
                                    let d = d.to_vec();
                                    self.h.handle_datagram(underlay(A), &d, self.now);
                                }
                                TunnResult::WriteToTunnelV4(p, _)
                                | TunnResult::WriteToTunnelV6(p, _) => {
                                    self.a_inner.push(p.to_vec());
                                    break;
                                }
                                TunnResult::Done | TunnResult::Err(_) => break,
                            }
                        }
                    }
                    Output::Transmit { .. } => {}
                    Output::Local(p) => self.h_local.push(p),
                    Output::ResolveUnderlay { .. } => {}
                }
            }
            while let Some(out) = self.n.poll_output() {
                moved = true;
                match out {
                    Output::Transmit { to, datagram } if to == underlay(H) => {
                        self.h.handle_datagram(underlay(N), &datagram, self.now);
                    }
                    Output::Local(p) => self.n_local.push(p),
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the lab never went quiet");
    }

    /// Advances the virtual clock (engines only; boringtun reads its own).
    fn advance(&mut self, ms: u64) {
        let end = self.now + std::time::Duration::from_millis(ms);
        while self.now < end {
            self.now += std::time::Duration::from_millis(10);
            self.h.handle_timeout(self.now);
            self.n.handle_timeout(self.now);
            self.pump();
        }
    }

    /// The hostile peer sends `packet` through its tunnel to `h`.
    fn hostile_sends(&mut self, packet: &[u8]) {
        let mut buf = vec![0u8; packet.len() + 256];
        match self.a.encapsulate(packet, &mut buf) {
            TunnResult::WriteToNetwork(d) => {
                let d = d.to_vec();
                self.h.handle_datagram(underlay(A), &d, self.now);
            }
            other => panic!("hostile peer could not encapsulate: {other:?}"),
        }
        self.pump();
    }

    fn hostile_mesh(&mut self, message: MeshMessage) {
        self.sequence += 1;
        let packet = MeshPacket {
            incarnation: self.incarnation,
            sequence: self.sequence,
            message,
        }
        .encode();
        self.hostile_sends(&packet);
    }

    fn drops(&self) -> std::collections::BTreeMap<String, u64> {
        self.h.status(self.now).drops
    }

    fn primary(&self, addr: Ipv4Addr) -> Option<Hop> {
        self.h.table().lookup(IpAddr::V4(addr))
    }
}

/// Sets up the lab and checks the hostile link carries traffic at all
/// (positive control: the attacker's own source is accepted).
fn established() -> Lab {
    let mut lab = Lab::new();
    lab.advance(300);
    let before = lab.h_local.len();
    lab.hostile_sends(&udp4(overlay(A), overlay(H), b"hello from a"));
    assert_eq!(
        lab.h_local.len(),
        before + 1,
        "the hostile link works for the attacker's own address (drops {:?})",
        lab.drops()
    );
    lab
}

#[test]
fn a_spoofed_intranet_source_is_dropped_and_counted() {
    let mut lab = established();
    let local_before = lab.h_local.len();
    let lan_before = lab.n_local.len();
    let total_before: u64 = lab.drops().values().sum();
    // From the building LAN's address (behind n), to h itself and through h
    // to n: a is no next hop toward 10.20.0.0/24, so neither is feasible.
    let spoofed = Ipv4Addr::new(10, 20, 0, 7);
    lab.hostile_sends(&udp4(spoofed, overlay(H), b"spoof to h"));
    lab.hostile_sends(&udp4(spoofed, overlay(N), b"spoof via h"));
    lab.hostile_sends(&udp4(overlay(N), overlay(H), b"spoof n itself"));
    assert_eq!(
        lab.h_local.len(),
        local_before,
        "a spoofed packet reached h"
    );
    assert_eq!(lab.n_local.len(), lan_before, "a spoofed packet reached n");
    let drops = lab.drops();
    let total_after: u64 = drops.values().sum();
    assert_eq!(
        total_after - total_before,
        3,
        "each spoof counted: {drops:?}"
    );
    assert!(
        drops
            .iter()
            .any(|(name, count)| name.contains("feasible") && *count == 3),
        "a counter names the reverse-path check: {drops:?}"
    );
}

#[test]
fn a_withdrawal_flood_leaves_bounded_state_and_honest_routes() {
    let mut lab = established();
    let routes_before = lab.h.table().len();
    let per_message = u32::try_from(PREFIXES_PER_MESSAGE).expect("small");
    let mut next = 0u32;
    let base = u32::from(Ipv4Addr::new(10, 100, 0, 0));
    while next < WITHDRAWN_BY_FLOOD {
        let prefixes: Vec<WirePrefix> = (next..(next + per_message).min(WITHDRAWN_BY_FLOOD))
            .map(|i| WirePrefix {
                addr: IpAddr::V4(Ipv4Addr::from(base + i)),
                len: 32,
            })
            .collect();
        next += per_message;
        lab.hostile_mesh(MeshMessage::Withdraw(prefixes));
    }
    let routes_after = lab.h.table().len();
    println!(
        "withdrawal flood: {WITHDRAWN_BY_FLOOD} prefixes withdrawn by one neighbour; h's table {routes_before} → {routes_after} entries"
    );
    assert!(
        // `MAX_DERIVED_ROUTES_PER_LINK` in the agent's repair module.
        routes_after - routes_before <= 256,
        "the flood grew h's table from {routes_before} to {routes_after} entries"
    );
    // Honest routes: n and its LAN still go to n.
    let to_n = Hop::Link(lab.h.link_id("n2").expect("n"));
    assert_eq!(lab.primary(overlay(N)), Some(to_n));
    assert_eq!(lab.primary(Ipv4Addr::new(10, 20, 0, 7)), Some(to_n));
    let lan_before = lab.n_local.len();
    let mut packet = udp4(overlay(H), Ipv4Addr::new(10, 20, 0, 7), b"to the LAN");
    lab.h.handle_local_packet(&mut packet, lab.now);
    lab.pump();
    assert_eq!(lab.n_local.len(), lan_before + 1, "h still reaches the LAN");
}

#[test]
fn a_neighbour_cannot_make_itself_look_close() {
    let mut lab = established();
    // Let h send LinkState messages (with its clock) to a.
    lab.advance(2_000);
    let clock = lab
        .a_inner
        .iter()
        .rev()
        .filter_map(|p| MeshPacket::decode(p).ok())
        .find_map(|m| match m.message {
            MeshMessage::LinkState { timing, .. } => Some(timing.clock_us),
            _ => None,
        })
        .expect("h sent a LinkState with its clock");
    // 30 ms later a echoes it, claiming to have held it for longer than
    // has passed (and, in a second try, for u32::MAX µs so the difference
    // wraps).
    lab.advance(30);
    for held_us in [60_000, u32::MAX - 5] {
        lab.hostile_mesh(MeshMessage::LinkState {
            hears_you: true,
            timing: freimesh_proto::mesh::Timing {
                clock_us: 1,
                echo_us: clock,
                held_us,
                interval_ms: 50,
            },
        });
        let status = lab.h.status(lab.now);
        let link = status
            .links
            .iter()
            .find(|l| l.name == "n9")
            .expect("the hostile link");
        if let Some(rtt) = link.rtt_us {
            assert!(
                rtt >= 1_000,
                "a lying held_us of {held_us} µs made the neighbour look {rtt} µs away"
            );
        }
    }
}

#[test]
fn malformed_and_oversized_mesh_messages_are_refused() {
    let mut lab = established();
    let routes_before = lab.h.table().len();
    // A Withdraw whose count claims far more prefixes than the packet holds,
    // and one larger than the mesh message limit.
    let mut lying = MeshPacket {
        incarnation: 7,
        sequence: 1,
        message: MeshMessage::Withdraw(vec![WirePrefix {
            addr: IpAddr::V4(Ipv4Addr::new(10, 99, 0, 50)),
            len: 32,
        }]),
    }
    .encode();
    let count_at = 40 + 12;
    lying[count_at..count_at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
    lab.hostile_sends(&lying);
    let huge: Vec<WirePrefix> = (0..1_000u32)
        .map(|i| WirePrefix {
            addr: IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 98, 0, 0)) + i)),
            len: 32,
        })
        .collect();
    let oversized = MeshPacket {
        incarnation: 7,
        sequence: 2,
        message: MeshMessage::Withdraw(huge),
    }
    .encode();
    assert!(oversized.len() > freimesh_proto::mesh::MAX_PACKET);
    lab.hostile_sends(&oversized);
    // Neither withdrew n's route.
    let to_n = Hop::Link(lab.h.link_id("n2").expect("n"));
    assert_eq!(lab.primary(overlay(N)), Some(to_n));
    assert_eq!(lab.h.table().len(), routes_before);
}
