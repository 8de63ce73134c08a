//! `POST /api/v1/nodes/{id}/roles`: a role a node requests takes effect
//! only once an operator approves it; approving and revoking move the
//! gateways at once, raise events, and refused requests write nothing.

mod api_support;

use api_support::{Api, seeded};
use freimesh_controller::store::Store;
use freimesh_proto::api;
use freimesh_proto::control::Roles;

fn error_of(text: &str) -> api::ApiError {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_approved_and_revoked_over_the_api() {
    let (dir, db, token, key) = seeded();
    Store::open(&db)
        .expect("open")
        .set_roles(
            1,
            Roles {
                gateway: true,
                public_wifi: false,
            },
        )
        .expect("request");
    let mut api = Api::on(&db, token, key, None).await;
    api._dir = Some(dir);

    // Requested only: no gateway.
    let gateways: Vec<api::Gateway> = api.json("/api/v1/gateways").await;
    assert!(gateways.is_empty(), "{gateways:?}");
    let node: api::NodeDetail = api.json("/api/v1/nodes/1").await;
    assert_eq!(node.node.roles_requested, vec![api::Role::Gateway]);
    assert!(node.node.roles_approved.is_empty());
    assert!(!node.node.gateway);
    let routes: Vec<api::Route> = api.json("/api/v1/nodes/3/routes").await;
    assert!(
        routes.iter().all(|r| r.prefix.prefix_len() != 0),
        "{routes:?}"
    );
    let ov: api::Overview = api.json("/api/v1/overview").await;
    assert!(
        ov.alerts
            .iter()
            .any(|a| a.kind == "role-awaits-approval" && a.node == Some(1)),
        "{:?}",
        ov.alerts
    );

    let approve = r#"{"role":"gateway","approved":true}"#;
    let (status, text) = api.post("/api/v1/nodes/1/roles", Some(approve)).await;
    assert_eq!(status, 200, "{text}");
    let node: api::Node = serde_json::from_str(&text).expect("node");
    assert!(node.gateway);
    assert_eq!(node.roles_approved, vec![api::Role::Gateway]);
    let gateways: Vec<api::Gateway> = api.json("/api/v1/gateways").await;
    assert_eq!(gateways.len(), 1);
    let ov: api::Overview = api.json("/api/v1/overview").await;
    assert!(ov.alerts.iter().all(|a| a.kind != "role-awaits-approval"));
    // At once: node 3's default route goes toward node 1.
    let routes: Vec<api::Route> = api.json("/api/v1/nodes/3/routes").await;
    let default = routes
        .iter()
        .find(|r| r.prefix.prefix_len() == 0)
        .expect("default route");
    assert_eq!(default.destination, 1);

    // Refusals: already approved, bad bodies, unknown and revoked nodes;
    // none writes anything.
    let before = api.dump();
    let (status, text) = api.post("/api/v1/nodes/1/roles", Some(approve)).await;
    assert_eq!((status, error_of(&text).error.as_str()), (409, "conflict"));
    for body in [
        r#"{"role":"root","approved":true}"#,
        r#"{"role":"gateway"}"#,
        "not json",
    ] {
        let (status, text) = api.post("/api/v1/nodes/1/roles", Some(body)).await;
        assert_eq!(status, 400, "{body}: {text}");
    }
    let (status, _) = api.post("/api/v1/nodes/99/roles", Some(approve)).await;
    assert_eq!(status, 404);
    assert_eq!(api.post("/api/v1/nodes/2/revoke", None).await.0, 200);
    let before_revoked = api.dump();
    let (status, _) = api.post("/api/v1/nodes/2/roles", Some(approve)).await;
    assert_eq!(status, 409);
    assert_eq!(api.dump(), before_revoked);
    assert_ne!(before, before_revoked, "the revocation itself was written");

    let (status, text) = api
        .post(
            "/api/v1/nodes/1/roles",
            Some(r#"{"role":"gateway","approved":false}"#),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let gateways: Vec<api::Gateway> = api.json("/api/v1/gateways").await;
    assert!(gateways.is_empty());

    let events: Vec<api::Event> = api.json("/api/v1/events").await;
    let kinds: Vec<&api::EventKind> = events.iter().map(|e| &e.kind).collect();
    assert!(kinds.contains(&&api::EventKind::RoleApproved {
        node: 1,
        role: api::Role::Gateway
    }));
    assert!(kinds.contains(&&api::EventKind::RoleRevoked {
        node: 1,
        role: api::Role::Gateway
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_carry_roles_over_the_api() {
    let api = Api::start().await;
    let (status, text) = api
        .post(
            "/api/v1/tokens",
            Some(r#"{"ttl":"1h","roles":["gateway","public-wifi"]}"#),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let tokens: Vec<api::Token> = api.json("/api/v1/tokens").await;
    assert_eq!(
        tokens[0].roles,
        vec![api::Role::Gateway, api::Role::PublicWifi]
    );
}
