//! A `meshviewer.json` for Freifunk community maps: the fleet's nodes and
//! links in the schema [meshviewer](https://github.com/freifunk/meshviewer)
//! reads, so an existing map can show a freimesh mesh next to (or instead of)
//! a batman-adv one.
//!
//! ## The schema followed
//!
//! The "meshviewer-ffrgb" format as yanic writes it
//! (`FreifunkBremen/yanic`, `output/meshviewer-ffrgb/struct.go` and
//! `meshviewer.go`; times by `lib/jsontime/jsontime.go`), checked against
//! what meshviewer reads (`freifunk/meshviewer`, `lib/utils/node.ts` for the
//! node and link fields, `lib/main.ts` for the top level and the time parsing,
//! `lib/infobox/node.ts` for which fields it renders unconditionally):
//!
//! * top level: `timestamp`, `nodes`, `links`;
//! * times are strings `2006-01-02T15:04:05-0700` (Go layout), always UTC
//!   (`+0000`) here; an unknown time is Go's zero time
//!   `0001-01-01T00:00:00+0000`, as yanic writes it;
//! * a link's `source`/`target` are `node_id`s; `source_tq`/`target_tq` are
//!   link quality 0–1; `type` is `wifi`, `vpn` or `other`.
//!
//! ## How freimesh maps onto it
//!
//! * Nodes: only **active** ones (pending nodes are not in the mesh yet,
//!   revoked ones no more). `node_id` is our `node_id`, `is_online` means
//!   connected to the controller, `is_gateway` our gateway flag, `addresses`
//!   the overlay addresses. `lastseen` is `last_seen_ms`. `firstseen` is not
//!   known to the admin API (no enrolment time in `api::Node`), so it is the
//!   zero time, which keeps the node out of meshviewer's "new nodes" list
//!   rather than putting every node there.
//! * Privacy: no MAC addresses and nothing about clients: the client counts
//!   are there because meshviewer sums them, and are 0 (the project never
//!   exports client identifiers; if it ever counts clients, only counts).
//! * Fields meshviewer formats without checking (`loadavg`, `rootfs_usage`,
//!   `nproc`, `firmware`, `autoupdater`) get yanic's values for a node that
//!   sent no statistics (zeros, empty objects) so the map does not break;
//!   optional ones we do not know (`memory_usage`, `uptime`, `location`,
//!   `model`, `owner`, `domain`, gateways) are left out.
//! * Links: only links that are **up** between two exported nodes (yanic
//!   exports the neighbours online nodes report, i.e. live links).
//!   `source` is the link's `a`, `target` its `b`. Both TQs are `1 − loss`
//!   (we measure one loss per link; an up link without a measurement counts
//!   as 1). `type` is `other`: every freimesh link is a WireGuard tunnel,
//!   but meshviewer hides `vpn` links from the map and treats them as
//!   internet uplinks, which would hide the whole mesh. `source_addr` and
//!   `target_addr` (MACs in batman-adv meshes) carry each end's first
//!   overlay address instead.

use std::fmt;

use freimesh_proto::api;
use serde::{Serialize, Serializer};

/// Go's zero `time.Time` in Unix milliseconds: what yanic writes for a
/// time it does not know.
const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;
/// The last millisecond of year 9999: the Go layout has four year digits.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meshviewer {
    pub timestamp: JsonTime,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
}

/// One node, field names as meshviewer reads them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub firstseen: JsonTime,
    pub lastseen: JsonTime,
    pub is_online: bool,
    pub is_gateway: bool,
    pub clients: u32,
    pub clients_wifi24: u32,
    pub clients_wifi5: u32,
    pub clients_other: u32,
    pub rootfs_usage: f64,
    pub loadavg: f64,
    pub node_id: String,
    pub addresses: Vec<String>,
    pub hostname: String,
    pub firmware: Firmware,
    pub autoupdater: Autoupdater,
    pub nproc: u32,
}

/// Always empty here (yanic omits empty strings).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Firmware {}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Autoupdater {
    pub enabled: bool,
}

