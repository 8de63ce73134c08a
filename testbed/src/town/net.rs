//! The running town: namespaces for the cells, the routers and the
//! controller, each router's minimal configuration, its agent process,
//! and what the checks ask of them (status, overlay addresses, which pairs
//! reach each other). Dropping it kills the agents and the controller by
//! their pids and removes every namespace (the [`Lab`] and process
//! handles do that, also after a failed check or a panic).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use freimesh_agent::control::AgentStatus;

use super::plan::TownPlan;
use crate::controller::ControllerProcess;
use crate::lab::Lab;
use crate::process::AgentProcess;
use crate::radio;
use crate::traffic::status;

pub const CONTROLLER_PORT: u16 = 7700;
/// The controller's admin API, on its namespace's loopback (the lab reads
/// the routes it computed: `sync.rs`).
pub const API_PORT: u16 = 7780;
/// The controller's address, on its namespace's loopback: routers with an
/// uplink route it through their uplink segment.
pub const CONTROLLER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// How long one reachability ping waits: a round of sweeps stays short.
const PING_WAIT: &str = "0.5";
/// Sweeps of [`Town::sweep_settled`].
const SETTLED_SWEEPS: usize = 3;
/// A clean stop writes the state file; this is ample for it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The running town.
#[derive(Debug)]
pub struct Town {
    pub plan: TownPlan,
    // Field order is drop order: agents and controller before the lab
    // removes their namespaces, the directory last.
    agents: Vec<Option<AgentProcess>>,
    /// An operator token for the controller's admin API.
    pub api_token: String,
    pub controller: ControllerProcess,
    pub lab: Lab,
    pub dir: tempfile::TempDir,
}

