//! The demo: a mesh of userspace agents on this machine's loopback, no root
//! needed. Agents `a — b — c — d` in a line; `d` exposes a TCP echo service
//! on its overlay address and `a` forwards a local port to it, so the echo
//! crosses three WireGuard hops and two transit routers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::mesh::{self, Backend, Loopback};
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
}

/// Runs the demo; returns after the checks (`once`) or on Ctrl-C.
pub fn run(options: &DemoOptions) -> anyhow::Result<()> {
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
    let summary = traffic::retry(Duration::from_secs(10), || {
        let s = traffic::ping(&first.socket, target.into(), 4)?;
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
    let v6 = nodes[last].overlay_v6();
    let summary6 = traffic::ping(&first.socket, v6.into(), 2)?;
    println!(
        "   and over IPv6 to {v6}: {} of {} replies",
        summary6.received, summary6.sent
    );

    let forward = std::net::SocketAddr::from(([127, 0, 0, 1], forward_port));
    println!(
        "\n2. TCP: 127.0.0.1:{forward_port} on {} is forwarded to {target}:{ECHO_PORT}, an echo service on {}:",
        first.name, nodes[last].name
    );
    let bps = traffic::echo_roundtrip(forward, 4 << 20, Duration::from_secs(30))?;
    println!(
        "   4 MiB sent and echoed back intact: {:.1} Mbit/s round trip",
        bps / 1e6
    );

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
    if options.once {
        println!("\ndemo finished: traffic crossed {last} hops.");
        for agent in agents {
            agent.stop(Duration::from_secs(5))?;
        }
        return Ok(());
    }
    println!("\nThe mesh keeps running. Try, in another terminal:");
    println!(
        "   target/release/freimesh-agent status --socket {}",
        nodes[1].socket.display()
    );
    println!(
        "   target/release/freimesh-agent ping --socket {} {target}",
        first.socket.display()
    );
    println!("   echo hello | nc 127.0.0.1 {forward_port}");
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
