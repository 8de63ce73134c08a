//! A deterministic small city mesh for snapshot tests and the render
//! benchmark: fixed ids, names, times and measurements, so a rendered
//! screen is the same on every run.

use freimesh_proto::api::{
    Alert, ControllerInfo, CutLink, CutNode, DownCause, Event, EventKind, Hop, Link, LinkTraffic,
    MeshInfo, Node, NodeDetail, NodeState, NodeTelemetry, Overview, Redundancy, Route, Segment,
    Severity,
};
use freimesh_proto::telemetry::{Location, NodeInfo, Statistics};
use ipnet::IpNet;

use crate::app::{App, Connection, Screen, Update};
use crate::i18n::Lang;

/// "Now" for every fixture: 2025-06-15 15:06:40 UTC.
pub const NOW_MS: i64 = 1_750_000_000_000;

fn net(s: &str) -> IpNet {
    s.parse().expect("fixture prefixes are valid")
}

fn node(id: u32, hostname: &str, state: NodeState, online: bool, links: (u32, u32)) -> Node {
    Node {
        id,
        node_id: format!("n{:04x}{:04x}", id * 0x1f3, id * 0x7a1),
        public_key: format!("PUBKEY{id:02}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx="),
        hostname: hostname.to_string(),
        state,
        online,
        drained: false,
        gateway: false,
        addresses: vec![
            net(&format!("fd00:1::{id:x}/128")),
            net(&format!("10.77.{}.{}/32", id / 256, id % 256)),
        ],
        prefixes: Vec::new(),
        endpoints: vec![
            format!("192.0.{}.{}:51820", 2 + id / 256, id % 256)
                .parse()
                .expect("valid endpoint"),
        ],
        links_up: links.0,
        links_total: links.1,
        last_seen_ms: if online {
            Some(NOW_MS)
        } else {
            Some(NOW_MS - 1_000 * (300 + i64::from(id) * 60))
        },
        public_wifi: false,
        client_prefixes: Vec::new(),
        clients: None,
        roles_requested: vec![],
        roles_approved: vec![],
        telemetry: Default::default(),
    }
}

