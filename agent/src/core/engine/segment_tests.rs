//! Segments, anti-spoofing and gateway uplink failover in the in-memory
//! mesh.
//!
//! ```text
//!              ┌── 3 G1 (gateway) ── uplink
//!  1 C ── 2 T ─┤
//!              └── 4 G2 (gateway) ── uplink
//! ```
//! C serves public clients (10.100.1.0/24), T has a building LAN
//! (10.20.0.0/24, intranet).

use freimesh_proto::segment::Segment;

use super::*;

const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 5);
const BUILDING_HOST: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 7);

fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

fn link(mesh: &mut Mesh, from: u8, to: u8) -> Hop {
    Hop::Link(mesh.engine(from).link_id(&format!("n{to}")).expect("link"))
}

/// The mesh of the module docs. `g1_alternate`: G1's default route has T
/// as alternate after its uplink (T's own primary is G1).
fn gateways(g1_alternate: bool) -> Mesh {
    let mut mesh = Mesh::new(4, &[(1, 2), (2, 3), (2, 4)], |n, dst| match (n, dst) {
        (2, d) => vec![d],
        (_, _) => vec![2],
    });
    let default = net("0.0.0.0/0");
    let clients = net("10.100.1.0/24");
    let building = net("10.20.0.0/24");
    mesh.engine(1).set_client_prefixes(vec![clients]);
    let (t_c, t_g1, t_g2) = (
        link(&mut mesh, 2, 1),
        link(&mut mesh, 2, 3),
        link(&mut mesh, 2, 4),
    );
    let t = mesh.engine(2);
    t.insert_route(building, vec![Hop::Local]).expect("lan");
    t.insert_route_in(clients, vec![t_c], Segment::Public)
        .expect("route");
    t.insert_route_in(default, vec![t_g1, t_g2], Segment::Internet)
        .expect("route");
    for n in [1, 3, 4] {
        let via_t = link(&mut mesh, n, 2);
        let e = mesh.engine(n);
        e.insert_route_in(building, vec![via_t], Segment::Intranet)
            .expect("route");
        if n != 1 {
            e.insert_route_in(clients, vec![via_t], Segment::Public)
                .expect("route");
        }
    }
    let c_t = link(&mut mesh, 1, 2);
    mesh.engine(1)
        .insert_route_in(default, vec![c_t], Segment::Internet)
        .expect("route");
    let g1_t = link(&mut mesh, 3, 2);
    let g1_hops = if g1_alternate {
        vec![Hop::Local, g1_t]
    } else {
        vec![Hop::Local]
    };
    mesh.engine(3)
        .insert_route_in(default, g1_hops, Segment::Internet)
        .expect("route");
    mesh.engine(4)
        .insert_route_in(default, vec![Hop::Local], Segment::Internet)
        .expect("route");
    mesh
}

fn delivered_at(mesh: &Mesh) -> Vec<u8> {
    mesh.delivered.iter().map(|(n, _)| *n).collect()
}

#[test]
fn public_clients_reach_the_internet_and_get_answers() {
    let mut mesh = gateways(false);
    assert!(mesh.engine(3).is_gateway() && !mesh.engine(1).is_gateway());
    mesh.send(1, ipv4_packet(CLIENT, INTERNET, 64, b"out"));
    assert_eq!(delivered_at(&mesh), vec![3], "out through G1's uplink");
    // The answer, de-NAT'd by G1's kernel, comes back through its TUN.
    mesh.send(3, ipv4_packet(INTERNET, CLIENT, 64, b"back"));
    assert_eq!(delivered_at(&mesh), vec![3, 1]);
    for n in 1..=4 {
        assert_eq!(mesh.engine(n).drops(DropReason::SegmentPolicy), 0);
    }
}

