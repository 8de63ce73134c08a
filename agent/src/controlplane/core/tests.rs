//! The control core on hand-made controller events: deltas stay deltas,
//! full states reconcile, kernel routes follow intranet routes.

use std::time::Instant;

use freimesh_proto::control::{LinkAssignment, LinkChange, Route, RouteChange, Welcome};
use freimesh_proto::segment::Segment;
use freimesh_proto::{NodeId, PublicKeyBytes};
use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn key(b: u8) -> PublicKeyBytes {
    PublicKeyBytes([b; 32])
}

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn link(b: u8) -> LinkAssignment {
    LinkAssignment {
        peer: key(b),
        endpoint: None,
        profile: "default".into(),
        allowed_sources: Vec::new(),
    }
}

fn route(prefix: &str, via: &[u8]) -> Route {
    route_in(prefix, via, Segment::Infrastructure)
}

fn route_in(prefix: &str, via: &[u8], segment: Segment) -> Route {
    Route {
        upstreams: Vec::new(),
        prefix: net(prefix),
        via: via.iter().copied().map(key).collect(),
        segment,
    }
}

fn welcome(clients: &[&str]) -> ControllerEvent {
    ControllerEvent::Welcome(Welcome {
        node_id: NodeId::of(&key(1)),
        addresses: vec![net("10.99.0.1/32")],
        mesh_prefixes: vec![net("10.99.0.0/16")],
        client_prefixes: clients.iter().map(|c| net(c)).collect(),
        signing_key: freimesh_proto::credential::SigningKeyBytes([5; 32]),
    })
}

fn drain(core: &mut ControlCore) -> Vec<EngineChange> {
    std::iter::from_fn(|| core.poll_change()).collect()
}

/// A core that has applied links to 2 and 3 and routes to 10.99.0.2 and
/// 10.99.0.3, with its queue drained.
fn started() -> ControlCore {
    let now = Instant::now();
    let mut core = ControlCore::default();
    core.set_own_prefixes(vec![net("10.99.0.1/32")]);
    core.handle_event(&welcome(&[]), now);
    core.handle_event(&ControllerEvent::Links(vec![link(2), link(3)]), now);
    core.handle_event(
        &ControllerEvent::Routes(vec![
            route("10.99.0.2/32", &[2, 3]),
            route("10.99.0.3/32", &[3, 2]),
        ]),
        now,
    );
    let changes = drain(&mut core);
    assert_eq!(changes.len(), 4, "two links and two routes: {changes:?}");
    core
}

#[test]
fn the_exit_gateway_is_kept_across_disconnects_and_changes_nothing_in_the_engine() {
    let now = Instant::now();
    let mut core = started();
    assert_eq!(core.exit_gateway(), None);
    core.handle_event(&ControllerEvent::ExitGateway(Some(key(3))), now);
    assert_eq!(core.exit_gateway(), Some(key(3)));
    assert!(drain(&mut core).is_empty(), "display only");
    core.handle_event(
        &ControllerEvent::Disconnected {
            reason: "gone".into(),
            retry_in: Duration::from_secs(1),
        },
        now,
    );
    assert_eq!(core.exit_gateway(), Some(key(3)), "like the routes");
    core.handle_event(&ControllerEvent::ExitGateway(None), now);
    assert_eq!(core.exit_gateway(), None);
}

#[test]
fn a_drained_queue_gives_back_the_room_a_full_table_took() {
    let now = Instant::now();
    let mut core = ControlCore::default();
    core.set_own_prefixes(vec![net("10.99.0.1/32")]);
    core.handle_event(&welcome(&[]), now);
    core.handle_event(&ControllerEvent::Links(vec![link(2)]), now);
    let routes: Vec<Route> = (2..=250u8)
        .map(|i| route(&format!("10.99.0.{i}/32"), &[2]))
        .collect();
    core.handle_event(&ControllerEvent::Routes(routes), now);
    assert!(core.changes.capacity() > RETAINED_CHANGES);
    assert_eq!(drain(&mut core).len(), 250, "one link and 249 routes");
    assert!(core.changes.capacity() <= RETAINED_CHANGES);
}

#[test]
fn a_one_route_delta_is_exactly_one_engine_change() {
    let now = Instant::now();
    let mut core = started();
    let moved = route("10.99.0.2/32", &[3]);
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Set(moved.clone())]),
        now,
    );
    assert_eq!(drain(&mut core), vec![EngineChange::SetRoute(moved)]);
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Remove(net("10.99.0.3/32"))]),
        now,
    );
    assert_eq!(
        drain(&mut core),
        vec![EngineChange::RemoveRoute(net("10.99.0.3/32"))]
    );
    // A delta that changes nothing changes nothing.
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Remove(net("10.99.0.3/32"))]),
        now,
    );
    assert!(drain(&mut core).is_empty());
}

