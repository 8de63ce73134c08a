//! Userspace labs on loopback, no root: the demo's static line of four
//! agents, and the controller demo (a controller plus six agents that enrol
//! with join tokens and take their routes from it).

use std::time::Duration;

use freimesh_testbed::demo::{DemoOptions, run};

#[test]
fn userspace_line_carries_ping_and_tcp_across_three_hops() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    run(&DemoOptions {
        nodes: 4,
        dir: dir.path().to_owned(),
        once: true,
        static_routes: true,
        no_tui: true,
        interval: Duration::from_secs(20),
    })
}

#[test]
fn controller_demo_enrols_six_agents_and_routes_across_three_hops() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    run(&DemoOptions {
        nodes: 6,
        dir: dir.path().to_owned(),
        once: true,
        static_routes: false,
        no_tui: true,
        interval: Duration::from_secs(20),
    })
}

/// The demo without a terminal: after the checks it plays one round of
/// failures (a silent link cut through the demo's relay, its restore, a
/// SIGKILLed transit node and its restart) and fails unless the
/// controller's event API reported a failover.
#[test]
fn controller_demo_plays_a_failure_round_and_the_api_reports_failovers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    run(&DemoOptions {
        nodes: 6,
        dir: dir.path().to_owned(),
        once: false,
        static_routes: false,
        no_tui: true,
        interval: Duration::from_secs(4),
    })
}