#[test]
fn public_clients_never_reach_the_intranet_or_the_routers() {
    let mut mesh = gateways(false);
    mesh.send(1, ipv4_packet(CLIENT, BUILDING_HOST, 64, b"x"));
    mesh.send(1, ipv4_packet(CLIENT, overlay(2), 64, b"x"));
    mesh.send(
        1,
        ipv4_packet(CLIENT, Ipv4Addr::new(10, 100, 1, 9), 64, b"x"),
    );
    assert!(mesh.delivered.is_empty());
    assert_eq!(
        mesh.engine(1).drops(DropReason::SegmentPolicy),
        3,
        "at the first hop"
    );
    // Nor can the intranet or the internet side open a way to them.
    mesh.send(2, ipv4_packet(BUILDING_HOST, CLIENT, 64, b"x"));
    assert_eq!(mesh.engine(2).drops(DropReason::SegmentPolicy), 1);
    mesh.send(3, ipv4_packet(INTERNET, BUILDING_HOST, 64, b"x"));
    assert_eq!(mesh.engine(3).drops(DropReason::SegmentPolicy), 1);
    assert!(mesh.delivered.is_empty());
    // Infrastructure and intranet talk both ways.
    mesh.send(1, ipv4_packet(overlay(1), BUILDING_HOST, 64, b"x"));
    assert_eq!(delivered_at(&mesh), vec![2]);
}

#[test]
fn a_misconfigured_node_is_caught_at_transit() {
    let mut mesh = gateways(false);
    // C forgets that its clients are public: to it they are a LAN behind it.
    mesh.engine(1).set_client_prefixes(Vec::new());
    mesh.engine(1)
        .insert_route(net("10.100.1.0/24"), vec![Hop::Local])
        .expect("route");
    mesh.send(1, ipv4_packet(CLIENT, BUILDING_HOST, 64, b"x"));
    assert_eq!(mesh.engine(1).drops(DropReason::SegmentPolicy), 0);
    assert_eq!(mesh.engine(2).drops(DropReason::SegmentPolicy), 1);
    assert!(mesh.delivered.is_empty());
}

#[test]
fn sources_a_node_does_not_own_are_spoofed() {
    let mut mesh = gateways(false);
    // Another router's address, and the internet from a non-gateway.
    mesh.send(1, ipv4_packet(overlay(3), overlay(4), 64, b"x"));
    mesh.send(1, ipv4_packet(INTERNET, CLIENT, 64, b"x"));
    // A public client's address at the transit node.
    mesh.send(2, ipv4_packet(CLIENT, INTERNET, 64, b"x"));
    assert_eq!(mesh.engine(1).drops(DropReason::SpoofedSource), 2);
    assert_eq!(mesh.engine(2).drops(DropReason::SpoofedSource), 1);
    // A gateway may not claim mesh addresses either.
    mesh.send(3, ipv4_packet(overlay(2), INTERNET, 64, b"x"));
    assert_eq!(mesh.engine(3).drops(DropReason::SpoofedSource), 1);
    assert!(mesh.delivered.is_empty());
}

#[test]
fn a_site_link_accepts_only_its_allowed_sources() {
    let mut mesh = line();
    let site_lan = net("10.30.0.0/24");
    let other_lan = net("10.31.0.0/24");
    let now = mesh.now;
    for lan in [site_lan, other_lan] {
        mesh.engine(1)
            .insert_route(lan, vec![Hop::Local])
            .expect("lan");
    }
    mesh.engine(2)
        .upsert_link(
            LinkSpec {
                allowed_sources: vec![net("10.99.0.1/32"), site_lan],
                ..spec(1)
            },
            now,
        )
        .expect("link");
    mesh.send(
        1,
        ipv4_packet(Ipv4Addr::new(10, 30, 0, 5), overlay(2), 64, b"ok"),
    );
    mesh.send(
        1,
        ipv4_packet(Ipv4Addr::new(10, 31, 0, 5), overlay(2), 64, b"no"),
    );
    assert_eq!(delivered_at(&mesh), vec![2]);
    assert_eq!(mesh.engine(2).drops(DropReason::SpoofedSource), 1);
}

/// Sends one client packet to the internet; returns which node delivered it.
fn client_exit(mesh: &mut Mesh) -> Option<u8> {
    let before = mesh.delivered.len();
    mesh.send(1, ipv4_packet(CLIENT, INTERNET, 64, b"probe"));
    mesh.delivered.get(before).map(|(n, _)| *n)
}

