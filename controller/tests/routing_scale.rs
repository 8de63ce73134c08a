//! Incremental updates on a benchmark-like city mesh (random geometric,
//! degree ≈ 4, with bridges and long paths that the small random meshes of
//! `routing_props.rs` lack) must match a fresh full computation, and the
//! deltas must turn every agent's old table into its new one.

use std::collections::BTreeMap;

use freimesh_controller::routing::city as topology;
use freimesh_controller::routing::{Metric, NodeIdx, RouteTable, Router};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const NODES: usize = 250;

#[test]
fn city_mesh_incremental_matches_full_recompute() {
    let mesh = topology::city(NODES, 42);
    let mut links: BTreeMap<(NodeIdx, NodeIdx), Metric> =
        mesh.links.iter().map(|&(a, b, m)| ((a, b), m)).collect();
    let mut drained = vec![false; NODES];
    let mut router = mesh.router();
    router.compute_all();
    let mut held: Vec<RouteTable> = (0..mesh.n).map(|s| router.table(s)).collect();
    assert!(
        held.iter().all(|t| t.len() == NODES - 1),
        "city mesh is connected"
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    for step in 0..24 {
        // Fail, re-weight or add a link; every fourth step also drains or
        // undrains a node in the same batch.
        let i = rng.random_range(0..links.len());
        let Some((&(a, b), &m)) = links.iter().nth(i) else {
            continue;
        };
        match step % 3 {
            0 => {
                router.remove_link(a, b);
                links.remove(&(a, b));
            }
            1 => {
                let m2 = Metric(m.0 / 2 + rng.random_range(1..m.0.max(2)));
                router.set_link(a, b, m2);
                links.insert((a, b), m2);
            }
            _ => {
                let c = rng.random_range(0..mesh.n);
                if c != a {
                    router.set_link(a, c, m);
                    links.insert((a.min(c), a.max(c)), m);
                }
            }
        }
        if step % 4 == 3 {
            let n = rng.random_range(0..mesh.n);
            let on = step % 8 == 3;
            router.set_drained(n, on);
            drained[usize::try_from(n).unwrap_or(0)] = on;
        }
        let deltas = router.update();

        let mut fresh = Router::new();
        for n in 0..mesh.n {
            fresh.add_node(n);
        }
        for (&(x, y), &w) in &links {
            fresh.set_link(x, y, w);
        }
        for (n, &on) in (0..).zip(&drained) {
            fresh.set_drained(n, on);
        }
        fresh.compute_all();
        for (s, table) in (0..mesh.n).zip(held.iter_mut()) {
            table.apply(deltas.get(&s).map_or(&[], Vec::as_slice));
            assert_eq!(*table, fresh.table(s), "step {step}: agent table of {s}");
            assert_eq!(router.table(s), *table, "step {step}: router table of {s}");
        }
    }
}
