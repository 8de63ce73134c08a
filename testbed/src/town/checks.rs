//! The town lab's checks that need more than a ping sweep: a silent cut
//! of a cell member under a 1 kHz probe flow (measured like the failover
//! lab), the links of a revoked router, the strangers, the controller's
//! return under traffic, and the time from a neighbour's first beacon to
//! the first ping answered across its link.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::net::{Town, cell_name, mesh_interface};
use super::stranger::{self, Forgery, Stranger};
use crate::failover::inject::{nft_drop, nft_undrop};
use crate::failover::probe::{now_ns, window_stats};
use crate::failover::probe_flow::ProbeFlow;
use crate::failover::runner::interrupted;
use crate::radio::{self, Heard};

/// UDP port of the probe flows.
const PROBE_PORT: u16 = 9_100;
/// Probes before a cut, so the window starts with traffic flowing.
const BASELINE: Duration = Duration::from_secs(2);
/// How long after a cut the gap is measured (detection is 150 ms with
/// the default profile; the rest shows the flow stays repaired).
const AFTER_CUT: Duration = Duration::from_secs(3);
/// How long the controller may take to push a loop-free alternate.
const ALTERNATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the strangers beacon: several of every router's beacon
/// intervals.
const STRANGER_TIME: Duration = Duration::from_secs(4);
/// How long the controller may take to welcome every agent back: agents
/// retry with a backoff of up to 30 s (+20 % jitter), and a router behind
/// an exit gets through only once its exit has: two such waits in a row,
/// 72 s at worst (one run took 55 s).
const RESYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// The agent's log line for each Welcome from the controller.
const WELCOMED: &str = "welcomed by the controller";
/// The ping loops that find when a link first carries traffic: each ping
/// waits this long for its answer (seconds)…
const LINK_PING_WAIT: &str = "0.2";
/// …and the next one follows this much later (seconds).
const LINK_PING_PAUSE: &str = "0.02";

/// Polls `check` every 20 ms until it says yes; how long that took. Fails
/// after `timeout`, or at once on Ctrl-C (the lab is then torn down).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    loop {
        if interrupted() {
            bail!("interrupted");
        }
        if check().unwrap_or(false) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until router `from` holds an alternate next hop toward `dst`;
/// if it never does, the error shows the route and the router's links,
/// and the statuses are kept (`no-alternate`).
fn wait_for_alternate(town: &Town, from: usize, dst: IpAddr) -> anyhow::Result<()> {
    wait_until("an alternate next hop", ALTERNATE_TIMEOUT, || {
        Ok(town.next_hops(from, dst)? >= 2)
    })
    .map(drop)
    .map_err(|err| {
        town.dump_status("no-alternate");
        err.context(town.route_summary(from, dst))
    })
}

/// What a silent cut cost.
#[derive(Debug, Clone)]
pub struct CutResult {
    pub router: String,
    pub gap_ms: f64,
}

