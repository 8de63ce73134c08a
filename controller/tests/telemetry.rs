//! Fleet telemetry over the real wire (issue 15): an enrolled agent sends
//! `NodeInfo` and `Statistics`; the admin API shows them, Prometheus gets
//! the per-node gauges, and the meshviewer export shows the location the
//! owner shared but not the contact they did not.

mod api_support;

use std::time::{Duration, Instant};

use api_support::{Api, RawAgent};
use freimesh_agent::identity::PrivateKey;
use freimesh_proto::api;
use freimesh_proto::control::AgentMsg;
use freimesh_proto::telemetry::{Location, NodeInfo, Statistics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_the_api_metrics_and_map_with_consent_honoured() {
    let api = Api::start().await;
    let (status, body) = api.post("/api/v1/tokens", Some(r#"{"ttl":"1h"}"#)).await;
    assert_eq!(status, 201, "{body}");
    let token: api::CreatedToken = serde_json::from_str(&body).expect("token");
    let mut agent =
        RawAgent::connect(&api, &PrivateKey::generate(), Some(token.token), "kita").await;
    let info = NodeInfo {
        agent_version: "0.3.0".into(),
        firmware_base: Some("OpenWrt".into()),
        firmware_release: Some("23.05.3".into()),
        model: Some("TP-Link Archer C7 v5".into()),
        nproc: Some(1),
        location: Location::from_degrees(52.520_008, 13.404_954),
        share_location: true,
        contact: Some("private-owner@example.org".into()),
        share_contact: false,
        autoupdater_branch: None,
        domain: None,
    };
    agent.send(&AgentMsg::NodeInfo(info.clone())).await;
    agent
        .send(&AgentMsg::Statistics(Statistics {
            uptime_s: Some(3_600),
            load_centi: Some(42),
            memory_total_kib: Some(124_680),
            memory_available_kib: Some(61_234),
            rootfs_used_ppm: Some(250_000),
        }))
        .await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        let nodes: Vec<api::Node> = api.json("/api/v1/nodes").await;
        if let Some(n) = nodes
            .into_iter()
            .find(|n| n.hostname == "kita" && n.telemetry.stats.is_some())
        {
            break n;
        }
        assert!(Instant::now() < deadline, "reports not handled in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        node.telemetry.info.as_ref(),
        Some(&info),
        "operators see all of it"
    );
    assert!(node.telemetry.first_seen_ms.is_some() && node.telemetry.boot_time_ms.is_some());

    let (status, metrics) = api.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l.starts_with("freimesh_node_info{")
            && l.contains("agent_version=\"0.3.0\"")
            && l.contains("model=\"TP-Link Archer C7 v5\"")),
        "{metrics}"
    );
    assert!(metrics.contains("freimesh_node_load1{"));
    assert!(!metrics.contains("private-owner"));

    let map: serde_json::Value = api.json("/api/v1/meshviewer.json").await;
    let kita = map["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["hostname"] == "kita")
        .expect("kita on the map");
    assert_eq!(
        kita["location"],
        serde_json::json!({"latitude": 52.520_008, "longitude": 13.404_954})
    );
    assert_eq!(kita["model"], "TP-Link Archer C7 v5");
    assert_eq!(kita["nproc"], 1);
    assert!(kita.get("uptime").is_some());
    assert!(
        !map.to_string().contains("private-owner"),
        "contact not shared"
    );
}
