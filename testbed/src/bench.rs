//! `freimesh-testbed bench`: the data-plane benchmark of the foundation
//! issue, in one run on this machine. Needs root (namespaces) and the
//! release binaries; `scripts/bench` builds them and runs this.
//!
//! * link throughput: one TCP stream (iperf3) over one freimesh link vs a
//!   wireguard-go pair and a pair of boringtun's own CLI (`boringtun-cli`,
//!   when its binary is given), each in its own namespace pair;
//! * 3-hop throughput: the same stream across a line of four agents;
//! * added latency per hop: median ping RTT over 3 hops minus over 1 hop,
//!   divided by the 4 extra transit crossings a round trip makes;
//! * agent RSS with 8 links (a star of 9 namespaces, every link handshaken
//!   and used);
//! * the size of the agent built with the router profile;
//! * CPU seconds per GB forwarded: user plus system time of the WireGuard
//!   processes only (both agents of the link, all four of the 3-hop line,
//!   both processes of each reference pair) over the iperf3 run, divided by
//!   the gigabytes (1e9 bytes) iperf3 reports moved.

use std::path::Path;
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
/// `boringtun_binary` is boringtun's own CLI; without it (or if it is not
/// there) that reference is skipped with a note, not the whole run.
pub fn run(
    router_binary: Option<&Path>,
    boringtun_binary: Option<&Path>,
    json_out: bool,
) -> anyhow::Result<()> {
    if !crate::lab::is_root() {
        bail!("the benchmark needs root for network namespaces");
    }
    let clk_tck = clock_ticks_per_second()?;
    let wg_go = reference_pair(Reference::WireguardGo, clk_tck)?;
    println!(
        "wireguard-go pair, 1 TCP stream:      {:>8.0} Mbit/s",
        wg_go.bps / 1e6
    );
    let wg_go_cpu = wg_go.cpu_s_per_gb();
    let wg_go = wg_go.bps;
    let boringtun_cli = match boringtun_binary {
        Some(path) if path.is_file() => {
            let pair = reference_pair(Reference::BoringtunCli(path), clk_tck)
                .context("boringtun-cli pair")?;
            println!(
                "boringtun-cli pair, 1 TCP stream:     {:>8.0} Mbit/s",
                pair.bps / 1e6
            );
            Some(pair)
        }
        Some(path) => {
            println!("boringtun-cli pair: skipped ({} not found)", path.display());
            None
        }
        None => {
            println!("boringtun-cli pair: skipped (no --boringtun-binary given)");
            None
        }
    };
    let (link, rtt1) = {
        let mesh = NetnsMesh::start("bp", Topology::line(2))?;
        mesh.wait_reachable(0, overlay_v4(1).into(), Duration::from_secs(10))?;
        let run = measured(&mesh.lab, &["a", "b"], AGENT_COMM, clk_tck, || {
            iperf3(
                &mesh.lab,
                "a",
                "b",
                &overlay_v4(1).to_string(),
                IPERF_SECONDS,
            )
        })?;
        let rtt = median_rtt_ms(&mesh.lab, "a", &overlay_v4(1).to_string())?;
        (run, rtt)
    };
    let link_cpu = link.cpu_s_per_gb();
    let link = link.bps;
    println!(
        "freimesh link, 1 TCP stream:          {:>8.0} Mbit/s  ({:.2}x wireguard-go)",
        link / 1e6,
        link / wg_go
    );
    if let Some(pair) = &boringtun_cli {
        println!(
            "freimesh link vs boringtun-cli pair:  {:>8.2}x",
            link / pair.bps
        );
    }
    let (three_hop, rtt3, underlay_rtt) = {
        let mesh = NetnsMesh::start("bl", Topology::line(4))?;
        mesh.wait_reachable(0, overlay_v4(3).into(), Duration::from_secs(10))?;
        let run = measured(
            &mesh.lab,
            &["a", "b", "c", "d"],
            AGENT_COMM,
            clk_tck,
            || {
                iperf3(
                    &mesh.lab,
                    "a",
                    "d",
                    &overlay_v4(3).to_string(),
                    IPERF_SECONDS,
                )
            },
        )?;
        let rtt = median_rtt_ms(&mesh.lab, "a", &overlay_v4(3).to_string())?;
        let underlay = median_rtt_ms(&mesh.lab, "a", &mesh.underlay.address(0, 1).to_string())?;
        (run, rtt, underlay)
    };
    let three_hop_cpu = three_hop.cpu_s_per_gb();
    let three_hop = three_hop.bps;
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
    let boringtun_cli_cpu = boringtun_cli.as_ref().map(Measured::cpu_s_per_gb);
    let skipped = "skipped".to_owned();
    println!(
        "CPU s per GB forwarded (WireGuard processes only): freimesh link {link_cpu:.2}, 3 hops (4 agents) {three_hop_cpu:.2}, wireguard-go pair {wg_go_cpu:.2}, boringtun-cli pair {}",
        boringtun_cli_cpu.map_or(skipped, |c| format!("{c:.2}"))
    );
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
            "boringtun_cli_pair_bps": boringtun_cli.as_ref().map(|p| p.bps),
            "freimesh_vs_boringtun_cli": boringtun_cli.as_ref().map(|p| link / p.bps),
            "cpu_s_per_gb": {
                "freimesh_link": link_cpu,
                "freimesh_three_hops": three_hop_cpu,
                "wireguard_go_pair": wg_go_cpu,
                "boringtun_cli_pair": boringtun_cli_cpu,
            },
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
    if let Some(pid) = pids_named(ns, AGENT_COMM)?.first() {
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

/// The process name (`/proc/PID/comm`) of a freimesh agent.
const AGENT_COMM: &str = "freimesh-agent";

/// One iperf3 run and the CPU time the WireGuard processes spent on it.
struct Measured {
    bps: f64,
    cpu_s: f64,
}

impl Measured {
    /// CPU seconds per 10^9 bytes, taking the bytes moved as iperf3's
    /// receiver rate over the run's length.
    fn cpu_s_per_gb(&self) -> f64 {
        let gb = self.bps * f64::from(IPERF_SECONDS) / 8.0 / 1e9;
        self.cpu_s / gb
    }
}

/// Runs `iperf` (one iperf3 run) and measures the user plus system time
/// the processes named `comm` in the lab's namespaces `namespaces` spent
/// meanwhile. Only those processes count: iperf3 and the kernel's own
/// work (veth, TCP) are the same for every contender.
fn measured(
    lab: &Lab,
    namespaces: &[&str],
    comm: &str,
    clk_tck: f64,
    iperf: impl FnOnce() -> anyhow::Result<f64>,
) -> anyhow::Result<Measured> {
    let mut pids = Vec::new();
    for ns in namespaces {
        let found = pids_named(&lab.ns(ns), comm)?;
        if found.is_empty() {
            bail!("no {comm} running in {}", lab.ns(ns));
        }
        pids.extend(found);
    }
    let before = cpu_ticks(&pids)?;
    let bps = iperf()?;
    // Read before anything is torn down: a process that exited meanwhile
    // fails this rather than counting as idle.
    let after = cpu_ticks(&pids)?;
    Ok(Measured {
        bps,
        cpu_s: after.saturating_sub(before) as f64 / clk_tck,
    })
}

/// The processes named `comm` in the (full-named) namespace `ns`.
fn pids_named(ns: &str, comm: &str) -> anyhow::Result<Vec<u32>> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .with_context(|| format!("listing the processes in {ns}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter(|pid| {
            // A process may exit between the listing and this read.
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == comm)
        })
        .collect())
}

