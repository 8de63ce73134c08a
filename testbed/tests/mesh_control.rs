//! The mesh-control lab (issue 13 item 3): a chain A – B – C of
//! linux-backend routers on two radio cells (Linux bridges in their own
//! namespaces): A and B share cell 1, B and C cell 2. Only A has an
//! underlay segment to the controller; every router is configured with
//! the minimum (key, join token, controller key and endpoint,
//! `mesh_interfaces`).
//!
//! Checked: B enrols through A's link-local relay and C through B's (the
//! chain C → B → A → controller), and C gets routes (reaches A and B over
//! the mesh); B, restarted, comes back through A's control exit (its
//! overlay address, from the state file); a stranger in cell 2 gets
//! nothing through B's relay but the controller's handshake (garbage is
//! closed unanswered; an agent with a forged token is refused by the
//! controller and never enrolled). Root only.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use freimesh_proto::discovery::CONTROL_RELAY_PORT;
use freimesh_testbed::controller::ControllerProcess;
use freimesh_testbed::lab::Lab;
use freimesh_testbed::process::AgentProcess;
use freimesh_testbed::radio::{add_cell, join_cell, link_local, ping_within, skip_dad};
use freimesh_testbed::traffic::{retry, status};

const CONTROLLER_PORT: u16 = 7700;
const WG_PORT: u16 = 51820;
/// The controller's underlay address: only A has a route to it.
const CONTROLLER_IP: &str = "172.31.0.1";

/// Connects to the relay at argv[1] (link-local, scoped), sends a few
/// bytes that are no Noise message, and prints how many bytes came back
/// and how long until the connection closed (by FIN or reset: the
/// controller drops a connection whose first message never completes).
const STRANGER: &str = r#"
import socket, sys, time
addr = socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), socket.AF_INET6, socket.SOCK_STREAM)[0][4]
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(addr)
started = time.time()
s.sendall(b"GET / HTTP/1.0\r\nHost: anything-but-the-controller\r\n\r\n")
got = 0
try:
    while True:
        data = s.recv(4096)
        if not data:
            break
        got += len(data)
except socket.timeout:
    print("timeout", got, flush=True)
    sys.exit(0)
except ConnectionResetError:
    pass
print("closed", got, "%.2f" % (time.time() - started), flush=True)
"#;

fn write_config(
    dir: &Path,
    name: &str,
    interfaces: &[&str],
    controller: &ControllerProcess,
    token: &str,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.toml"));
    let interfaces = interfaces
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"[node]
name = "{name}"
private_key_file = "{dir}/{name}.key"
generate_key = true
listen = "[::]:{WG_PORT}"
backend = "linux"
control_socket = "{dir}/{name}.sock"
state_file = "{dir}/{name}.state"
mesh_interfaces = [{interfaces}]

[controller]
endpoint = "{CONTROLLER_IP}:{CONTROLLER_PORT}"
public_key = "{key}"
join_token = "{token}"
"#,
        dir = dir.display(),
        key = controller.public_key,
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn overlay(socket: &Path, v6: bool) -> anyhow::Result<IpAddr> {
    status(socket)?
        .addresses
        .iter()
        .map(|a| a.addr())
        .find(|a| a.is_ipv6() == v6)
        .context("no overlay address yet")
}

/// TCP connections established to the relay port on `router`'s `local`
/// address: `ss` lines.
fn relay_connections(lab: &Lab, router: &str, local: IpAddr) -> anyhow::Result<Vec<String>> {
    let out = lab.exec(router, &["ss", "-Htn", "state", "established"])?;
    let wanted = SocketAddr::new(local, CONTROL_RELAY_PORT).to_string();
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == wanted))
        .map(str::to_owned)
        .collect())
}

