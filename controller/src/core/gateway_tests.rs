//! Default routes toward gateways, segments on routes, client prefixes and
//! standard WireGuard sites, against the sans-IO core.

use std::collections::{BTreeMap, BTreeSet};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{ControllerMsg, Route, RouteChange};
use freimesh_proto::segment::Segment;
use ipnet::IpNet;

use super::{Controller, Hop, Outgoing, RouteEntry, default_routes};
use crate::records::{LinkRecord, MeshSettings, NodeRecord, NodeState, SiteRecord};

fn settings() -> MeshSettings {
    MeshSettings {
        ula: "fd12:3456:789a::/48".parse().expect("ula"),
        ipv4: "10.99.0.0/16".parse().expect("v4"),
        approval: false,
        controller_public_key: PublicKeyBytes([200; 32]),
        clients_ipv4: Some("10.100.0.0/16".parse().expect("clients")),
        client_subnet_len: 24,
    }
}

fn key(id: u32) -> PublicKeyBytes {
    PublicKeyBytes([u8::try_from(id).expect("small"); 32])
}

fn node(id: u32, gateway: bool) -> NodeRecord {
    NodeRecord {
        id,
        public_key: key(id),
        hostname: format!("n{id}"),
        addresses: vec![
            format!("fd12:3456:789a::{id}/128").parse().expect("v6"),
            format!("10.99.0.{id}/32").parse().expect("v4"),
        ],
        state: NodeState::Active,
        drained: false,
        endpoints: vec![format!("192.0.2.{id}:51820").parse().expect("ep")],
        gateway,
        public_wifi: false,
        client_prefixes: vec![],
        requested_roles: Default::default(),
        approved_roles: Default::default(),
    }
}

fn link(a: u32, b: u32, cost: u32) -> LinkRecord {
    LinkRecord {
        a: a.min(b),
        b: a.max(b),
        rtt_us: None,
        loss_ppm: None,
        up: true,
        override_cost: Some(cost),
    }
}

fn drain(core: &mut Controller) -> Vec<(u32, Outgoing)> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

fn connected(nodes: Vec<NodeRecord>, links: Vec<LinkRecord>) -> Controller {
    let ids: Vec<u32> = nodes.iter().map(|n| n.id).collect();
    let mut core = Controller::new(settings(), nodes, vec![], links);
    for id in ids {
        core.handle_connect(id);
    }
    drain(&mut core);
    core
}

/// The next hops of `id`'s IPv4 default route, as node ids.
fn default_via(core: &Controller, id: u32) -> Option<Vec<u32>> {
    let v4 = default_routes()[0];
    core.plan_routes(id)
        .into_iter()
        .find(|r| r.prefix == v4)
        .map(|r| {
            r.via
                .iter()
                .map(|h| match h {
                    Hop::Node(n) => *n,
                    Hop::Site(_) => panic!("a site on a default route"),
                })
                .collect()
        })
}

/// 1 –100– 2 –50– 3, gateways 1 and 3, plus 4 hanging off 1.
fn line() -> Controller {
    connected(
        vec![node(1, true), node(2, false), node(3, true), node(4, false)],
        vec![link(1, 2, 100), link(2, 3, 50), link(1, 4, 10)],
    )
}

#[test]
fn every_node_gets_default_routes_toward_the_nearest_gateway_with_alternates() {
    let core = line();
    assert_eq!(default_via(&core, 2), Some(vec![3, 1]));
    assert_eq!(default_via(&core, 4), Some(vec![1]));
    // At a gateway its own key comes first; 1 may fall back to 2 (whose
    // path avoids 1), 3 may not (2 would send it back).
    assert_eq!(default_via(&core, 1), Some(vec![1, 2]));
    assert_eq!(default_via(&core, 3), Some(vec![3]));
    for r in core.plan_routes(2) {
        if r.prefix.prefix_len() == 0 {
            assert_eq!(r.segment, Segment::Internet);
            assert_eq!(r.destination, 3);
        }
    }
    // Both families.
    let prefixes: BTreeSet<IpNet> = core.plan_routes(4).iter().map(|r| r.prefix).collect();
    assert!(default_routes().iter().all(|p| prefixes.contains(p)));
}

