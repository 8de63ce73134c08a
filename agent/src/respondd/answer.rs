//! The JSON of respondd answers, in the shapes yanic parses
//! (FreifunkBremen/yanic `data/nodeinfo.go`, `data/statistics.go`,
//! `data/neighbours.go`; links from `runtime/nodes.go`), and the raw
//! deflate around them. `docs/api.md` ("respondd") maps every field.
//!
//! yanic drops a whole answer on one type mismatch, so integers stay
//! integers (`nproc`, `memory.*`, `clients.*`, `tq`) and the times and
//! ratios Gluon writes as floats are floats. Keys come out sorted
//! (serde_json's map), so answers are deterministic.
//!
//! Identities: yanic keeps only nodes whose `node_id` has exactly 12
//! characters, so ours is the first 12 hex digits of the freimesh node id
//! (the controller's `node_id` starts with it). Links need one address per
//! end that both ends agree on: a node's **link address** is its `node_id`
//! written as a MAC with the locally administered bit set — derived from
//! the node's key, so a router knows its neighbour's without asking, and no
//! hardware address leaves the router.

use std::io::Write as _;

use freimesh_proto::telemetry::{MAX_TEXT, PPM, bounded_text};
use freimesh_proto::{NodeId, PublicKeyBytes};
use serde_json::{Map, Value, json};

use super::{MAX_NEIGHBOURS, OwnNode, Section, Snapshot};

/// The `network.mesh` key the link addresses are listed under (yanic
/// reads every key; Gluon's is `bat0`).
pub const MESH_NAME: &str = "freimesh";

/// The 12-character respondd `node_id` of the node holding `key`.
pub fn node_id(key: &PublicKeyBytes) -> String {
    let id = NodeId::of(key).to_string();
    id[..12].to_owned()
}

/// The link address of the node holding `key` (see the module docs).
pub fn link_address(key: &PublicKeyBytes) -> String {
    let id = NodeId::of(key).0;
    // Locally administered (bit 1), unicast (bit 0 clear).
    let first = (id[0] & 0xfc) | 0x02;
    format!(
        "{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        id[1], id[2], id[3], id[4], id[5]
    )
}

/// `{"nodeinfo": …, …}` for the sections asked for, raw-deflated.
pub fn deflated(own: &OwnNode, snapshot: &Snapshot, sections: &[Section]) -> Vec<u8> {
    let mut all = Map::new();
    for section in sections {
        all.insert(
            section.name().to_owned(),
            section_json(own, snapshot, *section),
        );
    }
    let text = Value::Object(all).to_string();
    miniz_oxide::deflate::compress_to_vec(text.as_bytes(), DEFLATE_LEVEL)
}

/// One section alone, as plain JSON.
pub fn plain(own: &OwnNode, snapshot: &Snapshot, section: Section) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing JSON into a Vec cannot fail.
    let _ = write!(out, "{}", section_json(own, snapshot, section));
    out
}

/// miniz's default level: the answers are small, a higher level saves a
/// few bytes for more CPU per request.
const DEFLATE_LEVEL: u8 = 6;

pub fn section_json(own: &OwnNode, snapshot: &Snapshot, section: Section) -> Value {
    match section {
        Section::NodeInfo => nodeinfo(own, snapshot),
        Section::Statistics => statistics(own, snapshot),
        Section::Neighbours => neighbours(own, snapshot),
    }
}