#[test]
fn a_one_link_delta_is_exactly_one_engine_change() {
    let now = Instant::now();
    let mut core = started();
    core.handle_event(
        &ControllerEvent::LinksDelta(vec![LinkChange::Add(link(4))]),
        now,
    );
    let changes = drain(&mut core);
    assert!(
        matches!(&changes[..], [EngineChange::UpsertLink(spec)] if spec.peer == key(4)),
        "{changes:?}"
    );
    core.handle_event(
        &ControllerEvent::LinksDelta(vec![LinkChange::Remove(key(3))]),
        now,
    );
    assert_eq!(drain(&mut core), vec![EngineChange::RetireLink(key(3))]);
}

#[test]
fn a_route_that_came_before_its_link_is_set_again_when_the_link_comes() {
    let now = Instant::now();
    let mut core = started();
    let via_five = route("10.99.0.5/32", &[5, 2]);
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Set(via_five.clone())]),
        now,
    );
    assert_eq!(drain(&mut core).len(), 1);
    core.handle_event(
        &ControllerEvent::LinksDelta(vec![LinkChange::Add(link(5))]),
        now,
    );
    let changes = drain(&mut core);
    assert!(
        matches!(&changes[..], [EngineChange::UpsertLink(_), EngineChange::SetRoute(r)] if *r == via_five),
        "{changes:?}"
    );
}

#[test]
fn the_full_state_after_a_welcome_reconciles_only_what_differs() {
    let now = Instant::now();
    let mut core = started();
    core.handle_event(
        &ControllerEvent::Disconnected {
            reason: "gone".into(),
            retry_in: std::time::Duration::from_secs(1),
        },
        now,
    );
    assert!(drain(&mut core).is_empty(), "headless: the state stays");
    core.handle_event(&welcome(&[]), now);
    // Link 3 gone, link 4 new; route to .2 unchanged, .3 gone, .4 new.
    core.handle_event(&ControllerEvent::Links(vec![link(2), link(4)]), now);
    assert!(drain(&mut core).is_empty(), "waits for the routes");
    let to_four = route("10.99.0.4/32", &[4]);
    core.handle_event(
        &ControllerEvent::Routes(vec![route("10.99.0.2/32", &[2, 3]), to_four.clone()]),
        now,
    );
    let changes = drain(&mut core);
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert!(matches!(&changes[0], EngineChange::UpsertLink(s) if s.peer == key(4)));
    assert_eq!(changes[1], EngineChange::RemoveRoute(net("10.99.0.3/32")));
    assert_eq!(changes[2], EngineChange::SetRoute(to_four));
    assert_eq!(changes[3], EngineChange::RetireLink(key(3)), "retired last");
    assert_eq!(
        core.links().keys().copied().collect::<Vec<_>>(),
        vec![key(2), key(4)]
    );
}

#[test]
fn deltas_between_the_full_sets_land_in_the_staged_state() {
    let now = Instant::now();
    let mut core = started();
    core.handle_event(&welcome(&[]), now);
    core.handle_event(&ControllerEvent::Links(vec![link(2), link(3)]), now);
    core.handle_event(
        &ControllerEvent::LinksDelta(vec![LinkChange::Add(link(6))]),
        now,
    );
    assert!(drain(&mut core).is_empty());
    core.handle_event(
        &ControllerEvent::Routes(vec![
            route("10.99.0.2/32", &[2, 3]),
            route("10.99.0.3/32", &[3, 2]),
        ]),
        now,
    );
    let changes = drain(&mut core);
    assert!(
        matches!(&changes[..], [EngineChange::UpsertLink(s)] if s.peer == key(6)),
        "{changes:?}"
    );
}

#[test]
fn routes_for_our_own_and_client_prefixes_are_never_applied() {
    let now = Instant::now();
    let mut core = ControlCore::default();
    core.set_own_prefixes(vec![net("10.99.0.1/32")]);
    core.handle_event(&welcome(&["10.100.1.0/24"]), now);
    core.handle_event(&ControllerEvent::Links(vec![link(2)]), now);
    core.handle_event(
        &ControllerEvent::Routes(vec![
            route("10.99.0.1/32", &[2]),
            route("10.100.1.0/24", &[2]),
            route("10.99.0.2/32", &[2]),
        ]),
        now,
    );
    let changes = drain(&mut core);
    assert_eq!(
        changes[0],
        EngineChange::SetClientPrefixes(vec![net("10.100.1.0/24")])
    );
    assert_eq!(
        changes.len(),
        3,
        "client prefixes, link, one route: {changes:?}"
    );
    assert_eq!(
        changes[2],
        EngineChange::SetRoute(route("10.99.0.2/32", &[2]))
    );
}

