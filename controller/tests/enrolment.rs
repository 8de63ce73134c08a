//! End to end over loopback: agents' control-plane clients enrol with
//! tokens, get addresses and routes, reports change routes, revoke tears
//! down links on the neighbours.

mod common;

use std::net::IpAddr;

use common::Mesh;
use freimesh_agent::controlplane::{
    Candidate, ControllerEvent, ErrorCode, LinkChange, LinkMeasurement, Report, RouteChange,
    Upstream,
};
use ipnet::IpNet;

fn candidates(peers: &[&common::Agent]) -> Report {
    Report {
        links: vec![],
        candidates: peers
            .iter()
            .map(|p| Candidate {
                peer: p.public,
                endpoint: None,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_enrol_get_routes_and_revocation_tears_links_down() {
    let mesh = Mesh::start(false).await;
    let mut a = mesh.client("a", Some(mesh.token()));
    let mut b = mesh.client("b", Some(mesh.token()));
    let mut c = mesh.client("c", Some(mesh.token()));
    let mut addrs = Vec::new();
    for agent in [&mut a, &mut b, &mut c] {
        let ControllerEvent::Welcome(w) = agent
            .wait_for("welcome", |e| matches!(e, ControllerEvent::Welcome(_)))
            .await
        else {
            unreachable!()
        };
        assert_eq!(w.addresses.len(), 2);
        assert_eq!(w.mesh_prefixes.len(), 2);
        addrs.push(w.addresses);
        agent
            .wait_for(
                "links",
                |e| matches!(e, ControllerEvent::Links(l) if l.is_empty()),
            )
            .await;
        agent
            .wait_for(
                "routes",
                |e| matches!(e, ControllerEvent::Routes(r) if r.is_empty()),
            )
            .await;
    }
    let distinct: std::collections::BTreeSet<&IpNet> = addrs.iter().flatten().collect();
    assert_eq!(distinct.len(), 6, "every address assigned once: {addrs:?}");

    // A line a - b - c: each link reported by both of its ends.
    a.reports
        .send(Upstream::Report(candidates(&[&b])))
        .await
        .expect("report");
    b.reports
        .send(Upstream::Report(candidates(&[&a, &c])))
        .await
        .expect("report");
    c.reports
        .send(Upstream::Report(candidates(&[&b])))
        .await
        .expect("report");
    let b_key = b.public;
    a.wait_for("link to b", |e| matches!(e, ControllerEvent::LinksDelta(ch) if ch.iter().any(|l| matches!(l, LinkChange::Add(x) if x.peer == b_key && x.endpoint.is_some())))).await;
    let c_v6 = addrs[2][0];
    let ControllerEvent::RoutesDelta(changes) = a
        .wait_for("route to c via b", |e| matches!(e, ControllerEvent::RoutesDelta(ch) if ch.iter().any(|r| matches!(r, RouteChange::Set(r) if r.prefix == c_v6))))
        .await
    else {
        unreachable!()
    };
    let via = changes.iter().find_map(|r| match r {
        RouteChange::Set(r) if r.prefix == c_v6 => Some(r.via.clone()),
        _ => None,
    });
    assert_eq!(via, Some(vec![b_key]));

    // A direct, fast a - c link, measured by both ends: a now reaches c
    // directly, b stays an alternate only if it is strictly closer (it
    // is: one hop).
    let c_key = c.public;
    for (from, to) in [(&a, &c), (&c, &a)] {
        from.reports
            .send(Upstream::Report(Report {
                links: vec![LinkMeasurement {
                    peer: to.public,
                    rtt_us: 500,
                    loss_ppm: 0,
                    up: true,
                }],
                candidates: vec![Candidate {
                    peer: b_key,
                    endpoint: None,
                }],
            }))
            .await
            .expect("report");
    }
    a.wait_for("route to c direct", |e| matches!(e, ControllerEvent::RoutesDelta(ch) if ch.iter().any(|r| matches!(r, RouteChange::Set(r) if r.prefix == c_v6 && r.via.first() == Some(&c_key))))).await;

    // Revoke b: a and c lose their links to it, b is told and cut off.
    let b_id = freimesh_controller::admin::node_list(&mesh.db)
        .expect("list")
        .into_iter()
        .find(|n| n.public_key == b_key)
        .expect("b")
        .id;
    freimesh_controller::admin::node_revoke(&mesh.db, b_id).expect("revoke");
    b.wait_for(
        "revoked",
        |e| matches!(e, ControllerEvent::Refused(err) if err.code == ErrorCode::Revoked),
    )
    .await;
    a.wait_for(
        "link to b removed",
        |e| matches!(e, ControllerEvent::LinksDelta(ch) if ch.contains(&LinkChange::Remove(b_key))),
    )
    .await;
    c.wait_for(
        "link to b removed",
        |e| matches!(e, ControllerEvent::LinksDelta(ch) if ch.contains(&LinkChange::Remove(b_key))),
    )
    .await;
    // b's routes are gone at a; b cannot come back.
    let b_v4 = addrs[1][1];
    let _ = b_v4;
    b.wait_for(
        "still revoked on reconnect",
        |e| matches!(e, ControllerEvent::Refused(err) if err.code == ErrorCode::Revoked),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_node_reconnects_by_key_alone_and_gets_full_state() {
    let mesh = Mesh::start(false).await;
    let key = freimesh_agent::identity::PrivateKey::generate();
    let mut first = mesh.client_with_key("x", Some(mesh.token()), key.clone());
    let ControllerEvent::Welcome(w1) = first
        .wait_for("welcome", |e| matches!(e, ControllerEvent::Welcome(_)))
        .await
    else {
        unreachable!()
    };
    drop(first);
    // No token this time: the key alone authenticates, same addresses.
    let mut again = mesh.client_with_key("x", None, key);
    let ControllerEvent::Welcome(w2) = again
        .wait_for("welcome", |e| matches!(e, ControllerEvent::Welcome(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(w1, w2);
    again
        .wait_for("routes", |e| matches!(e, ControllerEvent::Routes(_)))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_mode_holds_then_admits() {
    let mesh = Mesh::start(true).await;
    let mut p = mesh.client("kita", None);
    p.wait_for("pending", |e| matches!(e, ControllerEvent::Pending { .. }))
        .await;
    let node = freimesh_controller::admin::node_list(&mesh.db)
        .expect("list")
        .pop()
        .expect("node");
    assert!(node.addresses.is_empty());
    freimesh_controller::admin::node_approve(&mesh.db, node.id).expect("approve");
    let ControllerEvent::Welcome(w) = p
        .wait_for("welcome after approval", |e| {
            matches!(e, ControllerEvent::Welcome(_))
        })
        .await
    else {
        unreachable!()
    };
    assert!(
        w.addresses
            .iter()
            .any(|a| a.addr() == "10.99.0.1".parse::<IpAddr>().expect("ip"))
    );
}
