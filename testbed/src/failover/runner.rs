//! One failover run: build the namespace lab from a topology, start one
//! routing system on it, wait until every probe flow delivers, play the
//! scenario while the probes run, and measure what each event cost.
//!
//! Teardown is by ownership: a [`Running`] lab closes the probes' stdin
//! (they exit), kills every daemon by its own pid, then removes the
//! namespaces, whether the run succeeds, fails or is interrupted (Ctrl-C
//! sets [`interrupted`], which every wait checks).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::files::{Action, LabTopology, Scenario};
use super::inject;
use super::probe::{self, now_ns, ns_to_ms, window_stats};
use super::report::{EventReport, FlowReport, RunReport, WindowReport};
use super::systems::{Daemon, Plan, System};
use crate::lab::Lab;
use crate::mesh::overlay_v4;
use crate::netns_mesh::VethUnderlay;

/// How long a system may take to deliver every flow after it starts:
/// babeld with default timers (4 s hellos) needs several rounds.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the kernel-routing systems may take to settle on the path
/// freimesh's static routes use (the scenario's cuts are placed on it).
const PATH_TIMEOUT: Duration = Duration::from_secs(20);
/// babeld sometimes keeps the first route it heard although a cheaper one
/// came later (it reconsiders a route only when its metric changes, and a
/// new route's smoothed metric starts high): a lab that settled on the
/// other path is started again, up to this many times.
const PATH_ATTEMPTS: u32 = 3;
/// A failure should hit a network in steady state, not one still settling
/// from its start: OSPF may not originate a new router LSA within 5 s
/// (MinLSInterval) of the last one, which the adjacencies coming up just
/// did, and babeld's smoothed metrics take seconds to settle.
const STEADY_STATE_WAIT: Duration = Duration::from_secs(6);
/// First UDP port of the probe flows (flow `i` uses `PROBE_PORT + i`).
const PROBE_PORT: u16 = 40_000;
/// Time for the receivers to bind before the senders start, and for the
/// last probes in flight to land after they stop.
const PROBE_SETTLE: Duration = Duration::from_millis(300);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<()> = OnceLock::new();