pub fn nodes() -> Vec<Node> {
    let mut rathaus = node(1, "rathaus", NodeState::Active, true, (3, 3));
    rathaus.prefixes = vec![net("10.20.1.0/24")];
    let mut schule = node(2, "schule-nord", NodeState::Active, true, (2, 2));
    schule.prefixes = vec![net("10.20.2.0/24")];
    let bib = node(3, "bibliothek", NodeState::Active, true, (2, 3));
    let mut feuer = node(4, "feuerwache", NodeState::Active, true, (1, 1));
    feuer.drained = true;
    feuer.prefixes = vec![net("10.20.4.0/24")];
    let mut jugend = node(5, "jugendzentrum", NodeState::Active, false, (0, 1));
    // It asks to be a gateway; no operator approved that yet.
    jugend.roles_requested = vec![freimesh_proto::api::Role::Gateway];
    let mut bad = node(6, "freibad", NodeState::Pending, false, (0, 0));
    bad.last_seen_ms = None;
    bad.addresses.clear();
    let alt = node(7, "altes-lager", NodeState::Revoked, false, (0, 0));
    let mut nodes = vec![rathaus, schule, bib, feuer, jugend, bad, alt];
    for n in &mut nodes {
        *n.telemetry = telemetry(n.id);
    }
    nodes
}

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Telemetry for fixture node `id`: rathaus and schule-nord run the newest
/// agent, three others an older one (version drift), bibliothek is short of
/// memory, freibad (pending) and altes-lager (revoked) never reported.
fn telemetry(id: u32) -> NodeTelemetry {
    // (agent, boot ago, load in hundredths, MiB available of 128, rootfs ppm)
    let (agent, up_ms, load, available_mib, rootfs) = match id {
        1 => ("0.3.0", 3 * DAY_MS + 4 * HOUR_MS, 42, 83, 412_000),
        2 => ("0.3.0", 26 * HOUR_MS, 7, 90, 388_000),
        3 => ("0.2.4", 12 * DAY_MS + 2 * HOUR_MS, 131, 9, 655_000),
        4 => ("0.2.4", 47 * 60_000, 18, 71, 301_000),
        5 => ("0.2.1", 40 * DAY_MS, 210, 40, 512_000),
        _ => {
            return NodeTelemetry {
                first_seen_ms: Some(NOW_MS - i64::from(id) * DAY_MS),
                ..NodeTelemetry::default()
            };
        }
    };
    // An offline node's last report is older.
    let reported_ms = if id == 5 {
        NOW_MS - 25 * 60_000
    } else {
        NOW_MS - 30_000
    };
    let rathaus = id == 1;
    NodeTelemetry {
        first_seen_ms: Some(NOW_MS - (100 + i64::from(id)) * DAY_MS),
        info: Some(NodeInfo {
            agent_version: agent.into(),
            firmware_base: Some("OpenWrt".into()),
            firmware_release: Some(if id % 2 == 1 { "23.05.3" } else { "22.03.5" }.into()),
            model: Some(
                if rathaus {
                    "TP-Link Archer C7 v5"
                } else {
                    "GL.iNet GL-MT300N-V2"
                }
                .into(),
            ),
            nproc: Some(if rathaus { 2 } else { 1 }),
            location: rathaus.then_some(Location {
                latitude_e6: 52_520_008,
                longitude_e6: 13_404_954,
            }),
            share_location: rathaus,
            contact: rathaus.then(|| "it@rathaus.example".into()),
            share_contact: false,
            autoupdater_branch: Some("stable".into()),
            domain: Some("stadt".into()),
        }),
        info_at_ms: Some(reported_ms - HOUR_MS),
        stats: Some(Statistics {
            uptime_s: u64::try_from(up_ms / 1_000).ok(),
            load_centi: Some(load),
            memory_total_kib: Some(128 * 1_024),
            memory_available_kib: Some(available_mib * 1_024),
            rootfs_used_ppm: Some(rootfs),
        }),
        stats_at_ms: Some(reported_ms),
        boot_time_ms: Some(reported_ms - up_ms),
    }
}

fn link(a: (u32, &str), b: (u32, &str), up: bool, rtt: u32, loss: u32) -> Link {
    // A wobbling, deterministic history so sparklines have a shape.
    let rtt_history_us = (0..60u32).map(|i| rtt + (i * 37 % 11) * rtt / 20).collect();
    let loss_history_ppm = (0..60u32)
        .map(|i| if i % 13 == 5 { loss + 2_000 } else { loss })
        .collect();
    Link {
        a: a.0,
        b: b.0,
        a_hostname: a.1.to_string(),
        b_hostname: b.1.to_string(),
        up,
        rtt_us: up.then_some(rtt),
        loss_ppm: up.then_some(loss),
        metric: rtt / 100 + loss / 1_000,
        override_cost: None,
        rtt_history_us,
        loss_history_ppm,
    }
}

pub fn links() -> Vec<Link> {
    let mut backbone = link((1, "rathaus"), (2, "schule-nord"), true, 1_800, 0);
    backbone.override_cost = Some(5);
    backbone.metric = 5;
    vec![
        backbone,
        link((1, "rathaus"), (3, "bibliothek"), true, 4_200, 1_500),
        link((2, "schule-nord"), (3, "bibliothek"), true, 3_100, 0),
        link((1, "rathaus"), (4, "feuerwache"), true, 12_500, 20_000),
        link((3, "bibliothek"), (5, "jugendzentrum"), false, 9_000, 0),
    ]
}

fn ev(seq: u64, secs_ago: i64, kind: EventKind) -> Event {
    Event {
        seq,
        at_ms: NOW_MS - secs_ago * 1_000,
        kind,
        operator: None,
    }
}

