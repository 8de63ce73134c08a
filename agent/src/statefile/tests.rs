//! The state file with the control core: a replayed file brings a fresh
//! core to the engine changes the controller's own Welcome brought, and the
//! controller's return after a cold start is a reconcile that changes only
//! what differs (no engine change, so no traffic gap, when nothing did).

use std::time::Instant;

use freimesh_proto::control::{LinkAssignment, Route, Welcome};
use freimesh_proto::segment::Segment;
use freimesh_proto::{NodeId, PublicKeyBytes};
use ipnet::IpNet;

use super::*;
use crate::controlplane::EngineChange;

fn key(b: u8) -> PublicKeyBytes {
    PublicKeyBytes([b; 32])
}

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn welcome() -> Welcome {
    Welcome {
        node_id: NodeId::of(&key(1)),
        addresses: vec![net("10.99.0.1/32"), net("fd99::1/128")],
        mesh_prefixes: vec![net("10.99.0.0/16"), net("fd99::/48")],
        client_prefixes: vec![net("10.100.1.0/24")],
        signing_key: freimesh_proto::credential::SigningKeyBytes([5; 32]),
    }
}

fn links() -> Vec<LinkAssignment> {
    [2u8, 3]
        .into_iter()
        .map(|b| LinkAssignment {
            peer: key(b),
            endpoint: Some(SocketAddr::from(([192, 0, 2, b], 51820))),
            profile: "default".into(),
            allowed_sources: Vec::new(),
        })
        .collect()
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            upstreams: Vec::new(),
            prefix: net("10.99.0.2/32"),
            via: vec![key(2), key(3)],
            segment: Segment::Infrastructure,
        },
        Route {
            upstreams: Vec::new(),
            prefix: net("10.99.0.3/32"),
            via: vec![key(3), key(2)],
            segment: Segment::Infrastructure,
        },
        Route {
            upstreams: Vec::new(),
            prefix: net("10.20.0.0/24"),
            via: vec![key(3)],
            segment: Segment::Intranet,
        },
        // The controller's route for our own address is kept, not applied.
        Route {
            upstreams: Vec::new(),
            prefix: net("10.99.0.1/32"),
            via: vec![key(1)],
            segment: Segment::Infrastructure,
        },
    ]
}

fn controller_says(core: &mut ControlCore, links: Vec<LinkAssignment>, routes: Vec<Route>) {
    let now = Instant::now();
    core.handle_event(&ControllerEvent::Welcome(welcome()), now);
    core.handle_event(&ControllerEvent::Links(links), now);
    core.handle_event(&ControllerEvent::Routes(routes), now);
}

fn fresh_core() -> ControlCore {
    let mut core = ControlCore::default();
    core.set_own_prefixes(vec![net("10.99.0.1/32"), net("fd99::1/128")]);
    core
}

fn drain(core: &mut ControlCore) -> Vec<EngineChange> {
    std::iter::from_fn(|| core.poll_change()).collect()
}

/// A core fed from the state file the `online` core would have written,
/// with the changes the replay asked of the engine.
fn cold_started(online: &ControlCore) -> (ControlCore, Vec<EngineChange>) {
    let endpoints = [SocketAddr::from(([192, 0, 2, 10], 7700))];
    let saved = NodeState::capture(key(1), key(9), &Membership::new(), online, &endpoints);
    let bytes = format::encode(&saved).expect("encode");
    let loaded = format::decode(&bytes).expect("decode");
    assert_eq!(loaded, saved);
    assert_eq!(loaded.controller_endpoints, endpoints);
    let mut core = fresh_core();
    for event in loaded.replay() {
        core.handle_event(&event, Instant::now());
    }
    let changes = drain(&mut core);
    (core, changes)
}

#[test]
fn a_cold_start_applies_what_the_welcome_applied() {
    let mut online = fresh_core();
    controller_says(&mut online, links(), routes());
    let online_changes = drain(&mut online);
    let (restored, changes) = cold_started(&online);
    assert_eq!(changes, online_changes);
    assert_eq!(restored.welcome(), online.welcome());
    assert_eq!(restored.links(), online.links());
    assert_eq!(restored.routes(), online.routes());
    // Client prefixes, two links, three routes (not the one for our own
    // address).
    assert_eq!(changes.len(), 6, "{changes:?}");
}

#[test]
fn the_controller_returning_unchanged_changes_nothing() {
    let mut online = fresh_core();
    controller_says(&mut online, links(), routes());
    drain(&mut online);
    let (mut restored, _) = cold_started(&online);
    restored.handle_event(
        &ControllerEvent::Disconnected {
            reason: "connection refused".into(),
            retry_in: std::time::Duration::from_secs(1),
        },
        Instant::now(),
    );
    controller_says(&mut restored, links(), routes());
    assert_eq!(drain(&mut restored), Vec::new(), "no engine change at all");
}

#[test]
fn the_controller_returning_changes_only_what_differs() {
    let mut online = fresh_core();
    controller_says(&mut online, links(), routes());
    drain(&mut online);
    let (mut restored, _) = cold_started(&online);
    // Meanwhile 10.99.0.3 moved to go via 2 first.
    let mut now = routes();
    now[1].via = vec![key(2), key(3)];
    controller_says(&mut restored, links(), now.clone());
    assert_eq!(
        drain(&mut restored),
        vec![EngineChange::SetRoute(now[1].clone())]
    );
}

#[test]
fn a_state_without_welcome_replays_nothing() {
    let saved = NodeState::capture(key(1), key(9), &Membership::new(), &fresh_core(), &[]);
    assert!(saved.welcome.is_none());
    assert!(saved.replay().is_empty());
}
