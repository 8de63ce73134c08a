//! The whole-mesh simulator (`freimesh-testbed sim`): N agent engines,
//! their control paths and the controller core with its store, exchanging
//! real frames (encoded `AgentMsg`/`ControllerMsg`) and real engine
//! datagrams over simulated underlay links with seeded delay, loss and
//! cuts, all on one virtual clock: a binary-heap event queue, no sockets,
//! no threads, no tokio. A seed replays the same run exactly (the event
//! trace's digest is in the report).
//!
//! ```text
//!            frames (10 ms)                  datagrams (link delay, loss, cuts)
//!  SimController ◄──────────► AgentControl ── Engine ◄──────────────► Engine …
//!  (core + SQLite)             (per node)     (sim tunnels)
//! ```
//!
//! Engines use the simulator's sessions (`freimesh-agent` feature `sim`):
//! WireGuard's handshake and timers on the virtual clock, without crypto.
//! Everything else (liveness, failover, withdrawals, the controller's
//! routing, the agent's reconcile) is the production code.
//!
//! Every [`CHECK_EVERY`] the simulator traces every flow through the
//! engines' current next hops ([`check`]): a loop is counted, a broken flow
//! is timed until it is delivered again. At the end, after every failure
//! healed and the mesh settled, every flow must be delivered and every
//! agent's table must match routes computed from scratch.

mod agent_control;
pub mod check;
mod hub;
mod queue;
mod rng;
pub mod scenario;
mod world;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use freimesh_controller::routing::city;
use serde::Serialize;

use self::check::Trace;
use self::queue::{Nanos, millis, nanos};
use self::rng::SimRng;
pub use self::scenario::{Action, SCENARIOS};
use self::world::{Event, World};

/// How often every flow is traced.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Longest start-up before the first failure: agents start, enrol,
/// handshake and receive their routes; failures begin as soon as the mesh
/// has settled for [`SETTLED_GRACE`].
pub const MAX_WARM_UP: Duration = Duration::from_secs(120);
/// Longest quiet time after the failures before the final checks
/// (hold-downs of flapped links reach a minute); the run ends earlier once
/// the mesh has settled for [`SETTLED_GRACE`].
pub const MAX_SETTLE: Duration = Duration::from_secs(75);
/// How long the mesh must stay settled before the final checks.
pub const SETTLED_GRACE: Duration = Duration::from_secs(2);
/// Global repair is looked for every this many checks (it asks every
/// engine for its link states).
const SETTLED_EVERY_CHECKS: u64 = 5;
/// Flows traced: pairs of random nodes (all pairs are too many at scale).
pub const MAX_FLOWS: usize = 200;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    /// Virtual time with failures (warm-up and settling come on top).
    pub duration: Duration,
    pub seed: u64,
    pub scenario: String,
    /// One failure episode this often (plus up to half as much, seeded).
    pub failure_every: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 100,
            duration: Duration::from_secs(60),
            seed: 1,
            scenario: "mixed".into(),
            failure_every: Duration::from_secs(4),
        }
    }
}

/// The outcome of a run (what `--json` prints).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimReport {
    pub seed: u64,
    pub scenario: String,
    pub nodes: usize,
    pub links: usize,
    /// Virtual seconds simulated, warm-up and settling included.
    pub virtual_s: u64,
    pub wall_s: f64,
    pub peak_rss_kib: u64,
    pub flows: usize,
    /// Flows that broke at some point and were delivered again.
    pub flows_recovered: u64,
    /// Flows with a path at the end that were not delivered.
    pub flows_unrecovered: u64,
    /// Checks at which some flow's path looped.
    pub loops: u64,
    /// The first loop seen: `(virtual ms, path of node indices)`.
    pub first_loop: Option<(u64, Vec<usize>)>,
    /// Longest break of a flow repaired without a route change from the
    /// controller and before any other action (failure to delivery, at
    /// check resolution).
    pub worst_local_repair_ms: u64,
    /// Longest time from a failure (cut, crash, drain) until the
    /// controller's links matched both ends' liveness and every frame it
    /// sent was applied (at the resolution of [`SETTLED_EVERY_CHECKS`]).
    pub worst_global_repair_ms: u64,
    pub failures: usize,
    pub datagrams: u64,
    pub datagrams_lost: u64,
    pub frames: u64,
    pub events: u64,
    pub ttl_expired: u64,
    /// Engine changes from the agents' control paths the engines refused.
    pub refused_changes: u64,
    /// After settling: agents' host routes that differ from a recomputation
    /// from scratch, and controller links that differ from the underlay.
    pub route_mismatches: u64,
    pub link_mismatches: u64,
    /// Virtual and wall seconds until the mesh first settled (start-up:
    /// every agent enrolled, linked and routed).
    pub warm_up_virtual_s: f64,
    pub warm_up_wall_s: f64,
    /// FNV-1a over the event trace: equal seeds give equal digests.
    pub trace_digest: String,
    #[serde(skip)]
    pub wall: Duration,
}