fn failover(
    seq: u64,
    secs_ago: i64,
    node: u32,
    peer: u32,
    cause: DownCause,
    det: u32,
    sw: u32,
) -> Event {
    ev(
        seq,
        secs_ago,
        EventKind::Failover {
            node,
            peer,
            cause,
            detection_ms: det,
            switch_us: sw,
            rerouted: 4,
            lost: u32::from(peer == 5),
        },
    )
}

/// Newest first, like the events screen keeps them.
pub fn events() -> Vec<Event> {
    vec![
        failover(12, 20, 3, 5, DownCause::Silence, 152, 38),
        ev(11, 21, EventKind::LinkDown { a: 3, b: 5 }),
        ev(10, 22, EventKind::Disconnected { node: 5 }),
        ev(9, 300, EventKind::Drained { node: 4 }),
        failover(8, 900, 1, 3, DownCause::Carrier, 0, 21),
        ev(7, 905, EventKind::LinkUp { a: 1, b: 3 }),
        ev(
            6,
            1_800,
            EventKind::Enrolled {
                node: 6,
                hostname: "freibad".into(),
            },
        ),
        ev(
            5,
            3_600,
            EventKind::TokenCreated {
                id: "9f3a61c2d4e5b7a8".into(),
            },
        ),
        ev(4, 7_200, EventKind::Revoked { node: 7 }),
        ev(3, 7_300, EventKind::Approved { node: 4 }),
        ev(2, 86_400, EventKind::Connected { node: 2 }),
        ev(1, 90_000, EventKind::Undrained { node: 1 }),
    ]
}

pub fn overview() -> Overview {
    let failovers = events()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Failover { .. }))
        .collect();
    Overview {
        mesh: MeshInfo {
            ula: net("fd00:1::/48"),
            ipv4: net("10.77.0.0/16"),
            approval: true,
        },
        nodes_total: 7,
        nodes_online: 4,
        nodes_pending: 1,
        nodes_drained: 1,
        links_total: 5,
        links_up: 4,
        gateways_total: 0,
        gateways_up: 0,
        failovers_total: 2,
        alerts: vec![
            alert(
                Severity::Critical,
                "node-offline",
                Some(5),
                None,
                "jugendzentrum is offline",
            ),
            alert(
                Severity::Warning,
                "link-down",
                Some(3),
                Some(5),
                "link bibliothek – jugendzentrum is down",
            ),
            alert(
                Severity::Warning,
                "single-point-of-failure",
                Some(1),
                None,
                "rathaus is a single point of failure",
            ),
            alert(
                Severity::Info,
                "node-pending",
                Some(6),
                None,
                "freibad waits for approval",
            ),
        ],
        recent_failovers: failovers,
        controller: ControllerInfo {
            version: "0.1.0".into(),
            started_at_ms: NOW_MS - 3 * 86_400_000,
            sessions: 4,
            last_computation_us: 412,
        },
    }
}

fn alert(
    severity: Severity,
    kind: &str,
    node: Option<u32>,
    peer: Option<u32>,
    message: &str,
) -> Alert {
    Alert {
        severity,
        kind: kind.into(),
        node,
        peer,
        message: message.into(),
    }
}

pub fn redundancy() -> Redundancy {
    Redundancy {
        nodes: vec![
            CutNode {
                node: 1,
                hostname: "rathaus".into(),
                cuts_off: vec![4],
                prefixes_cut: vec![net("10.20.4.0/24")],
            },
            CutNode {
                node: 3,
                hostname: "bibliothek".into(),
                cuts_off: vec![5],
                prefixes_cut: Vec::new(),
            },
        ],
        links: vec![
            CutLink {
                a: 1,
                b: 4,
                cuts_off: vec![4],
                prefixes_cut: vec![net("10.20.4.0/24")],
            },
            CutLink {
                a: 3,
                b: 5,
                cuts_off: vec![5],
                prefixes_cut: Vec::new(),
            },
        ],
    }
}

fn hop(node: u32, hostname: &str) -> Hop {
    Hop {
        node,
        hostname: hostname.into(),
    }
}