/// Runs a 1 kHz flow from `from` to `to`, silently cuts the router `from`
/// forwards through (drops on its mesh interfaces and on its cell ports:
/// carrier stays up, nobody is told), measures the longest gap after the
/// cut, then restores it.
pub fn silent_cut(
    town: &Town,
    binary: &Path,
    from: usize,
    to: usize,
    addresses: &[Option<IpAddr>],
) -> anyhow::Result<CutResult> {
    let (Some(src), Some(dst)) = (addresses[from], addresses[to]) else {
        bail!("the probe flow's ends have no overlay addresses");
    };
    // The controller's alternates come after the first routes: a cut
    // before them would measure global, not local, repair.
    wait_for_alternate(town, from, dst)?;
    let records = town.dir().join("cut-flow");
    std::fs::create_dir_all(&records)?;
    let flow = ProbeFlow::start(
        binary,
        &town.lab.ns(town.name(from)),
        src,
        &town.lab.ns(town.name(to)),
        SocketAddr::new(dst, PROBE_PORT),
        &records,
    )?;
    std::thread::sleep(BASELINE);
    // Routes move with measured round trips, also during the baseline: the
    // route may have lost its alternate since (a loaded machine's RTTs
    // swing), and the cut goes to the next hop of the route as it is now.
    wait_for_alternate(town, from, dst)?;
    let victim = town.next_hop(from, dst)?;
    let name = town.name(victim).to_owned();
    let cells = town.plan.routers[victim].cells.clone();
    let ifs: Vec<String> = (0..cells.len()).map(mesh_interface).collect();
    let ifs: Vec<&str> = ifs.iter().map(String::as_str).collect();
    town.dump_status("before-cut");
    let cut_at = now_ns();
    std::fs::write(records.join("cut_at"), cut_at.to_string())?;
    nft_drop(&town.lab, town.dir(), &name, &ifs, "cut")?;
    for cell in &cells {
        nft_drop(&town.lab, town.dir(), &cell_name(*cell), &[&name], "cut")?;
    }
    std::thread::sleep(AFTER_CUT / 6);
    town.dump_status("after-cut");
    std::thread::sleep(AFTER_CUT - AFTER_CUT / 6);
    let end = now_ns();
    let (sent, received) = flow.finish()?;
    nft_undrop(&town.lab, town.dir(), &name, &ifs, "cut")?;
    for cell in &cells {
        nft_undrop(&town.lab, town.dir(), &cell_name(*cell), &[&name], "cut")?;
    }
    let stats = window_stats(&sent, &received, cut_at, end);
    if !stats.flowing_at_end {
        bail!(
            "{}→{} does not flow again after cutting {name}: {stats:?}",
            town.name(from),
            town.name(to)
        );
    }
    Ok(CutResult {
        router: name,
        gap_ms: stats.longest_gap_ms,
    })
}

/// Links of router `revoked` that are up, on its side or its
/// neighbours'.
pub fn revoked_links_up(town: &Town, revoked: usize) -> anyhow::Result<usize> {
    let own = town.status(revoked)?;
    let key = own.engine.public_key.clone();
    let mut up = own.engine.links.iter().filter(|l| l.state == "up").count();
    for i in (0..town.routers()).filter(|i| *i != revoked) {
        up += town
            .status(i)?
            .engine
            .links
            .iter()
            .filter(|l| l.peer == key && l.state == "up")
            .count();
    }
    Ok(up)
}

