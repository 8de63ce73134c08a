//! The gateway lab (issue 7): a public client gets its address by DHCP
//! from its node and reaches an "internet" host behind two gateways
//! through the mesh (ap → t1 → gw1, NAT at the gateway). Under a 1 kHz UDP
//! probe flow the primary gateway is killed (SIGKILL) and started again,
//! then its uplink is cut silently (nftables netdev drop at both ends, the
//! link stays up) and restored: the flow continues through gw2 each time,
//! and the client keeps its address throughout. Root only.
//!
//! The target for each failover gap is 300 ms (docs/benchmarks.md has the
//! measured figures); the assertion is a bound a loaded CI machine cannot
//! miss by accident, so the test fails on a broken failover, not on noise.

use std::time::Duration;

use freimesh_testbed::gateway_lab::flow::{self, KILL, UPLINK_CUT};
use freimesh_testbed::gateway_lab::{CityLab, GW1, GW2, T1};

const TESTBED: &str = env!("CARGO_BIN_EXE_freimesh-testbed");
/// The bound asserted on each failover gap (target: 300 ms).
const GAP_BOUND_MS: f64 = 2000.0;

#[test]
fn client_traffic_survives_a_dead_gateway_and_a_silently_dead_uplink() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("gateway_lab") {
        return Ok(());
    }
    let mut lab = CityLab::start("gw")?;
    let client = lab.lease()?;
    eprintln!("client leased {client}; IPv6: {:?}", lab.client_v6()?);
    let pool: ipnet::Ipv4Net = freimesh_testbed::gateway_lab::CLIENTS_IPV4.parse()?;
    assert!(
        pool.contains(&client.addr()),
        "{client} is not from the public client pool {pool}"
    );
    lab.wait_internet(Duration::from_secs(60))?;
    // Routes settle as the links' first measurements arrive: give t1 a
    // moment to hold both gateways.
    let settle = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (_, listed) = lab.default_hop(T1)?;
        if (listed.contains(&GW1) && listed.contains(&GW2)) || std::time::Instant::now() > settle {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        listed.contains(&GW1) && listed.contains(&GW2),
        "t1's default route lists both gateways: {listed:?}\n{}",
        lab.diagnose()
    );

    let report = flow::run_scenario(&mut lab, std::path::Path::new(TESTBED), client)?;
    eprint!("{}", report.table());
    for event in &report.events {
        assert!(
            event.stats.flowing_at_end,
            "the flow did not recover after {:?}:\n{}\n{}",
            event.event,
            report.table(),
            lab.diagnose()
        );
    }
    for event in [KILL, UPLINK_CUT] {
        let gap = report.gap(event).map(|e| e.stats.longest_gap_ms);
        assert!(
            gap.is_some_and(|g| g <= GAP_BOUND_MS),
            "gap after {event}: {gap:?} ms, bound {GAP_BOUND_MS} ms (target 300 ms)\n{}",
            report.table()
        );
    }
    assert_eq!(
        report.client_after,
        Some(client),
        "the client's address changed during failover"
    );
    // And the client is still online through gw1 once it is whole again.
    lab.wait_default_via(T1, GW1, Duration::from_secs(30))?;
    assert!(
        lab.ping(
            "client",
            freimesh_testbed::gateway_lab::INTERNET_HOST.into(),
            None,
            3
        )? >= 2
    );
    Ok(())
}
