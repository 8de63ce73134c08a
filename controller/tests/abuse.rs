//! Unauthenticated and enrolled clients that try to fill the controller's
//! database over the real wire (issue 12: pending flood, oversized
//! hostnames, event flood, backdated events). Each test prints the figure
//! `docs/security.md` quotes.

mod api_support;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use api_support::{Api, RawAgent};
use common::{Mesh, raw_exchange};
use freimesh_agent::controlplane::ControllerEvent;
use freimesh_agent::identity::PrivateKey;
use freimesh_controller::admin;
use freimesh_controller::server::{
    EVENT_AGE_SLACK_MS, EVENT_BURST, EVENTS_PER_MINUTE, NEW_PENDING_PER_SOURCE_PER_MINUTE,
};
use freimesh_controller::store::Store;
use freimesh_proto::api;
use freimesh_proto::control::{self, AgentMsg, ControllerMsg, ErrorCode, Hello};

/// The database may grow by at most this much under the pending flood:
/// the ten pending nodes one source may add, their events and SQLite's
/// page overhead, with room to spare (the flood wrote 37 MB before).
const POOL_FLOOD_DB_BOUND: u64 = 1024 * 1024;

fn db_bytes(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    size(db) + size(Path::new(&wal))
}

fn hello(hostname: String, token: Option<String>) -> Vec<u8> {
    control::encode(&AgentMsg::Hello(Hello {
        version: freimesh_proto::PROTOCOL_VERSION,
        join_token: token,
        hostname,
        endpoints: vec![],
        prefixes: vec![],
        want_addresses: vec![],
        roles: Default::default(),
    }))
    .expect("a 60 KB hostname still fits one frame")
}

