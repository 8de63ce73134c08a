use serde_json::{Value, json};

use super::*;

fn node(id: u32, state: api::NodeState, online: bool) -> api::Node {
    api::Node {
        id,
        node_id: format!("{id:012x}"),
        public_key: "key".into(),
        hostname: format!("host-{id}"),
        state,
        online,
        drained: false,
        gateway: id == 1,
        addresses: vec![
            format!("fd12:3456:789a::{id}/128").parse().expect("addr"),
            format!("10.99.0.{id}/32").parse().expect("addr"),
        ],
        prefixes: vec!["192.168.7.0/24".parse().expect("prefix")],
        endpoints: vec!["198.51.100.7:7700".parse().expect("endpoint")],
        links_up: 1,
        links_total: 1,
        last_seen_ms: online.then_some(1_700_000_000_000),
        public_wifi: false,
        client_prefixes: Vec::new(),
        clients: None,
        roles_requested: vec![],
        roles_approved: vec![],
        telemetry: Default::default(),
    }
}

fn link(a: u32, b: u32, up: bool, loss_ppm: Option<u32>) -> api::Link {
    api::Link {
        a,
        b,
        a_hostname: format!("host-{a}"),
        b_hostname: format!("host-{b}"),
        up,
        rtt_us: Some(2_000),
        loss_ppm,
        metric: 2_000,
        override_cost: None,
        rtt_history_us: vec![],
        loss_history_ppm: vec![],
    }
}

