//! The route deltas the core sends after each change, applied the way an
//! agent applies them, always add up to a full planning: after random link
//! changes, drains and uplink reports, every connected node holds exactly
//! what [`Controller::desired_routes`] gives, and the core's incremental
//! routes equal a recomputation.

use std::collections::BTreeMap;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{ControllerMsg, RouteChange};
use ipnet::IpNet;
use proptest::prelude::*;

use super::{Controller, Outgoing, RouteEntry};
use crate::records::{LinkRecord, MeshSettings, NodeRecord, NodeState, SiteRecord};

const NODES: u32 = 8;
const GATEWAYS: [u32; 2] = [1, 5];
/// Offers public Wi-Fi: its client prefixes are routed to by everyone.
const WIFI: u32 = 3;
/// Has an approved extra prefix.
const ROUTER_WITH_LAN: u32 = 4;
/// The node a standard WireGuard site's tunnel ends on.
const SITE_VIA: u32 = 2;

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

fn node(id: u32) -> NodeRecord {
    NodeRecord {
        id,
        public_key: PublicKeyBytes([u8::try_from(id).expect("small"); 32]),
        hostname: format!("n{id}"),
        addresses: vec![
            format!("fd12:3456:789a::{id}/128").parse().expect("v6"),
            format!("10.99.0.{id}/32").parse().expect("v4"),
        ],
        state: NodeState::Active,
        drained: false,
        endpoints: vec![format!("192.0.2.{id}:51820").parse().expect("ep")],
        gateway: GATEWAYS.contains(&id),
        public_wifi: id == WIFI,
        client_prefixes: if id == WIFI {
            vec!["10.100.3.0/24".parse().expect("clients")]
        } else {
            vec![]
        },
        requested_roles: Default::default(),
        approved_roles: Default::default(),
    }
}

/// One change the controller hears of.
#[derive(Debug, Clone)]
enum Change {
    /// Link `a – b` measured (new, or a new cost), or down.
    Link {
        a: u32,
        b: u32,
        cost: u32,
        up: bool,
    },
    Drain {
        id: u32,
        drained: bool,
    },
    Uplink {
        id: u32,
        up: bool,
    },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => (1..=NODES, 1..=NODES, 1u32..400, prop::bool::weighted(0.7))
            .prop_filter("a link joins two nodes", |(a, b, _, _)| a != b)
            .prop_map(|(a, b, cost, up)| Change::Link { a, b, cost, up }),
        1 => (1..=NODES, any::<bool>()).prop_map(|(id, drained)| Change::Drain { id, drained }),
        1 => (prop::sample::select(GATEWAYS.to_vec()), any::<bool>())
            .prop_map(|(id, up)| Change::Uplink { id, up }),
    ]
}

type Table = BTreeMap<IpNet, RouteEntry>;

/// Applies the frames of one step to the nodes' tables as an agent does:
/// a full `Routes` replaces the table, a `RoutesDelta` changes it.
fn entry(r: freimesh_proto::control::Route) -> RouteEntry {
    RouteEntry {
        via: r.via,
        upstreams: r.upstreams,
        segment: r.segment,
    }
}

fn deliver(core: &mut Controller, tables: &mut BTreeMap<u32, Table>) {
    while let Some((id, out)) = core.poll_transmit() {
        let table = tables.entry(id).or_default();
        match out {
            Outgoing::Frame(ControllerMsg::Routes { routes, .. }) => {
                *table = routes.into_iter().map(|r| (r.prefix, entry(r))).collect();
            }
            Outgoing::Frame(ControllerMsg::RoutesDelta(changes)) => {
                for c in changes {
                    match c {
                        RouteChange::Set(r) => {
                            table.insert(r.prefix, entry(r));
                        }
                        RouteChange::Remove(p) => {
                            table.remove(&p);
                        }
                    }
                }
            }
            Outgoing::Frame(_) => {}
            Outgoing::Close => panic!("node {id} closed"),
        }
    }
}

fn apply(core: &mut Controller, change: &Change) {
    match *change {
        Change::Link { a, b, cost, up } => core.apply_links(&[LinkRecord {
            a: a.min(b),
            b: a.max(b),
            rtt_us: None,
            loss_ppm: None,
            up,
            override_cost: Some(cost),
        }]),
        Change::Drain { id, drained } => core.set_drained(id, drained),
        Change::Uplink { id, up } => {
            core.handle_uplink(id, up);
        }
    }
}

/// Connects every node, then applies `changes` one by one; after each,
/// every node's table (built from the frames it got) must be what a full
/// planning gives.
fn check(changes: &[Change]) -> Result<(), TestCaseError> {
    let nodes = (1..=NODES).map(node).collect();
    let lan: IpNet = "10.40.0.0/24".parse().expect("lan");
    let mut core = Controller::new(settings(), nodes, vec![(ROUTER_WITH_LAN, lan)], vec![]);
    core.load_sites(vec![SiteRecord {
        name: "town-hall".into(),
        via: SITE_VIA,
        public_key: PublicKeyBytes([201; 32]),
        private_key: None,
        address: "10.99.1.1/32".parse().expect("site"),
        prefixes: vec!["10.50.0.0/24".parse().expect("site lan")],
    }]);
    let mut tables = BTreeMap::new();
    for id in 1..=NODES {
        core.handle_connect(id);
    }
    deliver(&mut core, &mut tables);
    for (step, change) in changes.iter().enumerate() {
        apply(&mut core, change);
        // The shell's tick, far enough apart that every one may recompute
        // the upstreams: their changes must arrive as deltas too.
        let now_ms = i64::try_from(step + 1).unwrap_or(i64::MAX) * super::UPSTREAMS_REFRESH_MS;
        core.handle_upstreams_tick(now_ms);
        deliver(&mut core, &mut tables);
        for id in 1..=NODES {
            prop_assert_eq!(
                &tables[&id],
                &core.desired_routes(id),
                "node {} after step {} ({:?})",
                id,
                step,
                change
            );
        }
        prop_assert_eq!(core.stale_sessions(), Vec::<u32>::new());
    }
    for (id, routes) in core.recomputed_routes() {
        prop_assert_eq!(core.routes_of(id), routes, "node {}", id);
    }
    Ok(())
}

fn link(a: u32, b: u32, cost: u32) -> Change {
    Change::Link {
        a,
        b,
        cost,
        up: true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn after_random_changes_every_node_holds_what_a_full_planning_gives(
        changes in prop::collection::vec(change(), 1..40),
    ) {
        check(&changes)?;
    }
}

/// Found by the property: draining gateway 5 moves no next hop, but
/// gateway 1 must stop offering it as its default route's alternate.
#[test]
fn draining_a_gateway_updates_its_neighbouring_gateways_alternates() {
    let drain = Change::Drain {
        id: 5,
        drained: true,
    };
    check(&[link(1, 5, 1), drain]).expect("converged");
}

/// Found by the property: 5 – 4 getting dearer moves no next hop, but
/// raises 3's distance to the internet until 3 is no longer a loop-free
/// alternate of drained gateway 1.
#[test]
fn a_costlier_link_that_moves_no_next_hop_updates_a_gateways_alternates() {
    let drain = Change::Drain {
        id: 1,
        drained: true,
    };
    check(&[
        link(3, 4, 252),
        drain,
        link(3, 1, 321),
        link(5, 4, 1),
        link(5, 4, 69),
    ])
    .expect("converged");
}
