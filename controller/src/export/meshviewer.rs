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
//!   the overlay addresses. `lastseen` is `last_seen_ms`, `firstseen` the
//!   enrolment time (`api::NodeTelemetry::first_seen_ms`).
//! * Fleet telemetry (issue 15): `uptime` is the boot time, `loadavg`,
//!   `nproc`, `memory_usage`, `rootfs_usage`, `model`, `firmware`,
//!   `autoupdater`, `domain` come from the node's `NodeInfo`/`Statistics`;
//!   `gateway`/`gateway_nexthop` from the controller's routes
//!   ([`DefaultGateway`]): the current ones for online nodes, for offline
//!   ones the last known (as yanic keeps an offline node's last
//!   statistics; meshviewer always draws the gateway row, blank without
//!   them). `docs/api.md` names the meshviewer code each field serves.
//! * Consent: `location` only with `share_location`, `owner` (the contact)
//!   only with `share_contact`; both keys are left out otherwise, never
//!   `null` (meshviewer reads `.latitude` of whatever is there).
//! * Privacy: no MAC addresses and nothing about clients beyond the count
//!   of public Wi-Fi leases (meshviewer sums `clients`).
//! * Fields meshviewer formats without checking (`loadavg`, `rootfs_usage`,
//!   `firmware`, `autoupdater`) are always there (zeros, empty objects for
//!   a node that sent nothing) so the map does not break; optional ones we
//!   do not know are left out (`nproc` too: 0 would draw a red load bar).
//! * Links: only links that are **up** between two exported nodes (yanic
//!   exports the neighbours online nodes report, i.e. live links).
//!   `source` is the link's `a`, `target` its `b`. Both TQs are `1 − loss`
//!   (we measure one loss per link; an up link without a measurement counts
//!   as 1). `type` is `other`: every freimesh link is a WireGuard tunnel,
//!   but meshviewer hides `vpn` links from the map and treats them as
//!   internet uplinks, which would hide the whole mesh. `source_addr` and
//!   `target_addr` (MACs in batman-adv meshes) carry each end's first
//!   overlay address instead.

use std::collections::BTreeMap;
use std::fmt;

use freimesh_proto::api;
use freimesh_proto::telemetry::{PPM, Statistics};
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

/// One node, field names as meshviewer reads them (`docs/api.md` names
/// the meshviewer code each one serves).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_usage: Option<f64>,
    /// Boot time (meshviewer shows `now − uptime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<JsonTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_nexthop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub node_id: String,
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub hostname: String,
    /// The owner's contact, only with their consent (`share_contact`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Only with the owner's consent (`share_location`); never `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<MapLocation>,
    pub firmware: Firmware,
    pub autoupdater: Autoupdater,
    /// Left out when unknown: meshviewer warns at `loadavg >= nproc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nproc: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The firmware name and release, each left out when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Firmware {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// Always present (meshviewer v13.1.0 dereferences it unchecked).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Autoupdater {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// A position in degrees, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MapLocation {
    pub longitude: f64,
    pub latitude: f64,
}

/// A node's default route: the gateway it leaves the mesh through and
/// its first hop toward it (the node itself on a gateway); current for an
/// online node, the last known for an offline one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultGateway {
    pub gateway: u32,
    pub nexthop: u32,
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

/// Memory usage 0–1 and the rest of the statistics as meshviewer wants
/// them; zeros where meshviewer needs a number and we know none.
fn load(stats: Option<&Statistics>) -> (f64, f64, Option<f64>) {
    let Some(s) = stats else {
        return (0.0, 0.0, None);
    };
    (
        s.load_centi.map_or(0.0, |l| f64::from(l) / 100.0),
        s.rootfs_used_ppm
            .map_or(0.0, |r| f64::from(r) / f64::from(PPM)),
        s.memory_usage(),
    )
}

/// One exported node; `node_id_of` gives the exported id of another node
/// (`None` if it is not exported).
fn map_node(
    n: &api::Node,
    gateway: Option<&DefaultGateway>,
    node_id_of: &dyn Fn(u32) -> Option<String>,
) -> Node {
    let t = &n.telemetry;
    let info = t.info.as_ref();
    let (loadavg, rootfs_usage, memory_usage) = load(t.stats.as_ref());
    let lastseen = n.last_seen_ms;
    // The gateway row needs both ends among the nodes, else it would show
    // a raw id.
    let (gateway_id, nexthop_id) = match gateway {
        Some(g) => match (node_id_of(g.gateway), node_id_of(g.nexthop)) {
            (Some(gw), Some(hop)) => (Some(gw), Some(hop)),
            _ => (None, None),
        },
        None => (None, None),
    };
    let clients = if n.online { n.clients.unwrap_or(0) } else { 0 };
    Node {
        firstseen: t
            .first_seen_ms
            .or(lastseen)
            .map_or_else(JsonTime::unknown, JsonTime::from_unix_ms),
        lastseen: lastseen.map_or_else(JsonTime::unknown, JsonTime::from_unix_ms),
        is_online: n.online,
        is_gateway: n.gateway,
        // Public Wi-Fi clients: the band is not known, so all are "other".
        clients,
        clients_wifi24: 0,
        clients_wifi5: 0,
        clients_other: clients,
        rootfs_usage,
        loadavg,
        memory_usage,
        uptime: t.boot_time_ms.map(JsonTime::from_unix_ms),
        gateway_nexthop: nexthop_id,
        gateway: gateway_id,
        node_id: n.node_id.clone(),
        addresses: n.addresses.iter().map(|a| a.addr().to_string()).collect(),
        domain: info.and_then(|i| i.domain.clone()),
        hostname: n.hostname.clone(),
        owner: info
            .filter(|i| i.share_contact)
            .and_then(|i| i.contact.clone()),
        location: info
            .filter(|i| i.share_location)
            .and_then(|i| i.location)
            .filter(|l| l.is_valid())
            .map(|l| MapLocation {
                longitude: l.longitude(),
                latitude: l.latitude(),
            }),
        firmware: Firmware {
            base: info.and_then(|i| i.firmware_base.clone()),
            release: info.and_then(|i| i.firmware_release.clone()),
        },
        autoupdater: {
            let branch = info.and_then(|i| i.autoupdater_branch.clone());
            Autoupdater {
                enabled: branch.is_some(),
                branch,
            }
        },
        nproc: info.and_then(|i| i.nproc).filter(|n| *n > 0),
        model: info.and_then(|i| i.model.clone()),
    }
}

/// The meshviewer document for these nodes and links at `now_ms`, with
/// each node's default route from `gateways` (current for online nodes,
/// last known for offline ones; see the module docs for
/// what is exported and how it is mapped). Nodes come in id order, links
/// in `(a, b)` order.
pub fn meshviewer(
    nodes: &[api::Node],
    links: &[api::Link],
    gateways: &BTreeMap<u32, DefaultGateway>,
    now_ms: i64,
) -> Meshviewer {
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

    let node_id_of = |id: u32| find(id).map(|n| n.node_id.clone());
    Meshviewer {
        timestamp: JsonTime::from_unix_ms(now_ms),
        nodes: exported
            .iter()
            .map(|n| map_node(n, gateways.get(&n.id), &node_id_of))
            .collect(),
        links: mv_links.into_iter().map(|(_, _, l)| l).collect(),
    }
}

#[cfg(test)]
#[path = "meshviewer_tests.rs"]
mod tests;
