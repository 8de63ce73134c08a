//! `freimesh-testbed`: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "freimesh-testbed",
    version,
    about = "freimesh demo mesh and labs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a demo mesh of userspace agents on loopback (no root needed),
    /// then failures on a schedule under the TUI (see docs/testbed.md).
    Demo {
        /// Number of agents (at least 6 under the controller, 4 static).
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Where configs, keys, sockets and logs go.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Exit after the checks, without failures or TUI.
        #[arg(long)]
        once: bool,
        /// No controller: a line of agents with static routes.
        #[arg(long = "static")]
        static_routes: bool,
        /// Do not open the TUI: play one round of failures (cut a link,
        /// restore it, kill a node, restart it) and print the events.
        #[arg(long)]
        no_tui: bool,
        /// Seconds between two failures.
        #[arg(long, default_value_t = 20)]
        interval: u64,
    },
    /// Simulate a whole mesh (agents, controller, failures) on a virtual
    /// clock in one thread; no root (see docs/testbed.md).
    Sim {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Virtual minutes with failures (warm-up and settling come on top).
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// mixed, link-failures, double-link-failures, node-crashes,
        /// controller-away, flapping-link or drain.
        #[arg(long, default_value = "mixed")]
        scenario: String,
        /// Virtual seconds between failure episodes.
        #[arg(long, default_value_t = 4.0)]
        every: f64,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Measure the data plane against wireguard-go and boringtun-cli (root;
    /// see docs/benchmarks.md).
    Bench {
        /// The agent built with the router profile, whose size is reported.
        #[arg(long)]
        router_binary: Option<PathBuf>,
        /// boringtun's own CLI (`boringtun-cli`), a second reference pair;
        /// skipped with a note when not given or not there.
        #[arg(long)]
        boringtun_binary: Option<PathBuf>,
        /// Also print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure how fast the controller's events reach a subscriber of its
    /// event stream, on the demo mesh (no root; see docs/testbed.md).
    BenchEvents {
        /// Drains and undrains to time.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Silent link cuts to time.
        #[arg(long, default_value_t = 5)]
        cuts: usize,
        /// Where configs, keys, sockets and logs go.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Failover lab: run a scenario on a topology with freimesh, babeld or
    /// BIRD and measure the traffic gap of each event (root; see
    /// docs/testbed.md).
    Lab {
        /// Topology file (nodes, links, probe flows).
        #[arg(long)]
        topology: PathBuf,
        /// Scenario file, or a name next to the topology (`silent-cut`);
        /// repeat for several.
        #[arg(long, required = true)]
        scenario: Vec<PathBuf>,
        /// freimesh, freimesh-fast, babeld, babeld-fast, bird, or all;
        /// comma-separated for several.
        #[arg(long, default_value = "freimesh")]
        system: String,
        /// Override every link's freimesh profile (fast, default, metered).
        #[arg(long)]
        profile: Option<String>,
        /// Print the tables on stdout instead of JSON.
        #[arg(long)]
        table: bool,
        /// Also print the markdown comparison of all runs.
        #[arg(long)]
        markdown: bool,
    },
    /// Issue 7's figures on the city lab: client-visible gap when the
    /// primary gateway dies and when its uplink dies silently, and
    /// throughput from a public client through 2 mesh hops and a gateway
    /// (root; see docs/benchmarks.md).
    GatewayBench {
        /// Also print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The town lab of issue 13: twelve routers on radio cells, two with an
    /// uplink to the controller; cold start, silent cut, revocation,
    /// headless restart, strangers, the controller's return (root; see
    /// docs/testbed.md).
    Town {
        /// Print the figures as one JSON object (else a table).
        #[arg(long)]
        json: bool,
        /// Give every router an uplink (agents without control through
        /// the mesh).
        #[arg(long)]
        uplink_everywhere: bool,
        /// Keep the lab's directory (configs, state files, logs).
        #[arg(long)]
        keep: bool,
    },
    /// TCP/UDP echo service, run by labs inside a namespace; stops when
    /// stdin closes.
    #[command(hide = true)]
    EchoServe {
        #[arg(long)]
        tcp: Option<std::net::SocketAddr>,
        #[arg(long)]
        udp: Option<std::net::SocketAddr>,
    },
    /// Whether an echo service answers (exit 0) or not (exit 1), run by
    /// labs inside a namespace.
    #[command(hide = true)]
    Reach {
        /// tcp or udp.
        proto: String,
        to: std::net::SocketAddr,
        /// Source address (must be on a local interface).
        #[arg(long)]
        from: Option<std::net::IpAddr>,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Probe sender, run by `lab` inside a namespace.
    #[command(hide = true)]
    ProbeSend {
        #[arg(long)]
        from: std::net::SocketAddr,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long)]
        duration_ms: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// One admin API request, run by labs inside the controller's
    /// namespace; prints the JSON answer.
    #[command(hide = true)]
    ApiCall {
        #[arg(long)]
        api: std::net::SocketAddr,
        #[arg(long)]
        token: String,
        /// GET or POST.
        method: String,
        /// The path under /api/v1, e.g. /nodes/3/drain.
        path: String,
    },
    /// Probe receiver, run by `lab` inside a namespace; stops when stdin
    /// closes.
    #[command(hide = true)]
    ProbeRecv {
        #[arg(long)]
        bind: std::net::SocketAddr,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            nodes,
            dir,
            once,
            static_routes,
            no_tui,
            interval,
        } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("freimesh-demo-{}", std::process::id()))
            });
            freimesh_testbed::demo::run(&freimesh_testbed::demo::DemoOptions {
                nodes,
                dir,
                once,
                static_routes,
                no_tui,
                interval: std::time::Duration::from_secs(interval),
            })
        }
        Command::BenchEvents {
            rounds,
            cuts,
            dir,
            json,
        } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("freimesh-bench-events-{}", std::process::id()))
            });
            freimesh_testbed::event_bench::run(&dir, rounds, cuts, json).map(drop)
        }
        Command::Bench {
            router_binary,
            boringtun_binary,
            json,
        } => freimesh_testbed::bench::run(
            router_binary.as_deref(),
            boringtun_binary.as_deref(),
            json,
        ),
        Command::Lab {
            topology,
            scenario,
            system,
            profile,
            table,
            markdown,
        } => std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|probe_binary| {
                freimesh_testbed::failover::run(&freimesh_testbed::failover::LabOptions {
                    topology,
                    scenarios: scenario,
                    systems: system,
                    profile,
                    table,
                    markdown,
                    probe_binary,
                })
                .map(drop)
            }),
        Command::ProbeSend {
            from,
            to,
            rate,
            duration_ms,
            out,
        } => freimesh_testbed::failover::probe::send(
            from,
            to,
            rate,
            std::time::Duration::from_millis(duration_ms),
            &out,
        ),
        Command::ApiCall {
            api,
            token,
            method,
            path,
        } => freimesh_testbed::api::ApiClient::new(api, &token)
            .call(&method, &path)
            .map(|answer| println!("{answer}")),
        Command::GatewayBench { json } => std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|binary| freimesh_testbed::gateway_lab::bench::run(&binary, json)),
        Command::Town {
            json,
            uplink_everywhere,
            keep,
        } => std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|probe_binary| {
                freimesh_testbed::town::run(&freimesh_testbed::town::TownOptions {
                    probe_binary,
                    uplink_everywhere,
                    keep,
                })
            })
            .and_then(|report| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", report.table());
                }
                Ok(())
            }),
        Command::EchoServe { tcp, udp } => freimesh_testbed::reach::serve(tcp, udp),
        Command::Reach {
            proto,
            to,
            from,
            timeout_ms,
        } => {
            let proto = match proto.as_str() {
                "tcp" => freimesh_testbed::reach::Proto::Tcp,
                "udp" => freimesh_testbed::reach::Proto::Udp,
                other => {
                    eprintln!("freimesh-testbed: reach: {other:?} is neither tcp nor udp");
                    return ExitCode::from(2);
                }
            };
            match freimesh_testbed::reach::try_echo(
                proto,
                to,
                from,
                std::time::Duration::from_millis(timeout_ms),
            ) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    println!("no echo from {to}");
                    return ExitCode::from(1);
                }
                // 2, not 1: a try that could not be made is no verdict.
                Err(err) => {
                    eprintln!("freimesh-testbed: reach: {err:#}");
                    return ExitCode::from(2);
                }
            }
        }
        Command::ProbeRecv { bind, out } => freimesh_testbed::failover::probe::receive(bind, &out),
        Command::Sim {
            nodes,
            minutes,
            seed,
            scenario,
            every,
            json,
        } => {
            let config = freimesh_testbed::sim::SimConfig {
                nodes,
                duration: std::time::Duration::from_secs_f64(minutes.max(0.0) * 60.0),
                seed,
                scenario,
                failure_every: std::time::Duration::from_secs_f64(every.max(0.1)),
            };
            match freimesh_testbed::sim::run_cli(&config, json) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(err) => Err(err),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("freimesh-testbed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