impl SimReport {
    /// Whether every assert held.
    pub fn passed(&self) -> bool {
        self.loops == 0
            && self.flows_unrecovered == 0
            && self.route_mismatches == 0
            && self.link_mismatches == 0
    }
}

#[derive(Debug, Clone)]
struct Flow {
    src: usize,
    dst: usize,
    broken_since: Option<Nanos>,
    /// The last trace, valid while the mesh's forwarding epoch
    /// ([`World::forwarding_epoch`]) is [`Stats::traced_at`].
    traced: Option<Trace>,
}

/// `freimesh-testbed sim`: runs, prints the report (one JSON object with
/// `json`, else a summary) and says whether every assert held. A failed
/// run names its seed so it can be replayed.
pub fn run_cli(config: &SimConfig, json: bool) -> Result<bool> {
    let report = run(config)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "sim: {} nodes, {} links, {} s virtual in {:.1} s wall, peak RSS {} MiB",
            report.nodes,
            report.links,
            report.virtual_s,
            report.wall_s,
            report.peak_rss_kib / 1024
        );
        println!(
            "flows {} (recovered {}, unrecovered {}), loops {}, worst local repair {} ms, worst global repair {} ms",
            report.flows,
            report.flows_recovered,
            report.flows_unrecovered,
            report.loops,
            report.worst_local_repair_ms,
            report.worst_global_repair_ms
        );
        println!(
            "failures {}, datagrams {} ({} lost), frames {}, route mismatches {}, link mismatches {}, digest {}",
            report.failures,
            report.datagrams,
            report.datagrams_lost,
            report.frames,
            report.route_mismatches,
            report.link_mismatches,
            report.trace_digest
        );
    }
    if !report.passed() {
        eprintln!(
            "sim FAILED with seed {} (scenario {}, {} nodes): replay with the same arguments",
            report.seed, report.scenario, report.nodes
        );
    }
    Ok(report.passed())
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> Result<SimReport> {
    let mut sim = Simulation::new(config)?;
    sim.run_to_end()?;
    sim.report()
}

/// A simulation in progress (tests drive it step by step).
#[derive(Debug)]
pub struct Simulation {
    pub world: World,
    config: SimConfig,
    flows: Vec<Flow>,
    failures: usize,
    /// The schedule, relative to the end of the warm-up.
    actions: Vec<(Nanos, Action)>,
    /// Virtual time and wall time the warm-up took.
    warm_up: Option<(Nanos, Duration)>,
    last_action: Nanos,
    stats: Stats,
    started: std::time::Instant,
}

#[derive(Debug, Default)]
struct Stats {
    flows_recovered: u64,
    loops: u64,
    first_loop: Option<(u64, Vec<usize>)>,
    worst_local: Nanos,
    worst_global: Nanos,
    /// The forwarding epoch the flows' cached traces belong to.
    traced_at: Option<world::ForwardingEpoch>,
}

impl Simulation {
    pub fn new(config: &SimConfig) -> Result<Self> {
        if config.nodes < 2 {
            bail!("a mesh needs at least 2 nodes");
        }
        let started = std::time::Instant::now();
        let mesh = city::city(config.nodes, config.seed);
        let mut world = World::new(&mesh, config.seed)?;
        let pairs: Vec<(usize, usize)> = world.links.iter().map(|l| (l.a, l.b)).collect();
        let (start, end) = (0, nanos(config.duration));
        let Some(actions) = scenario::schedule(
            &config.scenario,
            config.seed,
            config.nodes,
            &pairs,
            start,
            end,
            config.failure_every,
        ) else {
            bail!(
                "unknown scenario {:?} (known: {})",
                config.scenario,
                SCENARIOS.join(", ")
            );
        };
        let failures = actions.len();
        world.queue.push(nanos(CHECK_EVERY), Event::Check);
        let mut rng = SimRng::new(config.seed ^ 0xF10E);
        let flows = (0..MAX_FLOWS.min(config.nodes * (config.nodes - 1)))
            .map(|_| {
                let src = rng.index(config.nodes);
                let mut dst = rng.index(config.nodes - 1);
                if dst >= src {
                    dst += 1;
                }
                Flow {
                    src,
                    dst,
                    broken_since: None,
                    traced: None,
                }
            })
            .collect();
        Ok(Self {
            world,
            config: config.clone(),
            flows,
            failures,
            actions,
            warm_up: None,
            last_action: 0,
            stats: Stats::default(),
            started,
        })
    }