#[test]
fn the_kernel_routes_other_buildings_and_sites_into_the_mesh_and_nothing_else() {
    let now = Instant::now();
    let mut core = ControlCore::default();
    core.set_kernel_rule(KernelRouteRule {
        base: vec![net("10.99.0.0/16"), net("fd99::/48"), net("10.100.0.0/16")],
        local: vec![net("10.20.1.0/24")],
    });
    core.handle_event(&welcome(&[]), now);
    core.handle_event(&ControllerEvent::Links(vec![link(2)]), now);
    core.handle_event(
        &ControllerEvent::Routes(vec![
            route_in("10.99.0.2/32", &[2], Segment::Infrastructure),
            route_in("10.100.1.0/24", &[2], Segment::Public),
            route_in("0.0.0.0/0", &[2], Segment::Internet),
            route_in("::/0", &[2], Segment::Internet),
            route_in("10.20.2.0/24", &[2], Segment::Intranet),
            route_in("172.16.5.0/24", &[2], Segment::Intranet),
            // Our own LAN must stay on its interface.
            route_in("10.20.1.0/24", &[2], Segment::Intranet),
        ]),
        now,
    );
    let wanted = vec![
        net("10.99.0.0/16"),
        net("fd99::/48"),
        net("10.100.0.0/16"),
        net("10.20.2.0/24"),
        net("172.16.5.0/24"),
    ];
    assert_eq!(core.poll_kernel_routes(), Some(wanted));
    assert_eq!(core.poll_kernel_routes(), None, "asked once");
    // A non-intranet delta does not touch the kernel.
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Remove(net("10.99.0.2/32"))]),
        now,
    );
    assert_eq!(core.poll_kernel_routes(), None);
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Remove(net("172.16.5.0/24"))]),
        now,
    );
    assert_eq!(core.poll_kernel_routes().map(|r| r.len()), Some(4));
}

#[test]
fn a_reconnect_sets_again_the_unchanged_routes_through_a_link_it_brings() {
    let now = Instant::now();
    let mut core = started();
    // The route arrived before its link: the engine holds it via 2 only.
    let via_five = route("10.99.0.5/32", &[5, 2]);
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Set(via_five.clone())]),
        now,
    );
    assert_eq!(drain(&mut core).len(), 1);
    core.handle_event(&welcome(&[]), now);
    core.handle_event(
        &ControllerEvent::Links(vec![link(2), link(3), link(5)]),
        now,
    );
    core.handle_event(
        &ControllerEvent::Routes(vec![
            route("10.99.0.2/32", &[2, 3]),
            route("10.99.0.3/32", &[3, 2]),
            via_five.clone(),
        ]),
        now,
    );
    let changes = drain(&mut core);
    assert!(
        matches!(&changes[..], [EngineChange::UpsertLink(s), EngineChange::SetRoute(r)] if s.peer == key(5) && *r == via_five),
        "{changes:?}"
    );
}

#[test]
fn changed_client_prefixes_hide_or_reveal_only_their_own_routes() {
    let now = Instant::now();
    let mut core = started();
    let to_clients = route("10.100.1.0/24", &[2]);
    core.handle_event(
        &ControllerEvent::RoutesDelta(vec![RouteChange::Set(to_clients.clone())]),
        now,
    );
    assert_eq!(drain(&mut core).len(), 1);
    let full_state = |core: &mut ControlCore, clients: &[&str]| {
        core.handle_event(&welcome(clients), now);
        core.handle_event(&ControllerEvent::Links(vec![link(2), link(3)]), now);
        core.handle_event(
            &ControllerEvent::Routes(vec![
                route("10.99.0.2/32", &[2, 3]),
                route("10.99.0.3/32", &[3, 2]),
                to_clients.clone(),
            ]),
            now,
        );
        drain(core)
    };
    // Now this node serves the prefix: the engine's delivery route
    // replaces the controller's, nothing else to do.
    assert_eq!(
        full_state(&mut core, &["10.100.1.0/24"]),
        vec![EngineChange::SetClientPrefixes(vec![net("10.100.1.0/24")])]
    );
    // When it no longer does, the engine drops its delivery route and the
    // controller's comes back.
    assert_eq!(
        full_state(&mut core, &[]),
        vec![
            EngineChange::SetClientPrefixes(Vec::new()),
            EngineChange::SetRoute(to_clients.clone()),
        ]
    );
}

