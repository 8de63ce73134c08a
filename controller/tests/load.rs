//! Load on loopback: many control-plane clients enrol with tokens and sync
//! at once. CI runs 200; `FREIMESH_LOAD_NODES=1000 cargo test -p
//! freimesh-controller --release --test load -- --nocapture` runs the
//! issue's 1,000 (target: ≤ 10 s).

mod common;

use std::time::{Duration, Instant};

use common::Mesh;
use freimesh_agent::controlplane::ControllerEvent;
use freimesh_controller::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_agents_enrol_and_sync() {
    let n: usize = std::env::var("FREIMESH_LOAD_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // Every client here comes from 127.0.0.1, where real routers come from
    // their own addresses: the per-source handshake cap would measure the
    // agents' reconnect backoff instead of the controller.
    let mesh = Mesh::start_with_limits(
        false,
        freimesh_controller::server::Limits {
            max_unauthenticated_per_source:
                freimesh_controller::server::limits::MAX_UNAUTHENTICATED,
            ..Default::default()
        },
    )
    .await;
    let tokens: Vec<String> = {
        let mut store = Store::open(&mesh.db).expect("open");
        let now = freimesh_controller::admin::unix_now();
        (0..n)
            .map(|_| store.create_token(now + 3600, &[], now).expect("token"))
            .collect()
    };
    let start = Instant::now();
    let mut agents: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| mesh.client(&format!("n{i}"), Some(t)))
        .collect();
    for agent in &mut agents {
        agent
            .wait_for("routes", |e| matches!(e, ControllerEvent::Routes(_)))
            .await;
    }
    let took = start.elapsed();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("{n} agents enrolled and synced in {took:?} (test process incl. clients: {rss})");
    assert_eq!(
        Store::open(&mesh.db)
            .expect("open")
            .nodes()
            .expect("nodes")
            .len(),
        n
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
}