    /// Runs to the end: the warm-up until the mesh has settled, the
    /// failures, then until the mesh has settled again (every failure
    /// healed, the controller's links those of the underlay, no frame in
    /// flight) or [`MAX_SETTLE`] passed.
    pub fn run_to_end(&mut self) -> Result<()> {
        self.run_until_settled(MAX_WARM_UP)?;
        self.warm_up = Some((self.world.now, self.started.elapsed()));
        let start = self.world.now + nanos(SETTLED_GRACE);
        for (at, action) in std::mem::take(&mut self.actions) {
            self.world.schedule(start + at, action);
        }
        self.run_until(start + nanos(self.config.duration))?;
        self.run_until_settled(MAX_SETTLE)
    }

    /// Runs several scenarios one after the other on one mesh, which warms
    /// up once: each gets the configured duration and its own report
    /// (counts start afresh; the mesh settles between two).
    pub fn run_scenario_set(&mut self, names: &[&str]) -> Result<Vec<SimReport>> {
        if self.warm_up.is_none() {
            self.run_until_settled(MAX_WARM_UP)?;
            self.warm_up = Some((self.world.now, self.started.elapsed()));
        }
        let pairs: Vec<(usize, usize)> = self.world.links.iter().map(|l| (l.a, l.b)).collect();
        let mut reports = Vec::new();
        for name in names {
            let Some(actions) = scenario::schedule(
                name,
                self.config.seed,
                self.config.nodes,
                &pairs,
                0,
                nanos(self.config.duration),
                self.config.failure_every,
            ) else {
                bail!(
                    "unknown scenario {name:?} (known: {})",
                    SCENARIOS.join(", ")
                );
            };
            self.config.scenario = (*name).to_owned();
            self.failures = actions.len();
            self.stats = Stats::default();
            for f in &mut self.flows {
                f.broken_since = None;
            }
            let start = self.world.now + nanos(SETTLED_GRACE);
            for (at, action) in actions {
                self.world.schedule(start + at, action);
            }
            self.run_until(start + nanos(self.config.duration))?;
            self.run_until_settled(MAX_SETTLE)?;
            reports.push(self.report()?);
        }
        Ok(reports)
    }

    /// Runs until the mesh has stayed settled for [`SETTLED_GRACE`] with
    /// no scenario action left, or for at most `limit`.
    fn run_until_settled(&mut self, limit: Duration) -> Result<()> {
        let last = self.world.now + nanos(limit);
        let mut settled_since = None;
        while self.world.now < last {
            self.run_until(self.world.now + nanos(CHECK_EVERY * 5))?;
            let quiet = self.world.queue_has_no_actions()
                && check::settled(&self.world)
                && check::matches_underlay(&self.world);
            if !quiet {
                settled_since = None;
            } else if self.world.now - *settled_since.get_or_insert(self.world.now)
                >= nanos(SETTLED_GRACE)
            {
                break;
            }
        }
        Ok(())
    }

    /// Runs every event up to virtual time `until`.
    pub fn run_until(&mut self, until: Nanos) -> Result<()> {
        let Self {
            world,
            flows,
            stats,
            last_action,
            ..
        } = self;
        let mut check = |w: &mut World| {
            check_flows(w, flows, stats, last_action);
            w.queue.push(w.now + nanos(CHECK_EVERY), Event::Check);
        };
        world.run_until(until, &mut check)
    }

    /// The destination address of a flow toward `dst`: its IPv4 overlay
    /// address, once welcomed.
    pub fn address_of(world: &World, dst: usize) -> Option<IpAddr> {
        world.nodes[dst]
            .control
            .addresses()?
            .iter()
            .find(|a| a.addr().is_ipv4())
            .map(|a| a.addr())
    }

    /// Counts a loop as the flow checks would (tests inject one).
    pub fn check_now(&mut self) {
        check_flows(
            &mut self.world,
            &mut self.flows,
            &mut self.stats,
            &mut self.last_action,
        );
    }

    pub fn loops(&self) -> u64 {
        self.stats.loops
    }

    /// The traced flows as `(source, destination)` node indices.
    pub fn flows(&self) -> Vec<(usize, usize)> {
        self.flows.iter().map(|f| (f.src, f.dst)).collect()
    }

    /// Overrides node `node`'s route toward `dst` with the single next hop
    /// `via` (a neighbour), as a broken controller could: tests use it to
    /// make a loop and see that the checks catch it.
    pub fn force_route(&mut self, node: usize, dst: usize, via: usize) -> Result<()> {
        let Some(addr) = Self::address_of(&self.world, dst) else {
            bail!("node {dst} has no address yet");
        };
        let via_key = self.world.nodes[via].key;
        let Some(engine) = self.world.nodes[node].engine.as_mut() else {
            bail!("node {node} is not running");
        };
        let Some(link) = engine.link_by_peer(&via_key) else {
            bail!("node {via} is not a neighbour of node {node}");
        };
        engine.insert_route(
            ipnet::IpNet::from(addr),
            vec![freimesh_agent::core::Hop::Link(link)],
        )?;
        Ok(())
    }