/// One step of the controller in the property test below.
#[derive(Debug, Clone)]
enum Step {
    LinkAdd(u8),
    LinkRemove(u8),
    RouteSet {
        dst: u8,
        via: [u8; 2],
    },
    RouteRemove(u8),
    /// A Welcome serving the client prefix of this destination, if any.
    Welcome(Option<u8>),
    /// The full link set: the links to the peers whose bit is set.
    Links(u8),
    /// The full route set: the routes the controller holds whose
    /// destination's bit is set, plus this one.
    Routes {
        keep: u8,
        dst: u8,
        via: [u8; 2],
    },
    Disconnect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (2u8..8).prop_map(Step::LinkAdd),
        (2u8..8).prop_map(Step::LinkRemove),
        (0u8..8, 2u8..8, 2u8..8).prop_map(|(dst, a, b)| Step::RouteSet { dst, via: [a, b] }),
        (0u8..8).prop_map(Step::RouteRemove),
        proptest::option::of(0u8..8).prop_map(Step::Welcome),
        any::<u8>().prop_map(Step::Links),
        (any::<u8>(), 0u8..8, 2u8..8, 2u8..8).prop_map(|(keep, dst, a, b)| Step::Routes {
            keep,
            dst,
            via: [a, b]
        }),
        Just(Step::Disconnect),
    ]
}

fn dst_prefix(dst: u8) -> IpNet {
    net(&format!("10.99.1.{dst}/32"))
}

fn route_to(dst: u8, via: [u8; 2]) -> Route {
    Route {
        upstreams: Vec::new(),
        prefix: dst_prefix(dst),
        // The controller never names a next hop twice (the engine refuses).
        via: if via[0] == via[1] {
            &via[..1]
        } else {
            &via[..]
        }
        .iter()
        .copied()
        .map(key)
        .collect(),
        segment: Segment::Infrastructure,
    }
}

/// Checks a real engine that got every change the core handed out against
/// the state the core applied: it holds a link to exactly the assigned
/// neighbours, and each controller route that is not this node's own
/// resolved to the assigned next hops in order (hops through retired links
/// may linger, down, until the route is set again); no other route.
fn check_engine(
    engine: &crate::core::Engine,
    core: &ControlCore,
    peers: &std::collections::BTreeMap<crate::core::LinkId, PublicKeyBytes>,
) -> Result<(), TestCaseError> {
    use crate::core::Hop;
    for b in 2u8..8 {
        prop_assert_eq!(
            engine.link_by_peer(&key(b)).is_some(),
            core.links().contains_key(&key(b)),
            "link to {}",
            b
        );
    }
    let prefixes = (0u8..8)
        .map(dst_prefix)
        .chain([net("10.99.0.2/32"), net("10.99.0.3/32")]);
    for prefix in prefixes {
        let held: Vec<PublicKeyBytes> = engine
            .configured_hops(prefix)
            .unwrap_or_default()
            .iter()
            .filter_map(|hop| match hop {
                Hop::Link(id) => peers.get(id).copied(),
                _ => None,
            })
            .filter(|peer| core.links().contains_key(peer))
            .collect();
        let wanted: Vec<PublicKeyBytes> = match core.routes().get(&prefix) {
            Some(r) if !core.ours(&prefix) => r
                .via
                .iter()
                .filter(|peer| core.links().contains_key(*peer))
                .copied()
                .collect(),
            _ => {
                // Nothing, or the engine's own delivery (client prefixes).
                let hops = engine.configured_hops(prefix).unwrap_or_default();
                prop_assert!(
                    !hops.iter().any(|h| matches!(h, Hop::Link(_))),
                    "{} is not the controller's to route: {:?}",
                    prefix,
                    hops
                );
                Vec::new()
            }
        };
        prop_assert_eq!(held, wanted, "hops for {}", prefix);
    }
    Ok(())
}

/// Hands every queued change to the engine, noting which neighbour each
/// link is to; returns how many there were.
fn apply_all(
    engine: &mut crate::core::Engine,
    core: &mut ControlCore,
    peers: &mut std::collections::BTreeMap<crate::core::LinkId, PublicKeyBytes>,
    now: Instant,
) -> usize {
    let changes = drain(core);
    for change in &changes {
        engine
            .apply(change, now)
            .expect("a change the engine takes");
        if let EngineChange::UpsertLink(spec) = change {
            let id = engine.link_by_peer(&spec.peer).expect("upserted");
            peers.insert(id, spec.peer);
        }
    }
    changes.len()
}