fn sample() -> Value {
    let nodes = vec![
        node(3, api::NodeState::Active, false),
        node(1, api::NodeState::Active, true),
        node(2, api::NodeState::Active, true),
        node(4, api::NodeState::Pending, true),
        node(5, api::NodeState::Revoked, false),
    ];
    let links = vec![
        link(2, 3, true, None),
        link(1, 2, true, Some(20_000)),
        link(1, 3, false, Some(0)),
        link(1, 4, true, Some(0)),
        link(2, 99, true, Some(0)),
    ];
    serde_json::to_value(meshviewer(
        &nodes,
        &links,
        &BTreeMap::new(),
        1_700_000_060_000,
    ))
    .expect("serialises")
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn times_use_yanics_layout_in_utc() {
    let t = |ms| JsonTime::from_unix_ms(ms).to_string();
    assert_eq!(t(0), "1970-01-01T00:00:00+0000");
    assert_eq!(t(1_700_000_000_999), "2023-11-14T22:13:20+0000");
    assert_eq!(t(951_782_400_000), "2000-02-29T00:00:00+0000");
    assert_eq!(t(1_709_251_199_000), "2024-02-29T23:59:59+0000");
    assert_eq!(t(-1), "1969-12-31T23:59:59+0000");
    assert_eq!(JsonTime::unknown().to_string(), "0001-01-01T00:00:00+0000");
    assert_eq!(t(i64::MIN), "0001-01-01T00:00:00+0000");
    assert_eq!(t(i64::MAX), "9999-12-31T23:59:59+0000");
}

#[test]
fn civil_dates_agree_with_counting_days() {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let (mut y, mut m, mut d) = (1900, 1, 1);
    let mut days = -25_567; // 1900-01-01
    while y < 2101 {
        assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
        let month_len = match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        days += 1;
        d += 1;
        if d > month_len {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
}

#[test]
fn document_has_meshviewers_top_level_shape() {
    let doc = sample();
    assert_eq!(keys(&doc), vec!["links", "nodes", "timestamp"]);
    assert_eq!(doc["timestamp"], "2023-11-14T22:14:20+0000");
}

#[test]
fn nodes_are_the_active_ones_with_meshviewer_fields() {
    let doc = sample();
    let nodes = doc["nodes"].as_array().expect("nodes array");
    let ids: Vec<&str> = nodes
        .iter()
        .map(|n| n["node_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec!["000000000001", "000000000002", "000000000003"]);
    let first = &nodes[0];
    assert_eq!(
        keys(first),
        vec![
            "addresses",
            "autoupdater",
            "clients",
            "clients_other",
            "clients_wifi24",
            "clients_wifi5",
            "firmware",
            "firstseen",
            "hostname",
            "is_gateway",
            "is_online",
            "lastseen",
            "loadavg",
            "node_id",
            "rootfs_usage",
        ]
    );
    assert_eq!(first["hostname"], "host-1");
    assert_eq!(first["is_online"], true);
    assert_eq!(first["is_gateway"], true);
    assert_eq!(
        first["addresses"],
        json!(["fd12:3456:789a::1", "10.99.0.1"])
    );
    assert_eq!(first["lastseen"], "2023-11-14T22:13:20+0000");
    assert_eq!(
        first["firstseen"], "2023-11-14T22:13:20+0000",
        "without an enrolment time, the last-seen time stands in"
    );
    assert_eq!(first["clients"], 0);
    assert_eq!(first["autoupdater"], json!({"enabled": false}));
    assert_eq!(first["firmware"], json!({}));
    assert!(first["loadavg"].is_f64() && first["rootfs_usage"].is_f64());
    // Never seen: unknown last-seen time, offline.
    assert_eq!(nodes[2]["is_online"], false);
    assert_eq!(nodes[2]["lastseen"], "0001-01-01T00:00:00+0000");
    // Nothing that identifies hardware or clients, no keys or endpoints.
    let text = doc.to_string();
    for absent in [
        "mac",
        "public_key",
        "198.51.100.7",
        "192.168.7.0",
        "\"key\"",
    ] {
        assert!(!text.contains(absent), "{absent} leaked: {text}");
    }
}

#[test]
fn links_are_the_live_ones_between_exported_nodes() {
    let doc = sample();
    let links = doc["links"].as_array().expect("links array");
    assert_eq!(
        links.len(),
        2,
        "down, pending-end and unknown-end links are left out"
    );
    assert_eq!(
        keys(&links[0]),
        vec![
            "source",
            "source_addr",
            "source_tq",
            "target",
            "target_addr",
            "target_tq",
            "type"
        ]
    );
    assert_eq!(links[0]["source"], "000000000001");
    assert_eq!(links[0]["target"], "000000000002");
    assert_eq!(links[0]["type"], "other");
    assert_eq!(links[0]["source_addr"], "fd12:3456:789a::1");
    assert_eq!(links[0]["target_addr"], "fd12:3456:789a::2");
    for side in ["source_tq", "target_tq"] {
        let tq = links[0][side].as_f64().expect("tq number");
        assert!((tq - 0.98).abs() < 1e-12, "{side} = {tq}");
        assert_eq!(
            links[1][side], 1.0,
            "unmeasured loss counts as a perfect link"
        );
    }
    // meshviewer drops links whose ends it cannot find among the nodes.
    let ids: Vec<&Value> = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| &n["node_id"])
        .collect();
    for l in links {
        assert!(ids.contains(&&l["source"]) && ids.contains(&&l["target"]));
    }
}

#[test]
fn link_quality_is_one_minus_loss_clamped() {
    assert_eq!(tq(None), 1.0);
    assert_eq!(tq(Some(0)), 1.0);
    assert!((tq(Some(250_000)) - 0.75).abs() < 1e-12);
    assert_eq!(tq(Some(1_000_000)), 0.0);
    assert_eq!(tq(Some(u32::MAX)), 0.0);
}

/// A small fixed mesh with telemetry: gateway 1 (location shared, contact
/// not), node 2 behind it (both shared), node 3 offline without reports.
fn telemetry_sample() -> Meshviewer {
    use freimesh_proto::telemetry::{Location, NodeInfo, Statistics};
    let mut n1 = node(1, api::NodeState::Active, true);
    *n1.telemetry = api::NodeTelemetry {
        first_seen_ms: Some(1_690_000_000_000),
        info: Some(NodeInfo {
            agent_version: "0.3.0".into(),
            firmware_base: Some("OpenWrt".into()),
            firmware_release: Some("23.05.3".into()),
            model: Some("TP-Link Archer C7 v5".into()),
            nproc: Some(2),
            location: Location::from_degrees(52.520_008, 13.404_954),
            share_location: true,
            contact: Some("secret@example.org".into()),
            share_contact: false,
            autoupdater_branch: Some("stable".into()),
            domain: Some("city".into()),
        }),
        info_at_ms: Some(1_700_000_000_000),
        stats: Some(Statistics {
            uptime_s: Some(3_600),
            load_centi: Some(42),
            memory_total_kib: Some(131_072),
            memory_available_kib: Some(32_768),
            rootfs_used_ppm: Some(250_000),
        }),
        stats_at_ms: Some(1_700_000_000_000),
        boot_time_ms: Some(1_699_996_400_000),
    };
    n1.clients = Some(3);
    let mut n2 = node(2, api::NodeState::Active, true);
    *n2.telemetry = api::NodeTelemetry {
        first_seen_ms: Some(1_699_900_000_000),
        info: Some(NodeInfo {
            agent_version: "0.2.9".into(),
            location: Location::from_degrees(52.5, 13.4),
            share_location: true,
            contact: Some("kita@example.org".into()),
            share_contact: true,
            ..NodeInfo::default()
        }),
        ..api::NodeTelemetry::default()
    };
    let mut n3 = node(3, api::NodeState::Active, false);
    n3.telemetry.first_seen_ms = Some(1_690_000_000_000);
    let links = vec![link(1, 2, true, Some(100_000)), link(2, 3, true, None)];
    let gateways = BTreeMap::from([
        (
            1,
            DefaultGateway {
                gateway: 1,
                nexthop: 1,
            },
        ),
        (
            2,
            DefaultGateway {
                gateway: 1,
                nexthop: 1,
            },
        ),
        // Offline: the last known, kept by the hub.
        (
            3,
            DefaultGateway {
                gateway: 1,
                nexthop: 2,
            },
        ),
    ]);
    meshviewer(&[n3, n2, n1], &links, &gateways, 1_700_000_060_000)
}

#[test]
fn golden_export_of_a_small_mesh() {
    let doc = serde_json::to_string_pretty(&telemetry_sample()).expect("json") + "\n";
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/export/meshviewer_golden.json"
    );
    if std::env::var_os("FREIMESH_BLESS").is_some() {
        std::fs::write(path, &doc).expect("bless");
    }
    let golden = std::fs::read_to_string(path).expect("golden file (FREIMESH_BLESS=1 writes it)");
    assert_eq!(
        doc, golden,
        "meshviewer export changed; check it, then FREIMESH_BLESS=1"
    );
}

#[test]
fn telemetry_fields_follow_meshviewers_rules() {
    let doc = serde_json::to_value(telemetry_sample()).expect("json");
    let nodes = doc["nodes"].as_array().expect("nodes");
    let (gw, behind, offline) = (&nodes[0], &nodes[1], &nodes[2]);
    assert_eq!(gw["uptime"], "2023-11-14T21:13:20+0000", "boot time");
    assert_eq!(gw["firstseen"], "2023-07-22T04:26:40+0000");
    assert_eq!(gw["nproc"], 2);
    assert_eq!(gw["loadavg"], 0.42);
    assert_eq!(gw["memory_usage"], 0.75);
    assert_eq!(gw["rootfs_usage"], 0.25);
    assert_eq!(gw["clients"], 3);
    assert_eq!(gw["clients_other"], 3);
    assert_eq!(
        gw["autoupdater"],
        json!({"enabled": true, "branch": "stable"})
    );
    assert_eq!(
        gw["firmware"],
        json!({"base": "OpenWrt", "release": "23.05.3"})
    );
    assert_eq!(
        gw["location"],
        json!({"latitude": 52.520_008, "longitude": 13.404_954})
    );
    assert_eq!(gw["gateway"], "000000000001");
    assert_eq!(gw["gateway_nexthop"], "000000000001");
    assert_eq!(behind["gateway"], "000000000001");
    assert!(gw.get("owner").is_none(), "contact not shared");
    assert_eq!(behind["owner"], "kita@example.org");
    assert!(behind.get("nproc").is_none() && behind.get("uptime").is_none());
    assert_eq!(behind["autoupdater"], json!({"enabled": false}));
    // meshviewer draws the gateway row for offline nodes too: the last
    // known default route, as yanic keeps it.
    assert_eq!(offline["gateway"], "000000000001");
    assert_eq!(offline["gateway_nexthop"], "000000000002");
    for absent in ["location", "uptime", "memory_usage", "model", "owner"] {
        assert!(
            offline.get(absent).is_none(),
            "{absent} on a node without reports"
        );
    }
    let text = doc.to_string();
    assert!(!text.contains("secret@example.org"));
    assert!(!text.contains("null"), "never null: {text}");
    assert!(!text.contains("distance"));
    assert_eq!(doc["links"][0]["source_tq"], 0.9);
}
