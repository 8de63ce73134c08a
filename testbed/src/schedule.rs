//! The demo's failures on a schedule: one round silently cuts a link on
//! the path the demo traffic takes, restores it, kills (SIGKILL) a transit
//! node and starts it again, one action per interval. The link and the
//! node are picked when the action comes, from the first node's active
//! route, so every action hits the path in use and the viewer sees a
//! failover arrive.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::mesh::PlannedNode;
use crate::process::{AgentProcess, wait_for_path};
use crate::relay::RelayedLoopback;
use crate::traffic::status;

/// What the schedule does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Cut,
    Restore,
    Kill,
    Restart,
}

const ROUND: [Step; 4] = [Step::Cut, Step::Restore, Step::Kill, Step::Restart];

/// The running mesh the schedule plays on.
pub struct FailureSchedule {
    pub nodes: Vec<PlannedNode>,
    pub agents: Vec<Option<AgentProcess>>,
    pub relays: RelayedLoopback,
    /// Where the demo traffic starts and where it goes.
    pub source: usize,
    pub target: IpAddr,
    pub interval: Duration,
    /// Where each action is reported (stdout, or a file under the TUI).
    pub out: Box<dyn std::io::Write + Send>,
    cut: Option<(usize, usize)>,
    killed: Option<usize>,
}

impl std::fmt::Debug for FailureSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureSchedule")
            .field("source", &self.source)
            .field("target", &self.target)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl FailureSchedule {
    pub fn new(
        nodes: Vec<PlannedNode>,
        agents: Vec<AgentProcess>,
        relays: RelayedLoopback,
        source: usize,
        target: IpAddr,
        interval: Duration,
        out: Box<dyn std::io::Write + Send>,
    ) -> Self {
        Self {
            nodes,
            agents: agents.into_iter().map(Some).collect(),
            relays,
            source,
            target,
            interval,
            out,
            cut: None,
            killed: None,
        }
    }

    /// Plays one round, waiting `interval` before each action; returns
    /// early (after undoing a cut or restarting a killed node) once `stop`
    /// is set.
    pub fn round(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        for step in ROUND {
            if !sleep_unless(stop, self.interval) {
                break;
            }
            self.play(step)?;
        }
        self.heal()
    }

    /// Rounds until `stop` is set. An action that cannot be played (say,
    /// the source has no live route at that moment) is reported and the
    /// schedule goes on: under the TUI nobody would see it end.
    pub fn run_until(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        while !stop.load(Ordering::SeqCst) {
            if let Err(err) = self.round(stop) {
                self.say(&format!("action failed, going on: {err:#}"));
                self.heal()?;
            }
        }
        Ok(())
    }

    /// Restores a cut link and restarts a killed node, if any.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        if self.cut.is_some() {
            self.play(Step::Restore)?;
        }
        if self.killed.is_some() {
            self.play(Step::Restart)?;
        }
        Ok(())
    }

    fn say(&mut self, line: &str) {
        let elapsed = utc_clock();
        let _ = writeln!(self.out, "[{elapsed}] {line}");
        let _ = self.out.flush();
    }

    fn play(&mut self, step: Step) -> anyhow::Result<()> {
        match step {
            Step::Cut => {
                let hop = self.next_hop()?;
                let relay = self
                    .relays
                    .relay(self.source, hop)
                    .context("the source's next hop is not a relayed link")?;
                relay.set_cut(true);
                self.cut = Some((self.source, hop));
                let line = format!(
                    "cut the link {}–{} silently (every packet dropped, no carrier loss)",
                    self.nodes[self.source].name, self.nodes[hop].name
                );
                self.say(&line);
            }
            Step::Restore => {
                if let Some((a, b)) = self.cut.take() {
                    if let Some(relay) = self.relays.relay(a, b) {
                        relay.set_cut(false);
                    }
                    let line = format!(
                        "restored the link {}–{}",
                        self.nodes[a].name, self.nodes[b].name
                    );
                    self.say(&line);
                }
            }
            Step::Kill => {
                let hop = self.next_hop()?;
                if let Some(agent) = self.agents[hop].take() {
                    agent.kill();
                }
                self.killed = Some(hop);
                let line = format!("killed {} (SIGKILL)", self.nodes[hop].name);
                self.say(&line);
            }
            Step::Restart => {
                if let Some(node) = self.killed.take() {
                    let n = &self.nodes[node];
                    let _ = std::fs::remove_file(&n.socket);
                    let agent = AgentProcess::start(&n.name, &n.config, &n.log, None)?;
                    self.agents[node] = Some(agent);
                    wait_for_path(&n.socket, Duration::from_secs(10))?;
                    let line = format!("restarted {}", n.name);
                    self.say(&line);
                }
            }
        }
        Ok(())
    }

    fn next_hop(&self) -> anyhow::Result<usize> {
        active_next_hop(&self.nodes, self.source, self.target)
    }

    /// Stops every agent (SIGTERM).
    pub fn stop_agents(self) -> anyhow::Result<()> {
        for agent in self.agents.into_iter().flatten() {
            agent.stop(Duration::from_secs(5))?;
        }
        Ok(())
    }
}

/// Sleeps `total` unless `stop` is set first; false if it was.
fn sleep_unless(stop: &AtomicBool, total: Duration) -> bool {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((deadline - Instant::now()).min(Duration::from_millis(100)));
    }
    !stop.load(Ordering::SeqCst)
}

/// `HH:MM:SS` UTC, for the schedule's lines.
fn utc_clock() -> String {
    let secs = crate::failover::probe::now_ns() / 1_000_000_000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// The neighbour (node index) `source` forwards to toward `target` now,
/// from its agent's status.
pub fn active_next_hop(
    nodes: &[PlannedNode],
    source: usize,
    target: IpAddr,
) -> anyhow::Result<usize> {
    let s = status(&nodes[source].socket)?;
    let prefix: ipnet::IpNet = target.into();
    let route = s
        .engine
        .routes
        .iter()
        .find(|r| r.prefix == prefix)
        .with_context(|| format!("no route toward {target}"))?;
    let link = route
        .active
        .as_deref()
        .with_context(|| format!("no live next hop toward {target}"))?;
    let peer = &s
        .engine
        .links
        .iter()
        .find(|l| l.name == link)
        .with_context(|| format!("no link {link}"))?
        .peer;
    nodes
        .iter()
        .position(|n| &n.public_key == peer)
        .with_context(|| format!("link {link} leads to no demo node"))
}
