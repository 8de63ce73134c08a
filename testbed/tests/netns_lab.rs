//! Network-namespace labs with real `freimesh-agent` binaries on the linux
//! backend: real TUN devices, kernel routes, veth links. Root only (see
//! `lab::require_root`).

use std::net::IpAddr;
use std::time::Duration;

use freimesh_testbed::mesh::{overlay_v4, overlay_v6};
use freimesh_testbed::netns_mesh::NetnsMesh;
use freimesh_testbed::topology::Topology;
use freimesh_testbed::traffic::iperf3;

const HANDSHAKE_WAIT: Duration = Duration::from_secs(15);

fn tcp_stream(mesh: &NetnsMesh, from: usize, to: usize, seconds: u32) -> anyhow::Result<f64> {
    iperf3(
        &mesh.lab,
        mesh.name(from),
        mesh.name(to),
        &overlay_v4(to).to_string(),
        seconds,
    )
}

fn v4(index: usize) -> IpAddr {
    overlay_v4(index).into()
}

fn v6(index: usize) -> IpAddr {
    overlay_v6(index).into()
}

#[test]
fn line_of_four_carries_ping_and_tcp_across_three_hops_and_survives_a_transit_restart()
-> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("line_of_four") {
        return Ok(());
    }
    let mut mesh = NetnsMesh::start("line", Topology::line(4))?;
    mesh.wait_reachable(0, v4(3), HANDSHAKE_WAIT)?;
    assert_eq!(mesh.ping(0, v4(3), 5)?, 5, "IPv4 across 3 hops");
    mesh.wait_reachable(0, v6(3), HANDSHAKE_WAIT)?;
    assert_eq!(
        mesh.ping(3, v6(0), 3)?,
        3,
        "IPv6 across 3 hops, other direction"
    );
    let bps = tcp_stream(&mesh, 0, 3, 2)?;
    assert!(
        bps > 1e6,
        "a TCP stream across 3 hops moved only {bps} bit/s"
    );

    // The kernel sees the mesh through fm0 with the agent's aggregate routes,
    // tagged with the agent's own protocol.
    let routes = mesh.exec(0, &["ip", "route", "show", "dev", "fm0"])?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(routes.contains("10.99.0.4"), "route to d missing: {routes}");

    // Restart the transit router b: forwarding comes back.
    mesh.restart(1)?;
    mesh.wait_reachable(0, v4(3), HANDSHAKE_WAIT)?;
    assert_eq!(mesh.ping(0, v4(3), 3)?, 3);

    // A crash (SIGKILL) then a start: nothing duplicated, forwarding back.
    mesh.kill(2);
    mesh.restart(2)?;
    mesh.wait_reachable(0, v4(3), HANDSHAKE_WAIT)?;
    let routes_after = mesh.exec(2, &["ip", "-4", "route", "show", "dev", "fm0"])?;
    let text = String::from_utf8_lossy(&routes_after.stdout);
    let mut lines: Vec<&str> = text.lines().collect();
    let count = lines.len();
    lines.dedup();
    assert_eq!(lines.len(), count, "duplicate routes after restart: {text}");

    // A clean stop removes the device and the routes.
    mesh.stop(3)?;
    let links = mesh.exec(3, &["ip", "link", "show"])?;
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("fm0"),
        "fm0 left behind"
    );
    let proto = freimesh_agent::linux::RTPROT_FREIMESH.to_string();
    let before = mesh.exec(2, &["ip", "route", "show", "proto", &proto])?;
    assert!(
        !String::from_utf8_lossy(&before.stdout).trim().is_empty(),
        "running agents tag their routes"
    );
    let routes = mesh.exec(3, &["ip", "route", "show", "proto", &proto])?;
    assert!(
        String::from_utf8_lossy(&routes.stdout).trim().is_empty(),
        "routes left behind"
    );
    Ok(())
}

#[test]
fn diamond_forwards_and_recovers_from_a_transit_restart() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("diamond") {
        return Ok(());
    }
    let mut mesh = NetnsMesh::start("dia", Topology::diamond())?;
    mesh.wait_reachable(0, v4(3), HANDSHAKE_WAIT)?;
    assert_eq!(mesh.ping(0, v4(3), 5)?, 5);
    // b and c reach each other over two hops, through a or d.
    mesh.wait_reachable(1, v4(2), HANDSHAKE_WAIT)?;
    let bps = tcp_stream(&mesh, 1, 2, 1)?;
    assert!(bps > 1e6, "TCP b→c moved only {bps} bit/s");
    mesh.restart(1)?;
    mesh.wait_reachable(0, v4(3), HANDSHAKE_WAIT)?;
    assert_eq!(mesh.ping(0, v4(3), 3)?, 3);
    Ok(())
}
