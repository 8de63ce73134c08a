//! The town lab (issue 13 item 6) in CI: twelve routers on radio cells,
//! two with an uplink to the controller, configured with item 5's
//! minimum. Everything the lab checks must hold (every router enrols and
//! reaches every other, cold and headless; the revoked router and the
//! strangers get no link); its timings must stay within generous bounds
//! for a loaded 2-core machine with debug binaries (the targets are
//! benchmarks, in docs/benchmarks.md). Root only; `FREIMESH_LAB_JSON=1`
//! prints the figures as JSON.

use freimesh_testbed::town::{self, TownOptions};

/// The failover lab's bound on a silent cut's gap in CI. The target is
/// 200 ms; docs/benchmarks.md (town) says why a cut in the town can cost
/// more today.
const CUT_GAP_BOUND_MS: f64 = 3_000.0;
/// The longest gap the CI run accepts while the controller comes back.
const RESYNC_GAP_BOUND_MS: f64 = 3_000.0;
/// New neighbour to traffic (target 2 s median).
const DISCOVERY_LINK_BOUND_MS: f64 = 10_000.0;
/// Beacon traffic per interface (target 1 kbit/s).
const BEACON_BOUND_BPS: f64 = 2_000.0;

#[test]
fn a_town_forms_enrols_fails_over_and_restarts_without_its_controller() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("town_lab") {
        return Ok(());
    }
    // Routers without an uplink reach the controller only through the
    // mesh, which protocol version 6 brings; before it every router gets
    // an uplink.
    let uplink_everywhere = freimesh_proto::PROTOCOL_VERSION < 6;
    if uplink_everywhere {
        eprintln!("town_lab: protocol < 6: every router gets an uplink");
    }
    let started = std::time::Instant::now();
    let report = town::run(&TownOptions {
        probe_binary: env!("CARGO_BIN_EXE_freimesh-testbed").into(),
        uplink_everywhere,
        keep: std::env::var_os("FREIMESH_LAB_KEEP").is_some(),
    })?;
    let json = serde_json::to_string(&report)?;
    eprintln!(
        "town lab ({:.0} s): {json}",
        started.elapsed().as_secs_f64()
    );
    if std::env::var_os("FREIMESH_LAB_JSON").is_some() {
        println!("{json}");
    }
    assert_eq!(report.routers, 12);
    if !uplink_everywhere {
        assert_eq!(report.uplinks, 2);
        assert!(report.deepest_cells_from_uplink >= 3, "{json}");
    }
    assert!(
        report.failover_gap_ms < CUT_GAP_BOUND_MS,
        "silent cut of {}: gap {:.0} ms",
        report.failover_cut,
        report.failover_gap_ms
    );
    // The controller's return: no gap is the benchmark target; thirty-one
    // runs of 2026-12-06 lost 10–126 ms (docs/benchmarks.md, town). The
    // bound catches a return that stops the flow for seconds again.
    assert!(
        report.resync_gap_ms < RESYNC_GAP_BOUND_MS,
        "the controller's return: gap {:.0} ms",
        report.resync_gap_ms
    );
    let link_ms = report
        .discovery_link_ms
        .expect("first pings across the far cell's links were measured");
    // Generous bounds: the targets (2 s, 1 kbit/s) are benchmarks, and a
    // loaded CI machine with debug agents is slower than a router.
    assert!(
        link_ms <= DISCOVERY_LINK_BOUND_MS,
        "new neighbour to traffic: {link_ms:.0} ms"
    );
    assert!(
        report.beacon_bps_per_interface <= BEACON_BOUND_BPS,
        "beacons: {:.0} bit/s per interface",
        report.beacon_bps_per_interface
    );
    Ok(())
}
