//! `freimesh-testbed bench`: the data-plane benchmark of the foundation
//! issue, in one run on this machine. Needs root (namespaces) and the
//! release binaries; `scripts/bench` builds them and runs this.
//!
//! * link throughput: one TCP stream (iperf3) over one freimesh link vs a
//!   wireguard-go pair, each in its own namespace pair;
//! * 3-hop throughput: the same stream across a line of four agents;
//! * added latency per hop: median ping RTT over 3 hops minus over 1 hop,
//!   divided by the 4 extra transit crossings a round trip makes;
//! * agent RSS with 8 links (a star of 9 namespaces, every link handshaken
//!   and used);
//! * the size of the agent built with the router profile.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::lab::Lab;
use crate::mesh::overlay_v4;
use crate::netns_mesh::NetnsMesh;
use crate::topology::Topology;
use crate::traffic::{iperf3, retry, wg};

/// Seconds each iperf3 run lasts.
const IPERF_SECONDS: u32 = 5;
/// Pings per latency sample (at 100 per second).
const PING_COUNT: u32 = 300;

/// Runs every measurement and prints a table (and JSON with `json`).
pub fn run(router_binary: Option<&std::path::Path>, json_out: bool) -> anyhow::Result<()> {
    if !crate::lab::is_root() {
        bail!("the benchmark needs root for network namespaces");
    }
    let wg_go = wireguard_go_pair()?;
    println!(
        "wireguard-go pair, 1 TCP stream:      {:>8.0} Mbit/s",
        wg_go / 1e6
    );
    let (link, rtt1) = {
        let mesh = NetnsMesh::start("bp", Topology::line(2))?;
        mesh.wait_reachable(0, overlay_v4(1).into(), Duration::from_secs(10))?;
        let bps = iperf3(
            &mesh.lab,
            "a",
            "b",
            &overlay_v4(1).to_string(),
            IPERF_SECONDS,
        )?;
        let rtt = median_rtt_ms(&mesh.lab, "a", &overlay_v4(1).to_string())?;
        (bps, rtt)
    };
    println!(
        "freimesh link, 1 TCP stream:          {:>8.0} Mbit/s  ({:.2}x wireguard-go)",
        link / 1e6,
        link / wg_go
    );
    let (three_hop, rtt3, underlay_rtt) = {
        let mesh = NetnsMesh::start("bl", Topology::line(4))?;
        mesh.wait_reachable(0, overlay_v4(3).into(), Duration::from_secs(10))?;
        let bps = iperf3(
            &mesh.lab,
            "a",
            "d",
            &overlay_v4(3).to_string(),
            IPERF_SECONDS,
        )?;
        let rtt = median_rtt_ms(&mesh.lab, "a", &overlay_v4(3).to_string())?;
        let underlay = median_rtt_ms(&mesh.lab, "a", &mesh.underlay.address(0, 1).to_string())?;
        (bps, rtt, underlay)
    };
    let per_hop_ms = (rtt3 - rtt1) / 4.0;
    println!(
        "freimesh 3 hops, 1 TCP stream:        {:>8.0} Mbit/s",
        three_hop / 1e6
    );
    println!(
        "ping median RTT: underlay veth {underlay_rtt:.3} ms, 1 hop {rtt1:.3} ms, 3 hops {rtt3:.3} ms → added per transit hop {per_hop_ms:.3} ms"
    );
    let rss_kib = {
        let mesh = NetnsMesh::start("bs", Topology::star(8))?;
        for leaf in 1..=8 {
            mesh.wait_reachable(0, overlay_v4(leaf).into(), Duration::from_secs(10))?;
        }
        rss_kib(&mesh.lab, &mesh.lab.ns("a"))?
    };
    println!(
        "agent RSS with 8 links:               {:>8.1} MiB",
        rss_kib as f64 / 1024.0
    );
    let size = match router_binary {
        Some(path) => {
            let bytes = std::fs::metadata(path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            println!(
                "freimesh-agent, router profile:       {:>8.2} MiB ({bytes} bytes, stripped)",
                bytes as f64 / 1048576.0
            );
            Some(bytes)
        }
        None => None,
    };
    if json_out {
        let report = json!({
            "wireguard_go_pair_bps": wg_go,
            "freimesh_link_bps": link,
            "freimesh_vs_wireguard_go": link / wg_go,
            "freimesh_three_hops_bps": three_hop,
            "rtt_ms": { "underlay": underlay_rtt, "one_hop": rtt1, "three_hops": rtt3 },
            "added_latency_per_hop_ms": per_hop_ms,
            "agent_rss_8_links_kib": rss_kib,
            "router_binary_bytes": size,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Median RTT in ms of `PING_COUNT` pings at 10 ms intervals.
fn median_rtt_ms(lab: &Lab, from: &str, to: &str) -> anyhow::Result<f64> {
    let out = lab.try_exec(
        from,
        &[
            "ping",
            "-n",
            "-c",
            &PING_COUNT.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            to,
        ],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            l.split("time=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    if rtts.len() < usize::try_from(PING_COUNT / 2).unwrap_or(0) {
        bail!("too few ping replies from {to}: {}", rtts.len());
    }
    rtts.sort_by(f64::total_cmp);
    Ok(rtts[rtts.len() / 2])
}

/// VmRSS of the freimesh-agent running in namespace `ns`.
fn rss_kib(lab: &Lab, ns: &str) -> anyhow::Result<u64> {
    let pids = Command::new("ip").args(["netns", "pids", ns]).output()?;
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "freimesh-agent" {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        return status
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .context("no VmRSS line");
    }
    let _ = lab;
    bail!("no freimesh-agent running in {ns}")
}

/// One TCP stream over a wireguard-go pair in two fresh namespaces.
fn wireguard_go_pair() -> anyhow::Result<f64> {
    let mut lab = Lab::new("bw");
    lab.add_namespace("x")?;
    lab.add_namespace("y")?;
    lab.veth("x", "to-y", "172.29.0.1/24", "y", "to-x", "172.29.0.2/24")?;
    let keys: Vec<(String, String)> = (0..2)
        .map(|_| -> anyhow::Result<(String, String)> {
            let private = wg(&["genkey"], None)?;
            let public = wg(&["pubkey"], Some(&private))?;
            Ok((private, public))
        })
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let mut children = Vec::new();
    let result = (|| -> anyhow::Result<f64> {
        for (i, (ns, peer_underlay)) in [("x", "172.29.0.2"), ("y", "172.29.0.1")]
            .into_iter()
            .enumerate()
        {
            let ifname = format!("wgb{}{i}", std::process::id() % 100_000);
            let child = Command::new("ip")
                .args(["netns", "exec", &lab.ns(ns), "wireguard-go", "-f", &ifname])
                .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting wireguard-go")?;
            children.push(child);
            retry(Duration::from_secs(10), || {
                lab.exec(ns, &["ip", "link", "show", &ifname]).map(|_| ())
            })?;
            let key_file = dir.path().join(format!("{ns}.key"));
            std::fs::write(&key_file, &keys[i].0)?;
            let peer_addr = format!("10.98.0.{}/32", 2 - i);
            lab.exec(
                ns,
                &[
                    "wg",
                    "set",
                    &ifname,
                    "private-key",
                    &key_file.to_string_lossy(),
                    "listen-port",
                    "51820",
                    "peer",
                    &keys[1 - i].1,
                    "endpoint",
                    &format!("{peer_underlay}:51820"),
                    "allowed-ips",
                    &peer_addr,
                ],
            )?;
            lab.exec(
                ns,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("10.98.0.{}/32", i + 1),
                    "dev",
                    &ifname,
                ],
            )?;
            lab.exec(ns, &["ip", "link", "set", &ifname, "mtu", "1420", "up"])?;
            lab.exec(ns, &["ip", "route", "add", &peer_addr, "dev", &ifname])?;
        }
        retry(Duration::from_secs(10), || {
            let out = lab.try_exec("x", &["ping", "-c", "1", "-W", "1", "10.98.0.2"])?;
            if out.status.success() {
                Ok(())
            } else {
                bail!("wireguard-go pair not up")
            }
        })?;
        iperf3(&lab, "x", "y", "10.98.0.2", IPERF_SECONDS)
    })();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}
