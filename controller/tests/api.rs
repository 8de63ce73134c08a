//! The admin API over real HTTP on loopback: auth, every endpoint's shape,
//! actions and their events, bad input, the history across a restart,
//! operators added and removed while running. (`api_stream.rs`: the event
//! stream, agents' reports, TLS, promtool.)

mod api_support;

use std::time::{Duration, Instant};

use api_support::{Api, error_of, kinds, routes_len, seeded};
use freimesh_controller::admin;
use freimesh_controller::store::Store;
use freimesh_proto::api;

/// Every endpoint as (method, path).
const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/api/v1/overview"),
    ("GET", "/api/v1/nodes"),
    ("GET", "/api/v1/nodes/1"),
    ("GET", "/api/v1/nodes/1/routes"),
    ("POST", "/api/v1/nodes/2/drain"),
    ("POST", "/api/v1/nodes/2/undrain"),
    ("POST", "/api/v1/nodes/4/approve"),
    ("POST", "/api/v1/nodes/3/revoke"),
    ("POST", "/api/v1/nodes/1/roles"),
    ("GET", "/api/v1/links"),
    ("GET", "/api/v1/gateways"),
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/stream"),
    ("GET", "/api/v1/redundancy"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/meshviewer.json"),
    ("GET", "/api/v1/no-such-endpoint"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_missing_or_wrong_tokens_and_leaks_nothing() {
    let api = Api::start().await;
    let before = api.dump();
    let wrong = [
        None,
        Some("Bearer fmo1-0000000000000000000000000000000000000000".to_owned()),
        Some(format!("Basic {}", api.token)),
        Some(format!("Bearer {}x", api.token)),
        Some("Bearer ".to_owned()),
    ];
    for (method, path) in ENDPOINTS {
        for auth in &wrong {
            let body = (*method == "POST").then_some(r#"{"ttl":"1h"}"#);
            let (status, text) = api.raw(method, path, auth.clone(), body).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {text}");
            let err = error_of(&text);
            assert_eq!(err.error, "unauthorized");
            assert!(!text.contains(&api.token), "{text}");
            assert!(!text.contains("node"), "{text}");
            assert!(!text.contains("v1"), "{text}");
        }
    }
    // The same answer for every refusal: nothing to tell paths apart by.
    let a = api.raw("GET", "/api/v1/nodes", None, None).await;
    let b = api.raw("GET", "/api/v1/no-such-endpoint", None, None).await;
    assert_eq!(a, b);
    assert_eq!(api.dump(), before, "refused requests changed the database");
    let events = Store::open(&api.db)
        .expect("open")
        .events_since(0, 10)
        .expect("events");
    assert!(
        events.is_empty(),
        "refused requests raised events: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_in_their_shapes() {
    let api = Api::start().await;
    let nodes: Vec<api::Node> = api.json("/api/v1/nodes").await;
    assert_eq!(
        nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(nodes[3].state, api::NodeState::Pending);
    assert_eq!(nodes[1].links_total, 2);
    assert_eq!(nodes[1].links_up, 2);
    assert_eq!(nodes[1].hostname, "node2");
    assert_eq!(nodes[0].addresses.len(), 2);
    assert_eq!(nodes[2].prefixes, vec!["10.20.0.0/24".parse().expect("p")]);
    assert!(nodes.iter().all(|n| !n.online && n.last_seen_ms.is_none()));

    let ov: api::Overview = api.json("/api/v1/overview").await;
    assert_eq!(
        (
            ov.nodes_total,
            ov.nodes_pending,
            ov.nodes_online,
            ov.links_total,
            ov.links_up
        ),
        (4, 1, 0, 2, 2)
    );
    assert_eq!(ov.controller.version, env!("CARGO_PKG_VERSION"));
    assert!(
        ov.alerts
            .iter()
            .any(|a| a.kind == "node-pending" && a.node == Some(4))
    );
    assert!(
        ov.alerts
            .iter()
            .any(|a| a.kind == "node-offline" && a.node == Some(1))
    );
    assert!(
        ov.alerts.windows(2).all(|w| w[0].severity <= w[1].severity),
        "most severe first: {:?}",
        ov.alerts
    );

    let detail: api::NodeDetail = api.json("/api/v1/nodes/2").await;
    assert_eq!(detail.node.id, 2);
    assert_eq!(detail.links.len(), 2);
    let routes: Vec<api::Route> = api.json("/api/v1/nodes/1/routes").await;
    let to_lan = routes
        .iter()
        .find(|r| r.prefix == "10.20.0.0/24".parse().expect("p"))
        .expect("a route to node 3's LAN");
    assert_eq!(to_lan.destination, 3);
    assert_eq!(to_lan.destination_hostname, "node3");
    assert_eq!(to_lan.via.first().map(|h| h.node), Some(2));
    assert!(to_lan.metric.is_some());
    assert_eq!(detail.routes.len(), routes_len(&api, 2).await);

    let links: Vec<api::Link> = api.json("/api/v1/links").await;
    assert_eq!(
        links.iter().map(|l| (l.a, l.b)).collect::<Vec<_>>(),
        vec![(1, 2), (2, 3)]
    );
    assert_eq!(links[0].rtt_us, Some(800));
    assert!(links[0].metric > 0);
    assert_eq!(links[0].a_hostname, "node1");

    let gateways: Vec<api::Gateway> = api.json("/api/v1/gateways").await;
    assert!(gateways.is_empty());
    let tokens: Vec<api::Token> = api.json("/api/v1/tokens").await;
    assert!(tokens.is_empty());
    let _: api::Redundancy = api.json("/api/v1/redundancy").await;
    let mv: serde_json::Value = api.json("/api/v1/meshviewer.json").await;
    assert!(
        mv.get("nodes").is_some() && mv.get("links").is_some(),
        "{mv}"
    );
    let events: Vec<api::Event> = api.json("/api/v1/events").await;
    assert!(events.is_empty(), "{events:?}");

    let (status, metrics) = api.get("/metrics").await;
    assert_eq!(status, 200);
    let _ = metrics;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_change_state_and_emit_events() {
    let api = Api::start().await;
    let (status, body) = api.post("/api/v1/nodes/2/drain", None).await;
    assert_eq!(status, 200, "{body}");
    let node: api::Node = serde_json::from_str(&body).expect("node");
    assert!(node.drained);
    // Node 1 no longer reaches 3 through the drained node.
    let routes: Vec<api::Route> = api.json("/api/v1/nodes/1/routes").await;
    assert!(routes.iter().all(|r| r.destination != 3), "{routes:?}");
    let (status, body) = api.post("/api/v1/nodes/2/drain", None).await;
    assert_eq!((status, error_of(&body).error.as_str()), (409, "conflict"));
    let (status, _) = api.post("/api/v1/nodes/2/undrain", None).await;
    assert_eq!(status, 200);
    assert!(routes_len(&api, 1).await > routes.len());

    let (status, body) = api.post("/api/v1/nodes/4/approve", None).await;
    assert_eq!(status, 200, "{body}");
    let node: api::Node = serde_json::from_str(&body).expect("node");
    assert_eq!(node.state, api::NodeState::Active);
    assert_eq!(node.addresses.len(), 2);
    let (status, body) = api.post("/api/v1/nodes/4/approve", None).await;
    assert_eq!((status, error_of(&body).error.as_str()), (409, "conflict"));

    let (status, body) = api.post("/api/v1/nodes/3/revoke", None).await;
    assert_eq!(status, 200, "{body}");
    let links: Vec<api::Link> = api.json("/api/v1/links").await;
    assert_eq!(links.len(), 1, "node 3's link is gone: {links:?}");
    let (status, _) = api.post("/api/v1/nodes/3/revoke", None).await;
    assert_eq!(status, 409);
    let (status, body) = api.post("/api/v1/nodes/99/revoke", None).await;
    assert_eq!((status, error_of(&body).error.as_str()), (404, "not-found"));

    let (status, body) = api
        .post(
            "/api/v1/tokens",
            Some(r#"{"ttl":"2h","prefixes":["10.30.0.0/24"]}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let created: api::CreatedToken = serde_json::from_str(&body).expect("created");
    assert!(created.token.starts_with("fmj1-"));
    let tokens: Vec<api::Token> = api.json("/api/v1/tokens").await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].id, created.id);
    assert_eq!(tokens[0].expires_at_ms, created.expires_at_ms);
    assert_eq!(tokens[0].prefixes, vec!["10.30.0.0/24".parse().expect("p")]);
    let lifetime = tokens[0].expires_at_ms - tokens[0].created_at_ms;
    assert!((7_199_000..=7_201_000).contains(&lifetime), "{lifetime}");

    let events: Vec<api::Event> = api.json("/api/v1/events?since=0").await;
    use api::EventKind as K;
    assert_eq!(
        kinds(&events),
        vec![
            K::Drained { node: 2 },
            K::Undrained { node: 2 },
            K::Approved { node: 4 },
            K::Revoked { node: 3 },
            K::TokenCreated {
                id: created.id.clone()
            },
        ]
    );
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    let tail: Vec<api::Event> = api
        .json(&format!("/api/v1/events?since={}&limit=2", events[1].seq))
        .await;
    assert_eq!(tail, events[2..4].to_vec());
    let detail: api::NodeDetail = api.json("/api/v1/nodes/2").await;
    assert_eq!(
        kinds(&detail.events),
        vec![K::Undrained { node: 2 }, K::Drained { node: 2 }],
        "newest first"
    );

    // The CLI path still works next to the API, and raises the event too.
    admin::node_drain(&api.db, 1, true).expect("cli drain");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events: Vec<api::Event> = api
            .json(&format!("/api/v1/events?since={}", events[4].seq))
            .await;
        if kinds(&events) == vec![K::Drained { node: 1 }] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event for the CLI's drain: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node: api::NodeDetail = api.json("/api/v1/nodes/1").await;
    assert!(node.node.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_4xx_and_changes_nothing() {
    let api = Api::start().await;
    let before = api.dump();
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "POST",
            "/api/v1/tokens",
            Some("{not json"),
            400,
            "request body",
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some(r#"{"prefixes":[]}"#),
            400,
            "ttl",
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some(r#"{"ttl":"7y"}"#),
            400,
            "ttl",
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some(r#"{"ttl":"0h"}"#),
            400,
            "ttl",
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some(r#"{"ttl":"1h","prefixes":["nope"]}"#),
            400,
            "request body",
        ),
        ("GET", "/api/v1/nodes/abc", None, 400, "not a number"),
        ("GET", "/api/v1/nodes/99", None, 404, "99"),
        ("GET", "/api/v1/nodes/99/routes", None, 404, "99"),
        ("POST", "/api/v1/nodes/99/drain", None, 404, "99"),
        (
            "POST",
            "/api/v1/nodes/-1/approve",
            None,
            400,
            "not a number",
        ),
        ("GET", "/api/v1/events?since=-1", None, 400, "since"),
        ("GET", "/api/v1/events?since=abc", None, 400, "since"),
        ("GET", "/api/v1/events?limit=0", None, 400, "limit"),
        ("GET", "/api/v1/events?limit=100000", None, 400, "limit"),
        ("GET", "/api/v1/events/stream?since=x", None, 400, "since"),
        ("GET", "/api/v1/nope", None, 404, "endpoint"),
    ];
    for (method, path, body, want, words) in cases {
        let (status, text) = api
            .raw(method, path, Some(format!("Bearer {}", api.token)), *body)
            .await;
        assert_eq!(status, *want, "{method} {path}: {text}");
        let err = error_of(&text);
        assert!(
            err.message.contains(words),
            "{method} {path}: {:?} should mention {words:?}",
            err.message
        );
    }
    assert_eq!(api.dump(), before, "refused requests changed the database");
    let events: Vec<api::Event> = api.json("/api/v1/events").await;
    assert!(
        events.is_empty(),
        "refused requests raised events: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_and_its_numbering_survive_a_restart() {
    let (dir, db, token, key) = seeded();
    let first = Api::on(&db, token.clone(), key, None).await;
    assert_eq!(first.post("/api/v1/nodes/2/drain", None).await.0, 200);
    let before: Vec<api::Event> = first.json("/api/v1/events").await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = Api::on(&db, token, key, None).await;
    let after: Vec<api::Event> = second.json("/api/v1/events").await;
    assert_eq!(after, before);
    assert_eq!(second.post("/api/v1/nodes/2/undrain", None).await.0, 200);
    let all: Vec<api::Event> = second.json("/api/v1/events").await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].seq, before[0].seq + 1);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_added_or_removed_by_the_cli_take_effect_while_running() {
    let api = Api::start().await;
    let second = admin::operator_add(&api.db, "night-shift").expect("add");
    let names: Vec<String> = admin::operator_list(&api.db)
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, vec!["city-it", "night-shift"]);
    assert!(
        admin::operator_add(&api.db, "night-shift").is_err(),
        "duplicate name"
    );
    let with = |t: &str| Some(format!("Bearer {t}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.raw("GET", "/api/v1/nodes", with(&second), None).await.0 != 200 {
        assert!(Instant::now() < deadline, "new operator never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin::operator_remove(&api.db, "night-shift").expect("remove");
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.raw("GET", "/api/v1/nodes", with(&second), None).await.0 != 401 {
        assert!(Instant::now() < deadline, "removed operator still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        api.get("/api/v1/nodes").await.0,
        200,
        "the other operator still works"
    );
}
