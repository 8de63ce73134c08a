use freimesh_proto::control::{LinkChange, LinkMeasurement, Route, RouteChange};
use freimesh_proto::segment::Segment;

use super::*;

fn settings() -> MeshSettings {
    MeshSettings {
        ula: "fd12:3456:789a::/48".parse().expect("ula"),
        ipv4: "10.99.0.0/16".parse().expect("v4"),
        approval: false,
        controller_public_key: PublicKeyBytes([9; 32]),
        clients_ipv4: Some("10.100.0.0/16".parse().expect("clients")),
        client_subnet_len: 24,
    }
}

fn node(id: u32, state: NodeState) -> NodeRecord {
    let b = u8::try_from(id).expect("small");
    NodeRecord {
        id,
        public_key: PublicKeyBytes([b; 32]),
        hostname: format!("n{id}"),
        addresses: vec![
            format!("fd12:3456:789a::{id}/128").parse().expect("v6"),
            format!("10.99.0.{id}/32").parse().expect("v4"),
        ],
        state,
        drained: false,
        endpoints: vec![format!("192.0.2.{id}:51820").parse().expect("ep")],
        gateway: false,
        public_wifi: false,
        client_prefixes: vec![],
        requested_roles: Default::default(),
        approved_roles: Default::default(),
    }
}

fn key(id: u8) -> PublicKeyBytes {
    PublicKeyBytes([id; 32])
}

fn drain(core: &mut Controller) -> Vec<(u32, Outgoing)> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

fn three() -> Controller {
    let nodes = (1..=3).map(|i| node(i, NodeState::Active)).collect();
    let mut core = Controller::new(
        settings(),
        nodes,
        vec![(3, "10.20.0.0/24".parse().expect("net"))],
        vec![],
    );
    for id in 1..=3 {
        core.handle_connect(id);
    }
    drain(&mut core);
    core
}

fn report(peers: &[u8]) -> Report {
    Report {
        links: vec![],
        candidates: peers
            .iter()
            .map(|p| Candidate {
                peer: key(*p),
                endpoint: None,
            })
            .collect(),
    }
}

/// Both ends of `a – b` report each other; the rows go in.
fn link(core: &mut Controller, a: u8, b: u8) {
    for (from, to) in [(a, b), (b, a)] {
        let rows = core.plan_report(u32::from(from), &report(&[to]));
        core.apply_links(&rows);
    }
}

#[test]
fn connect_queues_welcome_then_full_links_and_routes_then_the_exit_gateway() {
    let mut core = Controller::new(settings(), vec![node(1, NodeState::Active)], vec![], vec![]);
    core.handle_connect(1);
    let out = drain(&mut core);
    assert!(
        matches!(&out[0], (1, Outgoing::Frame(ControllerMsg::Welcome(w))) if w.addresses.len() == 2)
    );
    assert!(matches!(
        &out[1],
        (1, Outgoing::Frame(ControllerMsg::Links { last: true, .. }))
    ));
    assert!(matches!(
        &out[2],
        (1, Outgoing::Frame(ControllerMsg::Routes { last: true, .. }))
    ));
    // No gateway in this mesh: the agent still hears that it has none.
    assert!(matches!(
        &out[3],
        (1, Outgoing::Frame(ControllerMsg::ExitGateway(None)))
    ));
    assert_eq!(out.len(), 4);
}