#[test]
fn an_uplink_down_moves_everyone_to_the_other_gateway_and_back() {
    let mut core = line();
    assert!(core.handle_uplink(3, false));
    let out = drain(&mut core);
    assert_eq!(default_via(&core, 2), Some(vec![1]));
    assert_eq!(default_via(&core, 3), Some(vec![2]));
    assert_eq!(default_via(&core, 1), Some(vec![1]));
    let v4 = default_routes()[0];
    assert!(
        out.iter().any(|(n, o)| *n == 3
            && matches!(o, Outgoing::Frame(ControllerMsg::RoutesDelta(c))
                if c.contains(&RouteChange::Set(Route { upstreams: Vec::new(), prefix: v4, via: vec![key(2)], segment: Segment::Internet })))),
        "{out:?}"
    );
    // Only nodes whose default route changed hear of it: 4 goes via 1
    // either way.
    assert!(out.iter().all(|(n, _)| *n != 4), "{out:?}");
    // A repeated report changes nothing.
    assert!(!core.handle_uplink(3, false));
    assert!(drain(&mut core).is_empty());
    assert!(core.handle_uplink(3, true));
    drain(&mut core);
    assert_eq!(default_via(&core, 2), Some(vec![3, 1]));
    assert_eq!(core.uplink(3), Some(true));
}

/// The ExitGateway frames in `out`, by node.
fn exit_gateways(out: &[(u32, Outgoing)]) -> BTreeMap<u32, Vec<Option<PublicKeyBytes>>> {
    let mut by_node: BTreeMap<u32, Vec<Option<PublicKeyBytes>>> = BTreeMap::new();
    for (n, o) in out {
        if let Outgoing::Frame(ControllerMsg::ExitGateway(g)) = o {
            by_node.entry(*n).or_default().push(*g);
        }
    }
    by_node
}

#[test]
fn the_exit_gateway_follows_every_welcome_and_goes_out_again_only_when_it_changes() {
    let mut core = line();
    // After the Welcome and the full sets: 2 leaves through 3, a gateway
    // through itself.
    core.handle_disconnect(2);
    core.handle_connect(2);
    let out = drain(&mut core);
    let frames: Vec<&Outgoing> = out.iter().map(|(_, o)| o).collect();
    assert!(
        matches!(
            frames[..],
            [
                Outgoing::Frame(ControllerMsg::Welcome(_)),
                Outgoing::Frame(ControllerMsg::Links { .. }),
                Outgoing::Frame(ControllerMsg::Routes { .. }),
                Outgoing::Frame(ControllerMsg::ExitGateway(Some(g))),
            ] if *g == key(3)
        ),
        "{out:?}"
    );
    core.handle_disconnect(1);
    core.handle_connect(1);
    assert_eq!(
        exit_gateways(&drain(&mut core)),
        BTreeMap::from([(1, vec![Some(key(1))])])
    );
    // 3's uplink fails: 2 and 3 now leave through 1, 1 and 4 did already
    // and hear nothing.
    assert!(core.handle_uplink(3, false));
    assert_eq!(
        exit_gateways(&drain(&mut core)),
        BTreeMap::from([(2, vec![Some(key(1))]), (3, vec![Some(key(1))])])
    );
    // A change that moves no exit sends none.
    core.apply_links(&[link(1, 4, 20)]);
    assert_eq!(exit_gateways(&drain(&mut core)), BTreeMap::new());
    // No gateway left: `None`, once.
    assert!(core.handle_uplink(1, false));
    let gone = exit_gateways(&drain(&mut core));
    assert_eq!(gone.len(), 4, "{gone:?}");
    assert!(gone.values().all(|g| *g == vec![None]), "{gone:?}");
    assert!(!core.handle_uplink(1, false));
    assert_eq!(exit_gateways(&drain(&mut core)), BTreeMap::new());
}

