//! Engine tests over an in-memory underlay: engines exchange their
//! `Transmit` outputs through a loop, so whole meshes run in one thread.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::core::packet::tests::{ipv4_packet, ipv6_packet};

fn secret(n: u8) -> [u8; 32] {
    let mut s = [n; 32];
    s[0] &= 248;
    s[31] = (s[31] & 127) | 64;
    s
}

fn public(n: u8) -> PublicKeyBytes {
    PublicKeyBytes(PublicKey::from(&StaticSecret::from(secret(n))).to_bytes())
}

fn underlay(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 51820)
}

fn overlay(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, n)
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

/// A mesh of engines numbered 1..; engine `n` listens on `underlay(n)` and
/// owns `overlay(n)`.
struct Mesh {
    nodes: Vec<(u8, Engine)>,
    delivered: Vec<(u8, Vec<u8>)>,
    now: Instant,
    /// Datagrams to drop in flight, by (from, to).
    cut: Vec<(u8, u8)>,
}

impl Mesh {
    /// `links` are undirected edges; every node gets a /32 route for every
    /// other node via `routes(node, dst)`.
    fn new(count: u8, links: &[(u8, u8)], routes: impl Fn(u8, u8) -> Vec<u8>) -> Self {
        let now = Instant::now();
        let mut nodes = Vec::new();
        for n in 1..=count {
            let peers: Vec<u8> = links
                .iter()
                .filter_map(|&(a, b)| {
                    if a == n {
                        Some(b)
                    } else if b == n {
                        Some(a)
                    } else {
                        None
                    }
                })
                .collect();
            let mut engine = Engine::new(
                secret(n),
                peers.iter().map(|&p| spec(p)).collect(),
                u32::from(n) * 1000,
            )
            .expect("engine");
            engine
                .insert_route(IpNet::from(IpAddr::V4(overlay(n))), vec![Hop::Local])
                .expect("local route");
            for dst in (1..=count).filter(|d| *d != n) {
                let hops: Vec<Hop> = routes(n, dst)
                    .into_iter()
                    .map(|via| Hop::Link(engine.link_id(&format!("n{via}")).expect("link")))
                    .collect();
                if !hops.is_empty() {
                    engine
                        .insert_route(IpNet::from(IpAddr::V4(overlay(dst))), hops)
                        .expect("route");
                }
            }
            nodes.push((n, engine));
        }
        let mut mesh = Self {
            nodes,
            delivered: Vec::new(),
            now,
            cut: Vec::new(),
        };
        for (_, engine) in &mut mesh.nodes {
            engine.start(now);
        }
        mesh.run();
        mesh
    }

    fn engine(&mut self, n: u8) -> &mut Engine {
        &mut self
            .nodes
            .iter_mut()
            .find(|(id, _)| *id == n)
            .expect("node")
            .1
    }

    /// Moves datagrams until the mesh is quiet.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                let from = self.nodes[i].0;
                while let Some(out) = self.nodes[i].1.poll_output() {
                    moved = true;
                    match out {
                        Output::Local(p) => self.delivered.push((from, p)),
                        Output::Transmit { to, datagram } => {
                            let Some(j) = self.nodes.iter().position(|(n, _)| underlay(*n) == to)
                            else {
                                continue;
                            };
                            if self.cut.contains(&(from, self.nodes[j].0)) {
                                continue;
                            }
                            let now = self.now;
                            self.nodes[j]
                                .1
                                .handle_datagram(underlay(from), &datagram, now);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("mesh never went quiet: a forwarding loop?");
    }

    fn send(&mut self, from: u8, mut packet: Vec<u8>) {
        let now = self.now;
        self.engine(from).handle_local_packet(&mut packet, now);
        self.run();
    }
}

/// Line 1 - 2 - 3 - 4, shortest paths.
fn line() -> Mesh {
    Mesh::new(4, &[(1, 2), (2, 3), (3, 4)], |n, dst| {
        vec![if dst > n { n + 1 } else { n - 1 }]
    })
}

#[test]
fn three_hops_deliver_with_ttl_decremented_twice() {
    let mut mesh = line();
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"hello"));
    assert_eq!(mesh.delivered.len(), 1);
    let (node, packet) = &mesh.delivered[0];
    assert_eq!(*node, 4);
    let header = IpPacket::parse(packet).expect("valid on arrival");
    assert_eq!(header.ttl, 62, "two transit hops");
    assert_eq!(&packet[20..], b"hello");
    assert_eq!(mesh.engine(2).counters().forwarded, 1);
    assert_eq!(mesh.engine(3).counters().forwarded, 1);
    // And back.
    mesh.send(4, ipv4_packet(overlay(4), overlay(1), 64, b"back"));
    assert_eq!(mesh.delivered.last().map(|(n, _)| *n), Some(1));
}

