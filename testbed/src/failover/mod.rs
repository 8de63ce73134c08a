//! `freimesh-testbed lab`: the failover lab of issue 3. It builds a
//! network-namespace lab from a topology file, runs one routing system on
//! it (freimesh, babeld, babeld with 50 ms hellos, or BIRD OSPF + BFD),
//! plays a scenario file (silent cuts, carrier cuts, node crashes,
//! restores) while 1 kHz UDP probe flows run, and reports per flow and
//! event the packets sent and received and the longest gap. File formats
//! and the measured comparison are in `docs/testbed.md`.
//!
//! ```text
//! files.rs    topology and scenario files → LabTopology, Scenario
//! systems.rs  per-node daemons and their configs (freimesh, babeld, BIRD)
//! runner.rs   one run: lab, daemons, convergence, events, probes
//! inject.rs   failures: nftables silent drops, carrier loss
//! probe.rs    probe sender/receiver (hidden subcommands) and gap arithmetic
//! report.rs   JSON, tables, the markdown comparison
//! ```

pub mod files;
pub mod inject;
pub mod probe;
pub mod probe_flow;
pub mod report;
pub mod runner;
pub mod systems;

use std::path::{Path, PathBuf};

use anyhow::bail;

pub use files::{LabTopology, Scenario};
pub use report::RunReport;
pub use systems::System;

/// What `freimesh-testbed lab` was asked to do.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub topology: PathBuf,
    /// Scenario files; a bare name (`silent-cut`) means
    /// `<topology's directory>/<name>.toml`.
    pub scenarios: Vec<PathBuf>,
    /// `freimesh,babeld-fast`, `all`, …
    pub systems: String,
    /// Overrides every link's freimesh profile.
    pub profile: Option<String>,
    /// Print the per-run tables on stdout instead of stderr, and no JSON.
    pub table: bool,
    /// Print the markdown comparison after the runs.
    pub markdown: bool,
    /// The `freimesh-testbed` executable with the probe subcommands.
    pub probe_binary: PathBuf,
}

/// Runs every scenario for every system, in turn, and prints the reports.
pub fn run(options: &LabOptions) -> anyhow::Result<Vec<RunReport>> {
    if !crate::lab::is_root() {
        bail!("the failover lab needs root for network namespaces");
    }
    if let Some(p) = &options.profile
        && !files::PROFILES.contains(&p.as_str())
    {
        bail!(
            "--profile: unknown profile {p:?}; known: {}",
            files::PROFILES.join(", ")
        );
    }
    runner::install_ctrl_c();
    let topo = LabTopology::load(&options.topology)?;
    let scenarios = options
        .scenarios
        .iter()
        .map(|s| Scenario::load(&resolve(&options.topology, s), &topo))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let systems = System::parse_list(&options.systems, options.profile.as_deref())?;
    let mut reports = Vec::new();
    for scenario in &scenarios {
        for system in &systems {
            eprintln!("== running {} on {}", scenario.name, system.label());
            // One system failing (say, never converging) must not lose the
            // others' figures: report it and go on, unless interrupted.
            let report = match runner::run(&topo, scenario, system, &options.probe_binary) {
                Ok(report) => report,
                Err(err) if runner::interrupted() => return Err(err),
                Err(err) => {
                    let message = format!("{err:#}");
                    eprintln!(
                        "freimesh-testbed: {} on {}: {message}",
                        scenario.name,
                        system.label()
                    );
                    RunReport::failed(system.label(), scenario.name.clone(), message)
                }
            };
            if options.table {
                print!("{}", report.table());
            } else {
                eprint!("{}", report.table());
            }
            reports.push(report);
        }
    }
    if !options.table {
        let json: Vec<_> = reports.iter().map(RunReport::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    if options.markdown {
        let text = report::markdown(&reports);
        if options.table {
            print!("\n{text}");
        } else {
            eprint!("\n{text}");
        }
    }
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} of {} runs failed (see above)", reports.len());
    }
    Ok(reports)
}

/// `silent-cut` → `testbed/labs/silent-cut.toml` next to the topology.
fn resolve(topology: &Path, scenario: &Path) -> PathBuf {
    if scenario.extension().is_some() || scenario.components().count() > 1 {
        return scenario.to_owned();
    }
    let dir = topology.parent().unwrap_or(Path::new("."));
    dir.join(scenario).with_extension("toml")
}
