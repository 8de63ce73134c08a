//! A real `freimesh-controller` for the demo and the labs: initialised in a
//! scratch directory (embedded SQLite, the default), serving on loopback or
//! inside a namespace, killed by its own pid when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::process::controller_binary;

/// A running controller.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Child,
    netns: Option<String>,
    pub endpoint: SocketAddr,
    pub public_key: String,
    pub db: PathBuf,
    pub log: PathBuf,
}

fn run_cli(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(controller_binary()?)
        .args(args)
        .output()
        .with_context(|| format!("running freimesh-controller {args:?}"))?;
    if !output.status.success() {
        bail!(
            "freimesh-controller {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned())
}

/// `freimesh-controller run` on `db`, inside namespace `netns` if given,
/// appending to `log`.
fn spawn_run(
    db: &Path,
    listen: SocketAddr,
    netns: Option<&str>,
    log: &Path,
) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let binary = controller_binary()?;
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&binary);
            c
        }
        None => Command::new(&binary),
    };
    command
        .arg("run")
        .arg("--db")
        .arg(db)
        .args(["--listen", &listen.to_string()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("starting freimesh-controller")
}

impl ControllerProcess {
    /// `freimesh-controller init` in `dir` (mesh fd99::/48 and 10.99.0.0/16),
    /// then `run` listening on `listen`, inside namespace `netns` if given.
    pub fn start(dir: &Path, listen: SocketAddr, netns: Option<&str>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = dir.join("controller.db");
        let db_arg = db.to_string_lossy().to_string();
        let public_key = run_cli(&[
            "init",
            "--ula",
            "fd99::/48",
            "--ipv4",
            "10.99.0.0/16",
            "--db",
            &db_arg,
        ])?
        .trim()
        .to_owned();
        let log = dir.join("controller.log");
        let child = spawn_run(&db, listen, netns, &log)?;
        let this = Self {
            child,
            netns: netns.map(str::to_owned),
            endpoint: listen,
            public_key,
            db,
            log,
        };
        // Ready once it accepts connections (on loopback; in a namespace the
        // agents' reconnect backoff covers a slow start).
        if netns.is_none() {
            crate::traffic::retry(Duration::from_secs(10), || {
                std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200))
                    .map(|_| ())
                    .context("controller not listening yet")
            })?;
        }
        Ok(this)
    }

    /// Starts the controller again on the same database (after
    /// [`ControllerProcess::kill`], or killing it first).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = spawn_run(&self.db, self.endpoint, self.netns.as_deref(), &self.log)?;
        Ok(())
    }

    /// A one-time join token, valid for an hour.
    pub fn token(&self) -> anyhow::Result<String> {
        Ok(run_cli(&[
            "token",
            "create",
            "--db",
            &self.db.to_string_lossy(),
            "--expires",
            "1h",
        ])?
        .trim()
        .to_owned())
    }

    /// `freimesh-controller node list` as printed.
    pub fn node_list(&self) -> anyhow::Result<String> {
        run_cli(&["node", "list", "--db", &self.db.to_string_lossy()])
    }

    /// Stops the controller (SIGKILL: it keeps nothing in memory that the
    /// database does not have).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