/// One link between two nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub source: String,
    pub target: String,
    pub source_tq: f64,
    pub target_tq: f64,
    pub source_addr: String,
    pub target_addr: String,
}

/// A time as yanic's `jsontime` writes it: `2006-01-02T15:04:05-0700`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JsonTime {
    unix_ms: i64,
}

impl JsonTime {
    /// A Unix time in milliseconds, clamped to years 1–9999.
    pub fn from_unix_ms(unix_ms: i64) -> Self {
        Self {
            unix_ms: unix_ms.clamp(GO_ZERO_TIME_MS, MAX_TIME_MS),
        }
    }

    /// Go's zero time, meaning "unknown".
    pub fn unknown() -> Self {
        Self {
            unix_ms: GO_ZERO_TIME_MS,
        }
    }
}

impl fmt::Display for JsonTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_ms.div_euclid(1_000);
        let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+0000",
            of_day / 3_600,
            of_day % 3_600 / 60,
            of_day % 60
        )
    }
}

impl Serialize for JsonTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Link quality 0–1 from probe loss in ppm; unmeasured counts as perfect.
fn tq(loss_ppm: Option<u32>) -> f64 {
    let loss = f64::from(loss_ppm.unwrap_or(0)) / 1e6;
    (1.0 - loss).clamp(0.0, 1.0)
}

/// The meshviewer document for these nodes and links at `now_ms` (see the
/// module docs for what is exported and how it is mapped). Nodes come in
/// id order, links in `(a, b)` order.
pub fn meshviewer(nodes: &[api::Node], links: &[api::Link], now_ms: i64) -> Meshviewer {
    let mut exported: Vec<&api::Node> = nodes
        .iter()
        .filter(|n| n.state == api::NodeState::Active)
        .collect();
    exported.sort_by_key(|n| n.id);
    exported.dedup_by_key(|n| n.id);
    let find = |id: u32| {
        exported
            .binary_search_by_key(&id, |n| n.id)
            .ok()
            .map(|i| exported[i])
    };
    let first_address = |n: &api::Node| {
        n.addresses
            .first()
            .map(|a| a.addr().to_string())
            .unwrap_or_default()
    };

    let mut mv_links: Vec<(u32, u32, Link)> = links
        .iter()
        .filter(|l| l.up && l.a != l.b)
        .filter_map(|l| {
            let (a, b) = (find(l.a)?, find(l.b)?);
            let quality = tq(l.loss_ppm);
            Some((
                l.a,
                l.b,
                Link {
                    kind: "other",
                    source: a.node_id.clone(),
                    target: b.node_id.clone(),
                    source_tq: quality,
                    target_tq: quality,
                    source_addr: first_address(a),
                    target_addr: first_address(b),
                },
            ))
        })
        .collect();
    mv_links.sort_by_key(|(a, b, _)| (*a, *b));

    Meshviewer {
        timestamp: JsonTime::from_unix_ms(now_ms),
        nodes: exported
            .iter()
            .map(|n| Node {
                firstseen: JsonTime::unknown(),
                lastseen: n
                    .last_seen_ms
                    .map_or_else(JsonTime::unknown, JsonTime::from_unix_ms),
                is_online: n.online,
                is_gateway: n.gateway,
                clients: 0,
                clients_wifi24: 0,
                clients_wifi5: 0,
                clients_other: 0,
                rootfs_usage: 0.0,
                loadavg: 0.0,
                node_id: n.node_id.clone(),
                addresses: n.addresses.iter().map(|a| a.addr().to_string()).collect(),
                hostname: n.hostname.clone(),
                firmware: Firmware::default(),
                autoupdater: Autoupdater::default(),
                nproc: 0,
            })
            .collect(),
        links: mv_links.into_iter().map(|(_, _, l)| l).collect(),
    }
}

#[cfg(test)]
mod tests {
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
        serde_json::to_value(meshviewer(&nodes, &links, 1_700_000_060_000)).expect("serialises")
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
                "nproc",
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
        assert_eq!(first["firstseen"], "0001-01-01T00:00:00+0000");
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
}