impl Town {
    /// Builds the namespaces, cells and uplinks of `plan` and starts the
    /// controller; no agent runs yet.
    pub fn build(plan: TownPlan) -> anyhow::Result<Self> {
        let mut lab = Lab::new("town");
        let dir = tempfile::Builder::new()
            .prefix("freimesh-town-")
            .tempdir()?;
        for cell in 0..plan.cells {
            radio::add_cell(&mut lab, &cell_name(cell))?;
        }
        lab.add_namespace("ctl")?;
        lab.exec(
            "ctl",
            &[
                "ip",
                "addr",
                "add",
                &format!("{CONTROLLER_ADDR}/32"),
                "dev",
                "lo",
            ],
        )?;
        for (i, router) in plan.routers.iter().enumerate() {
            lab.add_namespace(&router.name)?;
            radio::skip_dad(&lab, &router.name)?;
            for (k, cell) in router.cells.iter().enumerate() {
                radio::join_cell(
                    &lab,
                    &router.name,
                    &mesh_interface(k),
                    &cell_name(*cell),
                    &router.name,
                )?;
            }
            if router.uplink {
                lab.veth(
                    "ctl",
                    &format!("up-{}", router.name),
                    &format!("172.31.{i}.1/24"),
                    &router.name,
                    "uplink",
                    &format!("172.31.{i}.2/24"),
                )?;
                lab.exec(
                    &router.name,
                    &[
                        "ip",
                        "route",
                        "add",
                        &format!("{CONTROLLER_ADDR}/32"),
                        "via",
                        &format!("172.31.{i}.1"),
                    ],
                )?;
            }
        }
        let controller = ControllerProcess::start_with_init(
            &dir.path().join("controller"),
            SocketAddr::from(([0, 0, 0, 0], CONTROLLER_PORT)),
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, API_PORT))),
            Some(&lab.ns("ctl")),
            &[],
        )?;
        let agents = plan.routers.iter().map(|_| None).collect();
        let api_token = controller.operator_add("town-lab")?;
        Ok(Self {
            plan,
            agents,
            api_token,
            controller,
            lab,
            dir,
        })
    }

    pub fn name(&self, router: usize) -> &str {
        &self.plan.routers[router].name
    }

    /// The admin API's base URL, inside the controller's namespace.
    pub fn api_url(&self) -> String {
        format!("http://{}:{API_PORT}", Ipv4Addr::LOCALHOST)
    }

    pub fn routers(&self) -> usize {
        self.plan.routers.len()
    }

    fn path(&self, router: usize, ext: &str) -> PathBuf {
        self.dir.path().join(format!("{}.{ext}", self.name(router)))
    }

    pub fn socket(&self, router: usize) -> PathBuf {
        self.path(router, "sock")
    }

    pub fn log(&self, router: usize) -> String {
        std::fs::read_to_string(self.path(router, "log")).unwrap_or_default()
    }

    /// Writes every router's configuration: item 5's minimum (key, join
    /// token, controller key and endpoint, mesh interfaces) plus its name
    /// (routers share the machine's host name here) and where the lab
    /// keeps its files. Listen address and backend are the defaults.
    pub fn write_configs(&self) -> anyhow::Result<()> {
        for (i, router) in self.plan.routers.iter().enumerate() {
            let token = self.controller.token()?;
            let interfaces: Vec<String> = (0..router.cells.len())
                .map(|k| format!("\"{}\"", mesh_interface(k)))
                .collect();
            let text = format!(
                r#"[node]
name = "{name}"
private_key_file = "{key}"
generate_key = true
control_socket = "{socket}"
state_file = "{state}"
mesh_interfaces = [{interfaces}]

[controller]
endpoints = ["{CONTROLLER_ADDR}:{CONTROLLER_PORT}"]
public_key = "{controller_key}"
join_token = "{token}"
"#,
                name = router.name,
                key = self.path(i, "key").display(),
                socket = self.socket(i).display(),
                state = self.path(i, "state").display(),
                interfaces = interfaces.join(", "),
                controller_key = self.controller.public_key,
            );
            let path = self.path(i, "toml");
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Starts router `i`'s agent (it must not be running).
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let agent = AgentProcess::start(
            self.name(i),
            &self.path(i, "toml"),
            &self.path(i, "log"),
            Some(&self.lab.ns(self.name(i))),
        )?;
        self.agents[i] = Some(agent);
        Ok(())
    }

    /// Starts every router's agent, one right after the other.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        (0..self.routers()).try_for_each(|i| self.start(i))
    }

    /// Stops router `i`'s agent cleanly (SIGTERM: it writes its state
    /// file on the way out).
    pub fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        match self.agents[i].take() {
            Some(agent) => agent.stop(STOP_GRACE),
            None => Ok(()),
        }
    }

    /// Stops every agent at once (SIGTERM to all, as a reboot does; each
    /// writes its state file on the way out), then waits for each.
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        for agent in self.agents.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &agent.pid().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        for agent in self.agents.iter_mut().filter_map(Option::take) {
            agent.stop(STOP_GRACE)?;
        }
        Ok(())
    }

    pub fn status(&self, i: usize) -> anyhow::Result<AgentStatus> {
        status(&self.socket(i))
    }

    /// Router `i`'s overlay IPv4 address, once it has one.
    pub fn overlay_v4(&self, i: usize) -> anyhow::Result<IpAddr> {
        self.status(i)?
            .addresses
            .iter()
            .map(ipnet::IpNet::addr)
            .find(IpAddr::is_ipv4)
            .with_context(|| format!("{} has no overlay address yet", self.name(i)))
    }

    /// Router `i`'s overlay IPv6 address, once it has one.
    pub fn overlay_v6(&self, i: usize) -> anyhow::Result<IpAddr> {
        self.status(i)?
            .addresses
            .iter()
            .map(ipnet::IpNet::addr)
            .find(IpAddr::is_ipv6)
            .with_context(|| format!("{} has no overlay address yet", self.name(i)))
    }

    /// Every router's overlay IPv4 address, waiting up to `timeout` for
    /// the last one. `None` for a router that has none by then.
    pub fn overlay_addresses(&self, timeout: Duration) -> Vec<Option<IpAddr>> {
        let deadline = Instant::now() + timeout;
        let mut addresses: Vec<Option<IpAddr>> = vec![None; self.routers()];
        loop {
            for (i, slot) in addresses.iter_mut().enumerate() {
                if slot.is_none() {
                    *slot = self.overlay_v4(i).ok();
                }
            }
            if addresses.iter().all(Option::is_some) || Instant::now() > deadline {
                return addresses;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`Town::sweep`] up to [`SETTLED_SWEEPS`] times, a second apart,
    /// for the pairs that have not answered yet: which pairs reach now,
    /// on a loaded machine where one ping with a 0.5 s wait can be lost.
    pub fn sweep_settled(
        &self,
        addresses: &[Option<IpAddr>],
        pairs: &BTreeSet<(usize, usize)>,
    ) -> anyhow::Result<BTreeSet<(usize, usize)>> {
        let mut reached = BTreeSet::new();
        for round in 0..SETTLED_SWEEPS {
            if round > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            let left: BTreeSet<(usize, usize)> = pairs.difference(&reached).copied().collect();
            if left.is_empty() {
                break;
            }
            reached.extend(self.sweep(addresses, &left)?);
        }
        Ok(reached)
    }

    /// Pings every pair in `pairs` once, all at the same time (one shell
    /// per source router starting one ping per destination in parallel);
    /// returns the pairs that got a reply.
    pub fn sweep(
        &self,
        addresses: &[Option<IpAddr>],
        pairs: &BTreeSet<(usize, usize)>,
    ) -> anyhow::Result<BTreeSet<(usize, usize)>> {
        let mut shells = Vec::new();
        for from in 0..self.routers() {
            let targets: Vec<(usize, IpAddr)> = pairs
                .iter()
                .filter(|(f, _)| *f == from)
                .filter_map(|(_, to)| addresses[*to].map(|a| (*to, a)))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let script: String = targets
                .iter()
                .map(|(to, a)| {
                    format!("(ping -n -q -c 1 -W {PING_WAIT} {a} >/dev/null 2>&1 && echo {to}) & ")
                })
                .chain(std::iter::once("wait".to_owned()))
                .collect();
            let child = Command::new("ip")
                .args(["netns", "exec", &self.lab.ns(self.name(from)), "sh", "-c"])
                .arg(script)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a ping sweep")?;
            shells.push((from, child));
        }
        let mut reached = BTreeSet::new();
        for (from, child) in shells {
            let out = child.wait_with_output()?;
            for to in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|w| w.parse::<usize>().ok())
            {
                reached.insert((from, to));
            }
        }
        Ok(reached)
    }

    /// Waits until every pair among `routers` has reached each other once
    /// (sweeping the pairs not yet seen); returns how long that took, or
    /// fails after `timeout` naming the pairs left. Overlay addresses are
    /// asked for as they come (a router that has not enrolled has none).
    pub fn wait_all_reach(
        &self,
        routers: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<(Duration, Vec<Option<IpAddr>>)> {
        let started = Instant::now();
        let mut pending: BTreeSet<(usize, usize)> = routers
            .iter()
            .flat_map(|a| routers.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a != b)
            .collect();
        let mut addresses: Vec<Option<IpAddr>> = vec![None; self.routers()];
        loop {
            for i in routers {
                if addresses[*i].is_none() {
                    addresses[*i] = self.overlay_v4(*i).ok();
                }
            }
            let reached = self.sweep(&addresses, &pending)?;
            let before = pending.len();
            pending.retain(|p| !reached.contains(p));
            if pending.len() != before && !pending.is_empty() {
                let left: Vec<String> = pending
                    .iter()
                    .take(8)
                    .map(|(a, b)| format!("{}→{}", self.name(*a), self.name(*b)))
                    .collect();
                eprintln!(
                    "town: {:5.1} s: {} pairs left ({}…)",
                    started.elapsed().as_secs_f64(),
                    pending.len(),
                    left.join(" ")
                );
            }
            if pending.is_empty() {
                return Ok((started.elapsed(), addresses));
            }
            if crate::failover::runner::interrupted() {
                bail!("interrupted");
            }
            if started.elapsed() > timeout {
                let names: Vec<String> = pending
                    .iter()
                    .take(20)
                    .map(|(a, b)| format!("{}→{}", self.name(*a), self.name(*b)))
                    .collect();
                bail!(
                    "{} pairs still do not reach each other after {timeout:?}: {}",
                    pending.len(),
                    names.join(" ")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The router whose agent has WireGuard key `key` (as status shows it).
    pub fn router_with_key(&self, key: &str) -> Option<usize> {
        (0..self.routers()).find(|i| self.status(*i).is_ok_and(|s| s.engine.public_key == key))
    }

    /// Router `i`'s status and the index of its most specific route to
    /// `destination` in it.
    fn route(&self, i: usize, destination: IpAddr) -> anyhow::Result<(AgentStatus, usize)> {
        let status = self.status(i)?;
        let route = (0..status.engine.routes.len())
            .filter(|k| status.engine.routes[*k].prefix.contains(&destination))
            .max_by_key(|k| status.engine.routes[*k].prefix.prefix_len())
            .with_context(|| format!("{} has no route to {destination}", self.name(i)))?;
        Ok((status, route))
    }

    /// How many next hops (the primary and its loop-free alternates)
    /// router `i` holds for `destination`.
    pub fn next_hops(&self, i: usize, destination: IpAddr) -> anyhow::Result<usize> {
        let (status, route) = self.route(i, destination)?;
        Ok(status.engine.routes[route].via.len())
    }

    /// Router `i`'s route to `destination` and its links, one line, for an
    /// error that says why a route has no alternate.
    pub fn route_summary(&self, i: usize, destination: IpAddr) -> String {
        let (status, route) = match self.route(i, destination) {
            Ok(found) => found,
            Err(err) => return format!("{}: {err:#}", self.name(i)),
        };
        let route = &status.engine.routes[route];
        let links: Vec<String> = status
            .engine
            .links
            .iter()
            .map(|l| {
                let peer = self
                    .router_with_key(&l.peer)
                    .map_or_else(|| l.peer.clone(), |r| self.name(r).to_owned());
                format!("{}→{peer} {} rtt {:?} µs", l.name, l.state, l.rtt_us)
            })
            .collect();
        format!(
            "{}'s route {} via {:?} (active {:?}); links: {}",
            self.name(i),
            route.prefix,
            route.via,
            route.active,
            links.join(", ")
        )
    }

    /// The neighbour router `i` forwards to for `destination` now.
    pub fn next_hop(&self, i: usize, destination: IpAddr) -> anyhow::Result<usize> {
        let (status, route) = self.route(i, destination)?;
        let link = status.engine.routes[route]
            .active
            .as_ref()
            .with_context(|| format!("{}'s route to {destination} is down", self.name(i)))?;
        let peer = status
            .engine
            .links
            .iter()
            .find(|l| &l.name == link)
            .map(|l| l.peer.clone())
            .with_context(|| format!("{} has no link {link}", self.name(i)))?;
        self.router_with_key(&peer)
            .with_context(|| format!("no router has key {peer}"))
    }

    /// Writes every router's status as JSON into the lab's directory
    /// (`status-<phase>-<router>.json`), for a post-mortem with `--keep`.
    pub fn dump_status(&self, phase: &str) {
        for i in 0..self.routers() {
            if let Ok(status) = self.status(i)
                && let Ok(json) = serde_json::to_string_pretty(&status)
            {
                let path = self
                    .dir()
                    .join(format!("status-{phase}-{}.json", self.name(i)));
                let _ = std::fs::write(path, json);
            }
        }
    }

    /// Counts `needle` in router `i`'s log.
    pub fn log_count(&self, i: usize, needle: &str) -> usize {
        self.log(i).matches(needle).count()
    }

    /// Whether the state file of router `i` exists.
    pub fn has_state_file(&self, i: usize) -> bool {
        self.path(i, "state").is_file()
    }

    /// The logs of `routers`, for a failure message.
    pub fn logs(&self, routers: &[usize]) -> String {
        routers
            .iter()
            .map(|i| format!("--- {}:\n{}", self.name(*i), tail(&self.log(*i), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The directory with configs, keys, state files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The namespace of cell `k`.
pub fn cell_name(cell: usize) -> String {
    format!("cell{cell}")
}

/// A router's mesh interface into its `k`-th cell.
pub fn mesh_interface(k: usize) -> String {
    format!("mesh{k}")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
