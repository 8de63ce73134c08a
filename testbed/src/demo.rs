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

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use std::net::SocketAddr;

use crate::controller::ControllerProcess;
use crate::mesh::{self, Backend, ControllerPlan, Loopback};
use crate::process::start_all;
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
}

/// Runs the demo; returns after the checks (`once`) or on Ctrl-C.
pub fn run(options: &DemoOptions) -> anyhow::Result<()> {
    if options.static_routes {
        run_static(options)
    } else {
        run_controlled(options)
    }
}

/// The controller demo (see the module docs).
fn run_controlled(options: &DemoOptions) -> anyhow::Result<()> {
    let columns = options.nodes.div_ceil(2).max(3);
    let topology = Topology::ladder(columns);
    let count = topology.names.len();
    let last = count - 1; // bottom-right corner: three hops from `a`
    let echo = traffic::spawn_echo_server()?;
    let forward_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let controller_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let controller = ControllerProcess::start(
        &options.dir,
        SocketAddr::from(([127, 0, 0, 1], controller_port)),
        None,
    )?;
    println!(
        "freimesh demo: a controller on 127.0.0.1:{controller_port} (SQLite in {}) and {count} userspace agents",
        controller.db.display()
    );
    let tokens = (0..count)
        .map(|_| controller.token())
        .collect::<Result<Vec<_>, _>>()?;
    println!("   {count} one-time join tokens created (freimesh-controller token create)");
    // The two ends of the demo traffic ask for addresses the demo can name;
    // every other node takes what the controller assigns.
    let fixed = move |i: usize| (i == 0 || i == last).then_some(100 + i);
    let underlay = Loopback::free_ports(count)?;
    let plan = ControllerPlan {
        endpoint: &|_| controller.endpoint,
        public_key: controller.public_key.clone(),
        tokens,
        fixed_address: &fixed,
    };
    let target_v4 = mesh::overlay_v4(100 + last);
    let nodes = mesh::write_controlled_configs(
        &options.dir,
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
    let status = traffic::status(&first.socket)?;
    for line in freimesh_agent::control::render_status(&status).lines() {
        println!("   {line}");
    }
    if status.engine.routes.iter().all(|r| r.via.len() < 2) {
        bail!("no route of {} has an alternate next hop", first.name);
    }
    let hint = format!("--socket {} {target_v4}", first.socket.display());
    let result = finish(options, agents, &hint);
    drop(controller);
    result
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
