//! The drain lab (issue 5): maintenance without an outage. A controller
//! and four linux-backend agents in a diamond, a — {b, c} — d, with a 1 kHz
//! UDP probe flow from a to d through b (the "transit node": the operator's
//! cost on a—c keeps c the alternate, and the path from flipping with RTT
//! jitter while the lab watches it). The operator drains the transit
//! node through the admin API (`POST /api/v1/nodes/{id}/drain` with an
//! operator token, sent from inside the controller's namespace); once the
//! routes have moved away, it is stopped (SIGTERM), started again, killed
//! (SIGKILL) and started again, then undrained, and the traffic returns
//! through it. Not one probe may be lost from the drain to the end. Root
//! only.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use freimesh_proto::api::{Event, EventKind, Node};
use freimesh_testbed::failover::probe::{now_ns, window_stats};
use freimesh_testbed::failover::probe_flow::ProbeFlow;
use freimesh_testbed::mesh::overlay_v4;
use freimesh_testbed::netns_mesh::{CONTROLLED_FIXED_BASE, NetnsMesh};
use freimesh_testbed::topology::{Topology, node_name};
use freimesh_testbed::traffic::{retry, status, wait_until};

const PROBE_PORT: u16 = 40_000;
const TESTBED: &str = env!("CARGO_BIN_EXE_freimesh-testbed");

/// `POST /api/v1/nodes/{id}/{action}` through the lab's controller.
fn node_action(mesh: &NetnsMesh, token: &str, id: u32, action: &str) -> anyhow::Result<Node> {
    let answer = mesh.api_call(
        Path::new(TESTBED),
        token,
        "POST",
        &format!("/nodes/{id}/{action}"),
    )?;
    Ok(serde_json::from_value(answer)?)
}

/// a — {b, c} — d.
fn diamond() -> Topology {
    Topology {
        names: (0..4).map(node_name).collect(),
        links: vec![(0, 1), (0, 2), (1, 3), (2, 3)],
    }
}

