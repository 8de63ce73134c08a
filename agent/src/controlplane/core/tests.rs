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

proptest! {
    /// Whatever deltas came before, the changes the core handed out, applied
    /// to a model of the engine, leave it holding exactly the controller's
    /// links and routes; and each delta entry costs at most one change plus
    /// the routes waiting for a new link.
    #[test]
    fn changes_keep_a_model_engine_equal_to_the_controller_state(
        ops in proptest::collection::vec((0u8..4, 2u8..8, 0u8..8, 2u8..8), 1..60)
    ) {
        let now = Instant::now();
        let mut core = started();
        let mut links: std::collections::BTreeSet<PublicKeyBytes> = [key(2), key(3)].into();
        let mut routes: std::collections::BTreeMap<IpNet, Route> = core.routes().clone();
        for (op, peer, dst, hop) in ops {
            let prefix = format!("10.99.1.{dst}/32");
            let event = match op {
                0 => ControllerEvent::LinksDelta(vec![LinkChange::Add(link(peer))]),
                1 => ControllerEvent::LinksDelta(vec![LinkChange::Remove(key(peer))]),
                2 => ControllerEvent::RoutesDelta(vec![RouteChange::Set(route(&prefix, &[hop, peer]))]),
                _ => ControllerEvent::RoutesDelta(vec![RouteChange::Remove(net(&prefix))]),
            };
            core.handle_event(&event, now);
            let changes = drain(&mut core);
            let waiting = routes.values().filter(|r| r.via.contains(&key(peer))).count();
            prop_assert!(changes.len() <= 1 + waiting);
            for change in changes {
                match change {
                    EngineChange::UpsertLink(s) => { links.insert(s.peer); }
                    EngineChange::RetireLink(p) => { links.remove(&p); }
                    EngineChange::SetRoute(r) => { routes.insert(r.prefix, r); }
                    EngineChange::RemoveRoute(p) => { routes.remove(&p); }
                    EngineChange::SetClientPrefixes(_) => {}
                }
            }
            prop_assert_eq!(&links, &core.links().keys().copied().collect());
            prop_assert_eq!(&routes, core.routes());
        }
    }
}
