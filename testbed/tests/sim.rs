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

fn assert_passes(config: &SimConfig) -> SimReport {
    let report = sim::run(config).unwrap_or_else(|e| {
        panic!(
            "sim seed {} ({}) failed to run: {e:#}",
            config.seed, config.scenario
        )
    });
    assert!(
        report.passed(),
        "sim seed {} ({}, {} nodes) failed its asserts: {report:#?}",
        config.seed,
        config.scenario,
        config.nodes
    );
    assert!(
        report.failures > 0,
        "seed {}: no failure was injected",
        config.seed
    );
    // Local repair: detection (3 × 50 ms) plus one check tick, plus the
    // slack of the check grid and one withdrawal hop.
    assert!(
        report.worst_local_repair_ms <= 150 + 100 + 100,
        "seed {}: local repair took {} ms",
        config.seed,
        report.worst_local_repair_ms
    );
    report
}

#[test]
fn link_failures() {
    assert_passes(&config("link-failures", 101, 12));
}

#[test]
fn double_link_failures() {
    assert_passes(&config("double-link-failures", 102, 12));
}

#[test]
fn node_crashes_and_restarts() {
    assert_passes(&config("node-crashes", 103, 12));
}

#[test]
fn controller_away_and_back() {
    assert_passes(&config("controller-away", 104, 12));
}

#[test]
fn flapping_link() {
    assert_passes(&config("flapping-link", 105, 12));
}

#[test]
fn drained_node() {
    assert_passes(&config("drain", 106, 12));
}

#[test]
fn mixed_schedule() {
    let report = assert_passes(&config("mixed", 107, 30));
    assert!(report.flows_recovered > 0, "{report:#?}");
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
