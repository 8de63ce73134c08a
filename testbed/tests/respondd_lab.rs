//! The respondd lab (issue 15 item 4): two linux-backend agents linked
//! over a veth (`NetnsMesh`, line of two), both with `respondd = true` on
//! that veth. A yanic-shaped client (Python, run in r1's namespace with
//! `ip netns exec`, as the discovery lab captures beacons) sends yanic's
//! request `GET nodeinfo statistics neighbours` to `ff02::2:1001` on the
//! link, inflates the raw deflate answers and prints the JSON; the test
//! checks the fields yanic reads and that the two routers' neighbours and
//! nodeinfo make a link as yanic builds it. Then: unicast to r0's
//! link-local address, and across the tunnel from r1's overlay address,
//! are answered; unicast from a global address outside the mesh is not,
//! and r0's `status` counts both.
//! Root only; about 10 s.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use freimesh_testbed::netns_mesh::NetnsMesh;
use freimesh_testbed::topology::Topology;
use serde_json::Value;

/// yanic's client, reduced to what the test needs: sends one request
/// (argv: destination, interface or "", source address or "", request),
/// prints every answer for 1.5 s as one JSON line `{"from", "json"}`,
/// inflating raw deflate (zlib with wbits −15, as yanic's compress/flate).
const CLIENT: &str = r#"
import json, socket, struct, sys, time, zlib
dest, ifname, source, request = sys.argv[1:5]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
scope = socket.if_nametoindex(ifname) if ifname else 0
if source:
    s.bind((source, 0, 0, scope))
if scope:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, struct.pack("@I", scope))
s.sendto(request.encode(), (dest, 1001, 0, scope))
end = time.time() + 1.5
while True:
    left = end - time.time()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        data, src = s.recvfrom(8192)
    except socket.timeout:
        break
    if request.startswith("GET "):
        d = zlib.decompressobj(-15)
        text = d.decompress(data) + d.flush()
    else:
        text = data
    print(json.dumps({"from": src[0], "json": json.loads(text)}), flush=True)
"#;

const YANIC_REQUEST: &str = "GET nodeinfo statistics neighbours";

/// Runs the client in `node`'s namespace; the answers it printed.
fn ask(
    mesh: &NetnsMesh,
    node: &str,
    dest: &str,
    ifname: &str,
    source: &str,
    request: &str,
) -> anyhow::Result<Vec<(String, Value)>> {
    let child = Command::new("ip")
        .args(["netns", "exec", &mesh.lab.ns(node), "python3", "-c", CLIENT])
        .args([dest, ifname, source, request])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the respondd client (python3)")?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "respondd client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
        .as_slice()
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(&line?)?;
            let from = v["from"].as_str().context("from")?.to_owned();
            Ok((from, v["json"].take()))
        })
        .collect()
}

/// The fields yanic reads, with the types it parses them as (a mismatch
/// makes yanic drop the whole answer).
fn check_yanic_fields(answer: &Value) -> anyhow::Result<String> {
    let node_id = answer["nodeinfo"]["node_id"]
        .as_str()
        .context("nodeinfo.node_id")?;
    anyhow::ensure!(node_id.len() == 12, "node_id {node_id:?}: yanic needs 12");
    for section in ["statistics", "neighbours"] {
        anyhow::ensure!(answer[section]["node_id"] == node_id, "{section}.node_id");
    }
    let info = &answer["nodeinfo"];
    anyhow::ensure!(info["hostname"].is_string(), "hostname");
    anyhow::ensure!(info["network"]["addresses"].is_array(), "addresses");
    anyhow::ensure!(info["hardware"]["nproc"].is_u64(), "nproc is an integer");
    anyhow::ensure!(info["software"]["firmware"].is_object(), "firmware");
    anyhow::ensure!(
        info.get("location").is_none(),
        "no location without consent"
    );
    anyhow::ensure!(info.get("owner").is_none(), "no contact without consent");
    let stats = &answer["statistics"];
    anyhow::ensure!(stats["uptime"].is_f64(), "uptime is a float");
    anyhow::ensure!(stats["loadavg"].is_number(), "loadavg");
    anyhow::ensure!(
        stats["memory"]["total"].is_u64(),
        "memory.total is an integer"
    );
    anyhow::ensure!(stats["clients"]["total"].is_u64(), "clients.total");
    anyhow::ensure!(answer["neighbours"]["batadv"].is_object(), "batadv");
    Ok(node_id.to_owned())
}

/// The link addresses node `answer` lists (yanic's address → node map).
fn link_addresses(answer: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(mesh) = answer["nodeinfo"]["network"]["mesh"].as_object() {
        for m in mesh.values() {
            for kind in ["wireless", "tunnel", "other"] {
                if let Some(list) = m["interfaces"][kind].as_array() {
                    out.extend(list.iter().filter_map(|a| a.as_str().map(str::to_owned)));
                }
            }
        }
    }
    out
}

/// The neighbour addresses `answer` reports with their TQ.
fn neighbour_addresses(answer: &Value) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    if let Some(own) = answer["neighbours"]["batadv"].as_object() {
        for (from, n) in own {
            if let Some(n) = n["neighbours"].as_object() {
                for (to, link) in n {
                    out.push((from.clone(), to.clone(), link["tq"].as_u64().unwrap_or(0)));
                }
            }
        }
    }
    out
}

