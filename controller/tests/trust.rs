//! Issue 12, item 1 over the real wire: a node's word alone creates no
//! link and no role. An enrolled node that asks for the gateway role is an
//! ordinary node until `role approve`; a token may carry the role; and a
//! node claiming zero-RTT links to honest nodes that never reported it
//! moves none of their routes.

mod common;

use std::time::Duration;

use common::{Agent, Mesh};
use freimesh_agent::controlplane::{
    Candidate, ControllerEvent, LinkChange, LinkMeasurement, Report, RouteChange, Upstream,
};
use freimesh_agent::identity::PrivateKey;
use freimesh_controller::admin;
use freimesh_controller::store::Store;
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::api::{EventKind, Role};
use freimesh_proto::control::Roles;
use ipnet::IpNet;

const GATEWAY: Roles = Roles {
    gateway: true,
    public_wifi: false,
};

fn default_v4() -> IpNet {
    "0.0.0.0/0".parse().expect("net")
}

/// A report naming `peers` as candidates and measured at `rtt_us`.
fn measured(peers: &[PublicKeyBytes], rtt_us: u32) -> Report {
    Report {
        links: peers
            .iter()
            .map(|p| LinkMeasurement {
                peer: *p,
                rtt_us,
                loss_ppm: 0,
                up: true,
            })
            .collect(),
        candidates: peers
            .iter()
            .map(|p| Candidate {
                peer: *p,
                endpoint: None,
            })
            .collect(),
    }
}

async fn welcomed(agent: &mut Agent) {
    agent
        .wait_for("welcome", |e| matches!(e, ControllerEvent::Welcome(_)))
        .await;
}

async fn report(agent: &Agent, report: Report) {
    agent
        .reports
        .send(Upstream::Report(report))
        .await
        .expect("report");
}

fn id_of(mesh: &Mesh, key: PublicKeyBytes) -> u32 {
    admin::node_list(&mesh.db)
        .expect("list")
        .into_iter()
        .find(|n| n.public_key == key)
        .expect("node")
        .id
}

fn events(mesh: &Mesh) -> Vec<EventKind> {
    Store::open(&mesh.db)
        .expect("open")
        .events_since(0, 1_000)
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Waits (up to 5 s) until the controller stored `kind`: events reach the
/// database just after the frames of the same step go out.
async fn stored_event(mesh: &Mesh, kind: EventKind) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !events(mesh).contains(&kind) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind:?} in {:?}",
            events(mesh)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event already queued for `agent`, without waiting.
fn queued(agent: &mut Agent) -> Vec<ControllerEvent> {
    std::iter::from_fn(|| agent.events.try_recv().ok()).collect()
}

fn sets_default_route(e: &ControllerEvent) -> bool {
    match e {
        ControllerEvent::RoutesDelta(ch) => ch
            .iter()
            .any(|r| matches!(r, RouteChange::Set(r) if r.prefix.prefix_len() == 0)),
        ControllerEvent::Routes(routes) => routes.iter().any(|r| r.prefix.prefix_len() == 0),
        _ => false,
    }
}

