//! Route computation at city scale: full computation, one link metric change
//! and one link failure applied incrementally, and the feasible-source
//! upstreams, on seeded random geometric meshes (average degree ≈ 4).
//!
//! ```text
//! cargo bench -p freimesh-controller --bench routing            # 100, 1,000, 5,000
//! ROUTING_BENCH_SIZES=10000 cargo bench -p freimesh-controller --bench routing
//! ```
//!
//! Before the criterion runs it prints a scale report per size: one timed
//! full computation, the mean/max incremental time over random links, how
//! many nodes get deltas, the bytes pushed per affected node
//! ([`RouteDelta::encoded_len`]) and the memory held.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use freimesh_controller::routing::city as topology;
use freimesh_controller::routing::{Metric, NodeIdx, RouteDelta, Router, Upstreams};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const SEED: u64 = 0x000C_17E5;
/// Links sampled for the scale report.
const REPORT_LINKS: usize = 100;

/// Sizes from `ROUTING_BENCH_SIZES` (comma-separated); only 100 when run as
/// a test (`cargo test --benches`), where everything is unoptimised.
fn sizes() -> Vec<usize> {
    if !std::env::args().any(|a| a == "--bench") {
        return vec![100];
    }
    std::env::var("ROUTING_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 5_000])
}

fn computed(n: usize) -> (Router, Vec<(NodeIdx, NodeIdx, Metric)>) {
    let mesh = topology::city(n, SEED);
    let mut router = mesh.router();
    router.compute_all();
    (router, mesh.links)
}

/// Kilobytes of a `/proc/self/status` field (Linux), for the report only.
fn proc_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Sample {
    times: Vec<Duration>,
    affected: Vec<usize>,
    bytes_per_node: Vec<f64>,
    max_node_bytes: usize,
}

impl Sample {
    fn record(
        &mut self,
        took: Duration,
        deltas: &std::collections::BTreeMap<NodeIdx, Vec<RouteDelta>>,
    ) {
        self.times.push(took);
        self.affected.push(deltas.len());
        let bytes: Vec<usize> = deltas
            .values()
            .map(|ds| ds.iter().map(RouteDelta::encoded_len).sum())
            .collect();
        if !bytes.is_empty() {
            self.bytes_per_node
                .push(bytes.iter().sum::<usize>() as f64 / bytes.len() as f64);
        }
        self.max_node_bytes = self
            .max_node_bytes
            .max(bytes.iter().copied().max().unwrap_or(0));
    }

    fn line(&self, what: &str, n: usize) {
        let k = self.times.len().max(1) as f64;
        let mean = self.times.iter().map(Duration::as_secs_f64).sum::<f64>() / k;
        let mut sorted = self.times.clone();
        sorted.sort();
        let pct = |p: usize| {
            sorted
                .get(sorted.len() * p / 100)
                .copied()
                .unwrap_or_default()
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let max = sorted.last().copied().unwrap_or_default();
        let aff = self.affected.iter().sum::<usize>() as f64 / k;
        let bpn = self.bytes_per_node.iter().sum::<f64>() / self.bytes_per_node.len().max(1) as f64;
        println!(
            "| {n} | {what} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {aff:.0} | {bpn:.0} B | {} B |",
            ms(pct(50)),
            ms(pct(90)),
            mean * 1e3,
            ms(max),
            self.max_node_bytes
        );
    }
}

/// One table per size; not a criterion measurement, but it covers random
/// links (criterion below repeats a seeded sequence of them) and the bytes.
fn report(n: usize) {
    let rss_before = proc_kb("VmRSS:").unwrap_or(0);
    let mesh = topology::city(n, SEED);
    let mut router = mesh.router();
    let t = Instant::now();
    router.compute_all();
    let full = t.elapsed();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED ^ 1);
    let (mut fail, mut restore, mut change) =
        (Sample::default(), Sample::default(), Sample::default());
    let samples = if n > 5_000 {
        REPORT_LINKS / 4
    } else {
        REPORT_LINKS
    };
    for _ in 0..samples.min(mesh.links.len()) {
        let (a, b, m) = mesh.links[rng.random_range(0..mesh.links.len())];
        router.remove_link(a, b);
        let t = Instant::now();
        let deltas = router.update();
        fail.record(t.elapsed(), &deltas);
        router.set_link(a, b, m);
        let t = Instant::now();
        let deltas = router.update();
        restore.record(t.elapsed(), &deltas);
        router.set_link(a, b, Metric(m.0.saturating_mul(3)));
        let t = Instant::now();
        let deltas = router.update();
        change.record(t.elapsed(), &deltas);
        router.set_link(a, b, m);
        router.update();
    }
    // What a full sync costs (every agent reconnecting): derive all tables.
    let t = Instant::now();
    let routes: usize = (0..mesh.n).map(|s| router.routes(s).count()).sum();
    let sync = t.elapsed();
    let rss = proc_kb("VmRSS:").unwrap_or(0);
    println!(
        "\nrouting scale report: {n} nodes, {} links; full computation {:.1} ms; \
         distance state {:.1} MB; RSS {} MB (+{} MB for this mesh), peak {} MB",
        mesh.links.len(),
        full.as_secs_f64() * 1e3,
        router.state_bytes() as f64 / 1e6,
        rss / 1024,
        rss.saturating_sub(rss_before) / 1024,
        proc_kb("VmHWM:").unwrap_or(0) / 1024,
    );
    println!(
        "full sync: {routes} routes of all nodes derived in {:.1} ms ({:.2} ms per node)",
        sync.as_secs_f64() * 1e3,
        sync.as_secs_f64() * 1e3 / n.max(1) as f64
    );
    println!(
        "| nodes | change | median | p90 | mean | max | nodes with deltas (mean) | bytes per such node (mean) | max bytes to one node |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    fail.line("link failure", n);
    restore.line("link restore", n);
    change.line("metric ×3", n);
}

fn routing(c: &mut Criterion) {
    for n in sizes() {
        report(n);
        let (mut router, links) = computed(n);
        let mut group = c.benchmark_group("routing");
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if n > 2_000 { 20 } else { 3 }));
        group.bench_with_input(BenchmarkId::new("full", n), &n, |b, _| {
            b.iter(|| router.compute_all());
        });
        // The feasible-source upstreams, computed after every batch.
        group.bench_with_input(BenchmarkId::new("upstreams", n), &n, |b, _| {
            b.iter(|| black_box(Upstreams::compute(&router, None)));
        });
        // Each iteration: pick a link, change it, time `update`, undo
        // (untimed), so every iteration starts from the same state.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED ^ 2);
        group.measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("metric_change", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let (a, bb, m) = links[rng.random_range(0..links.len())];
                    router.set_link(a, bb, Metric(m.0.saturating_mul(3)));
                    let t = Instant::now();
                    black_box(router.update());
                    took += t.elapsed();
                    router.set_link(a, bb, m);
                    router.update();
                }
                took
            });
        });
        group.bench_with_input(BenchmarkId::new("link_failure", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let (a, bb, m) = links[rng.random_range(0..links.len())];
                    router.remove_link(a, bb);
                    let t = Instant::now();
                    black_box(router.update());
                    took += t.elapsed();
                    router.set_link(a, bb, m);
                    router.update();
                }
                took
            });
        });
        group.finish();
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
