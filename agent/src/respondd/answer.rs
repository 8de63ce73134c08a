//! The JSON of respondd answers, in the shapes yanic parses
//! (FreifunkBremen/yanic `data/nodeinfo.go`, `data/statistics.go`,
//! `data/neighbours.go`; links from `runtime/nodes.go`), and the raw
//! deflate around them (stored blocks: no compressor on the router). `docs/api.md` ("respondd") maps every field.
//!
//! yanic drops a whole answer on one type mismatch, so integers stay
//! integers (`nproc`, `memory.*`, `clients.*`, `tq`) and the times and
//! ratios Gluon writes as floats are floats. The shapes are typed structs
//! serialised with the serde_json the agent already links (a
//! `serde_json::Value` tree would add its own code to the router binary);
//! maps are `BTreeMap`s, so answers are deterministic.
//!
//! Identities: yanic keeps only nodes whose `node_id` has exactly 12
//! characters, so ours is the first 12 hex digits of the freimesh node id
//! (the controller's `node_id` starts with it). Links need one address per
//! end that both ends agree on: a node's **link address** is its `node_id`
//! written as a MAC with the locally administered bit set — derived from
//! the node's key, so a router knows its neighbour's without asking, and no
//! hardware address leaves the router.

use std::collections::BTreeMap;

use freimesh_proto::telemetry::{MAX_TEXT, PPM, bounded_text};
use freimesh_proto::{NodeId, PublicKeyBytes};
use serde::Serialize;

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

/// `{"nodeinfo": …, …}` for the sections asked for, raw-deflated (stored
/// blocks, [`stored_deflate`]).
pub fn deflated(own: &OwnNode, snapshot: &Snapshot, sections: &[Section]) -> Vec<u8> {
    let wants = |s: Section| sections.contains(&s);
    let all = Sections {
        nodeinfo: wants(Section::NodeInfo).then(|| nodeinfo(own, snapshot)),
        statistics: wants(Section::Statistics).then(|| statistics(own, snapshot)),
        neighbours: wants(Section::Neighbours).then(|| neighbours(own, snapshot)),
    };
    stored_deflate(&to_json(&all))
}

/// One section alone, as plain JSON.
pub fn plain(own: &OwnNode, snapshot: &Snapshot, section: Section) -> Vec<u8> {
    match section {
        Section::NodeInfo => to_json(&nodeinfo(own, snapshot)),
        Section::Statistics => to_json(&statistics(own, snapshot)),
        Section::Neighbours => to_json(&neighbours(own, snapshot)),
    }
}

/// The largest stored block of raw deflate (RFC 1951 §3.2.4: LEN is 16 bits).
const STORED_BLOCK_MAX: usize = 0xffff;

/// `data` as raw deflate of stored (uncompressed) blocks: a valid stream
/// for every inflater (yanic's Go `compress/flate` included), without a
/// compressor in the router binary (miniz_oxide's deflate cost 36 KB of
/// the 3 MB budget; the answers are a few KB, asked for once a minute, on
/// a mesh link). Per block: a header byte (BFINAL on the last, BTYPE 00),
/// LEN and its one's complement NLEN, little-endian, then the bytes.
fn stored_deflate(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(STORED_BLOCK_MAX).max(1);
    let mut out = Vec::with_capacity(data.len() + 5 * blocks);
    let mut chunks = data.chunks(STORED_BLOCK_MAX).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        return out;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        // A chunk is at most STORED_BLOCK_MAX bytes: its length fits.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    // Plain structs, strings and maps with string keys: serialising them
    // cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[derive(Serialize)]
struct Sections<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    nodeinfo: Option<NodeInfoJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statistics: Option<StatisticsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    neighbours: Option<NeighboursJson>,
}

/// yanic `data/nodeinfo.go`.
#[derive(Serialize)]
struct NodeInfoJson<'a> {
    node_id: String,
    hostname: String,
    hardware: Hardware<'a>,
    network: Network,
    software: Software<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<LocationJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<Owner<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    vpn: bool,
}

#[derive(Serialize)]
struct Hardware<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nproc: Option<u16>,
}

#[derive(Serialize)]
struct Network {
    addresses: Vec<String>,
    /// `{"freimesh": {"interfaces": {"other": [link address]}}}`.
    mesh: BTreeMap<&'static str, MeshInterfaces>,
}

#[derive(Serialize)]
struct MeshInterfaces {
    interfaces: InterfaceKinds,
}

/// yanic types a link by the list its address is in: `other` keeps
/// WireGuard links on the map (`tunnel` would make them `vpn` links,
/// which meshviewer hides as internet uplinks).
#[derive(Serialize)]
struct InterfaceKinds {
    other: Vec<String>,
}

#[derive(Serialize)]
struct Software<'a> {
    firmware: Firmware<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    autoupdater: Option<Autoupdater<'a>>,
    freimesh: Agent<'a>,
}

#[derive(Serialize)]
struct Firmware<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<&'a str>,
}

#[derive(Serialize)]
struct Autoupdater<'a> {
    enabled: bool,
    branch: &'a str,
}

#[derive(Serialize)]
struct Agent<'a> {
    version: &'a str,
}

/// Older yanic reads `site_code`, newer `domain_code` first.
#[derive(Serialize)]
struct System<'a> {
    site_code: &'a str,
    domain_code: &'a str,
}

#[derive(Serialize)]
struct LocationJson {
    latitude: f64,
    longitude: f64,
}

#[derive(Serialize)]
struct Owner<'a> {
    contact: &'a str,
}

/// yanic `data/statistics.go`.
#[derive(Serialize)]
struct StatisticsJson {
    node_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loadavg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rootfs_usage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<Memory>,
    clients: Clients,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_nexthop: Option<String>,
}