fn error_code(frames: &[ControllerMsg]) -> Option<ErrorCode> {
    match frames {
        [ControllerMsg::Error(e)] => Some(e.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_flood_with_huge_and_valid_hostnames_is_refused_with_error_frames() {
    let mesh = Mesh::start(true).await;
    // Let the server settle (first registry poll) before measuring.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = db_bytes(&mesh.db);
    let started = Instant::now();
    let (mut pending, mut bad_hostname, mut too_many) = (0u32, 0u32, 0u32);
    for i in 0..300 {
        let hostname = if i % 2 == 0 {
            "x".repeat(60 * 1024)
        } else {
            format!("flood-{i}")
        };
        let frames = raw_exchange(&mesh, &PrivateKey::generate(), &[hello(hostname, None)]).await;
        match (frames.as_slice(), error_code(&frames)) {
            ([ControllerMsg::Pending { .. }], _) => pending += 1,
            (_, Some(ErrorCode::BadHostname)) => bad_hostname += 1,
            (_, Some(ErrorCode::TooManyPending)) => too_many += 1,
            (other, _) => panic!("hello {i}: unexpected answer {other:?}"),
        }
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let grown = db_bytes(&mesh.db).saturating_sub(before);
    println!(
        "pending flood: 300 keys in {took:?}: {pending} pending, {bad_hostname} refused for the hostname, {too_many} over the pending cap; database + WAL grew by {grown} bytes"
    );
    assert_eq!(bad_hostname, 150, "every 60 KB hostname is refused");
    // The per-source budget, plus what refilled while the flood ran.
    let refilled =
        u32::try_from(took.as_secs()).expect("short") * NEW_PENDING_PER_SOURCE_PER_MINUTE / 60 + 1;
    assert!(
        (NEW_PENDING_PER_SOURCE_PER_MINUTE..=NEW_PENDING_PER_SOURCE_PER_MINUTE + refilled)
            .contains(&pending),
        "{pending} pending"
    );
    assert_eq!(too_many, 150 - pending);
    assert!(
        grown < POOL_FLOOD_DB_BOUND,
        "database grew by {grown} bytes"
    );
    let nodes = Store::open(&mesh.db).expect("open").nodes().expect("nodes");
    assert_eq!(nodes.len(), usize::try_from(pending).expect("small"));
    assert!(nodes.iter().all(|n| n.hostname.len() < 64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hello_with_a_bad_hostname_is_refused_enrolment_and_return_alike() {
    let mesh = Mesh::start(false).await;
    let key = PrivateKey::generate();
    for bad in ["", "under_score", "esc\u{1b}[2J", &"a".repeat(64)] {
        let frames = raw_exchange(&mesh, &key, &[hello(bad.to_owned(), Some(mesh.token()))]).await;
        assert_eq!(error_code(&frames), Some(ErrorCode::BadHostname), "{bad:?}");
    }
    let mut agent = mesh.client_with_key("ok-1", Some(mesh.token()), key.clone());
    agent
        .wait_for("welcome", |e| matches!(e, ControllerEvent::Welcome(_)))
        .await;
    drop(agent);
    // The enrolled node returns with a bad name: refused as well.
    let frames = raw_exchange(&mesh, &key, &[hello("bad name".into(), None)]).await;
    assert_eq!(error_code(&frames), Some(ErrorCode::BadHostname));
    assert!(common::dump(&mesh).contains("ok-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_flood_keeps_the_history_and_the_audit_log_and_cannot_backdate() {
    let api = Api::start().await;
    // Audit events first: an operator's token and approval.
    let (status, body) = api.post("/api/v1/tokens", Some(r#"{"ttl":"1h"}"#)).await;
    assert_eq!(status, 201, "{body}");
    let token: api::CreatedToken = serde_json::from_str(&body).expect("token");
    assert_eq!(api.post("/api/v1/nodes/4/approve", None).await.0, 200);
    let first_seq = Store::open(&api.db)
        .expect("open")
        .events_since(0, 1)
        .expect("events")[0]
        .seq;

    let key = PrivateKey::generate();
    let connected_ms = admin::unix_now_ms();
    let mut agent = RawAgent::connect(&api, &key, Some(token.token), "mallory").await;
    let flood_started = Instant::now();
    let peer = freimesh_proto::PublicKeyBytes([1; 32]);
    let events: Vec<control::LinkEvent> = (0..256)
        .map(|_| control::LinkEvent {
            peer,
            cause: api::DownCause::Silence,
            detection_ms: 1,
            switch_us: 1,
            rerouted: 1,
            lost: 0,
            // About 49 days back.
            age_ms: u32::MAX,
        })
        .collect();
    for _ in 0..80 {
        agent.send(&AgentMsg::Events(events.clone())).await;
    }
    // Frames of one session reach the hub in order: once this count shows,
    // every Events frame before it was handled.
    agent.send(&AgentMsg::Clients { count: 4242 }).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes: Vec<api::Node> = api.json("/api/v1/nodes").await;
        if nodes.iter().any(|n| n.clients == Some(4242)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood was not handled in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed_min = flood_started.elapsed().as_secs() / 60 + 1;

    let store = Store::open(&api.db).expect("open");
    let history = store.events_since(0, 1_000).expect("history");
    assert_eq!(history[0].seq, first_seq, "nothing was pruned");
    let failovers: Vec<&api::Event> = history
        .iter()
        .filter(|e| matches!(e.kind, api::EventKind::Failover { .. }))
        .collect();
    let allowed = u64::from(EVENT_BURST) + u64::from(EVENTS_PER_MINUTE) * elapsed_min;
    println!(
        "event flood: 80 frames of 256 events sent, {} stored (quota {allowed}), history kept from seq {first_seq}",
        failovers.len()
    );
    assert!(!failovers.is_empty());
    assert!(
        u64::try_from(failovers.len()).expect("small") <= allowed,
        "{} failovers stored",
        failovers.len()
    );
    // What was not stored was counted.
    let (status, metrics) = api.get("/metrics").await;
    assert_eq!(status, 200);
    let dropped: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("freimesh_agent_events_dropped_total "))
        .expect("the dropped counter")
        .parse()
        .expect("a number");
    assert_eq!(dropped + failovers.len(), 80 * 256);
    let earliest = connected_ms - EVENT_AGE_SLACK_MS;
    let oldest = failovers.iter().map(|e| e.at_ms).min().expect("some");
    println!(
        "event flood: claimed age 49.7 days, oldest stored {} s before the session",
        (connected_ms - oldest) / 1000
    );
    assert!(oldest >= earliest, "an event was backdated to {oldest}");

    let audit = store.audit_since(0, 1_000).expect("audit");
    let has = |pred: &dyn Fn(&api::Event) -> bool| audit.iter().any(pred);
    assert!(has(&|e| matches!(
        e.kind,
        api::EventKind::TokenCreated { .. }
    ) && e.operator.as_deref() == Some("city-it")));
    assert!(has(&|e| e.kind == api::EventKind::Approved { node: 4 }
        && e.operator.as_deref() == Some("city-it")));
    assert!(has(
        &|e| matches!(&e.kind, api::EventKind::Enrolled { hostname, .. } if hostname == "mallory")
    ));
    assert!(audit.iter().all(|e| e.kind.is_audit()));
}
