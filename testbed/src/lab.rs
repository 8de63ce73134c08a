//! Network-namespace labs: namespaces, veth links and processes that a lab
//! creates, and removes again when it is dropped, even after a failed
//! assertion or a panic.
//!
//! Every namespace name starts with a prefix unique to this process, so
//! labs running in parallel (or a stale one from a killed run) never touch
//! each other, and nothing outside the lab's own namespaces is changed.
//! Every address a lab uses lives inside its namespaces.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail};

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Whether this process may create network namespaces.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// For privileged tests: `true` to go ahead; `false` (after saying why) to
/// skip when not root. Under CI (`CI` set) a missing privilege is a failure,
/// never a silent skip.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs root (network namespaces) and CI is set"
    );
    eprintln!("SKIPPED {test}: needs root for network namespaces");
    false
}

/// A set of namespaces and veth links, torn down on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    /// A new, empty lab. `tag` appears in namespace names to make them
    /// recognisable (`ip netns list`).
    pub fn new(tag: &str) -> Self {
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            prefix: format!("fm{}{tag}{n}", std::process::id()),
            namespaces: Vec::new(),
        }
    }

    /// The full name of the lab's namespace `short`.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Creates namespace `short` with its loopback up.
    pub fn add_namespace(&mut self, short: &str) -> anyhow::Result<String> {
        let name = self.ns(short);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        self.namespaces.push(name.clone());
        self.exec(short, &["ip", "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// Joins two namespaces with a veth pair: `a_if` in `a` with `a_addr`
    /// (CIDR), `b_if` in `b` with `b_addr`.
    pub fn veth(
        &self,
        a: &str,
        a_if: &str,
        a_addr: &str,
        b: &str,
        b_if: &str,
        b_addr: &str,
    ) -> anyhow::Result<()> {
        let (ns_a, ns_b) = (self.ns(a), self.ns(b));
        run(Command::new("ip").args([
            "link", "add", a_if, "netns", &ns_a, "type", "veth", "peer", "name", b_if, "netns",
            &ns_b,
        ]))?;
        for (short, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            self.exec(short, &["ip", "addr", "add", addr, "dev", ifname])?;
            self.exec(short, &["ip", "link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// Runs a command inside namespace `short`; fails if it fails.
    pub fn exec(&self, short: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(short)]).args(args);
        run(&mut command)
    }

    /// Runs a command inside namespace `short` and returns its output
    /// whatever its exit status.
    pub fn try_exec(&self, short: &str, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(args)
            .output()
            .with_context(|| format!("running {args:?} in {}", self.ns(short)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            // Processes still inside would keep the namespace alive under
            // its mount; ours are killed by their own handles before this.
            // What is left was started by them (a killed agent's dnsmasq):
            // only this lab's processes live in this lab's namespaces.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

fn run(command: &mut Command) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}