#[test]
fn no_gateway_up_means_no_default_routes() {
    let mut core = connected(vec![node(1, true), node(2, false)], vec![link(1, 2, 10)]);
    assert_eq!(default_via(&core, 2), Some(vec![1]));
    core.handle_uplink(1, false);
    let out = drain(&mut core);
    assert_eq!(default_via(&core, 2), None);
    assert_eq!(default_via(&core, 1), None);
    for id in [1, 2] {
        assert!(
            out.iter().any(|(n, o)| *n == id
                && matches!(o, Outgoing::Frame(ControllerMsg::RoutesDelta(c))
                    if default_routes().iter().all(|p| c.contains(&RouteChange::Remove(*p))))),
            "{id}: {out:?}"
        );
    }
    let plain = connected(vec![node(1, false), node(2, false)], vec![link(1, 2, 10)]);
    assert_eq!(default_via(&plain, 1), None);
}

/// Follows default routes from `start`: each node takes its first hop,
/// except that gateway `failed` skips itself (its uplink died) and `start`
/// skips its first hop if `skip_first` (its primary link died). Panics on a
/// loop; returns the gateway that delivers.
fn walk(core: &Controller, start: u32, failed: Option<u32>, skip_first: bool) -> Option<u32> {
    let mut at = start;
    let mut path = vec![start];
    let mut skip = skip_first;
    loop {
        let via = default_via(core, at)?;
        let mut hops = via
            .into_iter()
            .filter(|h| !(*h == at && Some(at) == failed));
        if std::mem::take(&mut skip) {
            hops.next();
        }
        let hop = hops.next()?;
        if hop == at {
            return Some(at);
        }
        assert!(!path.contains(&hop), "loop {path:?} -> {hop}");
        path.push(hop);
        at = hop;
    }
}

/// Loop-free under any one failure: a gateway's uplink, or any node's
/// primary hop.
fn assert_loop_free(core: &Controller, ids: &[u32], gateways: &[u32]) {
    for &start in ids {
        assert!(
            walk(core, start, None, false).is_some(),
            "{start} reaches no gateway"
        );
        let _ = walk(core, start, None, true);
        for g in gateways {
            let _ = walk(core, start, Some(*g), false);
        }
    }
}

#[test]
fn default_route_alternates_are_loop_free_on_a_grid() {
    // 3 × 3 grid, uneven costs, gateways in three corners.
    let id = |r: u32, c: u32| r * 3 + c + 1;
    let mut links = Vec::new();
    for r in 0..3 {
        for c in 0..3 {
            let cost = 10 + (r * 7 + c * 13) % 23;
            if c < 2 {
                links.push(link(id(r, c), id(r, c + 1), cost));
            }
            if r < 2 {
                links.push(link(id(r, c), id(r + 1, c), cost + 5));
            }
        }
    }
    let gateways = [1, 3, 9];
    let nodes = (1..=9).map(|n| node(n, gateways.contains(&n))).collect();
    let mut core = connected(nodes, links);
    let ids: Vec<u32> = (1..=9).collect();
    assert_loop_free(&core, &ids, &gateways);
    for g in gateways {
        assert_eq!(default_via(&core, g).map(|v| v[0]), Some(g));
    }
    // Some gateway has an alternate toward another one.
    assert!(
        gateways
            .iter()
            .any(|g| default_via(&core, *g).is_some_and(|v| v.len() > 1))
    );
    core.handle_uplink(1, false);
    drain(&mut core);
    assert_loop_free(&core, &ids, &[3, 9]);
    assert_ne!(default_via(&core, 1).map(|v| v[0]), Some(1));
    assert!(ids.iter().all(|n| walk(&core, *n, None, false) != Some(1)));
}