#[test]
fn uplink_down_moves_clients_to_the_other_gateway_at_once() {
    let mut mesh = gateways(false);
    assert_eq!(client_exit(&mut mesh), Some(3));
    let now = mesh.now;
    mesh.engine(3).set_uplink(false, now);
    // No clock advance: only the withdrawal G1 sent has moved T.
    mesh.run();
    assert_eq!(client_exit(&mut mesh), Some(4));
    assert_eq!(
        mesh.engine(3).status(now).lost_prefixes,
        vec![net("0.0.0.0/0")]
    );
    assert_eq!(mesh.engine(3).status(now).uplink_up, Some(false));
    // The withdrawal survives the periodic lost-set refresh.
    mesh.advance(Duration::from_secs(3), Duration::from_millis(50));
    assert_eq!(client_exit(&mut mesh), Some(4));
    let now = mesh.now;
    mesh.engine(3).set_uplink(true, now);
    mesh.run();
    assert_eq!(client_exit(&mut mesh), Some(3), "back to the primary");
    let kinds: Vec<String> = mesh
        .engine(3)
        .status(now)
        .events
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("uplink"))
        .collect();
    assert_eq!(kinds, vec!["uplink-down", "uplink-up"]);
    assert_eq!(mesh.engine(2).drops(DropReason::NoRoute), 0);
}

#[test]
fn a_gateway_whose_alternate_points_back_poisons_it() {
    let mut mesh = gateways(true);
    assert_eq!(client_exit(&mut mesh), Some(3));
    let now = mesh.now;
    mesh.engine(3).set_uplink(false, now);
    mesh.run();
    assert_eq!(client_exit(&mut mesh), Some(4));
    assert_eq!(mesh.engine(3).drops(DropReason::Hairpin), 0);
    // G1's own traffic follows its alternate to G2.
    mesh.send(3, ipv4_packet(overlay(3), INTERNET, 64, b"own"));
    assert_eq!(mesh.delivered.last().map(|(n, _)| *n), Some(4));
    mesh.advance(Duration::from_secs(3), Duration::from_millis(50));
    assert_eq!(client_exit(&mut mesh), Some(4), "poison kept on refresh");
    let now = mesh.now;
    mesh.engine(3).set_uplink(true, now);
    mesh.run();
    assert_eq!(client_exit(&mut mesh), Some(3));
    mesh.advance(Duration::from_secs(3), Duration::from_millis(50));
    assert_eq!(client_exit(&mut mesh), Some(3));
}

/// An intranet LAN behind G2 (10.21.0.0/24): T and G1 route to it via
/// their link toward G2 (C has only its default route).
const OTHER_BUILDING_HOST: Ipv4Addr = Ipv4Addr::new(10, 21, 0, 5);

fn gateways_with_second_lan() -> Mesh {
    let mut mesh = gateways(false);
    let lan = net("10.21.0.0/24");
    mesh.engine(4)
        .insert_route(lan, vec![Hop::Local])
        .expect("lan");
    let t_g2 = link(&mut mesh, 2, 4);
    mesh.engine(2)
        .insert_route_in(lan, vec![t_g2], Segment::Intranet)
        .expect("route");
    let g1_t = link(&mut mesh, 3, 2);
    mesh.engine(3)
        .insert_route_in(lan, vec![g1_t], Segment::Intranet)
        .expect("route");
    mesh
}

/// Sends `packet` from node `from` straight into its tunnel to `to`,
/// bypassing `from`'s own checks: what a hostile node can do.
fn inject(mesh: &mut Mesh, from: u8, to: u8, packet: &[u8]) {
    let Hop::Link(out) = link(mesh, from, to) else {
        unreachable!("link() returns links");
    };
    let now = mesh.now;
    mesh.engine(from).send_on_link(out, packet, now);
    mesh.run();
}

