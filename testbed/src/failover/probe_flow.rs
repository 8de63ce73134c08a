//! A running 1 kHz probe flow between two network namespaces: the
//! `probe-recv` receiver and the `probe-send` sender (this crate's binary,
//! started with `ip netns exec`), for labs that measure the traffic gap
//! around an event they cause themselves (drain, gateway failure).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::probe;

/// Time for the receiver to bind before the sender starts, and for the
/// last probes in flight to land after it stops.
const PROBE_SETTLE: Duration = Duration::from_millis(300);

/// A probe sender and receiver. Dropping it closes their stdin (they stop)
/// and waits for them, so neither outlives its namespace.
#[derive(Debug)]
pub struct ProbeFlow {
    /// The sender first: it must stop before the receiver.
    children: Vec<Child>,
    dir: PathBuf,
}

impl ProbeFlow {
    /// Starts the receiver on `to` in namespace `receiver_ns`, then a
    /// 1 kHz sender from `from` in `sender_ns`; `binary` is
    /// `freimesh-testbed`, `dir` holds the flow's files.
    pub fn start(
        binary: &Path,
        sender_ns: &str,
        from: IpAddr,
        receiver_ns: &str,
        to: SocketAddr,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let spawn = |ns: &str, args: Vec<String>| -> anyhow::Result<Child> {
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(binary)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("starting a probe in {ns}"))
        };
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let recv = spawn(
            receiver_ns,
            vec![
                "probe-recv".into(),
                "--bind".into(),
                to.to_string(),
                "--out".into(),
                file("flow.recv"),
            ],
        )?;
        let mut this = Self {
            children: vec![recv],
            dir: dir.to_owned(),
        };
        std::thread::sleep(PROBE_SETTLE);
        let send = spawn(
            sender_ns,
            vec![
                "probe-send".into(),
                "--from".into(),
                SocketAddr::new(from, 0).to_string(),
                "--to".into(),
                to.to_string(),
                "--rate".into(),
                "1000".into(),
                "--duration-ms".into(),
                "600000".into(),
                "--out".into(),
                file("flow.sent"),
            ],
        )?;
        this.children.insert(0, send);
        Ok(this)
    }

    /// Stops both and reads what was sent and what arrived.
    pub fn finish(mut self) -> anyhow::Result<(Vec<u64>, Vec<probe::Received>)> {
        let mut children: Vec<Child> = self.children.drain(..).collect();
        if let Some(sender) = children.first_mut() {
            drop(sender.stdin.take());
            sender.wait()?;
        }
        std::thread::sleep(PROBE_SETTLE);
        for mut child in children {
            drop(child.stdin.take());
            let status = child.wait()?;
            anyhow::ensure!(status.success(), "a probe failed: {status}");
        }
        Ok((
            probe::read_sent(&self.dir.join("flow.sent"))?,
            probe::read_received(&self.dir.join("flow.recv"))?,
        ))
    }
}

impl Drop for ProbeFlow {
    fn drop(&mut self) {
        for mut child in self.children.drain(..) {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}