/// Installs (once) a Ctrl-C handler that sets the interrupted flag instead
/// of killing the runner, so the lab is torn down in order.
pub fn install_ctrl_c() {
    HANDLER.get_or_init(|| {
        std::thread::spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
                eprintln!("freimesh-testbed: interrupted, tearing the lab down");
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        });
    });
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn check_interrupt() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps until `deadline`, waking to check for Ctrl-C.
fn sleep_until(deadline: Instant) -> anyhow::Result<()> {
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// A lab with a routing system running. Fields drop in order: probes,
/// daemons, then the lab (namespaces), then the files.
#[derive(Debug)]
struct Running {
    probes: Vec<Child>,
    daemons: Vec<Option<Daemon>>,
    plan: Plan,
    lab: Lab,
    dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing stdin stops a probe; wait so none outlives its namespace.
        for mut child in self.probes.drain(..) {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Runs `scenario` on `topo` with `system`; `probe_binary` is the
/// `freimesh-testbed` executable that provides `probe-send`/`probe-recv`.
pub fn run(
    topo: &LabTopology,
    scenario: &Scenario,
    system: &System,
    probe_binary: &Path,
) -> anyhow::Result<RunReport> {
    system.check_installed()?;
    let mut attempt = 1;
    let (mut lab, converged_ms, path_ok) = loop {
        let started = Instant::now();
        let lab = start(topo, system)?;
        wait_flows(&lab, topo).with_context(|| {
            let logs: Vec<String> = (0..topo.topology.names.len())
                .map(|n| log_tail(&lab.plan.log(topo.name(n))))
                .collect();
            format!(
                "{}: flows never delivered\n{}",
                system.label(),
                logs.join("\n")
            )
        })?;
        let converged_ms = started.elapsed().as_secs_f64() * 1e3;
        let path_ok = !system.kernel_forwards() || wait_paths(&lab, topo)?;
        if path_ok || attempt == PATH_ATTEMPTS {
            break (lab, converged_ms, path_ok);
        }
        eprintln!(
            "freimesh-testbed: {} settled on another path (attempt {attempt} of {PATH_ATTEMPTS}); starting the lab again",
            system.label()
        );
        attempt += 1;
    };
    if !path_ok {
        eprintln!(
            "freimesh-testbed: warning: {} does not use the expected first hop; the scenario may miss its path",
            system.label()
        );
    }
    sleep_until(Instant::now() + STEADY_STATE_WAIT)?;
    let (t0, events) = play(&mut lab, topo, scenario, probe_binary)?;
    let mut flows = Vec::new();
    for (i, flow) in topo.flows.iter().enumerate() {
        let sent = probe::read_sent(&lab.dir.path().join(format!("flow{i}.sent")))?;
        let received = probe::read_received(&lab.dir.path().join(format!("flow{i}.recv")))?;
        let first = sent.first().copied().unwrap_or(t0);
        let end = events.last().map_or(t0, |e| e.applied_ns);
        let mut windows = Vec::new();
        let mut start = first;
        let mut label = "start".to_owned();
        for ev in &events {
            windows.push(WindowReport {
                event: label,
                failure: false,
                stats: window_stats(&sent, &received, start, ev.applied_ns.max(start)),
            });
            start = ev.applied_ns.max(start);
            label = ev.action.clone();
        }
        for (w, ev) in windows.iter_mut().skip(1).zip(&events) {
            w.failure = ev.failure;
        }
        flows.push(FlowReport {
            from: topo.name(flow.from).to_owned(),
            to: topo.name(flow.to).to_owned(),
            windows,
            total: window_stats(&sent, &received, first, end),
        });
    }
    Ok(RunReport {
        system: system.label(),
        scenario: scenario.name.clone(),
        converged_ms,
        path_ok,
        events: events
            .iter()
            .map(|e| EventReport {
                action: e.action.clone(),
                at_ms: e.at_ms,
                applied_ms: ns_to_ms(e.applied_ns.saturating_sub(t0)),
                took_ms: e.took_ms,
            })
            .collect(),
        flows,
        error: None,
    })
}

/// Builds the namespaces and links, then starts the system on every node.
fn start(topo: &LabTopology, system: &System) -> anyhow::Result<Running> {
    let mut lab = Lab::new("fo");
    for (i, name) in topo.topology.names.iter().enumerate() {
        lab.add_namespace(name)?;
        let mut sysctls = vec![
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ];
        if system.kernel_forwards() {
            sysctls.extend([
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ]);
        }
        let mut args = vec!["sysctl", "-qw"];
        args.extend(&sysctls);
        lab.exec(name, &args)?;
        if system.kernel_forwards() {
            let addr = format!("{}/32", overlay_v4(i));
            lab.exec(name, &["ip", "addr", "add", &addr, "dev", "lo"])?;
        }
    }
    let underlay = VethUnderlay::new(topo.topology.links.clone());
    for (k, &(a, b)) in topo.topology.links.iter().enumerate() {
        let (na, nb) = (topo.name(a), topo.name(b));
        lab.veth(
            na,
            &format!("to-{nb}"),
            &format!("{}/24", underlay.address(k, a)),
            nb,
            &format!("to-{na}"),
            &format!("{}/24", underlay.address(k, b)),
        )?;
    }
    let mut dir = tempfile::Builder::new()
        .prefix("freimesh-failover-")
        .tempdir()?;
    // FREIMESH_LAB_KEEP=1 keeps configs, logs and probe records for a look
    // afterwards.
    if std::env::var_os("FREIMESH_LAB_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!(
            "freimesh-testbed: keeping the lab's files in {}",
            dir.path().display()
        );
    }
    let plan = Plan::write(system, dir.path(), topo, &underlay)?;
    let mut running = Running {
        probes: Vec::new(),
        daemons: Vec::new(),
        plan,
        lab,
        dir,
    };
    for node in 0..topo.topology.names.len() {
        let daemon = running.plan.start(&running.lab, topo, node)?;
        running.daemons.push(Some(daemon));
    }
    for node in 0..topo.topology.names.len() {
        let daemon = running.daemons[node]
            .as_mut()
            .context("daemon missing after start")?;
        running
            .plan
            .wait_started(daemon, node)
            .with_context(|| log_tail(&running.plan.log(topo.name(node))))?;
    }
    Ok(running)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    format!("{} (last lines):\n{tail}", path.display())
}

/// Pings every flow's destination from its source overlay address until
/// each answers.
fn wait_flows(lab: &Running, topo: &LabTopology) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    for flow in &topo.flows {
        let (src, dst) = (
            overlay_v4(flow.from).to_string(),
            overlay_v4(flow.to).to_string(),
        );
        loop {
            check_interrupt()?;
            let out = lab.lab.try_exec(
                topo.name(flow.from),
                &["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", &src, &dst],
            )?;
            if out.status.success() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} → {} not reachable within {CONVERGE_TIMEOUT:?}",
                    topo.name(flow.from),
                    topo.name(flow.to)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// For kernel-routing systems: waits until every flow leaves its source
/// through the first hop freimesh's static routes use. `false` if that
/// never happens.
fn wait_paths(lab: &Running, topo: &LabTopology) -> anyhow::Result<bool> {
    let deadline = Instant::now() + PATH_TIMEOUT;
    loop {
        check_interrupt()?;
        let mut ok = true;
        for flow in &topo.flows {
            let routes = topo.topology.routes_from(flow.from);
            let Some(&hop) = routes.get(&flow.to).and_then(|h| h.first()) else {
                continue;
            };
            let dst = overlay_v4(flow.to).to_string();
            let out = lab
                .lab
                .try_exec(topo.name(flow.from), &["ip", "-4", "route", "get", &dst])?;
            let text = String::from_utf8_lossy(&out.stdout);
            ok &= text.contains(&format!("dev to-{} ", topo.name(hop)));
        }
        if ok {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An event as it happened.
#[derive(Debug)]
struct Played {
    action: String,
    failure: bool,
    at_ms: u64,
    applied_ns: u64,
    took_ms: f64,
}

/// Starts the probes, plays the events, stops the probes; returns the
/// start time and what happened when.
fn play(
    lab: &mut Running,
    topo: &LabTopology,
    scenario: &Scenario,
    probe_binary: &Path,
) -> anyhow::Result<(u64, Vec<Played>)> {
    let dir = lab.dir.path().to_owned();
    let probe = |node: usize, args: Vec<String>| -> anyhow::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", &lab.lab.ns(topo.name(node))])
            .arg(probe_binary)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} {}", probe_binary.display(), args[0]))
    };
    let mut receivers = Vec::new();
    for (i, flow) in topo.flows.iter().enumerate() {
        let port = PROBE_PORT + u16::try_from(i)?;
        let out: PathBuf = dir.join(format!("flow{i}.recv"));
        receivers.push(probe(
            flow.to,
            vec![
                "probe-recv".into(),
                "--bind".into(),
                format!("{}:{port}", overlay_v4(flow.to)),
                "--out".into(),
                out.to_string_lossy().into_owned(),
            ],
        )?);
    }
    std::thread::sleep(PROBE_SETTLE);
    let t0 = now_ns();
    let started = Instant::now();
    let mut senders = Vec::new();
    for (i, flow) in topo.flows.iter().enumerate() {
        let port = PROBE_PORT + u16::try_from(i)?;
        senders.push(probe(
            flow.from,
            vec![
                "probe-send".into(),
                "--from".into(),
                format!("{}:0", overlay_v4(flow.from)),
                "--to".into(),
                format!("{}:{port}", overlay_v4(flow.to)),
                "--rate".into(),
                flow.rate.to_string(),
                "--duration-ms".into(),
                scenario.end_ms().to_string(),
                "--out".into(),
                dir.join(format!("flow{i}.sent"))
                    .to_string_lossy()
                    .into_owned(),
            ],
        )?);
    }
    // Senders first: they stop before the receivers when dropped.
    lab.probes.extend(senders);
    lab.probes.extend(receivers);
    let mut carrier_cut = vec![false; topo.links.len()];
    let mut played = Vec::new();
    for event in &scenario.events {
        sleep_until(started + Duration::from_millis(event.at_ms))?;
        let applied_ns = now_ns();
        let begun = Instant::now();
        apply(lab, topo, event.action, &mut carrier_cut)
            .with_context(|| format!("applying {}", event.action.describe(topo)))?;
        played.push(Played {
            action: event.action.describe(topo),
            failure: event.action.is_failure(),
            at_ms: event.at_ms,
            applied_ns,
            took_ms: begun.elapsed().as_secs_f64() * 1e3,
        });
    }
    // Senders stop on their own at the end; let the last probes land.
    let deadline = Instant::now() + Duration::from_secs(5);
    let n_senders = topo.flows.len();
    for sender in lab.probes.iter_mut().take(n_senders) {
        while sender.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(PROBE_SETTLE);
    for mut child in lab.probes.drain(..) {
        drop(child.stdin.take());
        let status = child.wait()?;
        if !status.success() {
            bail!("a probe failed ({status}); files in {}", dir.display());
        }
    }
    Ok((t0, played))
}

fn apply(
    lab: &mut Running,
    topo: &LabTopology,
    action: Action,
    carrier_cut: &mut [bool],
) -> anyhow::Result<()> {
    match action {
        Action::CutSilent(k) | Action::CutCarrier(k) | Action::Restore(k) => {
            let (a, b) = (topo.links[k].a, topo.links[k].b);
            let (na, nb) = (topo.name(a), topo.name(b));
            let (if_a, if_b) = (format!("to-{nb}"), format!("to-{na}"));
            match action {
                Action::CutSilent(_) => {
                    inject::nft_drop(&lab.lab, lab.dir.path(), na, &[&if_a], "cut")?;
                    inject::nft_drop(&lab.lab, lab.dir.path(), nb, &[&if_b], "cut")?;
                }
                Action::CutCarrier(_) => {
                    lab.lab.exec(na, &["ip", "link", "set", &if_a, "down"])?;
                    carrier_cut[k] = true;
                }
                _ if carrier_cut[k] => {
                    lab.lab.exec(na, &["ip", "link", "set", &if_a, "up"])?;
                    carrier_cut[k] = false;
                }
                _ => {
                    inject::nft_undrop(&lab.lab, lab.dir.path(), na, &[&if_a], "cut")?;
                    inject::nft_undrop(&lab.lab, lab.dir.path(), nb, &[&if_b], "cut")?;
                }
            }
        }
        Action::KillNode(n) => {
            let ifs = inject::node_interfaces(topo, n);
            let ifs: Vec<&str> = ifs.iter().map(String::as_str).collect();
            inject::nft_drop(&lab.lab, lab.dir.path(), topo.name(n), &ifs, "kill")?;
            if let Some(daemon) = lab.daemons[n].take() {
                daemon.kill();
            }
        }
        Action::RestartNode(n) => {
            let ifs = inject::node_interfaces(topo, n);
            let ifs: Vec<&str> = ifs.iter().map(String::as_str).collect();
            inject::nft_undrop(&lab.lab, lab.dir.path(), topo.name(n), &ifs, "kill")?;
            let mut daemon = lab.plan.start(&lab.lab, topo, n)?;
            lab.plan.wait_started(&mut daemon, n)?;
            lab.daemons[n] = Some(daemon);
        }
        Action::End => {}
    }
    Ok(())
}
