//! Admin API latency: `GET /api/v1/nodes` with 1,000 nodes and 4,000 links,
//! over real HTTP on loopback (issue 5 target: p99 ≤ 50 ms).
//!
//! Besides criterion's estimate, prints p50/p99/max of 1,000 sequential
//! requests on one keep-alive connection, which is what the target is about.
//!
//! `cargo bench -p freimesh-controller --bench api`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use freimesh_controller::api::ApiOptions;
use freimesh_controller::store::{LinkRecord, Store};
use freimesh_controller::{admin, server};
use freimesh_proto::PublicKeyBytes;

const NODES: u32 = 1_000;
const LINKS_PER_NODE: u32 = 4;

/// A mesh of `NODES` active nodes: a ring plus chords, ~4 links per node.
fn seed(db: &std::path::Path) -> String {
    admin::init(
        db,
        "fd12:3456:789a::/48".parse().expect("ula"),
        "10.99.0.0/16".parse().expect("v4"),
        false,
    )
    .expect("init");
    let mut store = Store::open(db).expect("open");
    for i in 1..=NODES {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        let rec = store
            .add_pending(
                PublicKeyBytes(key),
                &format!("node-{i:04}"),
                &[],
                Default::default(),
                0,
            )
            .expect("pending");
        store.approve(rec.id).expect("approve");
    }
    let mut links = Vec::new();
    for i in 1..=NODES {
        for step in [1, 7, 31, 97]
            .into_iter()
            .take(usize::try_from(LINKS_PER_NODE).expect("small"))
        {
            let j = (i - 1 + step) % NODES + 1;
            let (a, b) = (i.min(j), i.max(j));
            links.push(LinkRecord {
                a,
                b,
                rtt_us: Some(500 + (i * 37 + j) % 5_000),
                loss_ppm: Some(0),
                up: true,
                override_cost: None,
            });
        }
    }
    links.sort_by_key(|l| (l.a, l.b));
    links.dedup_by_key(|l| (l.a, l.b));
    store.save_links(&links, 0).expect("links");
    drop(store);
    admin::operator_add(db, "bench").expect("operator")
}

/// Starts the controller on its own runtime thread; returns the API address.
fn start(db: std::path::PathBuf) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let opts = server::Options {
                db,
                listen: "127.0.0.1:0".parse().expect("addr"),
                require_approval: false,
            };
            let mut srv = server::Server::bind(&opts).await.expect("bind");
            let addr = srv
                .bind_api(&ApiOptions::plain("127.0.0.1:0".parse().expect("addr")))
                .expect("api")
                .expect("addr");
            tx.send(addr).expect("send addr");
            srv.run(std::future::pending()).await.expect("serve");
        });
    });
    rx.recv().expect("server started")
}

fn node_list(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    let token = seed(&db);
    let addr = start(db);
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let url = format!("http://{addr}/api/v1/nodes");
    let auth = format!("Bearer {token}");
    let fetch = || {
        let body = agent
            .get(&url)
            .header("Authorization", &auth)
            .call()
            .expect("GET /nodes")
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .expect("body");
        assert!(body.len() > 100_000, "{} bytes", body.len());
        body.len()
    };
    let bytes = fetch();

    let mut took: Vec<Duration> = (0..1_000)
        .map(|_| {
            let start = Instant::now();
            fetch();
            start.elapsed()
        })
        .collect();
    took.sort();
    let pct = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)];
    println!(
        "GET /api/v1/nodes, {NODES} nodes ({bytes} bytes): p50 {:?}, p99 {:?}, max {:?} over {} requests",
        pct(50),
        pct(99),
        took[took.len() - 1],
        took.len()
    );

    let mut group = c.benchmark_group("api");
    group.sample_size(50);
    group.bench_function("node_list_1000", |b| b.iter(fetch));
    group.finish();
}

criterion_group!(benches, node_list);
criterion_main!(benches);
