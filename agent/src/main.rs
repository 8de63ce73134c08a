//! `freimesh-agent`: parses arguments, sets up logging, calls the library.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use freimesh_agent::cli::{self, Command, SocketTarget};
use freimesh_agent::config::AgentConfig;
use freimesh_agent::control::{self, Request};
use freimesh_agent::identity::PrivateKey;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// `println!` that gives up quietly when stdout is closed (`| head`), as
/// command-line tools do, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` likewise.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// The control socket a command talks to.
fn socket_path(target: &SocketTarget) -> anyhow::Result<PathBuf> {
    Ok(match target {
        SocketTarget::Socket(path) => path.clone(),
        SocketTarget::Config(config) => AgentConfig::load(config)?.control_socket,
        SocketTarget::Default => PathBuf::from(freimesh_agent::config::DEFAULT_CONTROL_SOCKET),
    })
}

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("freimesh-agent: {err}");
            return ExitCode::from(2);
        }
    };
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
                    cfg!(feature = "color")
                        && std::io::stderr().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none(),
                ),
        )
        .with(filter)
        .init();
    match execute(command) {
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
                Some(key) => say!(
                    "{}: ok (node {}, public key {})",
                    path.display(),
                    config.name,
                    key.public()
                ),
                None => say!(
                    "{}: ok (node {}, key created on first start)",
                    path.display(),
                    config.name
                ),
            }
        }
        Command::Genkey => say!("{}", PrivateKey::generate().to_base64()),
        Command::Pubkey => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the private key from stdin")?;
            say!("{}", PrivateKey::from_base64(&text)?.public());
        }
        Command::Version => say!("freimesh-agent {}", env!("CARGO_PKG_VERSION")),
        Command::Help => say!("{}", cli::USAGE),
        Command::Status { target, json } => {
            let path = socket_path(&target)?;
            // Only the part of the answer that is printed is read: the
            // router binary carries no deserializer for the whole status.
            if json {
                // The status as the agent sent it: one line of JSON.
                let answer = runtime()?.block_on(control::request_text(&path, &Request::Status))?;
                control::read_answer::<control::AnyFields>(&answer, "status")?;
                say!("{}", answer.trim_end());
            } else {
                let answer =
                    runtime()?.block_on(control::request_text(&path, &Request::StatusReport))?;
                let report: control::ReportText = control::read_answer(&answer, "report")?;
                say_raw!("{}", report.text);
            }
        }
        Command::Ping {
            target,
            address,
            count,
        } => {
            let path = socket_path(&target)?;
            let answer = runtime()?.block_on(control::request_text(
                &path,
                &Request::Ping {
                    target: address,
                    count,
                },
            ))?;
            let summary: control::PingSummary = control::read_answer(&answer, "ping")?;
            for rtt in &summary.rtts_us {
                say!("reply from {address}: time={:.2} ms", *rtt as f64 / 1000.0);
            }
            say!("{} sent, {} received", summary.sent, summary.received);
            if summary.received == 0 {
                bail!("no reply from {address}");
            }
        }
    }
    Ok(())
}