/// Summed utime + stime of `pids`, in clock ticks. /proc/PID/stat of a
/// process counts all its threads, so a multi-threaded one is covered.
fn cpu_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The name (field 2) is in parentheses and may hold spaces: count
        // fields after its closing one, where field 3 (state) comes first
        // and utime, stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .with_context(|| format!("unexpected {path}: {stat}"))?
            .1
            .split_whitespace()
            .collect();
        for field in [14, 15] {
            total += fields
                .get(field - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .with_context(|| format!("no field {field} in {path}: {stat}"))?;
        }
    }
    Ok(total)
}

/// The clock ticks per second /proc/PID/stat counts in (`getconf CLK_TCK`).
fn clock_ticks_per_second() -> anyhow::Result<f64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<u32>() {
        Ok(ticks) if out.status.success() && ticks > 0 => Ok(f64::from(ticks)),
        _ => bail!("getconf CLK_TCK: unexpected answer {:?}", text.trim()),
    }
}

/// A userspace WireGuard implementation to compare the agent with.
#[derive(Clone, Copy)]
enum Reference<'a> {
    /// `wireguard-go` from `PATH`.
    WireguardGo,
    /// boringtun's own CLI at this path: the same crypto and state machine
    /// the agent uses, behind boringtun's own TUN and UDP loop.
    BoringtunCli(&'a Path),
}

