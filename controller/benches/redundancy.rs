//! Redundancy analysis (articulation points and bridges) at city scale.
//!
//! ```text
//! cargo bench -p freimesh-controller --bench redundancy
//! ```
//!
//! * `random/1000n-4000l`: 1,000 active nodes, 4,000 random links (seeded);
//! * `city/1000`: the routing benchmark's geometric mesh (degree ≈ 4, many
//!   leaves and bridges, so the answer itself is large);
//! * `chain`: 5,000 nodes in a line, the worst case for the answer's size
//!   (every inner node and every link cuts something; `Σ |cuts_off|` over
//!   nodes and links ≈ n² / 2).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use freimesh_controller::routing::city as topology;
use freimesh_controller::routing::redundancy::redundancy;
use freimesh_proto::api;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const SEED: u64 = 0x5EED_0005;

fn node(id: u32) -> api::Node {
    api::Node {
        id,
        node_id: format!("n{id}"),
        public_key: String::new(),
        hostname: format!("host-{id}"),
        state: api::NodeState::Active,
        online: true,
        drained: false,
        gateway: false,
        addresses: vec![],
        prefixes: vec![
            format!("10.{}.{}.0/24", id / 256, id % 256)
                .parse()
                .expect("valid prefix"),
        ],
        endpoints: vec![],
        links_up: 0,
        links_total: 0,
        last_seen_ms: None,
        public_wifi: false,
        client_prefixes: Vec::new(),
        clients: None,
        roles_requested: vec![],
        roles_approved: vec![],
        telemetry: Default::default(),
    }
}

fn link(a: u32, b: u32) -> api::Link {
    api::Link {
        a: a.min(b),
        b: a.max(b),
        a_hostname: String::new(),
        b_hostname: String::new(),
        up: true,
        rtt_us: Some(1_000),
        loss_ppm: Some(0),
        metric: 1_000,
        override_cost: None,
        rtt_history_us: vec![],
        loss_history_ppm: vec![],
    }
}

fn random(n: u32, m: usize) -> (Vec<api::Node>, Vec<api::Link>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED);
    let nodes = (0..n).map(node).collect();
    let mut links = Vec::with_capacity(m);
    while links.len() < m {
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        if a != b {
            links.push(link(a, b));
        }
    }
    (nodes, links)
}

fn city(n: usize) -> (Vec<api::Node>, Vec<api::Link>) {
    let mesh = topology::city(n, SEED);
    let nodes = (0..mesh.n).map(node).collect();
    let links = mesh.links.iter().map(|&(a, b, _)| link(a, b)).collect();
    (nodes, links)
}

fn chain(n: u32) -> (Vec<api::Node>, Vec<api::Link>) {
    (
        (0..n).map(node).collect(),
        (1..n).map(|i| link(i - 1, i)).collect(),
    )
}

fn bench(c: &mut Criterion) {
    let as_test = !std::env::args().any(|a| a == "--bench");
    let cases = [
        ("random/1000n-4000l", random(1_000, 4_000)),
        ("city/1000", city(1_000)),
        // Unoptimised under `cargo test --benches`: a shorter chain there.
        ("chain", chain(if as_test { 200 } else { 5_000 })),
    ];
    let mut group = c.benchmark_group("redundancy");
    for (name, (nodes, links)) in &cases {
        let r = redundancy(nodes, links);
        let cut: usize = r.nodes.iter().map(|c| c.cuts_off.len()).sum();
        eprintln!(
            "{name}: {} nodes, {} links: {} cut nodes, {} bridges, {cut} node ids in cut-node answers",
            nodes.len(),
            links.len(),
            r.nodes.len(),
            r.links.len()
        );
        // The chain's answer is ~100 MB of ids: fewer samples keep it short.
        group.sample_size(if name.starts_with("chain") { 10 } else { 100 });
        group.bench_function(*name, |b| {
            b.iter(|| redundancy(black_box(nodes), black_box(links)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