/// Brings up `gw` (asking for `roles`) and `plain`, linked both ways;
/// returns once `plain` holds its link to `gw`.
async fn pair(mesh: &Mesh, gw_token: String) -> (Agent, Agent) {
    let mut gw = mesh.client_with_roles("gw", Some(gw_token), PrivateKey::generate(), GATEWAY);
    let mut plain = mesh.client("plain", Some(mesh.token()));
    welcomed(&mut gw).await;
    welcomed(&mut plain).await;
    report(&gw, measured(&[plain.public], 1_000)).await;
    report(&plain, measured(&[gw.public], 1_000)).await;
    let gw_key = gw.public;
    plain
        .wait_for("link to gw", |e| matches!(e, ControllerEvent::LinksDelta(ch) if ch.iter().any(|l| matches!(l, LinkChange::Add(a) if a.peer == gw_key))))
        .await;
    (gw, plain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_gateway_role_takes_effect_only_after_role_approve() {
    let mesh = Mesh::start(false).await;
    let (gw, mut plain) = pair(&mesh, mesh.token()).await;
    let gw_id = id_of(&mesh, gw.public);
    // Give the controller time to (wrongly) route; nothing may point at gw.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !queued(&mut plain).iter().any(sets_default_route),
        "a default route toward an unapproved gateway"
    );
    let node = admin::node_list(&mesh.db)
        .expect("list")
        .into_iter()
        .find(|n| n.id == gw_id)
        .expect("gw");
    assert!(node.requested_roles.gateway && !node.gateway);
    assert!(admin::format_node(&node).contains("gateway(awaits-approval)"));
    stored_event(
        &mesh,
        EventKind::RoleAwaitsApproval {
            node: gw_id,
            role: Role::Gateway,
        },
    )
    .await;

    admin::role_approve(&mesh.db, gw_id, Role::Gateway, true).expect("approve");
    let gw_key = gw.public;
    let default = default_v4();
    plain
        .wait_for("default route via gw", |e| matches!(e, ControllerEvent::RoutesDelta(ch) if ch.iter().any(|r| matches!(r, RouteChange::Set(r) if r.prefix == default && r.via == vec![gw_key]))))
        .await;
    stored_event(
        &mesh,
        EventKind::RoleApproved {
            node: gw_id,
            role: Role::Gateway,
        },
    )
    .await;

    // Revoking the role withdraws the default routes again.
    admin::role_approve(&mesh.db, gw_id, Role::Gateway, false).expect("revoke");
    plain
        .wait_for("default route withdrawn", |e| matches!(e, ControllerEvent::RoutesDelta(ch) if ch.contains(&RouteChange::Remove(default))))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_carrying_the_gateway_role_makes_a_gateway_at_once() {
    let mesh = Mesh::start(false).await;
    let token =
        admin::token_create_with_roles(&mesh.db, Duration::from_secs(3600), &[], &[Role::Gateway])
            .expect("token");
    let (gw, mut plain) = pair(&mesh, token).await;
    let gw_key = gw.public;
    let default = default_v4();
    plain
        .wait_for("default route via gw", |e| matches!(e, ControllerEvent::RoutesDelta(ch) if ch.iter().any(|r| matches!(r, RouteChange::Set(r) if r.prefix == default && r.via == vec![gw_key]))))
        .await;
    let gw_id = id_of(&mesh, gw.public);
    assert!(
        !events(&mesh)
            .iter()
            .any(|e| matches!(e, EventKind::RoleAwaitsApproval { node, .. } if *node == gw_id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_claiming_zero_rtt_links_moves_no_honest_route() {
    let mesh = Mesh::start(false).await;
    let mut a = mesh.client("a", Some(mesh.token()));
    let mut b = mesh.client("b", Some(mesh.token()));
    welcomed(&mut a).await;
    welcomed(&mut b).await;
    report(&a, measured(&[b.public], 20_000)).await;
    report(&b, measured(&[a.public], 20_000)).await;
    let b_key = b.public;
    a.wait_for("route via b", |e| matches!(e, ControllerEvent::RoutesDelta(ch) if ch.iter().any(|r| matches!(r, RouteChange::Set(r) if r.via == vec![b_key]))))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    queued(&mut a);
    queued(&mut b);

    // The attacker enrols asking for the gateway role and claims 1 µs
    // links to both honest nodes, which never reported it.
    let mut x = mesh.client_with_roles("x", Some(mesh.token()), PrivateKey::generate(), GATEWAY);
    welcomed(&mut x).await;
    report(&x, measured(&[a.public, b.public], 1)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let x_key = x.public;
    for (name, agent) in [("a", &mut a), ("b", &mut b)] {
        let got = queued(agent);
        let touched = got.iter().any(|e| match e {
            ControllerEvent::LinksDelta(_) | ControllerEvent::RoutesDelta(_) => true,
            ControllerEvent::Links(l) => l.iter().any(|l| l.peer == x_key),
            ControllerEvent::Routes(r) => r.iter().any(|r| r.via.contains(&x_key)),
            _ => false,
        });
        assert!(!touched, "{name} was sent changes: {got:?}");
    }
    let x_id = id_of(&mesh, x_key);
    let store = Store::open(&mesh.db).expect("open");
    let links = store.links().expect("links");
    assert!(
        links.iter().all(|l| l.a != x_id && l.b != x_id),
        "{links:?}"
    );
    assert!(!store.node(x_id).expect("x").gateway);
    // x itself got no link and no route either.
    assert!(!queued(&mut x).iter().any(|e| matches!(
        e,
        ControllerEvent::LinksDelta(_) | ControllerEvent::RoutesDelta(_)
    )));
}
