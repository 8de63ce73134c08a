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
    /// Run a demo mesh of userspace agents on loopback (no root needed).
    Demo {
        /// Number of agents in the line (at least 4).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Where configs, keys, sockets and logs go.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Exit after the checks instead of running until Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Measure the data plane against wireguard-go (root; see docs/benchmarks.md).
    Bench {
        /// The agent built with the router profile, whose size is reported.
        #[arg(long)]
        router_binary: Option<PathBuf>,
        /// Also print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { nodes, dir, once } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("freimesh-demo-{}", std::process::id()))
            });
            freimesh_testbed::demo::run(&freimesh_testbed::demo::DemoOptions { nodes, dir, once })
        }
        Command::Bench {
            router_binary,
            json,
        } => freimesh_testbed::bench::run(router_binary.as_deref(), json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("freimesh-testbed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