#[test]
fn a_yanic_shaped_client_collects_both_routers() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("respondd_lab") {
        return Ok(());
    }
    let mut mesh = NetnsMesh::prepare("rsp", Topology::line(2), None)?;
    // respondd answers on the mesh interfaces (which need an IPv6 listen
    // address): the veth between the two.
    for i in 0..2 {
        let peer = mesh.name(1 - i).to_owned();
        let path = mesh.nodes[i].config.clone();
        let text = std::fs::read_to_string(&path)?;
        let text = text
            .replacen("listen = \"0.0.0.0:", "listen = \"[::]:", 1)
            .replacen(
                "[node]\n",
                &format!("[node]\nmesh_interfaces = [\"to-{peer}\"]\nrespondd = true\n"),
                1,
            );
        std::fs::write(&path, text)?;
    }
    // A global address outside the mesh on each end of the veth, ready at
    // once (no duplicate address detection).
    for (i, address) in [(0, "2001:db8:1::1/64"), (1, "2001:db8:1::2/64")] {
        let dev = format!("to-{}", mesh.name(1 - i));
        let node = mesh.name(i).to_owned();
        mesh.lab.exec(
            &node,
            &["ip", "-6", "addr", "add", address, "dev", &dev, "nodad"],
        )?;
    }
    mesh.start_agents()?;
    let (r0, r1) = (mesh.name(0).to_owned(), mesh.name(1).to_owned());
    let to_r0 = format!("to-{r0}");
    let r0_overlay = mesh.nodes[0].overlay_v6();
    let r1_overlay = mesh.nodes[1].overlay_v6();
    mesh.wait_reachable(1, r0_overlay.into(), Duration::from_secs(15))?;
    // Answers to a link-local requester come from the link-local address,
    // once the kernel has finished duplicate address detection on it; until
    // then it picks the global one (CI saw "answered from 2001:db8:1::1").
    for i in 0..2 {
        let node = mesh.name(i).to_owned();
        let dev = format!("to-{}", mesh.name(1 - i));
        freimesh_testbed::traffic::retry(Duration::from_secs(10), || {
            let out = mesh.lab.exec(
                &node,
                &[
                    "ip",
                    "-6",
                    "addr",
                    "show",
                    "dev",
                    &dev,
                    "scope",
                    "link",
                    "tentative",
                ],
            )?;
            let tentative = String::from_utf8_lossy(&out.stdout).into_owned();
            if tentative.trim().is_empty() {
                Ok(())
            } else {
                bail!("{node} {dev} link-local still tentative: {tentative}")
            }
        })?;
    }

    // Multicast, as yanic asks: both routers answer (r1's own request
    // loops back to its agent), and their answers make the link r0–r1.
    let answers = freimesh_testbed::traffic::retry(Duration::from_secs(15), || {
        let answers = ask(&mesh, &r1, "ff02::2:1001", &to_r0, "", YANIC_REQUEST)?;
        let linked = answers
            .iter()
            .all(|(_, a)| !neighbour_addresses(a).is_empty());
        if answers.len() == 2 && linked {
            Ok(answers)
        } else {
            bail!("answers so far: {answers:?}")
        }
    })
    .with_context(|| format!("r0:\n{}\nr1:\n{}", mesh.log(0), mesh.log(1)))?;
    let mut ids = Vec::new();
    for (from, answer) in &answers {
        anyhow::ensure!(from.starts_with("fe80:"), "answered from {from}");
        ids.push(check_yanic_fields(answer)?);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "two routers: {ids:?}");
    for (_, answer) in &answers {
        let others: Vec<String> = answers
            .iter()
            .filter(|(_, a)| a != answer)
            .flat_map(|(_, a)| link_addresses(a))
            .collect();
        let own = link_addresses(answer);
        let links = neighbour_addresses(answer);
        assert!(
            links
                .iter()
                .any(|(from, to, tq)| own.contains(from) && others.contains(to) && *tq > 0),
            "yanic would find no link in {links:?} (own {own:?}, other {others:?})"
        );
    }
    let r0_link_local = answers
        .iter()
        .find(|(_, a)| a["nodeinfo"]["hostname"] == r0.as_str())
        .context("r0 answered")?
        .0
        .clone();

    // Unicast to r0's link-local address, as yanic asks nodes that missed
    // a multicast; and the bare-name form, as Gluon's status page asks.
    let unicast = ask(&mesh, &r1, &r0_link_local, &to_r0, "", YANIC_REQUEST)?;
    assert_eq!(unicast.len(), 1, "{unicast:?}");
    check_yanic_fields(&unicast[0].1)?;
    let plain = ask(&mesh, &r1, &r0_link_local, &to_r0, "", "nodeinfo")?;
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!(plain[0].1["hostname"], r0.as_str());

    // Across the mesh: from r1's overlay address to r0's.
    let overlay = ask(
        &mesh,
        &r1,
        &r0_overlay.to_string(),
        "",
        &r1_overlay.to_string(),
        YANIC_REQUEST,
    )?;
    assert_eq!(overlay.len(), 1, "over the tunnel: {overlay:?}");
    assert_eq!(overlay[0].0, r0_overlay.to_string());

    // From a global address outside the mesh: no answer.
    let outside = ask(
        &mesh,
        &r1,
        "2001:db8:1::1",
        "",
        "2001:db8:1::2",
        YANIC_REQUEST,
    )?;
    assert!(
        outside.is_empty(),
        "answered a non-mesh source: {outside:?}"
    );
    // `freimesh-agent status` counts what r0 answered and refused.
    let counters = freimesh_testbed::traffic::status(&mesh.nodes[0].socket)?
        .respondd
        .context("r0's status has respondd counters")?;
    assert!(counters.answered >= 4, "{counters:?}");
    assert!(counters.refused_source >= 1, "{counters:?}");
    Ok(())
}