#[test]
fn a_spoofed_intranet_source_from_a_neighbour_off_its_path_is_dropped() {
    let mut mesh = gateways_with_second_lan();
    // The public access point C claims to be a host of the other building,
    // to reach T's building LAN: without the feasible-source rule the
    // segment policy (intranet → intranet) would let it through.
    let spoof = ipv4_packet(OTHER_BUILDING_HOST, BUILDING_HOST, 64, b"spoof");
    inject(&mut mesh, 1, 2, &spoof);
    assert!(mesh.delivered.is_empty());
    assert_eq!(mesh.engine(2).drops(DropReason::SourceNotFeasible), 1);
    // Nor may C claim an internet source (T's default route leads to the
    // gateways, not to C) or T's own LAN.
    inject(&mut mesh, 1, 2, &ipv4_packet(INTERNET, CLIENT, 64, b"x"));
    inject(
        &mut mesh,
        1,
        2,
        &ipv4_packet(BUILDING_HOST, overlay(3), 64, b"x"),
    );
    assert_eq!(mesh.engine(2).drops(DropReason::SourceNotFeasible), 3);
    assert!(mesh.delivered.is_empty());
    let now = mesh.now;
    assert_eq!(
        mesh.engine(2).status(now).drops["source_not_feasible"],
        3,
        "shown in status"
    );
    // The same packet from where that LAN really is passes.
    mesh.send(4, spoof);
    assert_eq!(delivered_at(&mesh), vec![2]);
    // And internet answers through a gateway still reach the clients.
    mesh.send(3, ipv4_packet(INTERNET, CLIENT, 64, b"back"));
    assert_eq!(delivered_at(&mesh), vec![2, 1]);
    for n in 1..=4 {
        assert_eq!(mesh.engine(n).drops(DropReason::SegmentPolicy), 0);
    }
    assert_eq!(mesh.engine(2).drops(DropReason::SourceNotFeasible), 3);
}

#[test]
fn a_link_local_source_may_reach_the_neighbour_only() {
    let mut mesh = gateways(false);
    let link_local = Ipv4Addr::new(169, 254, 3, 3);
    inject(
        &mut mesh,
        1,
        2,
        &ipv4_packet(link_local, overlay(2), 64, b"to T"),
    );
    assert_eq!(delivered_at(&mesh), vec![2]);
    inject(
        &mut mesh,
        1,
        2,
        &ipv4_packet(link_local, overlay(3), 64, b"on"),
    );
    assert_eq!(delivered_at(&mesh), vec![2]);
    assert_eq!(mesh.engine(2).drops(DropReason::SourceNotFeasible), 1);
}

#[test]
fn after_a_failover_the_alternates_packets_pass() {
    let mut mesh = diamond();
    mesh.advance(100 * MS, 10 * MS);
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"primary"));
    assert_eq!(mesh.engine(2).counters().forwarded, 1);
    mesh.cut(1, 2);
    mesh.advance(200 * MS, 5 * MS);
    assert_eq!(mesh.next_node(1, 4), Some(3));
    // Node 4 routes toward node 1 via 2 then 3: 3 is a feasible source.
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"alternate"));
    assert_eq!(delivered_at(&mesh), vec![4, 4]);
    assert_eq!(mesh.engine(3).counters().forwarded, 1);
    for n in 1..=4 {
        assert_eq!(mesh.engine(n).drops(DropReason::SourceNotFeasible), 0);
    }
    // Node 4 reaches node 2 only directly: node 3 cannot speak for it.
    inject(
        &mut mesh,
        3,
        4,
        &ipv4_packet(overlay(2), overlay(4), 64, b"x"),
    );
    assert_eq!(mesh.engine(4).drops(DropReason::SourceNotFeasible), 1);
    assert_eq!(mesh.delivered.len(), 2);
}

