//! The demo: a mesh of userspace agents on this machine's loopback, no root
//! needed.
//!
//! By default a controller (embedded SQLite) runs beside six agents in a
//! ladder, `a b c` over `d e f`. Each agent enrols with its own one-time
//! join token, reports its neighbours as candidates, and gets its links and
//! routes (with loop-free alternates) from the controller. `f` exposes a TCP
//! echo service and `a` forwards a local port to it, so the echo crosses
//! three WireGuard hops. `--static` runs the controller-less variant: four
//! agents `a — b — c — d` in a line with routes from their config files.
//!
//! The controller serves its admin API on loopback, with an operator token
//! the demo creates. Every link runs through a [`crate::relay`] the demo
//! owns, so after the checks it can play failures on a schedule
//! ([`crate::schedule`]): with a terminal and `freimesh-tui` built, the
//! TUI runs in the foreground while the failures play in the background
//! until the TUI exits; otherwise (pipes, CI, `--no-tui`) one round plays
//! and the demo prints the events the API reported.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use freimesh_proto::api::EventKind;

use crate::api::{self, ApiClient};
use crate::controller::ControllerProcess;
use crate::mesh::{self, Backend, ControllerPlan, Loopback};
use crate::process::{AgentProcess, start_all, tui_binary};
use crate::relay::RelayedLoopback;
use crate::schedule::FailureSchedule;
use crate::topology::Topology;
use crate::traffic;

/// The overlay TCP port the last node exposes.
const ECHO_PORT: u16 = 7;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub nodes: usize,
    pub dir: PathBuf,
    /// Stop after the checks instead of running until Ctrl-C.
    pub once: bool,
    /// Static routes from config files instead of a controller.
    pub static_routes: bool,
    /// Never start the TUI: play one round of failures and print the
    /// events instead.
    pub no_tui: bool,
    /// Time between two failure actions.
    pub interval: Duration,
}

/// Runs the demo; returns after the checks (`once`), when the TUI exits,
/// after one round of failures (no TUI), or on Ctrl-C (`--static`, or
/// during the round).
pub fn run(options: &DemoOptions) -> anyhow::Result<()> {
    if options.static_routes {
        run_static(options)
    } else {
        run_controlled(options)
    }
}

/// The controller demo's mesh, up and enrolled: a controller with its admin
/// API and an operator token, and userspace agents in a ladder whose links
/// all run through relays. Dropping it kills the agents and the controller.
#[derive(Debug)]
pub struct ControlledDemo {
    pub nodes: Vec<mesh::PlannedNode>,
    pub agents: Vec<AgentProcess>,
    /// Every link's relay, to cut it.
    pub underlay: RelayedLoopback,
    pub api: ApiClient,
    pub operator_token: String,
    /// The node the demo traffic goes to (the ladder's far corner), and
    /// its address; the traffic starts at node 0.
    pub last: usize,
    pub target_v4: std::net::Ipv4Addr,
    /// The TCP port node 0 forwards to the echo service on `last`.
    pub forward_port: u16,
    // Last: dropped (killed) after the agents.
    pub controller: ControllerProcess,
}

