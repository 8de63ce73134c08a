//! The uplink checker against a real peer: a veth pair from the test's own
//! network namespace (the gateway) to a second one (the far side). The
//! far side answers pings until an nftables netdev rule drops everything
//! it receives, which is what a silent uplink cut looks like.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, time::timeout};

use super::{CheckerSettings, UplinkSettings, run_checker};
use crate::linux::tests::{PeerNamespace, TestResult, in_netns, sh};

fn ip(s: &str) -> IpAddr {
    match s.parse() {
        Ok(ip) => ip,
        Err(e) => panic!("bad test address {s}: {e}"),
    }
}

async fn verdict(rx: &mut mpsc::Receiver<bool>, within: Duration) -> Result<bool, String> {
    match timeout(within, rx.recv()).await {
        Ok(Some(up)) => Ok(up),
        Ok(None) => Err("the checker stopped".into()),
        Err(_) => Err(format!("no verdict within {within:?}")),
    }
}

/// Waits for the uplink to be up: right after the veth comes up, the
/// first probes may find no route or neighbour yet and the checker may
/// start with a "down" verdict.
async fn until_up(rx: &mut mpsc::Receiver<bool>, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if verdict(rx, left).await? {
            return Ok(());
        }
    }
}

async fn setup_link(peer: &PeerNamespace) -> TestResult {
    sh("ip", &["link", "set", "lo", "up"]).await?;
    sh(
        "ip",
        &[
            "link", "add", "up0", "type", "veth", "peer", "name", "far0", "netns", &peer.name,
        ],
    )
    .await?;
    sh("ip", &["addr", "add", "192.0.2.1/24", "dev", "up0"]).await?;
    sh(
        "ip",
        &["addr", "add", "fd00:72::1/64", "dev", "up0", "nodad"],
    )
    .await?;
    sh("ip", &["link", "set", "up0", "up"]).await?;
    peer.exec("ip", &["addr", "add", "192.0.2.2/24", "dev", "far0"])
        .await?;
    peer.exec(
        "ip",
        &["addr", "add", "fd00:72::2/64", "dev", "far0", "nodad"],
    )
    .await?;
    peer.exec("ip", &["link", "set", "far0", "up"]).await?;
    peer.exec("ip", &["link", "set", "lo", "up"]).await?;
    Ok(())
}

fn settings(targets: &[&str]) -> UplinkSettings {
    UplinkSettings {
        interface: "up0".into(),
        targets: targets.iter().map(|t| ip(t)).collect(),
        checker: CheckerSettings {
            interval: Duration::from_millis(50),
            misses: 3,
        },
    }
}

#[test]
fn silent_cut_is_detected_and_recovery_seen() {
    in_netns("silent_cut_is_detected_and_recovery_seen", || async {
        let peer = PeerNamespace::create("uplink")?;
        setup_link(&peer).await?;
        let (tx, mut rx) = mpsc::channel(8);
        let checker = tokio::spawn(run_checker(settings(&["192.0.2.2", "fd00:72::2"]), tx));

        // The veth and (for IPv6) neighbour discovery come up within a
        // second or so.
        until_up(&mut rx, Duration::from_secs(5)).await?;

        // Silent cut: the far side drops everything, no error comes back.
        peer.exec(
            "nft",
            &[
                "add table netdev cut; \
                 add chain netdev cut in { type filter hook ingress device far0 priority 0; policy drop; }",
            ],
        )
        .await?;
        let cut = Instant::now();
        assert!(!verdict(&mut rx, Duration::from_secs(2)).await?);
        let detected = cut.elapsed();

        peer.exec("nft", &["delete table netdev cut"]).await?;
        let restored = Instant::now();
        assert!(verdict(&mut rx, Duration::from_secs(3)).await?);
        let recovered = restored.elapsed();
        eprintln!(
            "uplink checker: silent cut detected after {detected:?}, recovery after {recovered:?}"
        );
        // 150 ms of silence after the last answer (≤ 50 ms before the cut);
        // the rest is slack for a loaded CI machine.
        assert!(
            detected <= Duration::from_millis(300),
            "detection took {detected:?}"
        );
        assert!(
            detected >= Duration::from_millis(90),
            "down too early: {detected:?}"
        );
        // Gate of 100 ms plus one probe interval.
        assert!(
            recovered >= Duration::from_millis(100),
            "up too early: {recovered:?}"
        );
        checker.abort();
        Ok(())
    });
}

#[test]
fn ipv6_target_alone_and_missing_interface() {
    in_netns("ipv6_target_alone_and_missing_interface", || async {
        let peer = PeerNamespace::create("uplink6")?;
        setup_link(&peer).await?;
        let (tx, mut rx) = mpsc::channel(8);
        let checker = tokio::spawn(run_checker(settings(&["fd00:72::2"]), tx));
        until_up(&mut rx, Duration::from_secs(5)).await?;
        checker.abort();

        let (tx, _rx) = mpsc::channel(8);
        let mut missing = settings(&["192.0.2.2"]);
        missing.interface = "nosuch0".into();
        let err = run_checker(missing, tx)
            .await
            .err()
            .ok_or("bound to a missing interface")?;
        assert!(err.to_string().contains("nosuch0"), "{err}");
        Ok(())
    });
}