#[test]
fn a_routes_upstreams_may_carry_its_sources_and_nobody_else() {
    use freimesh_proto::control::Route;

    use crate::core::EngineChange;

    let mut mesh = diamond();
    mesh.advance(100 * MS, 10 * MS);
    let (two, three) = (mesh.engine(2).public_key(), mesh.engine(3).public_key());
    // Node 4 reaches node 2 directly; 3 is no next hop toward it, but the
    // controller may name 3 an upstream (a repair path of node 2's
    // traffic runs 2 → 1 → 3 → 4).
    let to_two = IpNet::from(IpAddr::V4(overlay(2)));
    let route = |upstreams| {
        EngineChange::SetRoute(Route {
            prefix: to_two,
            via: vec![two],
            segment: Segment::Infrastructure,
            upstreams,
        })
    };
    let lan = net("10.20.0.0/24");
    let via2 = link(&mut mesh, 4, 2);
    mesh.engine(4).insert_route(lan, vec![via2]).expect("lan");
    let repair = ipv4_packet(overlay(2), overlay(4), 64, b"repair");
    let now = mesh.now;
    mesh.engine(4)
        .apply(&route(Vec::new()), now)
        .expect("route");
    inject(&mut mesh, 3, 4, &repair);
    assert_eq!(mesh.engine(4).drops(DropReason::SourceNotFeasible), 1);
    assert!(mesh.delivered.is_empty());
    mesh.engine(4)
        .apply(&route(vec![three]), now)
        .expect("route");
    inject(&mut mesh, 3, 4, &repair);
    assert_eq!(delivered_at(&mesh), vec![4]);
    // Being an upstream of node 2's address lets 3 speak for nothing else.
    inject(
        &mut mesh,
        3,
        4,
        &ipv4_packet(BUILDING_HOST, overlay(4), 64, b"x"),
    );
    assert_eq!(mesh.engine(4).drops(DropReason::SourceNotFeasible), 2);
    // An upstream the controller takes back stays feasible for the hold,
    // like a former next hop.
    mesh.engine(4)
        .apply(&route(Vec::new()), now)
        .expect("route");
    mesh.advance(20 * MS, 10 * MS);
    inject(&mut mesh, 3, 4, &repair);
    assert_eq!(delivered_at(&mesh), vec![4, 4]);
    assert_eq!(mesh.engine(4).drops(DropReason::SourceNotFeasible), 2);
}

#[test]
fn a_neighbour_that_withdrew_a_source_may_still_carry_it() {
    let mut mesh = diamond();
    mesh.advance(100 * MS, 10 * MS);
    // Node 2 loses node 4 and withdraws it: node 1 now routes toward 4
    // via 3 alone. Node 2 may still be on a repair path of 4's traffic
    // (what it cannot reach, it can still forward from), and the
    // controller named it a next hop toward 4.
    mesh.cut(2, 4);
    mesh.advance(300 * MS, 5 * MS);
    assert_eq!(mesh.next_node(1, 4), Some(3));
    inject(
        &mut mesh,
        2,
        1,
        &ipv4_packet(overlay(4), overlay(1), 64, b"repair"),
    );
    assert_eq!(delivered_at(&mesh), vec![1]);
    assert_eq!(mesh.engine(1).drops(DropReason::SourceNotFeasible), 0);
}

#[test]
fn a_neighbour_that_just_stopped_being_a_next_hop_stays_feasible_for_the_hold() {
    let mut mesh = diamond();
    mesh.advance(100 * MS, 10 * MS);
    // The controller drains node 2: node 4 already routes toward node 1
    // only via 3, while node 1 has not heard yet and still sends via 2.
    let via3 = link(&mut mesh, 4, 3);
    mesh.engine(4)
        .insert_route(IpNet::from(IpAddr::V4(overlay(1))), vec![via3])
        .expect("route");
    mesh.advance(20 * MS, 10 * MS);
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"in flight"));
    assert_eq!(delivered_at(&mesh), vec![4]);
    assert_eq!(mesh.engine(4).drops(DropReason::SourceNotFeasible), 0);
    // Node 2 never was a next hop toward node 3's address at node 4.
    inject(
        &mut mesh,
        2,
        4,
        &ipv4_packet(overlay(3), overlay(4), 64, b"x"),
    );
    assert_eq!(mesh.engine(4).drops(DropReason::SourceNotFeasible), 1);
    // The undrain: node 2 is a next hop again, and stays one.
    let (via2, via3) = (link(&mut mesh, 4, 2), link(&mut mesh, 4, 3));
    mesh.engine(4)
        .insert_route(IpNet::from(IpAddr::V4(overlay(1))), vec![via2, via3])
        .expect("route");
    mesh.send(1, ipv4_packet(overlay(1), overlay(4), 64, b"back"));
    assert_eq!(delivered_at(&mesh), vec![4, 4]);
}