#[test]
fn ipv6_crosses_the_mesh() {
    let mut mesh = line();
    let a: std::net::Ipv6Addr = "fd99::1".parse().expect("addr");
    let d: std::net::Ipv6Addr = "fd99::4".parse().expect("addr");
    mesh.engine(4)
        .insert_route(IpNet::from(IpAddr::V6(d)), vec![Hop::Local])
        .expect("route");
    for (n, via) in [(1u8, 2u8), (2, 3), (3, 4)] {
        let link = mesh.engine(n).link_id(&format!("n{via}")).expect("link");
        mesh.engine(n)
            .insert_route("fd99::/64".parse().expect("net"), vec![Hop::Link(link)])
            .expect("route");
    }
    mesh.send(1, ipv6_packet(a, d, 3, b"v6"));
    assert_eq!(mesh.delivered.len(), 1);
    assert_eq!(IpPacket::parse(&mesh.delivered[0].1).expect("valid").ttl, 1);
}

#[test]
fn ttl_expires_in_transit() {
    let mut mesh = line();
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 2, b"x"));
    assert!(mesh.delivered.is_empty());
    assert_eq!(mesh.engine(3).drops(DropReason::TtlExpired), 1);
}

#[test]
fn link_local_and_multicast_are_never_forwarded() {
    let mut mesh = line();
    let all_routers: std::net::Ipv6Addr = "ff02::2".parse().expect("addr");
    let link_local: std::net::Ipv6Addr = "fe80::1".parse().expect("addr");
    mesh.engine(2)
        .insert_route("::/0".parse().expect("net"), vec![Hop::Local])
        .expect("route");
    mesh.send(1, ipv6_packet(link_local, all_routers, 255, b"rs"));
    mesh.send(1, ipv4_packet(overlay(1), Ipv4Addr::BROADCAST, 64, b"x"));
    mesh.send(
        1,
        ipv4_packet(overlay(1), Ipv4Addr::new(224, 0, 0, 5), 64, b"x"),
    );
    assert_eq!(mesh.engine(1).drops(DropReason::NotRoutable), 3);
    assert_eq!(mesh.engine(1).drops(DropReason::NoRoute), 0);
    assert!(mesh.delivered.is_empty());
}

#[test]
fn no_route_is_counted() {
    let mut mesh = line();
    mesh.send(
        2,
        ipv4_packet(overlay(2), Ipv4Addr::new(203, 0, 113, 9), 64, b"x"),
    );
    assert_eq!(mesh.engine(2).drops(DropReason::NoRoute), 1);
}

#[test]
fn spoofed_source_is_dropped_when_sources_are_restricted() {
    let mut mesh = line();
    mesh.engine(2).links[0].allowed_sources = vec!["10.99.0.1/32".parse().expect("net")];
    mesh.send(
        1,
        ipv4_packet(Ipv4Addr::new(10, 99, 0, 77), overlay(3), 64, b"x"),
    );
    assert_eq!(mesh.engine(2).drops(DropReason::SpoofedSource), 1);
    mesh.send(1, ipv4_packet(overlay(1), overlay(3), 64, b"x"));
    assert_eq!(mesh.delivered.len(), 1);
}