impl ControlledDemo {
    /// Starts the controller and `nodes` (at least 6) agents in `dir`,
    /// printing what it does, and waits until every agent is enrolled.
    pub fn start(dir: &std::path::Path, nodes: usize) -> anyhow::Result<Self> {
        let columns = nodes.div_ceil(2).max(3);
        let topology = Topology::ladder(columns);
        let count = topology.names.len();
        let last = count - 1; // bottom-right corner: three hops from `a`
        let echo = traffic::spawn_echo_server()?;
        let forward_port = free_tcp_port()?;
        let controller_port = free_tcp_port()?;
        let api_addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()?));
        let controller = ControllerProcess::start_with_api(
            dir,
            SocketAddr::from(([127, 0, 0, 1], controller_port)),
            Some(api_addr),
            None,
        )?;
        println!(
            "freimesh demo: a controller on 127.0.0.1:{controller_port} (SQLite in {}) and {count} userspace agents",
            controller.db.display()
        );
        let operator_token = controller.operator_add("demo")?;
        let api = ApiClient::new(api_addr, &operator_token);
        api.wait_authorized(Duration::from_secs(10))?;
        println!(
            "   admin API on {}, operator token created (freimesh-controller operator add demo)",
            api.base()
        );
        let tokens = (0..count)
            .map(|_| controller.token())
            .collect::<Result<Vec<_>, _>>()?;
        println!("   {count} one-time join tokens created (freimesh-controller token create)");
        // The two ends of the demo traffic ask for addresses the demo can
        // name; every other node takes what the controller assigns.
        let fixed = move |i: usize| (i == 0 || i == last).then_some(100 + i);
        // Every link through a relay the demo can cut.
        let underlay = RelayedLoopback::start(Loopback::free_ports(count)?, &topology.links)?;
        let plan = ControllerPlan {
            endpoint: &|_| controller.endpoint,
            public_key: controller.public_key.clone(),
            tokens,
            fixed_address: &fixed,
        };
        let target_v4 = mesh::overlay_v4(100 + last);
        let nodes = mesh::write_controlled_configs(
            dir,
            &topology,
            Backend::Userspace,
            &underlay,
            &plan,
            &|i| {
                if i == 0 {
                    format!(
                        "[[userspace.tcp_forward]]\nlisten = \"127.0.0.1:{forward_port}\"\ntarget = \"{target_v4}:{ECHO_PORT}\"\n"
                    )
                } else if i == last {
                    format!("[[userspace.tcp_expose]]\nport = {ECHO_PORT}\ntarget = \"{echo}\"\n")
                } else {
                    String::new()
                }
            },
        )?;
        let agents = start_all(&nodes)?;
        println!("   every agent enrolled:\n");
        for line in controller.node_list()?.lines() {
            println!("   {line}");
        }
        // Operator costs, one per link (freimesh-controller link cost): on
        // a loopback mesh whose relays share a busy machine, measured RTTs
        // jump by milliseconds and would move paths (and take alternates
        // away) while the demo shows them. A link row exists once either
        // end reported the other.
        let ids = controller.node_ids()?;
        for &(x, y) in &topology.links {
            let id = |n: usize| {
                ids.get(&topology.names[n])
                    .copied()
                    .with_context(|| format!("{} in the node list", topology.names[n]))
            };
            crate::traffic::retry(Duration::from_secs(10), || {
                controller.link_cost(id(x)?, id(y)?, DEMO_LINK_COST)
            })?;
        }
        println!(
            "\n   every link's cost pinned to {DEMO_LINK_COST} (freimesh-controller link cost A B {DEMO_LINK_COST})"
        );
        Ok(Self {
            nodes,
            agents,
            underlay,
            api,
            operator_token,
            last,
            target_v4,
            forward_port,
            controller,
        })
    }
}

/// The cost the demo pins on every link (one clean hop each).
const DEMO_LINK_COST: u32 = 1000;

