//! The userspace lab: the demo's line of four agents on loopback, no root.

use freimesh_testbed::demo::{DemoOptions, run};

#[test]
fn userspace_line_carries_ping_and_tcp_across_three_hops() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    run(&DemoOptions {
        nodes: 4,
        dir: dir.path().to_owned(),
        once: true,
    })
}