    pub fn report(&self) -> Result<SimReport> {
        let world = &self.world;
        let mut unrecovered = 0;
        for f in &self.flows {
            if world.nodes[f.src].engine.is_none() || world.nodes[f.dst].engine.is_none() {
                continue;
            }
            let has_path = check::reachable(world, f.src)[f.dst];
            let delivered = Self::address_of(world, f.dst).is_some_and(|a| {
                matches!(
                    check::trace(world, f.src, f.dst, a),
                    Trace::Delivered { .. }
                )
            });
            if has_path && !delivered {
                unrecovered += 1;
            }
        }
        let convergence = check::convergence(world);
        let wall = self.started.elapsed();
        Ok(SimReport {
            seed: self.config.seed,
            scenario: self.config.scenario.clone(),
            nodes: self.config.nodes,
            links: world.links.len(),
            virtual_s: world.now / 1_000_000_000,
            refused_changes: world.counters.refused_changes,
            wall_s: (wall.as_secs_f64() * 1000.0).round() / 1000.0,
            peak_rss_kib: peak_rss_kib(),
            flows: self.flows.len(),
            flows_recovered: self.stats.flows_recovered,
            flows_unrecovered: unrecovered,
            loops: self.stats.loops,
            first_loop: self.stats.first_loop.clone(),
            worst_local_repair_ms: millis(self.stats.worst_local),
            worst_global_repair_ms: millis(self.stats.worst_global),
            failures: self.failures,
            datagrams: world.counters.datagrams,
            datagrams_lost: world.counters.datagrams_lost,
            frames: world.counters.frames,
            events: world.counters.events,
            ttl_expired: world.drops(freimesh_agent::core::DropReason::TtlExpired),
            route_mismatches: convergence.route_mismatches,
            link_mismatches: convergence.link_mismatches,
            warm_up_virtual_s: self
                .warm_up
                .map_or(0.0, |(v, _)| Duration::from_nanos(v).as_secs_f64()),
            warm_up_wall_s: self
                .warm_up
                .map_or(0.0, |(_, w)| (w.as_secs_f64() * 1000.0).round() / 1000.0),
            trace_digest: format!("{:016x}", world.digest),
            wall,
        })
    }
}

fn check_flows(world: &mut World, flows: &mut [Flow], stats: &mut Stats, last_action: &mut Nanos) {
    let now = world.now;
    if let Some(at) = world.last_action {
        *last_action = at;
    }
    if let Some(failed) = world.pending_failure
        && (now / nanos(CHECK_EVERY)).is_multiple_of(SETTLED_EVERY_CHECKS)
        && check::settled(world)
    {
        stats.worst_global = stats.worst_global.max(now - failed);
        world.pending_failure = None;
    }
    // Between two checks most often no table, link or node changed: the
    // traces would come out the same, so the last ones are reused.
    let epoch = world.forwarding_epoch();
    if stats.traced_at != Some(epoch) {
        stats.traced_at = Some(epoch);
        for f in flows.iter_mut() {
            f.traced = None;
        }
    }
    let mut looped = false;
    for f in flows.iter_mut() {
        if world.nodes[f.src].engine.is_none() || world.nodes[f.dst].engine.is_none() {
            f.broken_since = None;
            continue;
        }
        let Some(addr) = Simulation::address_of(world, f.dst) else {
            continue;
        };
        let traced = f
            .traced
            .get_or_insert_with(|| check::trace(world, f.src, f.dst, addr))
            .clone();
        match traced {
            Trace::Delivered { .. } => {
                if let Some(since) = f.broken_since.take() {
                    stats.flows_recovered += 1;
                    // Local: no route from the controller and no other
                    // action (a restore, a restart) since the break.
                    let local = world.last_route_change.is_none_or(|t| t < since)
                        && world.last_action == Some(since);
                    if local {
                        stats.worst_local = stats.worst_local.max(now - since);
                    }
                }
            }
            Trace::Loop(path) => {
                looped = true;
                if stats.first_loop.is_none() {
                    stats.first_loop = Some((millis(now), path));
                }
                f.broken_since.get_or_insert(*last_action);
            }
            Trace::Lost => {
                // Before the first welcome a flow is not "broken".
                if *last_action > 0 {
                    f.broken_since.get_or_insert(*last_action);
                }
            }
        }
    }
    if looped {
        stats.loops += 1;
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