#[test]
fn candidates_become_links_on_both_ends_and_routes_follow() {
    let mut core = three();
    // Unknown keys and the node itself are ignored.
    assert!(core.plan_report(1, &report(&[1, 77])).is_empty());
    // One end alone creates nothing; the other end's report does.
    assert!(core.plan_report(1, &report(&[2])).is_empty());
    let rows = core.plan_report(2, &report(&[1]));
    assert_eq!(rows.len(), 1);
    core.apply_links(&rows);
    assert!(core.plan_report(2, &report(&[3])).is_empty());
    let rows = core.plan_report(3, &report(&[2]));
    core.apply_links(&rows);
    let out = drain(&mut core);
    let to = |id: u32| -> Vec<&ControllerMsg> {
        out.iter()
            .filter(|(n, _)| *n == id)
            .filter_map(|(_, o)| match o {
                Outgoing::Frame(f) => Some(f),
                Outgoing::Close => None,
            })
            .collect()
    };
    assert!(to(3).iter().any(|m| matches!(m, ControllerMsg::LinksDelta(c) if c.iter().any(|l| matches!(l, LinkChange::Add(a) if a.peer == key(2) && a.endpoint == Some("192.0.2.2:51820".parse().expect("ep")))))));
    // Node 1 reaches 3's approved prefix through 2.
    let prefix: IpNet = "10.20.0.0/24".parse().expect("net");
    assert!(to(1).iter().any(|m| matches!(m, ControllerMsg::RoutesDelta(c) if c.contains(&RouteChange::Set(Route { upstreams: Vec::new(), prefix, via: vec![key(2)], segment: Segment::Intranet })))));
}

#[test]
fn measurements_update_links_and_down_links_withdraw_routes() {
    let mut core = three();
    link(&mut core, 1, 2);
    drain(&mut core);
    let down = Report {
        links: vec![LinkMeasurement {
            peer: key(2),
            rtt_us: 900,
            loss_ppm: 0,
            up: false,
        }],
        candidates: vec![],
    };
    let rows = core.plan_report(1, &down);
    assert_eq!(rows.len(), 1);
    core.apply_links(&rows);
    let out = drain(&mut core);
    let v6: IpNet = "fd12:3456:789a::2/128".parse().expect("net");
    assert!(out.iter().any(|(n, o)| *n == 1 && matches!(o, Outgoing::Frame(ControllerMsg::RoutesDelta(c)) if c.contains(&RouteChange::Remove(v6)))));
    // The same measurement again changes nothing.
    assert!(core.plan_report(1, &down).is_empty());
}

#[test]
fn revocation_closes_the_node_and_tears_down_its_links_routes_first() {
    let mut core = three();
    link(&mut core, 1, 2);
    drain(&mut core);
    let nodes = vec![
        node(1, NodeState::Active),
        node(2, NodeState::Revoked),
        node(3, NodeState::Active),
    ];
    core.handle_registry(nodes, vec![], vec![]);
    let out = drain(&mut core);
    assert!(out.contains(&(2, Outgoing::Close)));
    assert!(out.iter().any(|(n, o)| *n == 2
        && matches!(o, Outgoing::Frame(ControllerMsg::Error(e)) if e.code == ErrorCode::Revoked)));
    let to1: Vec<&Outgoing> = out
        .iter()
        .filter(|(n, _)| *n == 1)
        .map(|(_, o)| o)
        .collect();
    let routes_at = to1
        .iter()
        .position(|o| matches!(o, Outgoing::Frame(ControllerMsg::RoutesDelta(_))));
    let links_at = to1.iter().position(|o| matches!(o, Outgoing::Frame(ControllerMsg::LinksDelta(c)) if c == &vec![LinkChange::Remove(key(2))]));
    assert!(
        routes_at.expect("routes removed") < links_at.expect("link removed"),
        "{to1:?}"
    );
    assert_eq!(core.lookup(&key(2)), KeyStatus::Revoked(2));
}

#[test]
fn prefixes_must_be_approved() {
    let core = three();
    assert_eq!(
        core.unapproved_prefix(3, &["10.20.0.0/24".parse().expect("net")]),
        None
    );
    let other: IpNet = "10.21.0.0/24".parse().expect("net");
    assert_eq!(core.unapproved_prefix(3, &[other]), Some(other));
    assert_eq!(
        core.unapproved_prefix(1, &["10.20.0.0/24".parse().expect("net")]),
        Some("10.20.0.0/24".parse().expect("net"))
    );
}

#[test]
fn a_new_endpoint_reaches_the_neighbours() {
    let mut core = three();
    link(&mut core, 1, 2);
    drain(&mut core);
    let moved: SocketAddr = "198.51.100.2:51820".parse().expect("ep");
    core.upsert_node(
        NodeRecord {
            endpoints: vec![moved],
            ..node(2, NodeState::Active)
        },
        vec![],
    );
    let out = drain(&mut core);
    assert!(out.iter().any(|(n, o)| *n == 1
        && matches!(o, Outgoing::Frame(ControllerMsg::LinksDelta(c))
            if c.iter().any(|l| matches!(l, LinkChange::Add(a) if a.endpoint == Some(moved))))));
}

