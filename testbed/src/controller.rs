//! A real `freimesh-controller` for the demo and the labs: initialised in a
//! scratch directory (embedded SQLite, the default), serving on loopback or
//! inside a namespace, killed by its own pid when dropped. Optionally with
//! its admin API (`--api ADDR`) and an operator token for it.

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
    /// Where the admin API listens (`None`: started with `--api off`).
    pub api: Option<SocketAddr>,
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
/// with its admin API on `api` (or `--api off`), appending to `log`.
fn spawn_run(
    db: &Path,
    listen: SocketAddr,
    api: Option<SocketAddr>,
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
        // Off unless asked for: the default (127.0.0.1:7780) would collide
        // between demos and tests running side by side.
        .arg("--api")
        .arg(api.map_or_else(|| "off".to_owned(), |a| a.to_string()))
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
        Self::start_with_api(dir, listen, None, netns)
    }

    /// Like [`ControllerProcess::start`], with the admin API on `api`.
    pub fn start_with_api(
        dir: &Path,
        listen: SocketAddr,
        api: Option<SocketAddr>,
        netns: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_with_init(dir, listen, api, netns, &[])
    }

    /// Like [`ControllerProcess::start_with_api`], with `init_extra`
    /// appended to `freimesh-controller init` (e.g. `--clients-ipv4
    /// 10.100.0.0/16`).
    pub fn start_with_init(
        dir: &Path,
        listen: SocketAddr,
        api: Option<SocketAddr>,
        netns: Option<&str>,
        init_extra: &[&str],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = dir.join("controller.db");
        let db_arg = db.to_string_lossy().to_string();
        let mut init = vec![
            "init",
            "--ula",
            "fd99::/48",
            "--ipv4",
            "10.99.0.0/16",
            "--db",
            &db_arg,
        ];
        init.extend_from_slice(init_extra);
        let public_key = run_cli(&init)?.trim().to_owned();
        let log = dir.join("controller.log");
        let child = spawn_run(&db, listen, api, netns, &log)?;
        let this = Self {
            child,
            netns: netns.map(str::to_owned),
            endpoint: listen,
            public_key,
            db,
            log,
            api,
        };
        // Ready once it accepts connections (on loopback; in a namespace the
        // agents' reconnect backoff covers a slow start).
        if netns.is_none() {
            for addr in std::iter::once(listen).chain(api) {
                crate::traffic::retry(Duration::from_secs(10), || {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                        .map(|_| ())
                        .with_context(|| {
                            let log = std::fs::read_to_string(&this.log).unwrap_or_default();
                            format!("controller not listening on {addr} yet; its log:\n{log}")
                        })
                })?;
            }
        }
        Ok(this)
    }

    /// Starts the controller again on the same database (after
    /// [`ControllerProcess::kill`], or killing it first).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = spawn_run(
            &self.db,
            self.endpoint,
            self.api,
            self.netns.as_deref(),
            &self.log,
        )?;
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

    /// A one-time join token that approves `prefixes` for the node
    /// enrolling with it (`token create --prefix P …`).
    pub fn token_with_prefixes(&self, prefixes: &[String]) -> anyhow::Result<String> {
        let db = self.db.to_string_lossy().to_string();
        let mut args = vec!["token", "create", "--db", &db, "--expires", "1h"];
        for p in prefixes {
            args.extend(["--prefix", p]);
        }
        Ok(run_cli(&args)?.trim().to_owned())
    }

    /// A one-time join token that approves `prefixes` and `roles`
    /// (`gateway`, `public-wifi`) for the node enrolling with it (`token
    /// create --prefix P … --roles R,…`): a role a node requests takes
    /// effect only once approved.
    pub fn token_with_roles(&self, prefixes: &[String], roles: &[&str]) -> anyhow::Result<String> {
        let db = self.db.to_string_lossy().to_string();
        let mut args = vec!["token", "create", "--db", &db, "--expires", "1h"];
        for p in prefixes {
            args.extend(["--prefix", p]);
        }
        let roles = roles.join(",");
        if !roles.is_empty() {
            args.extend(["--roles", &roles]);
        }
        Ok(run_cli(&args)?.trim().to_owned())
    }

    /// `freimesh-controller ARGS --db DB`, whatever its exit status: for
    /// commands a lab expects to fail.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Command::new(controller_binary()?)
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .env("NO_COLOR", "1")
            .output()
            .with_context(|| format!("running freimesh-controller {args:?}"))
    }

    /// `freimesh-controller ARGS --db DB`; its trimmed stdout, or an error
    /// with its stderr.
    pub fn cli_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.cli(args)?;
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

    /// `freimesh-controller node list` as printed.
    pub fn node_list(&self) -> anyhow::Result<String> {
        run_cli(&["node", "list", "--db", &self.db.to_string_lossy()])
    }

    /// `freimesh-controller operator add NAME`: a new operator token for
    /// the admin API (printed once, stored hashed).
    pub fn operator_add(&self, name: &str) -> anyhow::Result<String> {
        Ok(
            run_cli(&["operator", "add", name, "--db", &self.db.to_string_lossy()])?
                .trim()
                .to_owned(),
        )
    }

    /// Registry ids by hostname, from `node list`.
    pub fn node_ids(&self) -> anyhow::Result<std::collections::BTreeMap<String, u32>> {
        Ok(self
            .node_list()?
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let id = fields.next()?.parse().ok()?;
                let _state = fields.next()?;
                Some((fields.next()?.to_owned(), id))
            })
            .collect())
    }

    /// `freimesh-controller link cost A B COST`: the operator's cost of the
    /// link between registry ids `a` and `b` (about 1000 is one clean hop).
    pub fn link_cost(&self, a: u32, b: u32, cost: u32) -> anyhow::Result<()> {
        let (a, b, cost) = (a.to_string(), b.to_string(), cost.to_string());
        run_cli(&[
            "link",
            "cost",
            &a,
            &b,
            &cost,
            "--db",
            &self.db.to_string_lossy(),
        ])
        .map(drop)
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