/// Waits until every router but `revoked` holds a revocation list naming
/// at least one key.
pub fn wait_revocation_known(town: &Town, revoked: usize) -> anyhow::Result<Duration> {
    wait_until(
        "the revocation reaching every router",
        Duration::from_secs(60),
        || {
            for i in (0..town.routers()).filter(|i| *i != revoked) {
                let known = town.status(i)?.membership.is_some_and(|m| m.revoked > 0);
                if !known {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
}

/// What the strangers got.
#[derive(Debug, Clone, Default)]
pub struct StrangerResult {
    /// Per forgery: handshake initiations the stranger received.
    pub initiations: BTreeMap<&'static str, u64>,
    /// Links to a stranger's key on any router.
    pub links: usize,
    /// Credentials the cell's routers refused meanwhile.
    pub refused: u64,
    /// Answers a stranger got from a router's overlay address beyond its
    /// cell, sending through a cell member as if it were its next hop.
    pub overlay_replies: usize,
}

/// Puts one stranger per forgery into `cell` (each its own namespace),
/// lets them beacon, and counts what they got; meanwhile the first one
/// also tries to send through a cell member to router `beyond`.
pub fn strangers(
    town: &mut Town,
    cell: usize,
    signing_key: &ed25519_dalek::SigningKey,
    beyond: usize,
) -> anyhow::Result<StrangerResult> {
    let members = town.plan.members(cell);
    let refused_before = refused(town, &members);
    let mut running = Vec::new();
    for (k, forgery) in [Forgery::ForeignSigner, Forgery::Expired]
        .into_iter()
        .enumerate()
    {
        let ns = format!("stranger{k}");
        town.lab.add_namespace(&ns)?;
        radio::skip_dad(&town.lab, &ns)?;
        radio::join_cell(&town.lab, &ns, "mesh0", &cell_name(cell), &ns)?;
        let fake: IpAddr = format!("10.99.255.{}", k + 1).parse()?;
        let (key, datagram) = stranger::beacon(forgery, signing_key, &[fake])?;
        let process = Stranger::start(&town.lab, &ns, "mesh0", &datagram)?;
        running.push((forgery, key, process));
    }
    let member = *members.first().context("an empty cell")?;
    let k = town.plan.routers[member]
        .cells
        .iter()
        .position(|c| *c == cell)
        .unwrap_or(0);
    let gateway = radio::link_local(&town.lab, town.name(member), &mesh_interface(k))?;
    let target = town.overlay_v6(beyond)?.to_string();
    town.lab.exec(
        "stranger0",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd99::/48",
            "via",
            &gateway,
            "dev",
            "mesh0",
        ],
    )?;
    let pings = town.lab.try_exec(
        "stranger0",
        &[
            "ping", "-6", "-n", "-c", "3", "-i", "0.5", "-W", "1", &target,
        ],
    )?;
    let overlay_replies = String::from_utf8_lossy(&pings.stdout)
        .lines()
        .filter(|l| l.contains("bytes from"))
        .count();
    std::thread::sleep(STRANGER_TIME.saturating_sub(std::time::Duration::from_secs(2)));
    let mut result = StrangerResult {
        overlay_replies,
        ..StrangerResult::default()
    };
    for (forgery, key, process) in running {
        let (_, initiations) = process.finish()?;
        result.initiations.insert(forgery.label(), initiations);
        for i in 0..town.routers() {
            if let Ok(status) = town.status(i) {
                result.links += status.engine.links.iter().filter(|l| l.peer == key).count();
            }
        }
    }
    result.refused = refused(town, &members).saturating_sub(refused_before);
    Ok(result)
}

/// Beacons from revoked keys that `routers` ignored since they started.
pub fn revoked_beacons(town: &Town, routers: &[usize]) -> u64 {
    routers
        .iter()
        .filter_map(|i| town.status(*i).ok()?.discovery)
        .map(|d| d.revoked)
        .sum()
}

fn refused(town: &Town, routers: &[usize]) -> u64 {
    routers
        .iter()
        .filter_map(|i| town.status(*i).ok()?.discovery)
        .map(|d| d.refused)
        .sum()
}

/// How many times each router was welcomed by the controller so far.
pub fn welcomes(town: &Town) -> Vec<usize> {
    (0..town.routers())
        .map(|i| town.log_count(i, WELCOMED))
        .collect()
}

/// Restarts the controller under a 1 kHz flow from `from` to `to` and
/// waits until every router but `except` was welcomed again; returns the
/// longest gap from the restart until then and how long resync took.
pub fn controller_returns(
    town: &mut Town,
    binary: &Path,
    from: usize,
    to: usize,
    addresses: &[Option<IpAddr>],
    except: usize,
) -> anyhow::Result<(f64, Duration)> {
    let (Some(src), Some(dst)) = (addresses[from], addresses[to]) else {
        bail!("the probe flow's ends have no overlay addresses");
    };
    let before = welcomes(town);
    let records = town.dir().join("resync-flow");
    std::fs::create_dir_all(&records)?;
    let flow = ProbeFlow::start(
        binary,
        &town.lab.ns(town.name(from)),
        src,
        &town.lab.ns(town.name(to)),
        SocketAddr::new(dst, PROBE_PORT),
        &records,
    )?;
    std::thread::sleep(BASELINE);
    let restart_at = now_ns();
    town.controller.restart()?;
    let took = wait_until(
        "every agent welcomed by the returning controller",
        RESYNC_TIMEOUT,
        || {
            let now = welcomes(town);
            Ok((0..town.routers()).all(|i| i == except || now[i] > before[i]))
        },
    )?;
    // The full reconcile after the Welcome: give it time to apply.
    std::thread::sleep(BASELINE);
    let end = now_ns();
    let (sent, received) = flow.finish()?;
    let stats = window_stats(&sent, &received, restart_at, end);
    if !stats.flowing_at_end {
        bail!("the probe flow stopped after the controller returned: {stats:?}");
    }
    Ok((stats.longest_gap_ms, took))
}

/// Ping loops between every ordered pair of `routers` (one cell's
/// members), each until its first answer, stamped: it tells when a link
/// between the two first carried traffic.
#[derive(Debug)]
pub struct LinkPings {
    children: Vec<((usize, usize), Child)>,
}

impl LinkPings {
    /// Starts them, each for at most `duration`; start them before the
    /// agents.
    pub fn start(
        town: &Town,
        routers: &[usize],
        addresses: &[Option<IpAddr>],
        duration: Duration,
    ) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        for a in routers {
            for b in routers.iter().filter(|b| *b != a) {
                let target = addresses[*b].context("a cell member without an address")?;
                // One ping at a time until one is answered: a ping started
                // while the agent has no TUN device yet exits at once.
                let script = format!(
                    "while :; do ping -D -n -c 1 -W {LINK_PING_WAIT} {target} && break; sleep {LINK_PING_PAUSE}; done"
                );
                let child = Command::new("ip")
                    .args(["netns", "exec", &town.lab.ns(town.name(*a))])
                    .args(["timeout", &duration.as_secs().max(1).to_string()])
                    .args(["sh", "-c", &script])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting ping")?;
                children.push(((*a, *b), child));
            }
        }
        Ok(Self { children })
    }

    /// Waits for the loops; the first reply's wall time per pair.
    pub fn finish(mut self) -> anyhow::Result<BTreeMap<(usize, usize), f64>> {
        let mut first = BTreeMap::new();
        for (pair, child) in std::mem::take(&mut self.children) {
            let out = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(t) = text.lines().find_map(reply_time) {
                first.insert(pair, t);
            }
        }
        Ok(first)
    }
}

impl Drop for LinkPings {
    fn drop(&mut self) {
        for (_, mut child) in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `[1700000000.123456] 64 bytes from …` → the stamp.
fn reply_time(line: &str) -> Option<f64> {
    if !line.contains("bytes from") {
        return None;
    }
    line.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// Per pair: from the later of the two routers' first beacons with a
/// credential (the moment the second one became a neighbour the first
/// could link to) to the first ping answered across them, in ms; sorted.
pub fn discovery_link_times(
    first_reply: &BTreeMap<(usize, usize), f64>,
    heard: &[Heard],
    sources: &BTreeMap<usize, String>,
) -> Vec<f64> {
    let mut times: Vec<f64> = first_reply
        .iter()
        .filter_map(|((a, b), replied)| {
            let beacon_a = radio::first_credential_beacon(heard, sources.get(a)?)?;
            let beacon_b = radio::first_credential_beacon(heard, sources.get(b)?)?;
            Some(((replied - beacon_a.max(beacon_b)) * 1000.0).max(0.0))
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The median of sorted `values`.
pub fn median(values: &[f64]) -> Option<f64> {
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(at: f64, source: &str, credential: bool) -> Heard {
        Heard {
            at,
            source: source.into(),
            bytes: 100,
            credential,
        }
    }

    #[test]
    fn reply_stamps_are_read_from_ping_d_output() {
        assert_eq!(
            reply_time(
                "[1700000000.500000] 64 bytes from 10.99.0.2: icmp_seq=3 ttl=64 time=1.2 ms"
            ),
            Some(1_700_000_000.5)
        );
        assert_eq!(
            reply_time("PING 10.99.0.2 (10.99.0.2) 56(84) bytes of data."),
            None
        );
        assert_eq!(
            reply_time("[1700000000.5] From 10.99.0.1 icmp_seq=1 Destination Host Unreachable"),
            None
        );
    }

    #[test]
    fn link_time_runs_from_the_later_credential_beacon_to_the_first_reply() {
        let heard = [
            heard(10.0, "fe80::a", false),
            heard(11.0, "fe80::a", true),
            heard(12.0, "fe80::b", true),
        ];
        let sources = BTreeMap::from([(0, "fe80::a".to_owned()), (1, "fe80::b".to_owned())]);
        let replies = BTreeMap::from([((0, 1), 12.25), ((1, 0), 12.5), ((1, 2), 13.0)]);
        let times = discovery_link_times(&replies, &heard, &sources);
        assert_eq!(times.len(), 2, "{times:?}");
        assert!((times[0] - 250.0).abs() < 1e-6 && (times[1] - 500.0).abs() < 1e-6);
        assert_eq!(median(&times), Some(375.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
    }
}