/// The controller demo (see the module docs).
fn run_controlled(options: &DemoOptions) -> anyhow::Result<()> {
    let ControlledDemo {
        nodes,
        agents,
        underlay,
        api,
        operator_token,
        last,
        target_v4,
        forward_port,
        controller,
    } = ControlledDemo::start(&options.dir, options.nodes)?;
    let first = &nodes[0];
    println!(
        "\n1. ping {target_v4} ({}) from {}, routes from the controller:",
        nodes[last].name, first.name
    );
    ping_step(first, target_v4.into(), Duration::from_secs(20))?;
    echo_step(first, &nodes[last].name, forward_port, target_v4)?;
    println!(
        "\n3. status of {} (freimesh-agent status --socket {}):\n",
        first.name,
        first.socket.display()
    );
    // Link costs follow measured RTT, and the TCP step just loaded one
    // path: give the controller a moment to settle before judging the
    // alternates (on a busy machine routes can briefly have none).
    let settle = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status = traffic::status(&first.socket)?;
        if status.engine.routes.iter().any(|r| r.via.len() >= 2)
            || std::time::Instant::now() >= settle
        {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    for line in freimesh_agent::control::render_status(&status).lines() {
        println!("   {line}");
    }
    if status.engine.routes.iter().all(|r| r.via.len() < 2) {
        bail!("no route of {} has an alternate next hop", first.name);
    }
    if options.once {
        println!("\ndemo finished.");
        for agent in agents {
            agent.stop(Duration::from_secs(5))?;
        }
        return Ok(());
    }
    // The token goes in a 0600 file, not on a command line `ps` shows.
    let token_file = options.dir.join("operator.token");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)
        .and_then(|mut f| f.write_all(operator_token.as_bytes()))
        .with_context(|| format!("writing {}", token_file.display()))?;
    let tui = tui_binary().ok();
    let tui_command = format!(
        "{} --api {} --token-file {}",
        tui.as_ref().map_or_else(
            || "target/release/freimesh-tui".into(),
            |p| p.display().to_string()
        ),
        api.base(),
        token_file.display()
    );
    println!("\nThe mesh keeps running. Try, in another terminal:");
    println!(
        "   target/release/freimesh-agent status --socket {}",
        options.dir.join("b.sock").display()
    );
    println!(
        "   target/release/freimesh-agent ping --socket {} {target_v4}",
        first.socket.display()
    );
    println!("   {tui_command}");
    let source = 0;
    let schedule_nodes = nodes.clone();
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(stop.clone());
    let tui = tui.filter(|_| !options.no_tui && std::io::stdout().is_terminal());
    let result = match tui {
        Some(tui) => {
            let log = options.dir.join("schedule.log");
            println!(
                "\nStarting the fleet view; a failure every {:?} (listed in {}). Quit the TUI (q) to stop the demo.",
                options.interval,
                log.display()
            );
            std::thread::sleep(Duration::from_secs(2));
            let out = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let schedule = FailureSchedule::new(
                schedule_nodes,
                agents,
                underlay,
                source,
                target_v4.into(),
                options.interval,
                Box::new(out),
            );
            with_tui(schedule, &tui, &api, &token_file, &stop)
        }
        None => {
            let schedule = FailureSchedule::new(
                schedule_nodes,
                agents,
                underlay,
                source,
                target_v4.into(),
                options.interval,
                Box::new(std::io::stdout()),
            );
            one_round(schedule, &api, options.interval, &stop)
        }
    };
    drop(controller);
    result
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sets `stop` on Ctrl-C (instead of dying with the agents still running).
fn stop_on_ctrl_c(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            stop.store(true, Ordering::SeqCst);
        }
    });
}

/// The TUI in the foreground (it inherits the terminal), the failures in
/// the background until the TUI exits.
fn with_tui(
    schedule: FailureSchedule,
    tui: &std::path::Path,
    api: &ApiClient,
    token_file: &std::path::Path,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let flag = stop.clone();
    let background = std::thread::spawn(move || {
        let mut schedule = schedule;
        let result = schedule.run_until(&flag);
        (schedule, result)
    });
    let status = std::process::Command::new(tui)
        .arg("--api")
        .arg(api.base())
        .arg("--token-file")
        .arg(token_file)
        .status()
        .with_context(|| format!("starting {}", tui.display()));
    stop.store(true, Ordering::SeqCst);
    println!("stopping the failures and the agents");
    let (schedule, played) = background
        .join()
        .map_err(|_| anyhow::anyhow!("the failure schedule panicked"))?;
    let stopped = schedule.stop_agents();
    let status = status?;
    played?;
    stopped?;
    if !status.success() {
        bail!("freimesh-tui exited with {status}");
    }
    Ok(())
}

/// One round of failures, then the events the controller reported.
fn one_round(
    mut schedule: FailureSchedule,
    api: &ApiClient,
    interval: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let since = api.last_seq()?;
    println!("\nOne round of failures, one every {interval:?}:");
    let played = schedule.round(stop);
    // The restarted node's links come back and are reported.
    std::thread::sleep(interval.min(Duration::from_secs(5)));
    let events = api.events(since);
    let stopped = schedule.stop_agents();
    played?;
    let events = events?;
    let names: std::collections::BTreeMap<u32, String> = api
        .nodes()?
        .into_iter()
        .map(|n| (n.id, n.hostname))
        .collect();
    let name = |id: u32| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
    println!(
        "\nEvents from the controller (GET {}/api/v1/events?since={since}):",
        api.base()
    );
    for event in &events {
        println!("   #{:<4} {}", event.seq, api::describe(event, &name));
    }
    stopped?;
    let failovers = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Failover { .. }))
        .count();
    if failovers == 0 && !stop.load(Ordering::SeqCst) {
        bail!("no failover event arrived from the controller");
    }
    println!("\n{failovers} failovers reported. demo finished.");
    Ok(())
}

