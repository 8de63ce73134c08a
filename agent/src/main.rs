//! `freimesh-agent`: parses arguments, sets up logging, calls the library.

use std::io::{IsTerminal as _, Read as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use freimesh_agent::config::AgentConfig;
use freimesh_agent::control::{self, Request, Response};
use freimesh_agent::identity::PrivateKey;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Parser)]
#[command(
    name = "freimesh-agent",
    version,
    about = "freimesh mesh agent: an encrypted multi-hop WireGuard mesh node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent with a configuration file (see docs/agent-config.md).
    Run { config: PathBuf },
    /// Check a configuration file and exit non-zero naming the first problem.
    Check { config: PathBuf },
    /// Print a new private key (WireGuard's base64 form) on stdout.
    Genkey,
    /// Read a private key on stdin, print its public key (as `wg pubkey`).
    Pubkey,
    /// Show the running agent's links and routes.
    Status {
        #[command(flatten)]
        target: SocketArgs,
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Ping an overlay address from the agent's own stack (userspace backend).
    Ping {
        #[command(flatten)]
        target: SocketArgs,
        address: IpAddr,
        #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=100))]
        count: u16,
    },
}

#[derive(Debug, clap::Args)]
struct SocketArgs {
    /// The agent's control socket.
    #[arg(long, conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// Take the control socket path from this configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl SocketArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        if let Some(config) = &self.config {
            return Ok(AgentConfig::load(config)?.control_socket);
        }
        Ok(PathBuf::from(
            freimesh_agent::config::DEFAULT_CONTROL_SOCKET,
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `RUST_LOG` takes `target=level` pairs (no regexes: the filter stays
    // small enough for a router). boringtun's own logs are off by default:
    // it warns every 5 s about a neighbour that is down, which the agent's
    // status already shows.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("boringtun", tracing_subscriber::filter::LevelFilter::OFF)
        });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                ),
        )
        .with(filter)
        .init();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("freimesh-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let config = AgentConfig::load(&config)?;
            runtime()?.block_on(freimesh_agent::run::run(config, shutdown_signal()))?;
        }
        Command::Check { config: path } => {
            let config = AgentConfig::load(&path)?;
            let key = if config.generate_key && !config.private_key_file.exists() {
                None
            } else {
                Some(PrivateKey::load(&config.private_key_file)?)
            };
            if let Some(key) = &key
                && let Some(link) = config.links.iter().find(|l| l.public_key == key.public())
            {
                bail!(
                    "link \"{}\".public_key: this is the node's own key",
                    link.name
                );
            }
            match key {
                Some(key) => println!(
                    "{}: ok (node {}, public key {})",
                    path.display(),
                    config.name,
                    key.public()
                ),
                None => println!(
                    "{}: ok (node {}, key created on first start)",
                    path.display(),
                    config.name
                ),
            }
        }
        Command::Genkey => println!("{}", PrivateKey::generate().to_base64()),
        Command::Pubkey => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the private key from stdin")?;
            println!("{}", PrivateKey::from_base64(&text)?.public());
        }
        Command::Status { target, json } => {
            let path = target.path()?;
            let answer = runtime()?.block_on(control::request(&path, &Request::Status))?;
            match answer {
                Response::Status(status) if json => {
                    println!("{}", serde_json::to_string_pretty(&status)?)
                }
                Response::Status(status) => print!("{}", control::render_status(&status)),
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer: {other:?}"),
            }
        }
        Command::Ping {
            target,
            address,
            count,
        } => {
            let path = target.path()?;
            let answer = runtime()?.block_on(control::request(
                &path,
                &Request::Ping {
                    target: address,
                    count,
                },
            ))?;
            match answer {
                Response::Ping(summary) => {
                    for rtt in &summary.rtts_us {
                        println!("reply from {address}: time={:.2} ms", *rtt as f64 / 1000.0);
                    }
                    println!("{} sent, {} received", summary.sent, summary.received);
                    if summary.received == 0 {
                        bail!("no reply from {address}");
                    }
                }
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer: {other:?}"),
            }
        }
    }
    Ok(())
}