#[test]
fn alternate_next_hop_takes_over_when_the_primary_link_is_down() {
    // Diamond: 1 - {2, 3} - 4.
    let mut mesh = Mesh::new(4, &[(1, 2), (1, 3), (2, 4), (3, 4)], |n, dst| {
        match (n, dst) {
            (1, 4) => vec![2, 3],
            (4, 1) => vec![2, 3],
            (1, d) | (4, d) => vec![d],
            (_, d) if d == 1 || d == 4 => vec![d],
            _ => vec![],
        }
    });
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"a"));
    assert_eq!(mesh.engine(2).counters().forwarded, 1);
    let via2 = mesh.engine(1).link_id("n2").expect("link");
    // Two groups use the link: [n2, n3] toward node 4 and [n2] toward node 2.
    assert_eq!(mesh.engine(1).set_link_up(via2, false), 2);
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"b"));
    assert_eq!(mesh.engine(3).counters().forwarded, 1);
    assert_eq!(mesh.delivered.len(), 2);
}

#[test]
fn roaming_peer_updates_the_endpoint() {
    let mut mesh = line();
    // Node 2 moves: its datagrams now come from a new address.
    let new_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 40000);
    let mut packet = ipv4_packet(overlay(2), overlay(1), 64, b"moved");
    let now = mesh.now;
    mesh.engine(2).handle_local_packet(&mut packet, now);
    let Some(Output::Transmit { datagram, .. }) = mesh.engine(2).poll_output() else {
        panic!("expected a datagram");
    };
    mesh.engine(1).handle_datagram(new_addr, &datagram, now);
    let status = mesh.engine(1).status(now);
    assert_eq!(status.links[0].endpoint, Some(new_addr));
}

#[test]
fn unknown_peer_and_garbage_are_counted() {
    let mut mesh = line();
    // Node 9 is nobody's neighbour, but knows node 1's key.
    let mut stranger = Engine::new(secret(9), vec![spec(1)], 1).expect("engine");
    stranger.start(mesh.now);
    let Some(Output::Transmit { datagram, .. }) = stranger.poll_output() else {
        panic!("stranger initiates");
    };
    let now = mesh.now;
    mesh.engine(1).handle_datagram(underlay(9), &datagram, now);
    assert_eq!(mesh.engine(1).drops(DropReason::UnknownPeer), 1);
    mesh.engine(1).handle_datagram(
        underlay(9),
        b"\x04\0\0\0garbage-that-is-long-enough-for-data",
        now,
    );
    mesh.engine(1)
        .handle_datagram(underlay(9), b"nonsense", now);
    assert_eq!(mesh.engine(1).drops(DropReason::MalformedDatagram), 1);
    assert_eq!(mesh.engine(1).drops(DropReason::UnknownIndex), 1);
    assert!(mesh.engine(1).poll_output().is_none());
}

#[test]
fn status_lists_links_and_routes_by_name() {
    let mut mesh = line();
    mesh.send(1, ipv4_packet(overlay(1), overlay(2), 64, b"x"));
    let now = mesh.now;
    let status = mesh.engine(2).status(now);
    assert_eq!(status.links.len(), 2);
    assert!(status.links.iter().all(|l| l.handshake_age_ms.is_some()));
    let to4 = status
        .routes
        .iter()
        .find(|r| r.prefix == "10.99.0.4/32".parse().expect("net"))
        .expect("route");
    assert_eq!(to4.via, vec!["n3".to_owned()]);
    assert_eq!(to4.active.as_deref(), Some("n3"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn garbage_datagrams_never_panic_and_never_produce_traffic(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
        kinds in proptest::collection::vec(1u8..=4, 1..20),
    ) {
        let mut engine = Engine::new(secret(1), vec![spec(2)], 7).expect("engine");
        let now = Instant::now();
        for (mut datagram, kind) in datagrams.into_iter().zip(kinds) {
            // Make many of them look like real WireGuard headers.
            if datagram.len() >= 4 {
                datagram[..4].copy_from_slice(&u32::from(kind).to_le_bytes());
            }
            engine.handle_datagram(underlay(2), &datagram, now);
            engine.handle_local_packet(&mut datagram.clone(), now);
        }
        while let Some(out) = engine.poll_output() {
            prop_assert!(!matches!(out, Output::Local(_)), "garbage reached the local stack");
        }
    }
}