/// A log sink for the privacy test: everything a subscriber writes.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn client_addresses_never_reach_the_log_even_at_trace() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut mesh = gateways_with_second_lan();
        // Every drop a client's packet can meet on the way: segment policy
        // at the access point, a spoofed source at the transit node, no
        // route, and a malformed packet.
        mesh.send(1, ipv4_packet(CLIENT, BUILDING_HOST, 64, b"x"));
        mesh.send(1, ipv4_packet(CLIENT, overlay(2), 64, b"x"));
        inject(&mut mesh, 3, 2, &ipv4_packet(CLIENT, INTERNET, 64, b"x"));
        inject(
            &mut mesh,
            1,
            2,
            &ipv4_packet(CLIENT, BUILDING_HOST, 64, b"x"),
        );
        mesh.send(2, ipv4_packet(INTERNET, CLIENT, 64, b"x"));
        mesh.engine(1).remove_route(net("0.0.0.0/0"));
        mesh.send(1, ipv4_packet(CLIENT, INTERNET, 64, b"x"));
        let mut short = ipv4_packet(CLIENT, INTERNET, 64, b"x");
        short[3] = 200;
        mesh.send(1, short);
        assert!(mesh.engine(1).drops(DropReason::SegmentPolicy) >= 2);
        assert!(mesh.engine(2).drops(DropReason::SourceNotFeasible) >= 1);
        assert!(mesh.engine(2).drops(DropReason::SegmentPolicy) >= 1);
        assert!(mesh.engine(1).drops(DropReason::NoRoute) >= 1);
    });
    let text =
        String::from_utf8(log.0.lock().map(|l| l.clone()).unwrap_or_default()).unwrap_or_default();
    assert!(text.contains("segment policy drop"), "captured: {text}");
    assert!(text.contains("source not feasible"), "captured: {text}");
    assert!(text.contains("no route"), "captured: {text}");
    assert!(text.contains("n1"), "the link is named: {text}");
    for address in ["10.100.1.5", "198.51.100.1", "10.20.0.7"] {
        assert!(!text.contains(address), "{address} logged: {text}");
    }
}

proptest! {
    /// Whatever the segments of source and destination, the engine forwards
    /// exactly what `Segment::may_reach` allows, at the first hop.
    #[test]
    fn forwarding_follows_the_policy_table(src in 0usize..4, dst in 0usize..4) {
        let mut mesh = gateways(false);
        // One address per segment, owned by C (sources) or beyond T (dst).
        let addrs = [overlay(1), Ipv4Addr::new(10, 40, 0, 1), CLIENT, INTERNET];
        let dsts = [overlay(4), BUILDING_HOST, Ipv4Addr::new(10, 101, 0, 1), INTERNET];
        let c_t = link(&mut mesh, 1, 2);
        mesh.engine(1).insert_route(net("10.40.0.0/24"), vec![Hop::Local]).expect("lan");
        mesh.engine(1)
            .insert_route_in(net("10.101.0.0/24"), vec![c_t], Segment::Public)
            .expect("route");
        let from = Segment::ALL[src];
        let to = Segment::ALL[dst];
        if from == Segment::Internet {
            // Only a gateway's kernel hands the engine internet sources.
            return Ok(());
        }
        mesh.send(1, ipv4_packet(addrs[src], dsts[dst], 64, b"p"));
        let dropped = mesh.engine(1).drops(DropReason::SegmentPolicy) == 1;
        prop_assert_eq!(dropped, !from.may_reach(to));
    }
}
