//! Interop: a standard WireGuard peer (Debian's wireguard-go, configured
//! with `wg`) and a freimesh agent complete handshakes in both directions and
//! exchange traffic both ways. Root only.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use freimesh_agent::identity::PrivateKey;
use freimesh_testbed::lab::{Lab, require_root};
use freimesh_testbed::netns_mesh::parse_ping_received;
use freimesh_testbed::process::{AgentProcess, wait_for_path};
use freimesh_testbed::traffic::{retry, wg};

/// wireguard-go in the foreground (`-f`: its daemonising mode can fork
/// without end here), killed by its own pid on drop.
struct WireguardGo(Child);

impl Drop for WireguardGo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn wg_pubkey_agrees_with_freimesh() -> anyhow::Result<()> {
    if Command::new("wg").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "wireguard-tools missing under CI"
        );
        eprintln!("SKIPPED: wg not installed");
        return Ok(());
    }
    for _ in 0..5 {
        let private = wg(&["genkey"], None)?;
        let public = wg(&["pubkey"], Some(&private))?;
        assert_eq!(
            PrivateKey::from_base64(&private)?.public().to_base64(),
            public
        );
        let ours = PrivateKey::generate();
        assert_eq!(
            wg(&["pubkey"], Some(&ours.to_base64()))?,
            ours.public().to_base64()
        );
    }
    Ok(())
}

#[test]
fn wireguard_go_peer_handshakes_and_exchanges_traffic_both_ways() -> anyhow::Result<()> {
    if !require_root("wireguard_go_interop") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut lab = Lab::new("wg");
    lab.add_namespace("fm")?;
    lab.add_namespace("wg")?;
    lab.veth(
        "fm",
        "to-wg",
        "172.30.0.1/24",
        "wg",
        "to-fm",
        "172.30.0.2/24",
    )?;

    let wg_private = wg(&["genkey"], None)?;
    let wg_public = wg(&["pubkey"], Some(&wg_private))?;
    let wg_key_file = dir.path().join("wg.key");
    std::fs::write(&wg_key_file, &wg_private)?;
    let fm_key = PrivateKey::generate();
    let fm_key_file = dir.path().join("fm.key");
    fm_key.write_new(&fm_key_file)?;

    // The standard peer: wireguard-go + wg, nothing of ours.
    let ifname = format!("wgfm{}", std::process::id() % 100_000);
    let wg_go = WireguardGo(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns("wg"),
                "wireguard-go",
                "-f",
                &ifname,
            ])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting wireguard-go")?,
    );
    retry(Duration::from_secs(10), || {
        lab.exec("wg", &["ip", "link", "show", &ifname]).map(|_| ())
    })?;
    let key_path = wg_key_file.to_string_lossy().to_string();
    lab.exec(
        "wg",
        &[
            "wg",
            "set",
            &ifname,
            "private-key",
            &key_path,
            "listen-port",
            "51820",
            "peer",
            &fm_key.public().to_base64(),
            "endpoint",
            "172.30.0.1:51820",
            "allowed-ips",
            "10.99.0.1/32,fd99::1/128",
        ],
    )?;
    lab.exec("wg", &["ip", "addr", "add", "10.99.0.2/32", "dev", &ifname])?;
    lab.exec("wg", &["ip", "link", "set", &ifname, "up"])?;
    lab.exec(
        "wg",
        &["ip", "route", "add", "10.99.0.1/32", "dev", &ifname],
    )?;

    // The freimesh agent, with the wg peer as a link restricted to its
    // addresses (cryptokey routing, as a plain WireGuard peer expects).
    let config = dir.path().join("fm.toml");
    let socket = dir.path().join("fm.sock");
    std::fs::write(
        &config,
        format!(
            r#"[node]
name = "fm"
private_key_file = "{}"
listen = "0.0.0.0:51820"
addresses = ["10.99.0.1/32", "fd99::1/128"]
control_socket = "{}"

[[link]]
name = "wg"
public_key = "{wg_public}"
endpoint = "172.30.0.2:51820"
profile = "wireguard"
allowed_sources = ["10.99.0.2/32"]

[[route]]
prefix = "10.99.0.2/32"
via = ["wg"]
"#,
            fm_key_file.display(),
            socket.display()
        ),
    )?;
    let log = dir.path().join("fm.log");
    let agent = AgentProcess::start("fm", &config, &log, Some(&lab.ns("fm")))?;
    wait_for_path(&socket, Duration::from_secs(10))?;

    let ping = |from: &str, to: &str| -> anyhow::Result<u32> {
        let out = lab.try_exec(
            from,
            &["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", to],
        )?;
        parse_ping_received(&out)
    };
    // freimesh → wireguard-go, then back.
    retry(Duration::from_secs(15), || match ping("fm", "10.99.0.2")? {
        0 => bail!("no reply from the wireguard-go peer yet"),
        _ => Ok(()),
    })
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    assert_eq!(ping("fm", "10.99.0.2")?, 3);
    assert_eq!(ping("wg", "10.99.0.1")?, 3);

    let handshakes = lab.exec("wg", &["wg", "show", &ifname, "latest-handshakes"])?;
    let text = String::from_utf8_lossy(&handshakes.stdout);
    let stamp: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(stamp > 0, "wg reports no handshake: {text}");
    let transfer = lab.exec("wg", &["wg", "show", &ifname, "transfer"])?;
    let text = String::from_utf8_lossy(&transfer.stdout);
    let numbers: Vec<u64> = text
        .split_whitespace()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(
        numbers.len() == 2 && numbers.iter().all(|n| *n > 0),
        "traffic not both ways: {text}"
    );

    // A source the wg peer may not use is dropped by the agent.
    lab.exec(
        "wg",
        &["ip", "addr", "add", "10.99.0.77/32", "dev", &ifname],
    )?;
    let out = lab.try_exec(
        "wg",
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "10.99.0.77",
            "10.99.0.1",
        ],
    )?;
    assert_eq!(parse_ping_received(&out)?, 0, "spoofed source got through");
    let status = freimesh_testbed::traffic::status(&socket)?;
    assert!(
        status.engine.drops["spoofed_source"] >= 2,
        "drops: {:?}",
        status.engine.drops
    );
    assert_eq!(
        status.engine.drops["no_route"], 0,
        "dropped for the right reason"
    );

    agent.stop(Duration::from_secs(5))?;
    drop(wg_go);
    Ok(())
}