fn nodeinfo(own: &OwnNode, snapshot: &Snapshot) -> Value {
    let info = &snapshot.info;
    let mut hardware = Map::new();
    if let Some(model) = &info.model {
        hardware.insert("model".into(), json!(model));
    }
    if let Some(nproc) = info.nproc {
        hardware.insert("nproc".into(), json!(nproc));
    }
    let mut firmware = Map::new();
    if let Some(base) = &info.firmware_base {
        firmware.insert("base".into(), json!(base));
    }
    if let Some(release) = &info.firmware_release {
        firmware.insert("release".into(), json!(release));
    }
    let mut software = Map::new();
    software.insert("firmware".into(), Value::Object(firmware));
    software.insert("freimesh".into(), json!({ "version": info.agent_version }));
    if let Some(branch) = &info.autoupdater_branch {
        software.insert(
            "autoupdater".into(),
            json!({ "enabled": true, "branch": branch }),
        );
    }
    let mut out = Map::new();
    out.insert("node_id".into(), json!(node_id(&own.key)));
    out.insert(
        "hostname".into(),
        json!(bounded_text(&own.hostname, MAX_TEXT).unwrap_or_default()),
    );
    out.insert("hardware".into(), Value::Object(hardware));
    out.insert(
        "network".into(),
        json!({
            "addresses": own.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mesh": { MESH_NAME: { "interfaces": { "other": [link_address(&own.key)] } } },
        }),
    );
    out.insert("software".into(), Value::Object(software));
    if let Some(domain) = &info.domain {
        out.insert(
            "system".into(),
            json!({ "site_code": domain, "domain_code": domain }),
        );
    }
    // Consent (`docs/security.md`): Gluon publishes the location only with
    // `share_location`; the contact needs `share_contact` here (Gluon has
    // no such flag and always publishes it).
    if let Some(location) = info.location.filter(|_| info.share_location) {
        out.insert(
            "location".into(),
            json!({ "latitude": location.latitude(), "longitude": location.longitude() }),
        );
    }
    if let Some(contact) = info.contact.as_ref().filter(|_| info.share_contact) {
        out.insert("owner".into(), json!({ "contact": contact }));
    }
    if own.is_gateway {
        out.insert("vpn".into(), json!(true));
    }
    Value::Object(out)
}

fn statistics(own: &OwnNode, snapshot: &Snapshot) -> Value {
    let stats = &snapshot.stats;
    let mut out = Map::new();
    out.insert("node_id".into(), json!(node_id(&own.key)));
    if let Some(uptime) = stats.uptime_s {
        #[allow(clippy::cast_precision_loss)] // bounded by MAX_UPTIME_S, far below 2^52
        out.insert("uptime".into(), json!(uptime as f64));
    }
    if let Some(load) = stats.load_centi {
        out.insert("loadavg".into(), json!(f64::from(load) / 100.0));
    }
    if let Some(used) = stats.rootfs_used_ppm {
        out.insert(
            "rootfs_usage".into(),
            json!(f64::from(used) / f64::from(PPM)),
        );
    }
    let mut memory = Map::new();
    if let Some(total) = stats.memory_total_kib {
        memory.insert("total".into(), json!(total));
    }
    if let Some(available) = stats.memory_available_kib {
        memory.insert("available".into(), json!(available));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    // A count only; which kind of radio a client uses is not known here,
    // so yanic shows them all as `clients_other`.
    out.insert(
        "clients".into(),
        json!({ "total": snapshot.clients.unwrap_or(0) }),
    );
    if let Some(hop) = &snapshot.gateway_nexthop {
        // yanic maps a link address to the node that lists it.
        out.insert("gateway_nexthop".into(), json!(link_address(hop)));
    }
    Value::Object(out)
}

/// Link quality as batman-adv's TQ (0–255) from the measured loss.
pub fn tq(loss_ppm: u32) -> u32 {
    let delivered = u64::from(PPM.saturating_sub(loss_ppm.min(PPM)));
    // At most 255 by construction.
    u32::try_from((delivered * 255 + u64::from(PPM) / 2) / u64::from(PPM)).unwrap_or(255)
}

fn neighbours(own: &OwnNode, snapshot: &Snapshot) -> Value {
    let mut links = snapshot.links.clone();
    links.sort_by_key(|l| l.peer.0);
    links.dedup_by_key(|l| l.peer.0);
    let mut neighbours = Map::new();
    for link in links.iter().take(MAX_NEIGHBOURS) {
        neighbours.insert(
            link_address(&link.peer),
            json!({ "tq": tq(link.loss_ppm), "lastseen": 0.0 }),
        );
    }
    json!({
        "node_id": node_id(&own.key),
        "batadv": { link_address(&own.key): { "neighbours": neighbours } },
    })
}