#[test]
fn an_endpoint_a_node_names_for_an_existing_link_reaches_it() {
    let mut core = three();
    link(&mut core, 1, 2);
    drain(&mut core);
    // Node 1 now reaches node 2 through a relay: no link row changes, but
    // node 1 must be told to use the relay.
    let relay: SocketAddr = "127.0.0.1:40000".parse().expect("ep");
    let named = Report {
        links: vec![],
        candidates: vec![Candidate {
            peer: key(2),
            endpoint: Some(relay),
        }],
    };
    assert!(
        core.plan_report(1, &named).is_empty(),
        "no link row changes"
    );
    let out = drain(&mut core);
    assert!(
        out.iter().any(|(n, o)| *n == 1
            && matches!(o, Outgoing::Frame(ControllerMsg::LinksDelta(c))
                if c.iter().any(|l| matches!(l, LinkChange::Add(a) if a.peer == key(2) && a.endpoint == Some(relay))))),
        "{out:?}"
    );
    // The same report again changes nothing and sends nothing.
    assert!(core.plan_report(1, &named).is_empty());
    assert!(drain(&mut core).is_empty());
}

/// A chain 1 – 2 – 3 with measured links, every node connected.
fn chain() -> Controller {
    let mut core = three();
    for (id, peer) in [(1, 2), (2, 3)] {
        link(&mut core, id, peer);
    }
    drain(&mut core);
    core
}

#[test]
fn draining_moves_transit_at_once_and_undraining_brings_it_back() {
    let mut core = chain();
    let v6_3: IpNet = "fd12:3456:789a::3/128".parse().expect("net");
    assert_eq!(
        core.routes_of(1)
            .iter()
            .find(|r| r.dst == 3)
            .map(|r| r.via.clone()),
        Some(vec![2])
    );
    core.set_drained(2, true);
    assert!(core.nodes()[&2].drained);
    let out = drain(&mut core);
    // 2 carries no transit: 1 loses its only path to 3.
    assert!(out.iter().any(|(n, o)| *n == 1 && matches!(o, Outgoing::Frame(ControllerMsg::RoutesDelta(c)) if c.contains(&RouteChange::Remove(v6_3)))), "{out:?}");
    assert!(core.routes_of(1).iter().all(|r| r.dst != 3));
    // 2 itself stays reachable.
    assert!(core.routes_of(1).iter().any(|r| r.dst == 2));
    core.set_drained(2, false);
    let out = drain(&mut core);
    assert!(out.iter().any(|(n, o)| *n == 1 && matches!(o, Outgoing::Frame(ControllerMsg::RoutesDelta(c)) if c.contains(&RouteChange::Set(Route { upstreams: Vec::new(), prefix: v6_3, via: vec![key(2)], segment: Segment::Infrastructure })))), "{out:?}");
}

#[test]
fn revoking_closes_the_node_and_its_neighbours_drop_the_link() {
    let mut core = chain();
    core.revoke(2);
    let out = drain(&mut core);
    assert!(out.contains(&(2, Outgoing::Close)));
    assert!(out.iter().any(|(n, o)| *n == 2
        && matches!(o, Outgoing::Frame(ControllerMsg::Error(e)) if e.code == ErrorCode::Revoked)));
    for id in [1, 3] {
        assert!(out.iter().any(|(n, o)| *n == id && matches!(o, Outgoing::Frame(ControllerMsg::LinksDelta(c)) if c == &vec![LinkChange::Remove(key(2))])), "{id}: {out:?}");
    }
    assert_eq!(core.lookup(&key(2)), KeyStatus::Revoked(2));
    assert!(core.links().is_empty());
    assert!(core.routes_of(2).is_empty());
    assert_eq!(core.connected().collect::<Vec<_>>(), vec![1, 3]);
}