#[test]
fn a_chain_enrols_through_relays_and_a_stranger_reaches_only_the_controller() -> anyhow::Result<()>
{
    if !freimesh_testbed::lab::require_root("mesh_control_lab") {
        return Ok(());
    }
    let mut lab = Lab::new("mctl");
    let dir = tempfile::Builder::new()
        .prefix("freimesh-mesh-control-")
        .tempdir()?;
    add_cell(&mut lab, "cell1")?;
    add_cell(&mut lab, "cell2")?;
    lab.add_namespace("ctl")?;
    for router in ["a", "b", "c", "s"] {
        lab.add_namespace(router)?;
        skip_dad(&lab, router)?;
    }
    join_cell(&lab, "a", "mesh0", "cell1", "a0")?;
    join_cell(&lab, "b", "mesh0", "cell1", "b0")?;
    join_cell(&lab, "b", "mesh1", "cell2", "b1")?;
    join_cell(&lab, "c", "mesh0", "cell2", "c0")?;
    join_cell(&lab, "s", "mesh0", "cell2", "s0")?;
    lab.veth(
        "ctl",
        "up0",
        &format!("{CONTROLLER_IP}/24"),
        "a",
        "uplink",
        "172.31.0.2/24",
    )?;
    let controller = ControllerProcess::start_with_init(
        &dir.path().join("controller"),
        SocketAddr::from(([0, 0, 0, 0], CONTROLLER_PORT)),
        None,
        Some(&lab.ns("ctl")),
        &[],
    )?;
    let socket = |name: &str| dir.path().join(format!("{name}.sock"));
    let log = |name: &str| {
        std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default()
    };
    let start = |name: &str, interfaces: &[&str], token: &str| -> anyhow::Result<AgentProcess> {
        let config = write_config(dir.path(), name, interfaces, &controller, token)?;
        AgentProcess::start(
            name,
            &config,
            &dir.path().join(format!("{name}.log")),
            Some(&lab.ns(name)),
        )
    };
    let enrolled = |name: &str, within: u64| {
        retry(Duration::from_secs(within), || {
            overlay(&socket(name), false)
        })
        .with_context(|| format!("{name} never enrolled:\n{}", log(name)))
    };

    let _a = start("a", &["mesh0"], &controller.token()?)?;
    let a4 = enrolled("a", 20)?;
    let a6 = overlay(&socket("a"), true)?;
    // B has no route to the controller: it enrols through A's link-local
    // relay.
    let b = start("b", &["mesh0", "mesh1"], &controller.token()?)?;
    let b4 = enrolled("b", 30)?;
    assert!(
        log("b").contains("kind=Neighbour"),
        "b's session runs through a neighbour's relay:\n{}",
        log("b")
    );
    // C hears only B: C → B's relay → A's relay → controller.
    let _c = start("c", &["mesh0"], &controller.token()?)?;
    let c4 = enrolled("c", 40)?;
    for (from, to) in [("c", a4), ("c", b4), ("a", c4)] {
        retry(Duration::from_secs(15), || {
            if ping_within(&lab, from, to, "1") {
                Ok(())
            } else {
                bail!("{from} cannot reach {to}")
            }
        })
        .with_context(|| format!("{from} → {to}\nc:\n{}\nb:\n{}", log("c"), log("b")))?;
    }

    // B, restarted, dials the control exit the controller named (kept in
    // its state file): A's overlay address, through the mesh.
    b.stop(Duration::from_secs(10))?;
    let _b = start("b", &["mesh0", "mesh1"], &controller.token()?)?;
    retry(Duration::from_secs(30), || {
        if relay_connections(&lab, "a", a6)?.is_empty() {
            bail!("no connection to a's overlay relay");
        }
        if !log("b").contains("kind=Exit") {
            bail!("b's session through the exit is not up yet");
        }
        Ok(())
    })
    .with_context(|| format!("b never came back through a's exit:\n{}", log("b")))?;

    // The restart cost no reachability: the controller's resync after B's
    // Welcome does not take B's neighbours' addresses off their links.
    for (from, to) in [("b", a4), ("c", a4), ("a", c4)] {
        retry(Duration::from_secs(15), || {
            if ping_within(&lab, from, to, "1") {
                Ok(())
            } else {
                bail!("{from} cannot reach {to} after b's restart")
            }
        })
        .with_context(|| format!("b:\n{}", log("b")))?;
    }

    // A stranger in cell 2: garbage through B's relay is closed unanswered
    // (the controller's responder waits for a Noise message that never
    // comes); nothing else is reachable through it.
    let b_link_local = format!("{}%mesh0", link_local(&lab, "b", "mesh1")?);
    let out = lab
        .exec(
            "s",
            &[
                "python3",
                "-c",
                STRANGER,
                &b_link_local,
                &CONTROL_RELAY_PORT.to_string(),
            ],
        )
        .with_context(|| format!("b:\n{}", log("b")))?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let words: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"closed"), "{answer}");
    assert_eq!(words.get(1), Some(&"0"), "no byte comes back: {answer}");
    // An agent with a forged token: the handshake through the relay works
    // (only the controller can answer it), the controller refuses it, and
    // it never gets an address.
    let stranger = start("s", &["mesh0"], "fmj1-forged-token")?;
    retry(Duration::from_secs(30), || {
        if log("s").contains("the controller refused this node") {
            Ok(())
        } else {
            bail!("not refused yet")
        }
    })
    .with_context(|| {
        format!(
            "the stranger was never refused:\n{}\nb:\n{}\nc:\n{}\na:\n{}",
            log("s"),
            log("b"),
            log("c"),
            log("a")
        )
    })?;
    assert!(
        status(&socket("s")).is_err(),
        "the stranger never runs enrolled"
    );
    drop(stranger);
    Ok(())
}