#[test]
fn routes_carry_their_segments_and_public_nodes_get_their_client_prefixes() {
    let client_v6: IpNet = "fd12:3456:789a:1::/64".parse().expect("net");
    let client_v4: IpNet = "10.100.0.0/24".parse().expect("net");
    let public = NodeRecord {
        public_wifi: true,
        client_prefixes: vec![client_v6, client_v4],
        ..node(2, false)
    };
    let building: IpNet = "10.20.0.0/24".parse().expect("net");
    let mut core = Controller::new(
        settings(),
        vec![node(1, true), public],
        vec![(1, building)],
        vec![link(1, 2, 10)],
    );
    core.handle_connect(2);
    let out = drain(&mut core);
    let Some((_, Outgoing::Frame(ControllerMsg::Welcome(w)))) = out.first() else {
        panic!("{out:?}");
    };
    assert_eq!(w.client_prefixes, vec![client_v6, client_v4]);
    assert!(
        w.mesh_prefixes
            .contains(&"10.100.0.0/16".parse().expect("net"))
    );
    let seg = |id: u32, p: &str| {
        let p: IpNet = p.parse().expect("net");
        core.plan_routes(id)
            .into_iter()
            .find(|r| r.prefix == p)
            .map(|r| r.segment)
    };
    assert_eq!(seg(2, "10.99.0.1/32"), Some(Segment::Infrastructure));
    assert_eq!(
        seg(2, "fd12:3456:789a::1/128"),
        Some(Segment::Infrastructure)
    );
    assert_eq!(seg(2, "10.20.0.0/24"), Some(Segment::Intranet));
    assert_eq!(seg(2, "0.0.0.0/0"), Some(Segment::Internet));
    assert_eq!(seg(1, "10.100.0.0/24"), Some(Segment::Public));
    assert_eq!(seg(1, "fd12:3456:789a:1::/64"), Some(Segment::Public));
    // A node never routes its own client prefixes into the mesh.
    assert_eq!(seg(2, "10.100.0.0/24"), None);
}

#[test]
fn a_site_is_a_leaf_behind_its_via_node() {
    let mut core = connected(vec![node(1, false), node(2, false)], vec![link(1, 2, 10)]);
    let site_key = PublicKeyBytes([77; 32]);
    let lan: IpNet = "10.30.0.0/24".parse().expect("net");
    let address: IpNet = "10.99.0.50/32".parse().expect("net");
    core.load_sites(vec![SiteRecord {
        name: "town-hall".into(),
        via: 2,
        public_key: site_key,
        private_key: None,
        address,
        prefixes: vec![lan],
    }]);
    let out = drain(&mut core);
    assert!(
        out.iter().any(|(n, o)| *n == 2
            && matches!(o, Outgoing::Frame(ControllerMsg::LinksDelta(c))
                if c.iter().any(|l| matches!(l, freimesh_proto::control::LinkChange::Add(a)
                    if a.peer == site_key && a.endpoint.is_none() && a.profile == "wireguard"
                        && a.allowed_sources == vec![address, lan])))),
        "{out:?}"
    );
    let via_of = |routes: &BTreeMap<IpNet, RouteEntry>, prefix: &IpNet| {
        routes.get(prefix).map(|e| (e.via.clone(), e.segment))
    };
    let routes_1 = core.desired_routes(1);
    assert_eq!(
        via_of(&routes_1, &lan),
        Some((vec![key(2)], Segment::Intranet))
    );
    assert_eq!(
        via_of(&routes_1, &address),
        Some((vec![key(2)], Segment::Intranet))
    );
    let routes_2 = core.desired_routes(2);
    assert_eq!(
        via_of(&routes_2, &lan),
        Some((vec![site_key], Segment::Intranet))
    );
    assert!(
        routes_2[&lan].upstreams.is_empty(),
        "a site's own routes name no upstreams"
    );
    assert!(!core.desired_links(1).contains_key(&site_key));
    core.load_sites(vec![]);
    let out = drain(&mut core);
    assert!(out.iter().any(|(n, o)| *n == 1
        && matches!(o, Outgoing::Frame(ControllerMsg::RoutesDelta(c)) if c.contains(&RouteChange::Remove(lan)))));
    assert!(!core.desired_links(2).contains_key(&site_key));
}
