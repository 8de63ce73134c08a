//! The failover lab (issue 3) on the diamond, in CI: freimesh must route
//! around a silent link cut and a transit crash with a generous bound (the
//! tight figures belong to `scripts/failover-bench`; machines are noisy),
//! and the runner must measure a real failover of babeld. Root only (see
//! `lab::require_root`).

use std::path::{Path, PathBuf};

use freimesh_testbed::failover::files::Action;
use freimesh_testbed::failover::report::RunReport;
use freimesh_testbed::failover::{LabTopology, Scenario, System, runner};

/// Generous on purpose: the targets are 200 ms (default profile)
/// and 60 ms (fast); 2 s still fails a mesh without liveness, which loses
/// the flow until the link is restored (4 s).
const GAP_BOUND_MS: f64 = 2000.0;

fn labs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("labs")
}

fn run(scenario: &str, system: &System) -> anyhow::Result<RunReport> {
    let topo = LabTopology::load(&labs().join("diamond.toml"))?;
    let scenario = Scenario::load(&labs().join(format!("{scenario}.toml")), &topo)?;
    let report = runner::run(
        &topo,
        &scenario,
        system,
        Path::new(env!("CARGO_BIN_EXE_freimesh-testbed")),
    )?;
    eprint!("{}", report.table());
    Ok(report)
}

/// The failure window stays under the bound, and after the repair event
/// (restore / restart) traffic flows again, for every flow.
fn assert_fails_over_and_recovers(report: &RunReport) {
    let worst = report
        .worst_failure()
        .expect("the scenario breaks something");
    assert!(
        worst.longest_gap_ms < GAP_BOUND_MS,
        "{}: longest gap {:.1} ms after the failure (bound {GAP_BOUND_MS} ms)\n{}",
        report.system,
        worst.longest_gap_ms,
        report.table()
    );
    for flow in &report.flows {
        let last = flow.windows.last().expect("windows");
        assert!(
            last.stats.flowing_at_end && last.stats.received > 0,
            "{}: {}→{} does not flow after {}\n{}",
            report.system,
            flow.from,
            flow.to,
            last.event,
            report.table()
        );
    }
}

#[test]
fn freimesh_routes_around_a_silent_cut_two_hops_from_the_sender() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("failover silent cut") {
        return Ok(());
    }
    let report = run("silent-cut", &System::Freimesh { profile: None })?;
    assert_fails_over_and_recovers(&report);
    Ok(())
}

#[test]
fn freimesh_routes_around_a_crashed_transit_node() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("failover node crash") {
        return Ok(());
    }
    let report = run("node-crash", &System::Freimesh { profile: None })?;
    assert_fails_over_and_recovers(&report);
    Ok(())
}

/// Carrier loss with every profile (issue 14): the switch needs no
/// detection, and the cut is held for 12 s so that a dead link that keeps
/// its neighbour's kernel queue full (probed at the full heartbeat rate,
/// see `DOWN_PROBE_INTERVAL` in the agent's liveness) would silence the
/// alternate path too: that cost the fast profile 1.2 s and more.
#[test]
fn freimesh_routes_around_a_long_carrier_cut_with_every_profile() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("failover carrier cut") {
        return Ok(());
    }
    for profile in [None, Some("fast".to_owned())] {
        let report = run("carrier-cut-long", &System::Freimesh { profile })?;
        assert_fails_over_and_recovers(&report);
    }
    Ok(())
}

/// babeld with 50 ms hellos fails over in a few hundred ms on the same
/// diamond: the runner sees a real outage (packets lost, a gap well above
/// the 1 ms probe interval) and the repair.
#[test]
fn the_runner_measures_babeld_failing_over() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("failover babeld") {
        return Ok(());
    }
    if System::BabeldFast.check_installed().is_err() && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED failover babeld: babeld is not installed");
        return Ok(());
    }
    let report = run("silent-cut", &System::BabeldFast)?;
    assert_fails_over_and_recovers(&report);
    let worst = report.worst_failure().expect("a failure window");
    assert!(
        worst.longest_gap_ms > 20.0 && worst.received < worst.sent,
        "the cut cost babeld nothing: is the cut on its path?\n{}",
        report.table()
    );
    Ok(())
}

/// Every shipped scenario fits its topology, and each silent cut sits on
/// the second hop of the first flow's primary path (two hops from the
/// sender, where only a withdrawal or a remote detection can help).
#[test]
fn shipped_labs_parse_and_cut_two_hops_from_the_sender() -> anyhow::Result<()> {
    for (topology, scenarios) in [
        (
            "diamond",
            &[
                "silent-cut",
                "carrier-cut",
                "carrier-cut-long",
                "node-crash",
            ][..],
        ),
        ("ring", &["ring-silent-cut"][..]),
        ("grid3x3", &["grid-silent-cut"][..]),
    ] {
        let topo = LabTopology::load(&labs().join(format!("{topology}.toml")))?;
        let flow = topo.flows.first().expect("a flow");
        let first = topo.topology.routes_from(flow.from)[&flow.to][0];
        let second = topo.topology.routes_from(first)[&flow.to][0];
        for name in scenarios {
            let scenario = Scenario::load(&labs().join(format!("{name}.toml")), &topo)?;
            let failure = scenario.events[0].action;
            let on_second_hop = match failure {
                Action::CutSilent(k) | Action::CutCarrier(k) => {
                    let l = &topo.links[k];
                    (l.a, l.b) == (first, second) || (l.a, l.b) == (second, first)
                }
                Action::KillNode(n) => n == first,
                _ => false,
            };
            assert!(
                on_second_hop,
                "{name} on {topology}: {} is not two hops from {}",
                failure.describe(&topo),
                topo.name(flow.from)
            );
        }
    }
    Ok(())
}
