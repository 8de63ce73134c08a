//! Operator scopes, expiry and accountability in the admin API: read-only
//! tokens read, full tokens act, expired tokens are refused, a removed
//! operator's event stream ends, and events name who acted.

mod api_support;

use std::time::{Duration, Instant};

use api_support::{Api, error_of};
use freimesh_controller::admin;
use freimesh_controller::store::{OperatorScope, Store};
use freimesh_proto::api;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// Waits until the server has loaded the operators the CLI just changed
/// (one registry poll) by asking with `auth` until `done(status, body)`.
async fn until(api: &Api, auth: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = api
            .raw(
                "GET",
                "/api/v1/overview",
                Some(format!("Bearer {auth}")),
                None,
            )
            .await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_reads_everything_and_may_not_act() {
    let api = Api::start().await;
    let read =
        admin::operator_add_scoped(&api.db, "prometheus", OperatorScope::Read, None).expect("add");
    until(&api, &read, |s, _| s == 200).await;
    let auth = Some(format!("Bearer {read}"));
    for path in [
        "/api/v1/nodes",
        "/api/v1/events",
        "/api/v1/audit",
        "/api/v1/meshviewer.json",
        "/metrics",
    ] {
        let (status, body) = api.raw("GET", path, auth.clone(), None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    for (path, body) in [
        ("/api/v1/nodes/2/drain", None),
        ("/api/v1/nodes/4/approve", None),
        ("/api/v1/nodes/3/revoke", None),
        ("/api/v1/tokens", Some(r#"{"ttl":"1h"}"#)),
    ] {
        let (status, text) = api.raw("POST", path, auth.clone(), body).await;
        assert_eq!(status, 403, "POST {path}: {text}");
        assert_eq!(error_of(&text).error, "forbidden");
    }
    // Nothing happened.
    let nodes: Vec<api::Node> = api.json("/api/v1/nodes").await;
    assert!(nodes.iter().all(|n| !n.drained));
    assert_eq!(api.post("/api/v1/nodes/2/drain", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_with_401() {
    let api = Api::start().await;
    let now = admin::unix_now();
    let token = Store::open(&api.db)
        .expect("open")
        .add_operator("contractor", OperatorScope::Full, Some(now - 1), now - 100)
        .expect("add");
    let (status, body) = until(&api, &token, |_, body| body.contains("expired")).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = api
        .raw(
            "POST",
            "/api/v1/nodes/2/drain",
            Some(format!("Bearer {token}")),
            None,
        )
        .await;
    assert_eq!(status, 401);
}

/// An SSE stream opened with `token`: its lines, until the server ends it
/// (`Connection: close`: the end of the body closes the socket).
async fn open_stream(
    api: &Api,
    token: &str,
) -> tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>> {
    let mut s = tokio::net::TcpStream::connect(api.addr)
        .await
        .expect("connect");
    let req = format!(
        "GET /api/v1/events/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut lines = tokio::io::BufReader::new(s).lines();
    let status = lines.next_line().await.expect("read").expect("status line");
    assert!(status.contains(" 200 "), "{status}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_operators_event_stream_ends_within_seconds() {
    let api = Api::start().await;
    let token = admin::operator_add(&api.db, "night-shift").expect("add");
    until(&api, &token, |s, _| s == 200).await;
    let mut lines = open_stream(&api, &token).await;
    let removed = Instant::now();
    admin::operator_remove(&api.db, "night-shift").expect("remove");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = lines.next_line().await {}
    })
    .await;
    let took = removed.elapsed();
    println!("event stream ended {took:?} after `operator remove`");
    assert!(ended.is_ok(), "the stream still runs after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The other operator's stream is unaffected and the removal is audited.
    let audit: Vec<api::Event> = api.json("/api/v1/audit").await;
    assert!(audit.iter().any(|e| e.kind
        == api::EventKind::OperatorRemoved {
            name: "night-shift".into()
        }
        && e.operator.as_deref() == Some("cli")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_the_operator_who_acted() {
    let api = Api::start().await;
    assert_eq!(api.post("/api/v1/nodes/2/drain", None).await.0, 200);
    admin::node_approve(&api.db, 4).expect("approve by CLI");
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events: Vec<api::Event> = api.json("/api/v1/events").await;
        if events
            .iter()
            .any(|e| e.kind == api::EventKind::Approved { node: 4 })
        {
            break events;
        }
        assert!(Instant::now() < deadline, "{events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by = |kind: api::EventKind| {
        events
            .iter()
            .find(|e| e.kind == kind)
            .and_then(|e| e.operator.clone())
    };
    assert_eq!(
        by(api::EventKind::Drained { node: 2 }).as_deref(),
        Some("city-it")
    );
    assert_eq!(
        by(api::EventKind::Approved { node: 4 }).as_deref(),
        Some("cli")
    );
    // The approval is in the audit log too; the drain is not an audit event.
    let audit: Vec<api::Event> = api.json("/api/v1/audit").await;
    assert!(
        audit
            .iter()
            .any(|e| e.kind == api::EventKind::Approved { node: 4 })
    );
    assert!(
        !audit
            .iter()
            .any(|e| matches!(e.kind, api::EventKind::Drained { .. }))
    );
}