/// Stops the agents (`--once`), or keeps the mesh up until Ctrl-C.
fn finish(
    options: &DemoOptions,
    agents: Vec<crate::process::AgentProcess>,
    ping_hint: &str,
) -> anyhow::Result<()> {
    if options.once {
        println!("\ndemo finished.");
        for agent in agents {
            agent.stop(Duration::from_secs(5))?;
        }
        return Ok(());
    }
    println!("\nThe mesh keeps running. Try, in another terminal:");
    println!(
        "   target/release/freimesh-agent status --socket {}",
        options.dir.join("b.sock").display()
    );
    println!("   target/release/freimesh-agent ping {ping_hint}");
    println!("Ctrl-C stops every agent.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!("\nstopping agents");
    for agent in agents {
        agent.stop(Duration::from_secs(5))?;
    }
    Ok(())
}

/// The controller-less demo: a line of agents with static routes.
fn run_static(options: &DemoOptions) -> anyhow::Result<()> {
    if options.nodes < 4 {
        bail!("the demo needs at least 4 nodes for traffic across 2 transit routers");
    }
    let topology = Topology::line(options.nodes);
    let last = options.nodes - 1;
    let echo = traffic::spawn_echo_server()?;
    let forward_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let underlay = Loopback::free_ports(options.nodes)?;
    let nodes = mesh::write_configs(
        &options.dir,
        &topology,
        Backend::Userspace,
        &underlay,
        &|i| {
            if i == 0 {
                format!(
                    "[[userspace.tcp_forward]]\nlisten = \"127.0.0.1:{forward_port}\"\ntarget = \"{}:{ECHO_PORT}\"\n",
                    mesh::overlay_v4(last)
                )
            } else if i == last {
                format!("[[userspace.tcp_expose]]\nport = {ECHO_PORT}\ntarget = \"{echo}\"\n")
            } else {
                String::new()
            }
        },
    )?;
    println!(
        "freimesh demo: {} userspace agents in a line, configs and logs in {}",
        nodes.len(),
        options.dir.display()
    );
    let agents = start_all(&nodes)?;
    let first = &nodes[0];
    let target = nodes[last].overlay_v4();
    println!(
        "\n1. ping {target} ({}) from {} across {} hops:",
        nodes[last].name, first.name, last
    );
    ping_step(first, target.into(), Duration::from_secs(10))?;
    let v6 = nodes[last].overlay_v6();
    let summary6 = traffic::ping(&first.socket, v6.into(), 2)?;
    println!(
        "   and over IPv6 to {v6}: {} of {} replies",
        summary6.received, summary6.sent
    );

    echo_step(first, &nodes[last].name, forward_port, target)?;

    println!(
        "\n3. status of transit node {} (freimesh-agent status --socket {}):\n",
        nodes[1].name,
        nodes[1].socket.display()
    );
    let status = traffic::status(&nodes[1].socket)?;
    for line in freimesh_agent::control::render_status(&status).lines() {
        println!("   {line}");
    }
    if status.engine.counters.forwarded == 0 {
        bail!("transit node {} forwarded nothing", nodes[1].name);
    }
    let hint = format!("--socket {} {target}", first.socket.display());
    finish(options, agents, &hint)
}

/// Pings `target` from `from`'s own stack until replies come (handshakes
/// and enrolment take a moment), and prints them.
fn ping_step(
    from: &mesh::PlannedNode,
    target: std::net::IpAddr,
    patience: Duration,
) -> anyhow::Result<()> {
    let summary = traffic::retry(patience, || {
        let s = traffic::ping(&from.socket, target, 4)?;
        if s.received == 0 {
            bail!("no replies yet")
        } else {
            Ok(s)
        }
    })?;
    for rtt in &summary.rtts_us {
        println!(
            "   reply from {target}: time={:.2} ms",
            *rtt as f64 / 1000.0
        );
    }
    Ok(())
}

/// Pushes 4 MiB through `from`'s TCP forward on `forward_port` to the echo
/// service behind `target` and checks it all comes back.
fn echo_step(
    from: &mesh::PlannedNode,
    target_name: &str,
    forward_port: u16,
    target: std::net::Ipv4Addr,
) -> anyhow::Result<()> {
    let forward = SocketAddr::from(([127, 0, 0, 1], forward_port));
    println!(
        "\n2. TCP: 127.0.0.1:{forward_port} on {} is forwarded to {target}:{ECHO_PORT}, an echo service on {target_name}:",
        from.name
    );
    let bps = traffic::echo_roundtrip(forward, 4 << 20, Duration::from_secs(30))?;
    println!(
        "   4 MiB sent and echoed back intact: {:.1} Mbit/s round trip",
        bps / 1e6
    );
    Ok(())
}