impl Reference<'_> {
    fn name(self) -> &'static str {
        match self {
            Self::WireguardGo => "wireguard-go",
            Self::BoringtunCli(_) => "boringtun-cli",
        }
    }

    /// The namespace tag and the interface name stem (the process id is
    /// appended: the UAPI sockets in /var/run/wireguard are shared by all
    /// namespaces, so names must not collide with a parallel run).
    fn tags(self) -> (&'static str, &'static str) {
        match self {
            Self::WireguardGo => ("bw", "wgb"),
            Self::BoringtunCli(_) => ("bb", "btb"),
        }
    }

    /// The process, in foreground, serving `ifname` in namespace `ns`.
    fn command(self, ns: &str, ifname: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]);
        match self {
            Self::WireguardGo => {
                command
                    .args(["wireguard-go", "-f", ifname])
                    .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1");
            }
            Self::BoringtunCli(binary) => {
                // Dropping privileges looks for the user behind sudo
                // (getlogin), which a root shell without a login lacks.
                command
                    .arg(binary)
                    .args(["-f", "--disable-drop-privileges", ifname]);
            }
        }
        command
    }

    /// The process's `/proc/PID/comm` (15 characters at most).
    fn comm(self) -> String {
        let name = match self {
            Self::WireguardGo => "wireguard-go".to_owned(),
            Self::BoringtunCli(binary) => binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        name.chars().take(15).collect()
    }
}

/// One TCP stream over a pair of `reference` processes in two fresh
/// namespaces, configured with `wg set` like the agents (MTU 1420).
fn reference_pair(reference: Reference<'_>, clk_tck: f64) -> anyhow::Result<Measured> {
    let (tag, stem) = reference.tags();
    let mut lab = Lab::new(tag);
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
    let ifnames: Vec<String> = (0..2)
        .map(|i| format!("{stem}{}{i}", std::process::id() % 100_000))
        .collect();
    let result = (|| -> anyhow::Result<Measured> {
        for (i, (ns, peer_underlay)) in [("x", "172.29.0.2"), ("y", "172.29.0.1")]
            .into_iter()
            .enumerate()
        {
            let ifname = &ifnames[i];
            let child = reference
                .command(&lab.ns(ns), ifname)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", reference.name()))?;
            children.push(child);
            retry(Duration::from_secs(10), || {
                lab.exec(ns, &["ip", "link", "show", ifname]).map(|_| ())
            })?;
            let key_file = dir.path().join(format!("{ns}.key"));
            std::fs::write(&key_file, &keys[i].0)?;
            let peer_addr = format!("10.98.0.{}/32", 2 - i);
            // The UAPI socket may appear a moment after the interface.
            retry(Duration::from_secs(10), || {
                lab.exec(
                    ns,
                    &[
                        "wg",
                        "set",
                        ifname,
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
                )
            })?;
            lab.exec(
                ns,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("10.98.0.{}/32", i + 1),
                    "dev",
                    ifname,
                ],
            )?;
            lab.exec(ns, &["ip", "link", "set", ifname, "mtu", "1420", "up"])?;
            lab.exec(ns, &["ip", "route", "add", &peer_addr, "dev", ifname])?;
        }
        retry(Duration::from_secs(10), || {
            let out = lab.try_exec("x", &["ping", "-c", "1", "-W", "1", "10.98.0.2"])?;
            if out.status.success() {
                Ok(())
            } else {
                bail!("{} pair not up", reference.name())
            }
        })?;
        measured(&lab, &["x", "y"], &reference.comm(), clk_tck, || {
            iperf3(&lab, "x", "y", "10.98.0.2", IPERF_SECONDS)
        })
    })();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    // A killed process leaves its UAPI socket behind; these names are
    // ours (they carry this process's id).
    for ifname in &ifnames {
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{ifname}.sock"));
    }
    result
}
