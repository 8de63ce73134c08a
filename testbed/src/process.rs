//! Starting and stopping real `freimesh-agent` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Finds the `freimesh-agent` binary: `$FREIMESH_AGENT`, else next to the
/// running executable (or one directory up, for test executables in
/// `target/<profile>/deps`).
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("freimesh-agent", "FREIMESH_AGENT")
}

/// Finds the `freimesh-controller` binary the same way
/// (`$FREIMESH_CONTROLLER` overrides).
pub fn controller_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("freimesh-controller", "FREIMESH_CONTROLLER")
}

/// Finds the `freimesh-tui` binary the same way (`$FREIMESH_TUI`
/// overrides).
pub fn tui_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("freimesh-tui", "FREIMESH_TUI")
}

fn workspace_binary(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    bail!(
        "{name} not found next to {}; build it (cargo build --workspace) or set {env}",
        exe.display()
    )
}

/// A running agent; killed (by its own pid) when dropped.
#[derive(Debug)]
pub struct AgentProcess {
    pub name: String,
    child: Child,
}

impl AgentProcess {
    /// Starts `freimesh-agent run CONFIG`, inside network namespace `netns`
    /// if given, with its log in `log`.
    pub fn start(
        name: &str,
        config: &Path,
        log: &Path,
        netns: Option<&str>,
    ) -> anyhow::Result<Self> {
        let agent = agent_binary()?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&agent);
                c
            }
            None => Command::new(&agent),
        };
        command
            .arg("run")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = command
            .spawn()
            .with_context(|| format!("starting agent {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the agent to stop (SIGTERM) and waits up to `grace`, then kills.
    pub fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    bail!("agent {} exited with {status} on SIGTERM", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "agent {} did not stop within {grace:?} of SIGTERM",
            self.name
        )
    }

    /// Kills the agent without warning, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Starts one agent per planned node on this machine (no namespace) and
/// waits until each answers on its control socket.
pub fn start_all(nodes: &[crate::mesh::PlannedNode]) -> anyhow::Result<Vec<AgentProcess>> {
    let mut agents = Vec::new();
    for node in nodes {
        let _ = std::fs::remove_file(&node.socket);
        agents.push(AgentProcess::start(
            &node.name,
            &node.config,
            &node.log,
            None,
        )?);
    }
    for node in nodes {
        wait_for_path(&node.socket, Duration::from_secs(10)).with_context(|| {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            format!(
                "agent {} did not start; its log ({}):\n{log}",
                node.name,
                node.log.display()
            )
        })?;
    }
    Ok(agents)
}

/// Waits until `path` exists (an agent's control socket appears once it is
/// up).
pub fn wait_for_path(path: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
