//! A long-lived session across WireGuard's rekey: boringtun rekeys after
//! 120 s, and a report upstream (boringtun #495) describes sessions going
//! one-way deaf some seconds after a handshake. Two userspace agents ping each
//! other for 135 s; every ping must be answered and the handshake must have
//! been renewed. Slow on purpose; runs in parallel with the other tests.

use std::time::{Duration, Instant};

use freimesh_testbed::mesh::{self, Backend, Loopback};
use freimesh_testbed::process::start_all;
use freimesh_testbed::topology::Topology;
use freimesh_testbed::traffic::{ping, retry, status};

/// WireGuard's REKEY_AFTER_TIME plus margin.
const DURATION: Duration = Duration::from_secs(135);

#[test]
fn session_survives_rekey_in_both_directions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let topology = Topology::line(2);
    let underlay = Loopback::free_ports(2)?;
    let nodes = mesh::write_configs(
        dir.path(),
        &topology,
        Backend::Userspace,
        &underlay,
        &|_| String::new(),
    )?;
    let agents = start_all(&nodes)?;
    retry(Duration::from_secs(10), || {
        match ping(&nodes[0].socket, nodes[1].overlay_v4().into(), 1)? {
            s if s.received == 1 => Ok(()),
            _ => anyhow::bail!("no reply yet"),
        }
    })?;
    let started = Instant::now();
    let mut first_handshake_age = None;
    let mut rekeyed = false;
    let mut round = 0u32;
    while started.elapsed() < DURATION {
        round += 1;
        // Alternate directions so both sides' sending keys are exercised.
        let (from, to) = if round.is_multiple_of(2) {
            (0, 1)
        } else {
            (1, 0)
        };
        let summary = ping(&nodes[from].socket, nodes[to].overlay_v4().into(), 2)?;
        assert_eq!(
            summary.received,
            2,
            "round {round} at {:?}: {}→{} lost pings",
            started.elapsed(),
            nodes[from].name,
            nodes[to].name
        );
        let age = status(&nodes[0].socket)?.engine.links[0]
            .handshake_age_ms
            .unwrap_or(0);
        match first_handshake_age {
            None => first_handshake_age = Some(age),
            Some(_) if u128::from(age) + 1000 < started.elapsed().as_millis() => rekeyed = true,
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(rekeyed, "no new handshake within {DURATION:?}");
    for agent in agents {
        agent.stop(Duration::from_secs(5))?;
    }
    Ok(())
}
