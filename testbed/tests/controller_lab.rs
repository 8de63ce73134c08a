//! The controller lab: a controller in its own namespace (reached over a
//! separate management network) and five linux-backend agents that enrol
//! with join tokens and take their links and routes from it. Traffic
//! flows; a silent link cut is repaired locally at once (the agents'
//! precomputed alternates and withdrawals) and then globally (the
//! controller recomputes without the dead link); with the controller gone
//! the mesh keeps forwarding and repairing. Root only.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use freimesh_testbed::failover::inject::{nft_drop, nft_undrop};
use freimesh_testbed::mesh::overlay_v4;
use freimesh_testbed::netns_mesh::{CONTROLLED_FIXED_BASE, NetnsMesh};
use freimesh_testbed::topology::{Topology, node_name};
use freimesh_testbed::traffic::{status, wait_until};

/// A diamond with a tail: a — {b, c} — d — e.
fn kite() -> Topology {
    Topology {
        names: (0..5).map(node_name).collect(),
        links: vec![(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)],
    }
}

#[test]
fn five_agents_enrol_route_and_repair_locally_then_globally() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("controller_lab") {
        return Ok(());
    }
    let mut mesh = NetnsMesh::start_controlled("ctl", kite())?;
    let e: IpAddr = overlay_v4(CONTROLLED_FIXED_BASE + 4).into();
    mesh.wait_reachable(0, e, Duration::from_secs(30))
        .with_context(|| {
            let statuses: Vec<String> = mesh
                .nodes
                .iter()
                .map(|n| match status(&n.socket) {
                    Ok(s) => freimesh_agent::control::render_status(&s),
                    Err(err) => format!("{}: {err:#}", n.name),
                })
                .collect();
            format!(
                "a cannot reach e; a's log:\n{}\nstatus:\n{}",
                mesh.log(0),
                statuses.join("\n")
            )
        })?;
    assert_eq!(mesh.ping(0, e, 5)?, 5, "a reaches e across three hops");
    // Every agent holds a membership credential from the controller, a
    // week from expiry (protocol v5).
    for node in &mesh.nodes {
        let membership = status(&node.socket)?.membership;
        let valid_for = membership
            .as_ref()
            .and_then(|m| m.credential_valid_for_s)
            .with_context(|| format!("{}: no credential: {membership:?}", node.name))?;
        assert!(valid_for > 6 * 24 * 3_600, "{}: {valid_for} s", node.name);
    }
    let controller = mesh.controller.as_ref().context("controller")?;
    let nodes = controller.node_list()?;
    assert_eq!(
        nodes.lines().filter(|l| l.contains("active")).count(),
        5,
        "{nodes}"
    );

    // Operator costs on every link (one clean hop each), so RTT noise on
    // a loaded machine cannot take d's alternate away while the lab
    // watches. A link row exists once both ends reported each other.
    let ids = controller.node_ids()?;
    for &(x, y) in &mesh.topology.links {
        let id = |n: usize| ids.get(mesh.name(n)).copied().context("node in node list");
        freimesh_testbed::traffic::retry(Duration::from_secs(10), || {
            controller.link_cost(id(x)?, id(y)?, 1000)
        })?;
    }

    // Once every link is reported, the controller gives d both b and c
    // toward a (loop-free alternates).
    let a: IpAddr = overlay_v4(CONTROLLED_FIXED_BASE).into();
    wait_until("routes after the cut", Duration::from_secs(20), || {
        Ok(mesh.route_of(3, a.into())?.1.len() >= 2)
    })
    .context("d's route to a never got an alternate")?;
    let (primary, _) = mesh.route_of(3, a.into())?;
    let primary = primary.context("d has an active hop toward a")?;

    // Cut the link between d and its primary toward a, silently.
    let scratch = tempfile::tempdir()?;
    let (p, d) = (mesh.name(primary).to_owned(), mesh.name(3).to_owned());
    nft_drop(&mesh.lab, scratch.path(), &p, &[&format!("to-{d}")], "cut")?;
    nft_drop(&mesh.lab, scratch.path(), &d, &[&format!("to-{p}")], "cut")?;
    // Watch d's route from the cut on: first d switches to its alternate by
    // local repair (the link is still listed, just down), then the
    // controller learns of the dead link, recomputes, and d's route no
    // longer lists it at all.
    let cut_at = Instant::now();
    let (mut local, mut global) = (None, None);
    while global.is_none() && cut_at.elapsed() < Duration::from_secs(20) {
        if let Ok((active, listed)) = mesh.route_of(3, a.into()) {
            if local.is_none() && active.is_some() && active != Some(primary) {
                local = Some(cut_at.elapsed());
            }
            if !listed.contains(&primary) && active.is_some() {
                global = Some(cut_at.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let local = local.context("local repair: d never left the cut link")?;
    let global = global.context("global repair: the controller never dropped the cut link")?;
    eprintln!(
        "after the cut: local repair at {local:?}, the controller's new routes at {global:?}"
    );
    assert!(
        local < global,
        "local repair ({local:?}) came before global ({global:?})"
    );
    assert_eq!(mesh.ping(0, e, 3)?, 3, "a reaches e around the cut");
    assert_eq!(mesh.ping(4, a, 3)?, 3, "e reaches a around the cut");

    // Headless: without the controller the mesh keeps forwarding, and the
    // restored link comes back by local repair alone.
    nft_undrop(&mesh.lab, scratch.path(), &p, &[&format!("to-{d}")], "cut")?;
    nft_undrop(&mesh.lab, scratch.path(), &d, &[&format!("to-{p}")], "cut")?;
    mesh.controller.as_mut().context("controller")?.kill();
    assert_eq!(mesh.ping(0, e, 5)?, 5, "forwarding without the controller");

    // The controller returns; the agents reconnect (backoff ≤ 30 s) and
    // resynchronise their full state. A steady ping across the mesh must
    // not lose a packet while they do.
    let ns_a = mesh.lab.ns(mesh.name(0));
    let steady = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns_a, "ping", "-n", "-q", "-i", "0.05", "-W", "1", "-w", "40",
        ])
        .arg(e.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    mesh.controller.as_mut().context("controller")?.restart()?;
    let log = mesh.nodes[0].log.clone();
    let resynced = wait_until(
        "resync after the controller restart",
        Duration::from_secs(35),
        || {
            let text = std::fs::read_to_string(&log)?;
            Ok(text.matches("enrolled with the controller").count() >= 2)
        },
    );
    let output = steady.wait_with_output()?;
    resynced.context("a never reconnected to the restarted controller")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let sent_received: Vec<u32> = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .take(2)
                .collect()
        })
        .unwrap_or_default();
    eprintln!("steady ping through the controller's restart: {text}");
    let events: Vec<String> = (0..mesh.nodes.len())
        .flat_map(|i| {
            let name = mesh.name(i).to_owned();
            mesh.log(i)
                .lines()
                .filter(|l| {
                    l.contains("link ")
                        || l.contains("withdrew")
                        || l.contains("restored")
                        || l.contains("controller")
                })
                .map(|l| format!("{name}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        sent_received.len() == 2 && sent_received[0] > 100 && sent_received[0] == sent_received[1],
        "packets lost while agents resynchronised: {text}\nagent events:\n{}",
        events.join("\n")
    );
    Ok(())
}
