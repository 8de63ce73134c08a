//! Userspace labs on loopback, no root: the demo's static line of four
//! agents, and the controller demo (a controller plus six agents that enrol
//! with join tokens and take their routes from it).

use freimesh_testbed::demo::{DemoOptions, run};

#[test]
fn userspace_line_carries_ping_and_tcp_across_three_hops() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    run(&DemoOptions {
        nodes: 4,
        dir: dir.path().to_owned(),
        once: true,
        static_routes: true,
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
    })
}
