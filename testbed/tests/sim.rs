//! The whole-mesh simulator in CI: a 200-node scenario set with fixed
//! seeds (every assert must hold), replay of a seed, and a deliberate loop
//! that the checks must catch. A failing run prints its seed.

use std::time::Duration;

use freimesh_testbed::sim::{self, SimConfig, SimReport, Simulation, check};

const NODES: usize = 200;

fn config(scenario: &str, seed: u64, secs: u64) -> SimConfig {
    SimConfig {
        nodes: NODES,
        duration: Duration::from_secs(secs),
        seed,
        scenario: scenario.into(),
        failure_every: Duration::from_secs(4),
    }
}

fn check_report(report: &SimReport) {
    assert!(
        report.passed(),
        "sim seed {} ({}, {} nodes) failed its asserts: {report:#?}",
        report.seed,
        report.scenario,
        report.nodes
    );
    assert!(
        report.failures > 0,
        "seed {} ({}): no failure was injected",
        report.seed,
        report.scenario
    );
    // Local repair: detection (3 × 50 ms) plus one check tick, plus the
    // slack of the check grid and one withdrawal hop.
    assert!(
        report.worst_local_repair_ms <= 150 + 100 + 100,
        "seed {} ({}): local repair took {} ms",
        report.seed,
        report.scenario,
        report.worst_local_repair_ms
    );
}

/// Every scenario on one 200-node mesh that warms up once (start-up is
/// most of the cost in a debug build).
#[test]
fn the_scenario_set_on_200_nodes() {
    let config = config("mixed", 101, 12);
    let mut s = Simulation::new(&config).expect("simulation");
    let names = [
        "link-failures",
        "double-link-failures",
        "node-crashes",
        "controller-away",
        "flapping-link",
        "drain",
        "mixed",
    ];
    let reports = s
        .run_scenario_set(&names)
        .unwrap_or_else(|e| panic!("sim seed {} failed to run: {e:#}", config.seed));
    for report in &reports {
        check_report(report);
    }
    assert!(reports.iter().map(|r| r.flows_recovered).sum::<u64>() > 0);
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        nodes: 40,
        duration: Duration::from_secs(30),
        seed: 7,
        ..SimConfig::default()
    };
    let a = sim::run(&config).expect("first run");
    let b = sim::run(&config).expect("second run");
    let same = |r: &SimReport| {
        let mut r = r.clone();
        r.wall_s = 0.0;
        r.wall = Duration::ZERO;
        r.peak_rss_kib = 0;
        r.warm_up_wall_s = 0.0;
        r
    };
    assert_eq!(same(&a), same(&b), "seed {} did not replay", config.seed);
    let other = sim::run(&SimConfig { seed: 8, ..config }).expect("other seed");
    assert_ne!(a.trace_digest, other.trace_digest);
}

#[test]
fn a_forced_loop_is_caught() {
    let config = SimConfig {
        nodes: 30,
        seed: 9,
        scenario: "link-failures".into(),
        ..SimConfig::default()
    };
    let mut s = Simulation::new(&config).expect("simulation");
    s.run_until(10_000_000_000).expect("warm-up");
    s.check_now();
    assert_eq!(s.loops(), 0, "a loop before any was made");
    // Two neighbours on a flow's path point at each other.
    let (src, dst) = s
        .flows()
        .into_iter()
        .find(|(src, dst)| {
            let addr = Simulation::address_of(&s.world, *dst).expect("address");
            matches!(check::trace(&s.world, *src, *dst, addr), check::Trace::Delivered { hops } if hops >= 2)
        })
        .expect("a flow of two hops or more");
    let (next, _) = s.world.nodes[src].neighbours[0];
    s.force_route(src, dst, next).expect("route at the source");
    s.force_route(next, dst, src).expect("route back");
    s.check_now();
    assert_eq!(
        s.loops(),
        1,
        "seed {}: the loop was not reported",
        config.seed
    );
}
