//! Engine tests over an in-memory underlay: engines exchange their
//! `Transmit` outputs through a loop, so whole meshes run in one thread.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::core::packet::IpPacket;
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
    spec_with_profile(n, "default")
}

fn spec_with_profile(n: u8, profile: &str) -> LinkSpec {
    LinkSpec {
        name: format!("n{n}"),
        peer: public(n),
        endpoint: Some(underlay(n)),
        keepalive: None,
        allowed_sources: Vec::new(),
        profile: profile.into(),
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
    /// Datagrams sent, by (from, to), cut or not.
    datagrams: BTreeMap<(u8, u8), usize>,
}

impl Mesh {
    /// `links` are undirected edges; every node gets a /32 route for every
    /// other node via `routes(node, dst)`.
    fn new(count: u8, links: &[(u8, u8)], routes: impl Fn(u8, u8) -> Vec<u8>) -> Self {
        Self::with_profile(count, links, routes, "default")
    }

    /// [`Mesh::new`] with every link on `profile`.
    fn with_profile(
        count: u8,
        links: &[(u8, u8)],
        routes: impl Fn(u8, u8) -> Vec<u8>,
        profile: &str,
    ) -> Self {
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
                peers
                    .iter()
                    .map(|&p| spec_with_profile(p, profile))
                    .collect(),
                u32::from(n) * 1000,
                now,
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
            datagrams: BTreeMap::new(),
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
                        Output::ResolveUnderlay { .. } => {}
                        Output::Transmit { to, datagram } => {
                            let Some(j) = self.nodes.iter().position(|(n, _)| underlay(*n) == to)
                            else {
                                continue;
                            };
                            *self.datagrams.entry((from, self.nodes[j].0)).or_default() += 1;
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

    /// Advances the virtual clock by `total` in `step`s, servicing every
    /// engine's timers and delivering what they send.
    fn advance(&mut self, total: Duration, step: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            let now = self.now;
            for (_, engine) in &mut self.nodes {
                engine.handle_timeout(now);
            }
            self.run();
        }
    }

    /// Advances the virtual clock by `total`, waking each engine only when
    /// its [`Engine::poll_timeout`] says, as the shells do; returns how
    /// many times each node woke.
    fn advance_by_deadlines(&mut self, total: Duration) -> BTreeMap<u8, usize> {
        let end = self.now + total;
        let mut wakes = BTreeMap::new();
        loop {
            let next = self
                .nodes
                .iter()
                .filter_map(|(_, e)| e.poll_timeout())
                .min()
                .filter(|t| *t <= end);
            let Some(next) = next else { break };
            self.now = self.now.max(next);
            let now = self.now;
            for (n, engine) in &mut self.nodes {
                if engine.poll_timeout().is_some_and(|t| t <= now) {
                    engine.handle_timeout(now);
                    *wakes.entry(*n).or_default() += 1;
                }
            }
            self.run();
        }
        self.now = end;
        wakes
    }

    /// Silently drops everything between `a` and `b`, both ways.
    fn cut(&mut self, a: u8, b: u8) {
        self.cut.push((a, b));
        self.cut.push((b, a));
    }

    fn restore(&mut self, a: u8, b: u8) {
        self.cut
            .retain(|&(x, y)| (x, y) != (a, b) && (x, y) != (b, a));
    }

    /// The node `from` sends to next for `dst`, per its table now.
    fn next_node(&mut self, from: u8, dst: u8) -> Option<u8> {
        let engine = self.engine(from);
        match engine.table().lookup(IpAddr::V4(overlay(dst)))? {
            Hop::Local | Hop::Uplink => Some(from),
            Hop::Unreachable => None,
            Hop::Link(id) => engine.links[id.0].name.trim_start_matches('n').parse().ok(),
        }
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
    mesh.engine(1)
        .insert_route(IpNet::from(IpAddr::V6(a)), vec![Hop::Local])
        .expect("route");
    mesh.engine(4)
        .insert_route(IpNet::from(IpAddr::V6(d)), vec![Hop::Local])
        .expect("route");
    for (n, via) in [(1u8, 2u8), (2, 3), (3, 4)] {
        let link = mesh.engine(n).link_id(&format!("n{via}")).expect("link");
        mesh.engine(n)
            .insert_route("fd99::/64".parse().expect("net"), vec![Hop::Link(link)])
            .expect("route");
    }
    // The way back: a source is accepted from a neighbour only if that
    // neighbour is a next hop toward it (feasible-source rule).
    for (n, via) in [(2u8, 1u8), (3, 2), (4, 3)] {
        let link = mesh.engine(n).link_id(&format!("n{via}")).expect("link");
        mesh.engine(n)
            .insert_route(IpNet::from(IpAddr::V6(a)), vec![Hop::Link(link)])
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
    // Node 1 owns the address, so only node 2's link check stops it.
    mesh.engine(1)
        .insert_route("10.99.0.77/32".parse().expect("net"), vec![Hop::Local])
        .expect("route");
    mesh.send(
        1,
        ipv4_packet(Ipv4Addr::new(10, 99, 0, 77), overlay(3), 64, b"x"),
    );
    assert_eq!(mesh.engine(2).drops(DropReason::SpoofedSource), 1);
    mesh.send(1, ipv4_packet(overlay(1), overlay(3), 64, b"x"));
    assert_eq!(mesh.delivered.len(), 1);
}

/// Diamond 1 - {2, 3} - 4 with loop-free alternates where they exist:
/// 1 and 4 reach each other via 2 then 3; 2 and 3 reach 1 and 4 directly,
/// and each other via 1 or 4.
fn diamond() -> Mesh {
    Mesh::new(4, &[(1, 2), (1, 3), (2, 4), (3, 4)], |n, dst| {
        match (n, dst) {
            (1, 4) | (4, 1) => vec![2, 3],
            (1, d) | (4, d) => vec![d],
            (2, 3) | (3, 2) => vec![1, 4],
            (_, d) => vec![d],
        }
    })
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn silent_cut_two_hops_away_is_repaired_by_withdrawal() {
    let mut mesh = diamond();
    mesh.advance(100 * MS, 10 * MS);
    assert_eq!(mesh.next_node(1, 4), Some(2));
    mesh.cut(2, 4);
    let cut_at = mesh.now;
    let mut repaired_at = None;
    for _ in 0..100 {
        mesh.advance(5 * MS, 5 * MS);
        if mesh.next_node(1, 4) == Some(3) {
            repaired_at = Some(mesh.now);
            break;
        }
    }
    let repaired_at = repaired_at.expect("node 1 switched to node 3");
    let took = repaired_at - cut_at;
    // Default profile: 3 × 50 ms of silence, then one withdrawal message.
    assert!(took <= 160 * MS, "repair took {took:?}");
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"around"));
    assert_eq!(mesh.delivered.len(), 1);
    assert_eq!(mesh.engine(3).counters().forwarded, 1);
    let now = mesh.now;
    let status = mesh.engine(2).status(now);
    assert!(
        status
            .events
            .iter()
            .any(|e| e.kind == "link-down" && e.link == "n4"),
        "{:?}",
        status.events
    );
    assert_eq!(
        status.lost_prefixes,
        vec!["10.99.0.4/32".parse::<IpNet>().expect("net")]
    );
    // Node 2 queued exactly this failover for the controller; node 1 lost
    // no link (it repaired by withdrawal), so it has none.
    let failovers: Vec<Failover> = std::iter::from_fn(|| mesh.engine(2).poll_failover()).collect();
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_eq!(failovers[0].peer, public(4));
    assert_eq!(
        failovers[0].cause,
        crate::core::liveness::DownCause::Silence
    );
    assert!(failovers[0].silent_for >= 100 * MS, "{failovers:?}");
    assert_eq!(failovers[0].lost, 1);
    assert!(mesh.engine(2).poll_failover().is_none(), "taken once");
    assert!(mesh.engine(1).poll_failover().is_none());
    let status = mesh.engine(1).status(now);
    assert!(
        status
            .events
            .iter()
            .any(|e| e.kind == "withdrawn" && e.link == "n2"),
        "{:?}",
        status.events
    );

    // Restore: after the hold-down, traffic returns to the primary path.
    mesh.restore(2, 4);
    mesh.advance(Duration::from_secs(6), 10 * MS);
    assert_eq!(mesh.next_node(1, 4), Some(2));
    let now = mesh.now;
    assert!(mesh.engine(2).status(now).lost_prefixes.is_empty());
}

#[test]
fn a_crashed_transit_node_is_routed_around() {
    let mut mesh = diamond();
    mesh.advance(100 * MS, 10 * MS);
    for peer in [1, 4] {
        mesh.cut(2, peer);
    }
    mesh.advance(200 * MS, 5 * MS);
    assert_eq!(mesh.next_node(1, 4), Some(3));
    assert_eq!(mesh.next_node(4, 1), Some(3));
    mesh.send(4, ipv4_packet(overlay(4), overlay(1), 64, b"x"));
    assert_eq!(mesh.delivered.len(), 1);
}

#[test]
fn carrier_loss_switches_at_once() {
    let mut mesh = diamond();
    mesh.advance(100 * MS, 10 * MS);
    let via2 = mesh.engine(1).link_id("n2").expect("link");
    mesh.engine(1).set_link_underlay(via2, 7);
    mesh.cut(1, 2);
    let now = mesh.now;
    mesh.engine(1).handle_carrier(7, false, now);
    assert_eq!(mesh.next_node(1, 4), Some(3), "no waiting for heartbeats");
    let status = mesh.engine(1).status(now);
    assert!(
        status
            .events
            .iter()
            .any(|e| e.detail.contains("carrier loss"))
    );
}

/// The fast profile's carrier case (issue 14): after a carrier cut the
/// dead link must not get the full heartbeat rate. On Linux every datagram
/// to a neighbour behind an interface without carrier waits in the
/// kernel's ARP queue, charged to the agent's one UDP socket; at 100 a
/// second they filled its send buffer in 2.7 s and silenced every other
/// link, the alternate path included. Four probes a second cannot.
#[test]
fn a_carrier_cut_link_is_probed_slowly_and_the_alternate_stays_up() {
    let mut mesh = Mesh::with_profile(
        4,
        &[(1, 2), (1, 3), (2, 4), (3, 4)],
        |n, dst| match (n, dst) {
            (1, 4) | (4, 1) => vec![2, 3],
            (1, d) | (4, d) => vec![d],
            (2, 3) | (3, 2) => vec![1, 4],
            (_, d) => vec![d],
        },
        "fast",
    );
    mesh.advance(100 * MS, MS);
    let via2 = mesh.engine(4).link_id("n2").expect("link");
    mesh.engine(4).set_link_underlay(via2, 7);
    mesh.cut(4, 2);
    let now = mesh.now;
    mesh.engine(4).handle_carrier(7, false, now);
    assert_eq!(mesh.next_node(4, 1), Some(3), "switched at once");
    let before = mesh.datagrams.get(&(4, 2)).copied().unwrap_or(0);
    let alternate = mesh.datagrams.get(&(4, 3)).copied().unwrap_or(0);
    mesh.advance(Duration::from_secs(3), MS);
    let to_dead = mesh.datagrams[&(4, 2)] - before;
    // 12 slow probes and a few state refreshes, where 300 heartbeats went
    // before.
    assert!(to_dead <= 20, "{to_dead} datagrams to the dead link in 3 s");
    assert!(
        mesh.datagrams[&(4, 3)] - alternate >= 290,
        "the alternate keeps its full rate"
    );
    assert_eq!(mesh.next_node(4, 1), Some(3), "the alternate stayed up");
    // Back: both ends probe slowly, hear each other, say so at once, and
    // return to the primary after the hold-down (1 s; 2 s doubled, the
    // link having come up less than ten hold-downs before it failed).
    mesh.restore(4, 2);
    mesh.advance(Duration::from_millis(2600), MS);
    assert_eq!(mesh.next_node(4, 1), Some(2), "the primary is back");
}

/// A link that failed one way: both ends go down (one by silence, one
/// told it is not heard) and probe slowly. Restored, each end's slow probe
/// reaches the other between its refreshes; hearing again is said at once,
/// so both start their probation without waiting for a refresh to fall
/// within the 30 ms after a probe.
#[test]
fn a_one_way_failure_recovers_with_slow_probes() {
    let mut mesh = Mesh::with_profile(2, &[(1, 2)], |_, d| vec![d], "fast");
    mesh.advance(100 * MS, MS);
    mesh.cut.push((2, 1));
    mesh.advance(Duration::from_secs(2), MS);
    assert!(!mesh.engine(1).link_states()[0].up);
    assert!(!mesh.engine(2).link_states()[0].up);
    mesh.restore(1, 2);
    // Probes within 250 ms, then the hold-down (2 s: doubled, the link
    // failed soon after it came up).
    mesh.advance(Duration::from_millis(2400), MS);
    let now = mesh.now;
    assert!(
        mesh.engine(1).link_states()[0].up && mesh.engine(2).link_states()[0].up,
        "{:?}",
        mesh.engine(1).status(now).links
    );
}

/// Eight idle links whose heartbeat schedules were scattered by traffic
/// fall onto one schedule: the hub wakes about once per heartbeat
/// interval for all of them, and each link still carries one heartbeat
/// per interval.
#[test]
fn idle_links_share_one_wake_up_per_interval() {
    let leaves: Vec<(u8, u8)> = (2..=9).map(|leaf| (1, leaf)).collect();
    let mut mesh = Mesh::new(
        9,
        &leaves,
        |n, dst| if n == 1 { vec![dst] } else { vec![1] },
    );
    mesh.advance_by_deadlines(200 * MS);
    // A packet to each leaf at a different moment moves its schedule.
    for leaf in 2..=9u8 {
        mesh.advance_by_deadlines(Duration::from_millis(u64::from(leaf) * 3));
        mesh.send(1, ipv4_packet(overlay(1), overlay(leaf), 64, b"x"));
    }
    mesh.advance_by_deadlines(Duration::from_secs(1));
    let sent_before: usize = (2..=9).map(|leaf| mesh.datagrams[&(1, leaf)]).sum();
    let wakes = mesh.advance_by_deadlines(Duration::from_secs(2));
    let sent: usize = (2..=9)
        .map(|leaf| mesh.datagrams[&(1, leaf)])
        .sum::<usize>()
        - sent_before;
    // 40 heartbeat intervals and 20 WireGuard ticks in 2 s, the ticks riding
    // on heartbeat wake-ups; a wake-up per link would be 320.
    let hub = wakes.get(&1).copied().unwrap_or(0);
    assert!(hub <= 42, "the hub woke {hub} times in 2 s");
    // 8 links × 40 heartbeats, plus a state refresh per link.
    assert!((8 * 38..=8 * 43).contains(&sent), "{sent} datagrams in 2 s");
}

#[test]
fn idle_links_send_one_small_heartbeat_per_interval() {
    let mut mesh = Mesh::new(2, &[(1, 2)], |_, d| vec![d]);
    mesh.advance(100 * MS, 10 * MS);
    let before = mesh.engine(1).counters().datagrams_in;
    mesh.advance(Duration::from_secs(2), 10 * MS);
    let received = mesh.engine(1).counters().datagrams_in - before;
    // 40 heartbeats in 2 s at 50 ms, plus one state refresh.
    assert!((38..=43).contains(&received), "{received} datagrams in 2 s");
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
    let mut stranger = Engine::new(secret(9), vec![spec(1)], 1, mesh.now).expect("engine");
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

#[test]
fn an_unanswered_first_handshake_goes_again_once_within_600_ms() {
    let now = Instant::now();
    let mut engine = Engine::new(secret(1), vec![spec(2)], 7, now).expect("engine");
    engine.start(now);
    // WireGuard's handshake initiation is message type 1.
    let initiations = |engine: &mut Engine| {
        let mut count = 0;
        while let Some(out) = engine.poll_output() {
            if let Output::Transmit { datagram, .. } = &out
                && datagram.first() == Some(&1)
            {
                count += 1;
            }
        }
        count
    };
    assert_eq!(initiations(&mut engine), 1);
    // The smaller key goes again after 300 ms, the other after 600 ms.
    let first = if engine.public_key() < public(2) {
        300
    } else {
        600
    };
    engine.handle_timeout(now + Duration::from_millis(first - 100));
    assert_eq!(initiations(&mut engine), 0, "not before {first} ms");
    engine.handle_timeout(now + Duration::from_millis(first + 10));
    assert_eq!(initiations(&mut engine), 1, "once more at {first} ms");
    for ms in (400..4_500).step_by(100) {
        engine.handle_timeout(now + Duration::from_millis(ms));
    }
    assert_eq!(initiations(&mut engine), 0, "then WireGuard's own 5 s");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn garbage_datagrams_never_panic_and_never_produce_traffic(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
        kinds in proptest::collection::vec(1u8..=4, 1..20),
    ) {
        let now = Instant::now();
        let mut engine = Engine::new(secret(1), vec![spec(2)], 7, now).expect("engine");
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

/// Static routes of a topology, as the testbed writes them: shortest-path
/// next hop first, then every neighbour strictly closer to the destination.
fn lfa_routes(count: u8, links: &[(u8, u8)]) -> impl Fn(u8, u8) -> Vec<u8> + use<> {
    let links = links.to_vec();
    move |n, dst| {
        let neighbours = |x: u8| -> Vec<u8> {
            let mut v: Vec<u8> = links
                .iter()
                .filter_map(|&(a, b)| {
                    if a == x {
                        Some(b)
                    } else if b == x {
                        Some(a)
                    } else {
                        None
                    }
                })
                .collect();
            v.sort_unstable();
            v
        };
        let mut dist = vec![u32::MAX; usize::from(count) + 1];
        dist[usize::from(dst)] = 0;
        let mut queue = std::collections::VecDeque::from([dst]);
        while let Some(x) = queue.pop_front() {
            for y in neighbours(x) {
                if dist[usize::from(y)] == u32::MAX {
                    dist[usize::from(y)] = dist[usize::from(x)] + 1;
                    queue.push_back(y);
                }
            }
        }
        let own = dist[usize::from(n)];
        let mut hops: Vec<(u32, u8)> = neighbours(n)
            .into_iter()
            .filter(|m| dist[usize::from(*m)] < own)
            .map(|m| (dist[usize::from(m)], m))
            .collect();
        hops.sort_unstable();
        hops.into_iter().map(|(_, m)| m).collect()
    }
}

fn grid3x3() -> (u8, Vec<(u8, u8)>) {
    let mut links = Vec::new();
    for r in 0..3u8 {
        for c in 0..3u8 {
            let n = r * 3 + c + 1;
            if c < 2 {
                links.push((n, n + 1));
            }
            if r < 2 {
                links.push((n, n + 3));
            }
        }
    }
    (9, links)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// After any set of silent link failures on the diamond or the 3×3 grid
    /// has been detected, no node forwards into a dead link and following
    /// the tables never loops.
    #[test]
    fn local_repair_never_uses_a_dead_link_and_never_loops(
        grid in any::<bool>(),
        failures in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
    ) {
        let (count, links) = if grid { grid3x3() } else { (4, vec![(1, 2), (1, 3), (2, 4), (3, 4)]) };
        let mut mesh = Mesh::new(count, &links, lfa_routes(count, &links));
        mesh.advance(100 * MS, 10 * MS);
        let mut dead = Vec::new();
        for index in failures {
            let (a, b) = links[index.index(links.len())];
            mesh.cut(a, b);
            dead.push((a, b));
        }
        mesh.advance(400 * MS, 10 * MS);
        for src in 1..=count {
            for dst in (1..=count).filter(|d| *d != src) {
                let mut at = src;
                let mut visited = vec![src];
                while at != dst {
                    let Some(next) = mesh.next_node(at, dst) else { break };
                    prop_assert!(
                        !dead.contains(&(at, next)) && !dead.contains(&(next, at)),
                        "{at} forwards to {dst} over dead link {at}-{next}"
                    );
                    prop_assert!(!visited.contains(&next), "loop {visited:?} -> {next} toward {dst}");
                    visited.push(next);
                    at = next;
                }
            }
        }
    }
}

#[path = "segment_tests.rs"]
mod segment_tests;

#[path = "trust_tests.rs"]
mod trust_tests;

/// Two routers whose tables disagree (each names the other first toward
/// node 3, as after a restart from state files of different moments):
/// the packet that comes back from the router we would send it to takes
/// our alternate instead of bouncing until its TTL runs out.
#[test]
fn a_packet_from_our_own_next_hop_takes_the_alternate() {
    let mut mesh = Mesh::new(4, &[(1, 2), (2, 3), (2, 4), (3, 4)], |n, dst| {
        match (n, dst) {
            (1, _) => vec![2],
            (2, 1) => vec![1],
            (2, 3) => vec![4, 3],
            (2, 4) | (3, 4) => vec![4],
            (3, 1) => vec![4, 2],
            (3, 2) | (4, 1) | (4, 2) => vec![2],
            (4, 3) => vec![2, 3],
            _ => Vec::new(),
        }
    });
    mesh.send(1, ipv4_packet(overlay(1), overlay(3), 64, b"round"));
    assert_eq!(mesh.delivered.last().map(|(n, _)| *n), Some(3));
    assert_eq!(mesh.engine(4).counters().u_turns, 1);
    assert_eq!(mesh.engine(4).drops(DropReason::Hairpin), 0);
    // Without an alternate there is nothing to turn to: dropped, counted.
    let back = mesh.engine(4).link_id("n2").expect("link");
    mesh.engine(4)
        .insert_route(IpNet::from(IpAddr::V4(overlay(3))), vec![Hop::Link(back)])
        .expect("route");
    mesh.send(1, ipv4_packet(overlay(1), overlay(3), 64, b"stuck"));
    assert_eq!(mesh.engine(4).drops(DropReason::Hairpin), 1);
}
