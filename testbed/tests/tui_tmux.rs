//! `freimesh-tui` in a real terminal: the demo's controller (with its admin
//! API) and six userspace agents, the TUI inside a detached tmux session of
//! 160×48, driven with `send-keys` and read with `capture-pane`. It visits
//! every screen, filters the nodes, opens one and drains it with `d` `y`;
//! the drain must reach the controller (the API says the node is drained
//! and has the event) and the event must show on the events screen. No
//! root needed; skipped with a notice when tmux or the TUI binary is
//! missing, except under CI.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use freimesh_proto::api::{EventKind, Node};
use freimesh_testbed::demo::ControlledDemo;
use freimesh_testbed::process::tui_binary;

/// A detached tmux session, killed when dropped (also when the test fails).
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(command: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let name = format!("freimesh-tui-test-{}", std::process::id());
        let mut tmux = Command::new("tmux");
        tmux.args(["new-session", "-d", "-s", &name, "-x", "160", "-y", "48"]);
        for (key, value) in env {
            tmux.arg("-e").arg(format!("{key}={value}"));
        }
        let status = tmux.args(command).status().context("running tmux")?;
        anyhow::ensure!(status.success(), "tmux new-session failed: {status}");
        Ok(Self { name })
    }

    fn send(&self, keys: &[&str]) -> anyhow::Result<()> {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()?;
        anyhow::ensure!(status.success(), "tmux send-keys {keys:?} failed");
        // One key at a time, like a person: the TUI reads them as events.
        std::thread::sleep(Duration::from_millis(150));
        Ok(())
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) -> anyhow::Result<()> {
        self.send(&["-l", text])
    }

    fn capture(&self) -> anyhow::Result<String> {
        let output = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()?;
        anyhow::ensure!(output.status.success(), "tmux capture-pane failed");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits until the screen satisfies `check`; the last screen otherwise.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture()?;
            if check(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("{what}: not on screen within {timeout:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Quietly: the session is gone already when the TUI quit.
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn tools_present() -> bool {
    let tmux = Command::new("tmux").arg("-V").output().is_ok();
    let tui = tui_binary().is_ok();
    if tmux && tui {
        return true;
    }
    let missing = if tmux { "freimesh-tui" } else { "tmux" };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "tui_tmux: {missing} missing under CI"
    );
    eprintln!("tui_tmux: skipped, {missing} missing (install tmux; cargo build -p freimesh-tui)");
    false
}

/// The first address of `node` without its prefix length, as the tables
/// show it.
fn first_address(node: &Node) -> String {
    node.addresses
        .first()
        .map(|a| a.addr().to_string())
        .unwrap_or_default()
}

#[test]
fn tui_shows_the_fleet_and_drains_a_node_in_a_real_terminal() -> anyhow::Result<()> {
    if !tools_present() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let demo = ControlledDemo::start(dir.path(), 6)?;
    let api = &demo.api;
    // Every agent connected and its links reported, as the TUI will show.
    let nodes = freimesh_testbed::traffic::retry(Duration::from_secs(30), || {
        let nodes = api.nodes()?;
        if nodes.len() == 6 && nodes.iter().all(|n| n.online && n.links_up >= 2) {
            Ok(nodes)
        } else {
            bail!("not every node online with its links yet: {nodes:?}")
        }
    })?;
    let tui = tui_binary()?;
    let tui = tui.to_string_lossy();
    let session = Tmux::start(
        &[
            &tui,
            "--api",
            api.base(),
            "--token",
            &demo.operator_token,
            "--lang",
            "en",
        ],
        &[("NO_COLOR", "1"), ("TERM", "xterm-256color")],
    )?;
    let timeout = Duration::from_secs(15);

    // 1 Overview: the address plan and the node count.
    session.send(&["1"])?;
    session.wait_for("the overview", timeout, |s| {
        s.contains("fd99::/48") && s.contains("Overview")
    })?;
    // 2 Nodes: every node with its address.
    session.send(&["2"])?;
    let screen = session.wait_for("every node in the table", timeout, |s| {
        s.contains("Nodes (6)") && nodes.iter().all(|n| s.contains(&first_address(n)))
    })?;
    assert!(screen.contains("active"), "{screen}");
    // 4 Links, 5 Gateways, 6 Events, 7 Redundancy.
    session.send(&["4"])?;
    session.wait_for("the links", timeout, |s| s.contains("RTT"))?;
    session.send(&["5"])?;
    session.wait_for("the gateways", timeout, |s| s.contains("No gateways yet."))?;
    session.send(&["6"])?;
    session.wait_for("the events", timeout, |s| s.contains("enrolled"))?;
    session.send(&["7"])?;
    // A ladder survives any single failure.
    session.wait_for("the redundancy", timeout, |s| {
        s.contains("No single point of failure.")
    })?;

    // Filter the nodes by one node's id, open it, drain it.
    let target = nodes
        .iter()
        .find(|n| n.hostname == demo.nodes[1].name)
        .context("node b in GET /nodes")?;
    session.send(&["2"])?;
    session.send(&["/"])?;
    session.type_text(&target.node_id)?;
    session.send(&["Enter"])?;
    let screen = session.wait_for("the filtered table", timeout, |s| {
        s.contains(&first_address(target)) && s.contains(&target.node_id)
    })?;
    for other in nodes.iter().filter(|n| n.id != target.id) {
        assert!(
            !screen.contains(&first_address(other)),
            "the filter left {} in:\n{screen}",
            other.hostname
        );
    }
    let title = format!("{} (#{}) · {}", target.hostname, target.id, target.node_id);
    session.send(&["Enter"])?;
    session.wait_for("the node's detail", timeout, |s| {
        s.contains(&title) && s.contains("Routes")
    })?;
    // 3 is the detail screen of the node just opened.
    session.send(&["3"])?;
    session.wait_for("the detail screen again", timeout, |s| s.contains(&title))?;
    session.send(&["d"])?;
    session.wait_for("the drain confirmation", timeout, |s| {
        s.contains(&format!("Drain {} (#{})?", target.hostname, target.id))
    })?;
    session.send(&["y"])?;

    // The controller drained it and recorded the event ...
    let drained = freimesh_testbed::traffic::retry(timeout, || {
        let node: Node = api
            .get(&format!("/nodes/{}", target.id))
            .map(|d: freimesh_proto::api::NodeDetail| d.node)?;
        if node.drained {
            Ok(node)
        } else {
            bail!("not drained yet")
        }
    })?;
    assert!(drained.drained);
    let event = api
        .events(0)?
        .into_iter()
        .find(|e| e.kind == EventKind::Drained { node: target.id })
        .context("the drained event in GET /events")?;
    // ... and the TUI shows it on the events screen, with its number.
    session.send(&["6"])?;
    let line = format!("{} drained", target.hostname);
    let seq = event.seq.to_string();
    let screen = session.wait_for("the drained event", timeout, |s| {
        s.lines()
            .any(|l| l.contains(&line) && l.split(|c: char| !c.is_ascii_digit()).any(|w| w == seq))
    })?;
    eprintln!("the events screen after the drain:\n{screen}");
    session.send(&["q"])?;
    drop(session);
    let ControlledDemo { agents, .. } = demo;
    for agent in agents {
        agent.stop(Duration::from_secs(5))?;
    }
    Ok(())
}
