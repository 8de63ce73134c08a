//! The routing systems a failover lab can run, one daemon per node:
//! freimesh agents (linux backend), babeld 1.12 and BIRD 2 (OSPF + BFD).
//!
//! freimesh forwards in the agent, over its TUN device `fm0` that carries
//! the node's overlay address `10.99.0.<n+1>`. babeld and BIRD make the
//! kernel forward: the overlay address sits on `lo` and is announced
//! (babeld: redistributed local address; OSPF: stub network), and the
//! link metric comes from the topology's `cost` so that every system
//! prefers the same paths.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use super::files::LabTopology;
use crate::lab::Lab;
use crate::mesh::{self, Backend, overlay_v4};
use crate::netns_mesh::VethUnderlay;

/// babeld's wired default is 4 s; the tuned variant hellos every 50 ms
/// (the figure in ARCHITECTURE.md's reference table).
const BABELD_FAST_HELLO_S: &str = "0.05";
/// BFD as in the reference table: 50 ms × 3 = 150 ms detection.
const BFD_INTERVAL_MS: u32 = 50;
const BFD_MULTIPLIER: u32 = 3;
/// OSPF hellos only bring adjacencies up quickly here; BFD detects
/// failures.
const OSPF_HELLO_S: u32 = 1;
const OSPF_DEAD_COUNT: u32 = 4;

/// One routing system, as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum System {
    /// freimesh agents; `profile` overrides every link's profile.
    Freimesh {
        profile: Option<String>,
    },
    Babeld,
    BabeldFast,
    Bird,
}

impl System {
    /// `freimesh`, `freimesh-fast` (every link `fast`), `babeld`,
    /// `babeld-fast`, `bird`; `all` is the four of the issue.
    pub fn parse_list(text: &str, profile: Option<&str>) -> anyhow::Result<Vec<Self>> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim) {
            let freimesh = |p: Option<&str>| Self::Freimesh {
                profile: p.map(str::to_owned),
            };
            match name {
                "all" => out.extend([
                    freimesh(profile),
                    Self::Babeld,
                    Self::BabeldFast,
                    Self::Bird,
                ]),
                "freimesh" => out.push(freimesh(profile)),
                "freimesh-fast" => out.push(freimesh(Some("fast"))),
                "babeld" => out.push(Self::Babeld),
                "babeld-fast" => out.push(Self::BabeldFast),
                "bird" => out.push(Self::Bird),
                other => bail!(
                    "--system: unknown system {other:?}; known: freimesh, freimesh-fast, babeld, babeld-fast, bird, all"
                ),
            }
        }
        Ok(out)
    }

    /// The name in reports: `freimesh (fast)` when the profile is overridden.
    pub fn label(&self) -> String {
        match self {
            Self::Freimesh { profile: None } => "freimesh".into(),
            Self::Freimesh { profile: Some(p) } => format!("freimesh ({p} profile)"),
            Self::Babeld => "babeld (default timers)".into(),
            Self::BabeldFast => "babeld (50 ms hellos)".into(),
            Self::Bird => {
                format!("BIRD OSPF + BFD {BFD_INTERVAL_MS} ms × {BFD_MULTIPLIER}")
            }
        }
    }

    /// Whether the kernel forwards (the overlay address goes on `lo`).
    pub fn kernel_forwards(&self) -> bool {
        !matches!(self, Self::Freimesh { .. })
    }

    /// The binary this system needs, for a clear error before anything
    /// starts.
    pub fn check_installed(&self) -> anyhow::Result<()> {
        let (binary, package) = match self {
            Self::Freimesh { .. } => {
                crate::process::agent_binary()?;
                return Ok(());
            }
            Self::Babeld | Self::BabeldFast => ("babeld", "babeld"),
            Self::Bird => ("bird", "bird2"),
        };
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(binary).is_file();
        if !found {
            bail!("{binary} not found: apt-get install {package}");
        }
        Ok(())
    }
}

/// A daemon in a lab namespace, killed by its own pid when dropped.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
}

impl Daemon {
    fn spawn(
        lab: &Lab,
        node: &str,
        program: &Path,
        args: &[&str],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(node)])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} in {node}", program.display()))?;
        Ok(Self {
            name: format!("{} on {node}", program.display()),
            child,
        })
    }

    /// Fails if the daemon has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited ({status})", self.name);
        }
        Ok(())
    }

    /// SIGKILL, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a system's per-node files live.
#[derive(Debug)]
pub struct Plan {
    pub system: System,
    dir: PathBuf,
    /// freimesh: control sockets (ready when they appear).
    sockets: Vec<PathBuf>,
    configs: Vec<PathBuf>,
}

impl Plan {
    /// Writes every node's configuration into `dir`.
    pub fn write(
        system: &System,
        dir: &Path,
        topo: &LabTopology,
        underlay: &VethUnderlay,
    ) -> anyhow::Result<Self> {
        let names = &topo.topology.names;
        let mut plan = Self {
            system: system.clone(),
            dir: dir.to_owned(),
            sockets: Vec::new(),
            configs: Vec::new(),
        };
        match system {
            System::Freimesh { profile } => {
                let nodes = mesh::write_configs_with_profiles(
                    dir,
                    &topo.topology,
                    Backend::Linux,
                    underlay,
                    &|k| {
                        Some(
                            profile
                                .clone()
                                .unwrap_or_else(|| topo.links[k].profile.clone()),
                        )
                    },
                    &|_| String::new(),
                )?;
                plan.sockets = nodes.iter().map(|n| n.socket.clone()).collect();
                plan.configs = nodes.iter().map(|n| n.config.clone()).collect();
            }
            System::Babeld | System::BabeldFast => {
                for (i, name) in names.iter().enumerate() {
                    let path = dir.join(format!("{name}.babeld.conf"));
                    let text = babeld_config(topo, i, *system == System::BabeldFast);
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    plan.configs.push(path);
                }
            }
            System::Bird => {
                for (i, name) in names.iter().enumerate() {
                    let path = dir.join(format!("{name}.bird.conf"));
                    std::fs::write(&path, bird_config(topo, i))
                        .with_context(|| format!("writing {}", path.display()))?;
                    plan.configs.push(path);
                }
            }
        }
        Ok(plan)
    }