pub fn detail() -> NodeDetail {
    let node = nodes().remove(0);
    let links = links()
        .into_iter()
        .filter(|l| l.a == 1 || l.b == 1)
        .collect();
    NodeDetail {
        node,
        links,
        routes: vec![
            Route {
                prefix: net("10.20.2.0/24"),
                destination: 2,
                destination_hostname: "schule-nord".into(),
                via: vec![hop(2, "schule-nord"), hop(3, "bibliothek")],
                metric: Some(5),
                segment: Segment::Intranet,
            },
            Route {
                prefix: net("fd00:1::3/128"),
                destination: 3,
                destination_hostname: "bibliothek".into(),
                via: vec![hop(3, "bibliothek"), hop(2, "schule-nord")],
                metric: Some(43),
                segment: Segment::Infrastructure,
            },
            Route {
                prefix: net("10.20.4.0/24"),
                destination: 4,
                destination_hostname: "feuerwache".into(),
                via: vec![hop(4, "feuerwache")],
                metric: Some(145),
                segment: Segment::Intranet,
            },
        ],
        traffic: vec![
            LinkTraffic {
                peer: 2,
                tx_bytes: 8_123_456_789,
                rx_bytes: 6_543_210_987,
                reported_at_ms: NOW_MS - 5_000,
            },
            LinkTraffic {
                peer: 3,
                tx_bytes: 912_345_678,
                rx_bytes: 1_234_567,
                reported_at_ms: NOW_MS - 5_000,
            },
            LinkTraffic {
                peer: 4,
                tx_bytes: 45_678,
                rx_bytes: 987,
                reported_at_ms: NOW_MS - 5_000,
            },
        ],
        events: events()
            .into_iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Failover { node: 1, .. }
                        | EventKind::LinkUp { a: 1, .. }
                        | EventKind::Undrained { node: 1 }
                )
            })
            .collect(),
    }
}

/// The fixture mesh, fully loaded, on `screen`.
pub fn app(lang: Lang, screen: Screen) -> App {
    let mut app = App::new(lang, true, "http://127.0.0.1:7780");
    app.apply(Update::Nodes(nodes()));
    app.apply(Update::Links(links()));
    app.apply(Update::Gateways(Vec::new()));
    app.apply(Update::Overview(overview()));
    app.apply(Update::Redundancy(redundancy()));
    for event in events() {
        app.apply(Update::Event(event));
    }
    app.detail_id = Some(1);
    app.apply(Update::Detail(detail()));
    app.connection = Connection::Connected;
    app.screen = screen;
    app.node_sel = 2;
    app
}

/// A big mesh for the render benchmark: `n` nodes in a ring with chords,
/// `m` links.
pub fn large(n: u32, m: u32) -> App {
    let mut app = App::new(Lang::En, true, "http://127.0.0.1:7780");
    let hostname = |i: u32| format!("node-{i:04}");
    let nodes = (1..=n)
        .map(|i| node(i, &hostname(i), NodeState::Active, i % 17 != 0, (i % 5, 5)))
        .collect();
    let links = (0..m)
        .map(|k| {
            let a = k % n + 1;
            let b = (a + k / n) % n + 1;
            let (a, b) = (a.min(b), a.max(b).max(a.min(b) + 1).min(n));
            link(
                (a, &hostname(a)),
                (b, &hostname(b)),
                k % 23 != 0,
                1_000 + k % 9_000,
                k % 7 * 1_000,
            )
        })
        .collect();
    app.apply(Update::Nodes(nodes));
    app.apply(Update::Links(links));
    app.connection = Connection::Connected;
    app.node_sel = n as usize / 2;
    app
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_mesh_has_what_the_benchmark_promises() {
        let app = large(1_000, 4_000);
        let nodes = app.nodes.as_ref().expect("nodes");
        let links = app.links.as_ref().expect("links");
        assert_eq!(nodes.len(), 1_000);
        assert_eq!(links.len(), 4_000);
        assert!(
            links.iter().all(|l| l.a < l.b && l.b <= 1_000),
            "links are a < b"
        );
    }
}