/// Every agent's status and log, for a failure message.
fn diagnose(mesh: &NetnsMesh) -> String {
    (0..mesh.nodes.len())
        .map(|i| {
            let status = match status(&mesh.nodes[i].socket) {
                Ok(s) => freimesh_agent::control::render_status(&s),
                Err(err) => format!("{}: {err:#}", mesh.name(i)),
            };
            format!("{status}\n{}'s log:\n{}", mesh.name(i), mesh.log(i))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn forwarded(mesh: &NetnsMesh, node: usize) -> anyhow::Result<u64> {
    Ok(status(&mesh.nodes[node].socket)?.engine.counters.forwarded)
}

#[test]
fn draining_a_transit_node_loses_no_probe() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("drain_lab") {
        return Ok(());
    }
    let mut mesh = NetnsMesh::start_controlled("drn", diamond())?;
    let (a, d) = (0, 3);
    let d_addr: IpAddr = overlay_v4(CONTROLLED_FIXED_BASE + d).into();
    mesh.wait_reachable(a, d_addr, Duration::from_secs(30))
        .with_context(|| format!("a cannot reach d; a's log:\n{}", mesh.log(a)))?;
    let (transit, other) = (1, 2);
    let transit_name = mesh.name(transit).to_owned();
    let controller = mesh.controller.as_ref().context("controller")?;
    let token = controller.operator_add("drain-lab")?;
    // The controller loads new operator tokens with its registry poll.
    let nodes: Vec<Node> = serde_json::from_value(retry(Duration::from_secs(10), || {
        mesh.api_call(Path::new(TESTBED), &token, "GET", "/nodes")
    })?)?;
    let id_of = |node: usize| -> anyhow::Result<u32> {
        Ok(nodes
            .iter()
            .find(|n| n.hostname == mesh.name(node))
            .with_context(|| format!("{} in GET /nodes", mesh.name(node)))?
            .id)
    };
    let transit_id = id_of(transit)?;
    // Operator costs on every link, so RTT noise on a loaded machine cannot
    // move the path: a—c costs five clean hops, the others one. a's
    // primary toward d is b; c stays a loop-free alternate (c—d is
    // shorter than c—a—b—d). A link row exists once either end reported
    // the other as a candidate.
    let costs = [
        (a, transit, 1000),
        (transit, d, 1000),
        (a, other, 5000),
        (other, d, 1000),
    ];
    for (x, y, cost) in costs {
        retry(Duration::from_secs(10), || {
            controller.link_cost(id_of(x)?, id_of(y)?, cost)
        })?;
    }
    wait_until(
        "a's route to d: b primary, c alternate",
        Duration::from_secs(30),
        || {
            let (active, listed) = mesh.route_of(a, d_addr.into())?;
            Ok(active == Some(transit) && listed.contains(&other))
        },
    )
    .with_context(|| diagnose(&mesh))?;
    eprintln!("transit node: {transit_name} (registry id {transit_id})");

    let scratch = tempfile::tempdir()?;
    let probes = ProbeFlow::start(
        Path::new(TESTBED),
        &mesh.lab.ns(mesh.name(a)),
        IpAddr::V4(overlay_v4(CONTROLLED_FIXED_BASE + a)),
        &mesh.lab.ns(mesh.name(d)),
        SocketAddr::new(
            IpAddr::V4(overlay_v4(CONTROLLED_FIXED_BASE + d)),
            PROBE_PORT,
        ),
        scratch.path(),
    )?;
    wait_until(
        "probes cross the transit node",
        Duration::from_secs(5),
        || {
            let before = forwarded(&mesh, transit)?;
            std::thread::sleep(Duration::from_millis(200));
            Ok(forwarded(&mesh, transit)? > before + 100)
        },
    )
    .with_context(|| diagnose(&mesh))?;
    std::thread::sleep(Duration::from_secs(1));
    let t_steady = now_ns() - 1_000_000_000;

    // Drain: the controller moves the routes away from the transit node
    // while it still forwards.
    let t_drain = now_ns();
    let drained = node_action(&mesh, &token, transit_id, "drain")?;
    assert!(
        drained.drained,
        "POST drain answers the drained node: {drained:?}"
    );
    let moved = wait_until(
        "a's routes leave the drained node",
        Duration::from_secs(20),
        || {
            let (active, listed) = mesh.route_of(a, d_addr.into())?;
            Ok(active == Some(other) && !listed.contains(&transit))
        },
    )
    .with_context(|| diagnose(&mesh))?;
    wait_until(
        "the drained node stops forwarding",
        Duration::from_secs(5),
        || {
            let before = forwarded(&mesh, transit)?;
            std::thread::sleep(Duration::from_millis(300));
            Ok(forwarded(&mesh, transit)? == before)
        },
    )
    .with_context(|| diagnose(&mesh))?;
    eprintln!(
        "drain: a's routes moved to {} after {moved:?}",
        mesh.name(other)
    );

    // Maintenance: stop it cleanly, start it, crash it, start it again.
    let t_stop = now_ns();
    mesh.stop(transit)?;
    std::thread::sleep(Duration::from_secs(3));
    let t_start_again = now_ns();
    mesh.restart(transit)?;
    std::thread::sleep(Duration::from_secs(3));
    let t_kill = now_ns();
    mesh.kill(transit);
    std::thread::sleep(Duration::from_secs(2));
    let t_restart = now_ns();
    mesh.restart(transit)?;
    // Before the undrain, as an operator would: the node is back and both
    // ends of each of its links see the link up.
    let transit_key = mesh.nodes[transit].public_key.clone();
    let links_up = wait_until(
        "the restarted node's links come up",
        Duration::from_secs(40),
        || {
            let own = status(&mesh.nodes[transit].socket)?;
            let mut up = own.engine.links.iter().filter(|l| l.state == "up").count() >= 2;
            for neighbour in [a, d] {
                let s = status(&mesh.nodes[neighbour].socket)?;
                up &= s
                    .engine
                    .links
                    .iter()
                    .any(|l| l.peer == transit_key && l.state == "up");
            }
            Ok(up)
        },
    )
    .with_context(|| diagnose(&mesh))?;
    eprintln!("restart: the restarted node's links up at both ends after {links_up:?}");
    std::thread::sleep(Duration::from_secs(1));

    // Undrain: the traffic returns through the node.
    let t_undrain = now_ns();
    let undrained = node_action(&mesh, &token, transit_id, "undrain")?;
    assert!(!undrained.drained, "{undrained:?}");
    let back = wait_until(
        "a's route returns to the undrained node",
        Duration::from_secs(30),
        || Ok(mesh.route_of(a, d_addr.into())?.0 == Some(transit)),
    )
    .with_context(|| diagnose(&mesh))?;
    wait_until(
        "probes cross the undrained node",
        Duration::from_secs(5),
        || {
            let before = forwarded(&mesh, transit)?;
            std::thread::sleep(Duration::from_millis(200));
            Ok(forwarded(&mesh, transit)? > before + 100)
        },
    )
    .with_context(|| diagnose(&mesh))?;
    eprintln!("undrain: a's route back through {transit_name} after {back:?}");
    std::thread::sleep(Duration::from_secs(1));
    let t_end = now_ns();
    let (sent, received) = probes.finish()?;
    let events: Vec<Event> = serde_json::from_value(mesh.api_call(
        Path::new(TESTBED),
        &token,
        "GET",
        "/events?since=0&limit=1000",
    )?)?;
    let kinds: Vec<&EventKind> = events.iter().map(|e| &e.kind).collect();
    assert!(
        kinds.contains(&&EventKind::Drained { node: transit_id })
            && kinds.contains(&&EventKind::Undrained { node: transit_id }),
        "drain and undrain in the event history: {kinds:?}"
    );

    let phases = [
        ("steady (1 s before the drain)", t_steady, t_drain),
        ("drain until stopped", t_drain, t_stop),
        ("stopped (SIGTERM)", t_stop, t_start_again),
        ("started again", t_start_again, t_kill),
        ("killed (SIGKILL)", t_kill, t_restart),
        ("restarted", t_restart, t_undrain),
        ("undrained, traffic back", t_undrain, t_end),
    ];
    let mut lost = Vec::new();
    for (name, start, end) in phases {
        let w = window_stats(&sent, &received, start, end);
        eprintln!(
            "{name:<32} sent {:>6}  received {:>6}  longest gap {:>7.2} ms",
            w.sent, w.received, w.longest_gap_ms
        );
        if w.received != w.sent {
            lost.push(format!("{name}: {} lost", w.sent - w.received));
        }
    }
    let whole = window_stats(&sent, &received, t_drain, t_end);
    eprintln!(
        "from the drain to the end: sent {}, received {}, longest gap {:.2} ms",
        whole.sent, whole.received, whole.longest_gap_ms
    );
    assert!(whole.sent > 10_000, "the probe flow ran: {whole:?}");
    // Where packets were dropped, per node (the agents' own counters).
    for i in 0..mesh.nodes.len() {
        if let Ok(s) = status(&mesh.nodes[i].socket) {
            eprintln!("{} dropped: {:?}", mesh.name(i), s.engine.drops);
        }
    }
    assert!(
        lost.is_empty(),
        "probes lost during maintenance: {}\n{}",
        lost.join("; "),
        diagnose(&mesh)
    );
    Ok(())
}
