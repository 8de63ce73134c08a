//! Known answers on small meshes. Random meshes are in
//! `controller/tests/routing_props.rs`.

use super::*;

fn hops(primary: NodeIdx, alternates: &[NodeIdx]) -> NextHops {
    NextHops {
        primary,
        alternates: alternates.to_vec(),
    }
}

/// 0 – 1 – 3 and 0 – 2 – 3; the 0 – 2 link costs `m02`, the others 1.
fn diamond(m02: u32) -> Router {
    let mut r = Router::new();
    r.set_link(0, 1, Metric(1));
    r.set_link(0, 2, Metric(m02));
    r.set_link(1, 3, Metric(1));
    r.set_link(2, 3, Metric(1));
    r.compute_all();
    r
}

/// 3 × 3 grid, node = row · 3 + column, every link costs 1.
fn grid() -> Router {
    let mut r = Router::new();
    for row in 0..3 {
        for col in 0..3 {
            let n = row * 3 + col;
            if col < 2 {
                r.set_link(n, n + 1, Metric(1));
            }
            if row < 2 {
                r.set_link(n, n + 3, Metric(1));
            }
        }
    }
    r.compute_all();
    r
}

#[test]
fn diamond_equal_costs_tie_breaks_to_lower_index() {
    let r = diamond(1);
    assert_eq!(r.next_hops(0, 3), Some(hops(1, &[2])));
    assert_eq!(r.next_hops(1, 2), Some(hops(0, &[3])));
    // Direct neighbour: 2 is at distance 2 from 1, not closer than 0's 1.
    assert_eq!(r.next_hops(0, 1), Some(hops(1, &[])));
    assert_eq!(r.distance(0, 3), Some(2));
    assert_eq!(r.table(0).len(), 3);
}

#[test]
fn diamond_alternate_is_the_dearer_downstream_path() {
    let r = diamond(2);
    assert_eq!(r.next_hops(0, 3), Some(hops(1, &[2])));
    // Back from 3: 2 is as far from 0 (2) as 3 is, so not downstream.
    assert_eq!(r.next_hops(3, 0), Some(hops(1, &[])));
    // From 2, toward 1: via 3 (1 + 1) beats via 0 (2 + 1); 0 is downstream
    // (dist 1 < 2) so it is the alternate.
    assert_eq!(r.next_hops(2, 1), Some(hops(3, &[0])));
}

#[test]
fn diamond_drained_node_is_destination_but_not_transit() {
    let mut r = diamond(1);
    r.set_drained(1, true);
    let deltas = r.update();
    assert_eq!(r.next_hops(0, 3), Some(hops(2, &[])));
    assert_eq!(r.next_hops(3, 0), Some(hops(2, &[])));
    assert_eq!(r.next_hops(0, 1), Some(hops(1, &[])));
    // A drained source keeps its own routes.
    assert_eq!(r.next_hops(1, 2), Some(hops(0, &[3])));
    assert_eq!(
        deltas.get(&0).map(Vec::as_slice),
        Some(
            &[RouteDelta::Set {
                dst: 3,
                hops: hops(2, &[])
            }][..]
        )
    );
    r.set_drained(1, false);
    r.update();
    assert_eq!(r.next_hops(0, 3), Some(hops(1, &[2])));
}

#[test]
fn grid_known_answers() {
    let r = grid();
    assert_eq!(r.distance(0, 8), Some(4));
    assert_eq!(r.next_hops(0, 8), Some(hops(1, &[3])));
    assert_eq!(r.next_hops(4, 0), Some(hops(1, &[3])));
    assert_eq!(r.next_hops(1, 7), Some(hops(4, &[])));
    assert_eq!(r.next_hops(8, 0), Some(hops(5, &[7])));
}

#[test]
fn grid_link_failure_pushes_only_what_changed() {
    let mut r = grid();
    r.remove_link(1, 4);
    let deltas = r.update();
    assert_eq!(r.next_hops(1, 7), Some(hops(0, &[2])));
    assert_eq!(r.distance(1, 7), Some(4));
    assert!(deltas.get(&1).is_some_and(|d| d.contains(&RouteDelta::Set {
        dst: 7,
        hops: hops(0, &[2])
    })));
    // 6 → 2 went 3 → 4 → 1 → 2 or similar; corners far from the link whose
    // routes did not change get nothing.
    let mut fresh = grid();
    fresh.remove_link(1, 4);
    fresh.compute_all();
    for s in 0..9 {
        assert_eq!(r.table(s), fresh.table(s), "source {s}");
    }
    for (s, ds) in &deltas {
        for d in ds {
            let before = grid().next_hops(*s, d.dst());
            assert_ne!(
                before,
                r.next_hops(*s, d.dst()),
                "useless delta to {s}: {d:?}"
            );
        }
    }
}

#[test]
fn partition_removes_routes_and_node_removal_withdraws() {
    let mut r = diamond(1);
    r.remove_link(1, 3);
    r.remove_link(2, 3);
    let deltas = r.update();
    assert_eq!(r.next_hops(0, 3), None);
    assert!(deltas[&0].contains(&RouteDelta::Remove { dst: 3 }));
    assert!(deltas[&3].contains(&RouteDelta::Remove { dst: 0 }));
    r.remove_node(2);
    let deltas = r.update();
    assert_eq!(deltas[&0], vec![RouteDelta::Remove { dst: 2 }]);
    assert!(!deltas.contains_key(&2));
    assert_eq!(r.table(0).len(), 1);
}

#[test]
fn first_update_without_compute_all_is_a_full_dump() {
    let mut r = Router::new();
    r.set_link(0, 1, Metric(5));
    let deltas = r.update();
    assert_eq!(
        deltas[&0],
        vec![RouteDelta::Set {
            dst: 1,
            hops: hops(1, &[])
        }]
    );
    assert!(r.update().is_empty());
}

#[test]
fn metric_formula() {
    let m = |rtt_us, loss_ppm| {
        metric_of(&LinkCost {
            rtt_us,
            loss_ppm,
            override_cost: None,
        })
        .0
    };
    assert_eq!(m(0, 0), 1);
    assert_eq!(m(5_000, 0), 5_000);
    assert_eq!(m(5_000, 10_000), 16_000);
    assert_eq!(m(5_000, 100_000), 205_000);
    assert_eq!(m(5_000, 500_000), MAX_LINK_METRIC);
    let forced = LinkCost {
        rtt_us: 50_000,
        loss_ppm: 0,
        override_cost: Some(10),
    };
    assert_eq!(metric_of(&forced), Metric(10));
}

#[test]
fn bridge_metric_change_shifts_distances_without_deltas() {
    // Triangle 0 1 2, bridge 2 – 3, tail 3 – 4 – 5 and 3 – 5.
    let build = |bridge: u32| {
        let mut r = Router::new();
        for (a, b, m) in [
            (0, 1, 1),
            (1, 2, 2),
            (0, 2, 4),
            (2, 3, bridge),
            (3, 4, 1),
            (4, 5, 1),
            (3, 5, 3),
        ] {
            r.set_link(a, b, Metric(m));
        }
        r.compute_all();
        r
    };
    let mut r = build(5);
    r.set_link(2, 3, Metric(9));
    assert!(r.update().is_empty());
    let fresh = build(9);
    for s in 0..6 {
        assert_eq!(r.table(s), fresh.table(s));
        for d in 0..6 {
            assert_eq!(r.distance(s, d), fresh.distance(s, d), "{s} → {d}");
        }
    }
    assert_eq!(r.distance(0, 5), Some(3 + 9 + 2));
}