proptest! {
    /// Whatever deltas, Welcomes, full states and disconnects came before,
    /// the changes the core handed out, applied to a real engine, leave it
    /// holding exactly the controller's links and routes, resolved to links
    /// the way the engine does it; and each delta entry outside a resync
    /// costs at most one change plus the routes waiting for a new link.
    #[test]
    fn changes_keep_a_real_engine_equal_to_the_controller_state(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let now = Instant::now();
        let mut core = started();
        let mut engine = crate::core::Engine::new([7; 32], Vec::new(), 1, now).expect("engine");
        let mut peers = std::collections::BTreeMap::new();
        // Replay what `started` handed out.
        let mut replay = ControlCore::default();
        replay.set_own_prefixes(vec![net("10.99.0.1/32")]);
        replay.handle_event(&welcome(&[]), now);
        replay.handle_event(&ControllerEvent::Links(vec![link(2), link(3)]), now);
        replay.handle_event(&ControllerEvent::Routes(core.routes().values().cloned().collect()), now);
        apply_all(&mut engine, &mut replay, &mut peers, now);
        // What the controller holds: every full set replaces, every delta
        // patches.
        let mut links: std::collections::BTreeSet<PublicKeyBytes> = [key(2), key(3)].into();
        let mut routes: std::collections::BTreeMap<IpNet, Route> = core.routes().clone();
        for step in steps {
            let (event, waiting) = match step {
                Step::LinkAdd(peer) => {
                    links.insert(key(peer));
                    let waiting = routes.values().filter(|r| r.via.contains(&key(peer))).count();
                    (ControllerEvent::LinksDelta(vec![LinkChange::Add(link(peer))]), Some(waiting))
                }
                Step::LinkRemove(peer) => {
                    links.remove(&key(peer));
                    (ControllerEvent::LinksDelta(vec![LinkChange::Remove(key(peer))]), Some(0))
                }
                Step::RouteSet { dst, via } => {
                    routes.insert(dst_prefix(dst), route_to(dst, via));
                    (ControllerEvent::RoutesDelta(vec![RouteChange::Set(route_to(dst, via))]), Some(0))
                }
                Step::RouteRemove(dst) => {
                    routes.remove(&dst_prefix(dst));
                    (ControllerEvent::RoutesDelta(vec![RouteChange::Remove(dst_prefix(dst))]), Some(0))
                }
                Step::Welcome(client) => {
                    let client = client.map(|d| dst_prefix(d).to_string());
                    let clients: Vec<&str> = client.iter().map(String::as_str).collect();
                    (welcome(&clients), None)
                }
                Step::Links(mask) => {
                    links = (2u8..8).filter(|b| mask & (1 << b) != 0).map(key).collect();
                    (ControllerEvent::Links(links.iter().map(|k| link(k.0[0])).collect()), None)
                }
                Step::Routes { keep, dst, via } => {
                    routes.retain(|prefix, _| {
                        let last = match prefix.addr() {
                            std::net::IpAddr::V4(a) => a.octets()[3],
                            std::net::IpAddr::V6(_) => 0,
                        };
                        keep & (1 << (last % 8)) != 0
                    });
                    routes.insert(dst_prefix(dst), route_to(dst, via));
                    (ControllerEvent::Routes(routes.values().cloned().collect()), None)
                }
                Step::Disconnect => (
                    ControllerEvent::Disconnected {
                        reason: "gone".into(),
                        retry_in: std::time::Duration::from_secs(1),
                    },
                    None,
                ),
            };
            let resyncing = core.resyncing();
            core.handle_event(&event, now);
            let handed_out = apply_all(&mut engine, &mut core, &mut peers, now);
            if let (Some(waiting), false) = (waiting, resyncing) {
                prop_assert!(handed_out <= 1 + waiting);
            }
            if matches!(event, ControllerEvent::Disconnected { .. }) {
                // The half-received full state is gone; the controller
                // sends a whole new one after the next Welcome.
                links = core.links().keys().copied().collect();
                routes = core.routes().clone();
            }
            if !core.resyncing() {
                prop_assert_eq!(&links, &core.links().keys().copied().collect());
                prop_assert_eq!(&routes, core.routes());
                check_engine(&engine, &core, &peers)?;
            }
        }
    }
}