    /// Starts the daemon of `node` (fresh or after a kill).
    pub fn start(&self, lab: &Lab, topo: &LabTopology, node: usize) -> anyhow::Result<Daemon> {
        let name = topo.name(node);
        let log = self.log(name);
        let config = self.configs[node].to_string_lossy().into_owned();
        match &self.system {
            System::Freimesh { .. } => {
                let _ = std::fs::remove_file(&self.sockets[node]);
                let agent = crate::process::agent_binary()?;
                Daemon::spawn(lab, name, &agent, &["run", &config], &log)
            }
            System::Babeld | System::BabeldFast => {
                // A pid file left by a killed babeld stops the next one.
                let pid = self.dir.join(format!("{name}.babeld.pid"));
                let _ = std::fs::remove_file(&pid);
                let state = self.dir.join(format!("{name}.babeld.state"));
                let (pid, state) = (pid.to_string_lossy(), state.to_string_lossy());
                Daemon::spawn(
                    lab,
                    name,
                    Path::new("babeld"),
                    &["-c", &config, "-I", &pid, "-S", &state],
                    &log,
                )
            }
            System::Bird => {
                let socket = self.dir.join(format!("{name}.bird.ctl"));
                let pid = self.dir.join(format!("{name}.bird.pid"));
                let _ = std::fs::remove_file(&socket);
                let (socket, pid) = (socket.to_string_lossy(), pid.to_string_lossy());
                Daemon::spawn(
                    lab,
                    name,
                    Path::new("bird"),
                    &["-f", "-c", &config, "-s", &socket, "-P", &pid],
                    &log,
                )
            }
        }
    }

    /// Waits until the daemon of `node` is up (freimesh: its control socket
    /// answers; others: still running a moment after start).
    pub fn wait_started(&self, daemon: &mut Daemon, node: usize) -> anyhow::Result<()> {
        if let System::Freimesh { .. } = self.system {
            crate::process::wait_for_path(&self.sockets[node], std::time::Duration::from_secs(10))?;
        } else {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        daemon.check_running()
    }

    pub fn log(&self, node_name: &str) -> PathBuf {
        self.dir.join(format!("{node_name}.log"))
    }
}

/// The node's interfaces with their link's cost.
fn interfaces(topo: &LabTopology, node: usize) -> Vec<(String, u32)> {
    topo.links
        .iter()
        .filter_map(|l| match (l.a == node, l.b == node) {
            (true, _) => Some((format!("to-{}", topo.name(l.b)), l.cost)),
            (_, true) => Some((format!("to-{}", topo.name(l.a)), l.cost)),
            _ => None,
        })
        .collect()
}

/// babeld: announce only the overlay address, wired interfaces with
/// rxcost = 10 × cost (babeld's wired default is 96).
pub fn babeld_config(topo: &LabTopology, node: usize, fast: bool) -> String {
    let mut text = String::from("# written by freimesh-testbed lab\n");
    for (ifname, cost) in interfaces(topo, node) {
        let _ = write!(text, "interface {ifname} type wired rxcost {}", cost * 10);
        if fast {
            let _ = write!(text, " hello-interval {BABELD_FAST_HELLO_S}");
        }
        text.push('\n');
    }
    text.push_str("redistribute local ip 10.99.0.0/24 ge 32 allow\n");
    text.push_str("redistribute local deny\n");
    text
}

/// BIRD 2: OSPFv2 on point-to-point veths with BFD, the overlay address on
/// `lo` as a stub network, routes exported to the kernel.
pub fn bird_config(topo: &LabTopology, node: usize) -> String {
    let mut text = String::from("# written by freimesh-testbed lab\n");
    let _ = writeln!(text, "router id {};", overlay_v4(node));
    text.push_str("log stderr all;\n");
    text.push_str("protocol device { scan time 10; }\n");
    text.push_str("protocol kernel { ipv4 { import none; export all; }; }\n");
    let _ = writeln!(
        text,
        "protocol bfd {{ interface \"to-*\" {{ interval {BFD_INTERVAL_MS} ms; multiplier {BFD_MULTIPLIER}; }}; }}"
    );
    text.push_str(
        "protocol ospf v2 {\n  ipv4 { import all; export none; };\n  ecmp no;\n  area 0 {\n",
    );
    for (ifname, cost) in interfaces(topo, node) {
        let _ = writeln!(
            text,
            "    interface \"{ifname}\" {{ type ptp; cost {cost}; hello {OSPF_HELLO_S}; dead count {OSPF_DEAD_COUNT}; bfd on; }};"
        );
    }
    text.push_str("    interface \"lo\" 10.99.0.0/24 { stub yes; };\n  };\n}\n");
    text
}