/// KiB, integers (yanic's `int64`).
#[derive(Serialize)]
struct Memory {
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<u64>,
}

/// A count only; which kind of radio a client uses is not known here, so
/// yanic shows them all as `clients_other`.
#[derive(Serialize)]
struct Clients {
    total: u32,
}

/// yanic `data/neighbours.go`: `batadv` is the section yanic turns into
/// links for any mesh (it never checks the protocol).
#[derive(Serialize)]
struct NeighboursJson {
    node_id: String,
    batadv: BTreeMap<String, BatadvInterface>,
}

#[derive(Serialize)]
struct BatadvInterface {
    neighbours: BTreeMap<String, BatadvLink>,
}

#[derive(Serialize)]
struct BatadvLink {
    tq: u32,
    /// Seconds since last heard: the links listed are up.
    lastseen: f64,
}

fn nodeinfo<'a>(own: &OwnNode, snapshot: &'a Snapshot) -> NodeInfoJson<'a> {
    let info = &snapshot.info;
    NodeInfoJson {
        node_id: node_id(&own.key),
        hostname: bounded_text(&own.hostname, MAX_TEXT).unwrap_or_default(),
        hardware: Hardware {
            model: info.model.as_deref(),
            nproc: info.nproc,
        },
        network: Network {
            addresses: own.addresses.iter().map(ToString::to_string).collect(),
            mesh: BTreeMap::from([(
                MESH_NAME,
                MeshInterfaces {
                    interfaces: InterfaceKinds {
                        other: vec![link_address(&own.key)],
                    },
                },
            )]),
        },
        software: Software {
            firmware: Firmware {
                base: info.firmware_base.as_deref(),
                release: info.firmware_release.as_deref(),
            },
            autoupdater: info
                .autoupdater_branch
                .as_deref()
                .map(|branch| Autoupdater {
                    enabled: true,
                    branch,
                }),
            freimesh: Agent {
                version: &info.agent_version,
            },
        },
        system: info.domain.as_deref().map(|domain| System {
            site_code: domain,
            domain_code: domain,
        }),
        // Consent (`docs/security.md`): Gluon publishes the location only
        // with `share_location`; the contact needs `share_contact` here
        // (Gluon has no such flag and always publishes it).
        location: info
            .location
            .filter(|_| info.share_location)
            .map(|l| LocationJson {
                latitude: l.latitude(),
                longitude: l.longitude(),
            }),
        owner: info
            .contact
            .as_deref()
            .filter(|_| info.share_contact)
            .map(|contact| Owner { contact }),
        vpn: own.is_gateway,
    }
}

fn statistics(own: &OwnNode, snapshot: &Snapshot) -> StatisticsJson {
    let stats = &snapshot.stats;
    let memory = (stats.memory_total_kib.is_some() || stats.memory_available_kib.is_some())
        .then_some(Memory {
            total: stats.memory_total_kib,
            available: stats.memory_available_kib,
        });
    StatisticsJson {
        node_id: node_id(&own.key),
        #[allow(clippy::cast_precision_loss)] // bounded by MAX_UPTIME_S, far below 2^52
        uptime: stats.uptime_s.map(|u| u as f64),
        loadavg: stats.load_centi.map(|l| f64::from(l) / 100.0),
        rootfs_usage: stats
            .rootfs_used_ppm
            .map(|u| f64::from(u) / f64::from(PPM)),
        memory,
        clients: Clients {
            total: snapshot.clients.unwrap_or(0),
        },
        // yanic maps a link address to the node that lists it. A node
        // whose default route leaves through its own uplink is its own
        // exit, whatever the controller named last.
        gateway: if snapshot.gateway_nexthop == Some(own.key) {
            Some(link_address(&own.key))
        } else {
            snapshot.gateway.as_ref().map(link_address)
        },
        gateway_nexthop: snapshot.gateway_nexthop.as_ref().map(link_address),
    }
}

/// Link quality as batman-adv's TQ (0–255) from the measured loss.
pub fn tq(loss_ppm: u32) -> u32 {
    let delivered = u64::from(PPM.saturating_sub(loss_ppm.min(PPM)));
    // At most 255 by construction.
    u32::try_from((delivered * 255 + u64::from(PPM) / 2) / u64::from(PPM)).unwrap_or(255)
}

fn neighbours(own: &OwnNode, snapshot: &Snapshot) -> NeighboursJson {
    let mut links = snapshot.links.clone();
    links.sort_by_key(|l| l.peer.0);
    links.dedup_by_key(|l| l.peer.0);
    let neighbours = links
        .iter()
        .take(MAX_NEIGHBOURS)
        .map(|link| {
            (
                link_address(&link.peer),
                BatadvLink {
                    tq: tq(link.loss_ppm),
                    lastseen: 0.0,
                },
            )
        })
        .collect();
    NeighboursJson {
        node_id: node_id(&own.key),
        batadv: BTreeMap::from([(link_address(&own.key), BatadvInterface { neighbours })]),
    }
}

#[cfg(test)]
mod stored_deflate_tests {
    use super::*;

    #[test]
    fn any_inflater_gets_the_bytes_back() {
        for len in [
            0,
            1,
            100,
            STORED_BLOCK_MAX,
            STORED_BLOCK_MAX + 1,
            3 * STORED_BLOCK_MAX + 7,
        ] {
            let data: Vec<u8> = (0..len)
                .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
                .collect();
            let stream = stored_deflate(&data);
            let back = miniz_oxide::inflate::decompress_to_vec(&stream).expect("valid raw deflate");
            assert_eq!(back, data, "{len} bytes");
        }
    }
}
