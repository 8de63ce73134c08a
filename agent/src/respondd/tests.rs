use std::net::{SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::telemetry::{Location, MAX_MODEL, MAX_TEXT, NodeInfo, Statistics};
use serde_json::Value;

use super::answer::{link_address, node_id, tq};
use super::*;

const MESH_IFINDEX: u32 = 7;
const PUBLIC_IFINDEX: u32 = 9;

fn key(byte: u8) -> PublicKeyBytes {
    PublicKeyBytes([byte; 32])
}

fn own() -> OwnNode {
    OwnNode {
        key: key(1),
        hostname: "kita-sonnenschein".into(),
        addresses: vec![
            "fd99::5".parse().expect("ip"),
            "10.99.0.5".parse().expect("ip"),
        ],
        is_gateway: false,
    }
}

fn policy() -> SourcePolicy {
    let mut policy = SourcePolicy::new(
        &[
            "fd99::/48".parse().expect("net"),
            "10.99.0.0/16".parse().expect("net"),
        ],
        &["fd99:0:0:c1::/64".parse().expect("net")],
    );
    policy.mesh_ifindexes.insert(MESH_IFINDEX);
    policy
}

fn snapshot() -> Snapshot {
    Snapshot {
        info: NodeInfo {
            agent_version: "0.1.0".into(),
            firmware_base: Some("OpenWrt".into()),
            firmware_release: Some("23.05.3".into()),
            model: Some("TP-Link Archer C7 v5".into()),
            nproc: Some(1),
            location: Location::from_degrees(52.520008, 13.404954),
            share_location: true,
            contact: Some("owner@example.org".into()),
            share_contact: false,
            autoupdater_branch: Some("stable".into()),
            domain: Some("city".into()),
        },
        stats: Statistics {
            uptime_s: Some(3_600),
            load_centi: Some(12),
            memory_total_kib: Some(124_000),
            memory_available_kib: Some(62_000),
            rootfs_used_ppm: Some(250_000),
        },
        links: vec![
            NeighbourLink {
                peer: key(3),
                loss_ppm: 0,
            },
            NeighbourLink {
                peer: key(2),
                loss_ppm: 100_000,
            },
        ],
        clients: Some(4),
        gateway_nexthop: Some(key(2)),
        gateway: Some(key(9)),
    }
}

fn core() -> Respondd {
    let mut core = Respondd::new(own(), policy());
    core.handle_snapshot(snapshot());
    core
}

fn link_local(ifindex: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        "fe80::1".parse().expect("ip"),
        40_000,
        0,
        ifindex,
    ))
}

fn inflate(datagram: &[u8]) -> Value {
    let text = miniz_oxide::inflate::decompress_to_vec(datagram).expect("raw deflate");
    serde_json::from_slice(&text).expect("JSON")
}

/// One section as JSON, as a bare-name request gets it.
fn section(own: &OwnNode, snapshot: &Snapshot, section: Section) -> Value {
    serde_json::from_slice(&answer::plain(own, snapshot, section)).expect("JSON")
}

const YANIC_REQUEST: &[u8] = b"GET nodeinfo statistics neighbours";

#[test]
fn requests_parse_as_gluon_reads_them() {
    assert_eq!(
        parse_request(YANIC_REQUEST),
        Ok(Request::Get(Section::ALL.to_vec()))
    );
    assert_eq!(
        parse_request(b"GET  statistics  bogus statistics"),
        Ok(Request::Get(vec![Section::Statistics])),
        "unknown names are left out, repeats collapse"
    );
    assert_eq!(
        parse_request(b"nodeinfo"),
        Ok(Request::Plain(Section::NodeInfo))
    );
    assert_eq!(
        parse_request(b"nodeinfo\n"),
        Ok(Request::Plain(Section::NodeInfo))
    );
    assert_eq!(parse_request(b"GET bogus"), Err(Refusal::NothingKnown));
    assert_eq!(parse_request(b"bogus"), Err(Refusal::NothingKnown));
    assert_eq!(parse_request(b"GET"), Err(Refusal::NothingKnown));
    assert_eq!(parse_request(b"\xff\xfe"), Err(Refusal::NotText));
    let many = format!("GET{}", " nodeinfo".repeat(MAX_NAMES_PER_REQUEST + 1));
    assert_eq!(parse_request(many.as_bytes()), Err(Refusal::TooManyNames));
    let long = vec![b'a'; MAX_REQUEST_BYTES + 1];
    assert_eq!(parse_request(&long), Err(Refusal::TooLong));
}

/// The answer to yanic's request, inflated, against the golden file
/// (`golden.json`; the shapes yanic parses, `docs/api.md`).
#[test]
fn golden_answer_to_yanic() {
    let mut core = core();
    core.handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, Instant::now())
        .expect("answered");
    let answer = core.poll_answer().expect("answer");
    assert_eq!(answer.to.port(), 40_000, "to the request's source port");
    assert!(core.poll_answer().is_none());
    let got = inflate(&answer.datagram);
    // No hardware address and nothing about a client but the count.
    assert!(got["nodeinfo"]["network"].get("mac").is_none());
    assert_eq!(
        got["statistics"]["clients"].as_object().map(|c| c.len()),
        Some(1)
    );
    let golden: Value = serde_json::from_str(include_str!("golden.json")).expect("golden JSON");
    assert_eq!(
        got,
        golden,
        "answer changed; if on purpose, update golden.json to:\n{}",
        serde_json::to_string_pretty(&got).expect("print")
    );
}

#[test]
fn a_bare_name_is_answered_with_plain_json() {
    let mut core = core();
    core.handle_request(link_local(MESH_IFINDEX), b"statistics", Instant::now())
        .expect("answered");
    let answer = core.poll_answer().expect("answer");
    let got: Value = serde_json::from_slice(&answer.datagram).expect("plain JSON");
    let golden: Value = serde_json::from_str(include_str!("golden.json")).expect("golden JSON");
    assert_eq!(got, golden["statistics"]);
}

#[test]
fn identities_are_what_yanic_keeps_and_links_match_from_both_ends() {
    let id = node_id(&key(1));
    assert_eq!(id.len(), 12, "yanic drops other lengths");
    assert!(
        freimesh_proto::NodeId::of(&key(1))
            .to_string()
            .starts_with(&id),
        "the controller's node_id starts with it"
    );
    let mac = link_address(&key(1));
    assert_eq!(mac.len(), 17);
    let first = u8::from_str_radix(&mac[..2], 16).expect("hex");
    assert_eq!(first & 0x03, 0x02, "locally administered unicast");
    // Node 2 lists in its nodeinfo the address node 1 reports it under.
    let other = Respondd::new(
        OwnNode {
            key: key(2),
            ..own()
        },
        policy(),
    );
    let nodeinfo_2 = section(&other.own, &snapshot(), Section::NodeInfo);
    let neighbours_1 = section(&own(), &snapshot(), Section::Neighbours);
    let listed = &nodeinfo_2["network"]["mesh"][answer::MESH_NAME]["interfaces"]["other"][0];
    let reported = &neighbours_1["batadv"][link_address(&key(1))]["neighbours"];
    assert!(reported.get(listed.as_str().expect("address")).is_some());
}

/// yanic fills meshviewer's `gateway` and `gateway_nexthop` from these
/// two keys (`output/meshviewer-ffrgb/struct.go`), mapping each link
/// address to the node that lists it.
#[test]
fn statistics_name_the_exit_gateway_and_the_first_hop_toward_it() {
    let stats = section(&own(), &snapshot(), Section::Statistics);
    assert_eq!(stats["gateway"], link_address(&key(9)).as_str());
    assert_eq!(stats["gateway_nexthop"], link_address(&key(2)).as_str());
    // A gateway leaving through its own uplink is its own exit and first
    // hop, whatever the controller named last.
    let gateway = Snapshot {
        gateway_nexthop: Some(own().key),
        gateway: None,
        ..snapshot()
    };
    let stats = section(&own(), &gateway, Section::Statistics);
    assert_eq!(stats["gateway"], link_address(&own().key).as_str());
    assert_eq!(stats["gateway_nexthop"], link_address(&own().key).as_str());
    // Without a default route (and before the controller named a
    // gateway) both are left out, never empty strings.
    let none = Snapshot {
        gateway_nexthop: None,
        gateway: None,
        ..snapshot()
    };
    let stats = section(&own(), &none, Section::Statistics);
    assert!(stats.get("gateway").is_none());
    assert!(stats.get("gateway_nexthop").is_none());
}

#[test]
fn tq_follows_loss() {
    assert_eq!(tq(0), 255);
    assert_eq!(tq(1_000_000), 0);
    assert_eq!(tq(2_000_000), 0);
    assert_eq!(tq(100_000), 230);
}

#[test]
fn consent_decides_location_and_contact() {
    let mut snapshot = snapshot();
    let nodeinfo = |s: &Snapshot| section(&own(), s, Section::NodeInfo);
    assert!(nodeinfo(&snapshot).get("location").is_some());
    assert!(
        nodeinfo(&snapshot).get("owner").is_none(),
        "share_contact off"
    );
    snapshot.info.share_location = false;
    snapshot.info.share_contact = true;
    assert!(nodeinfo(&snapshot).get("location").is_none());
    assert_eq!(nodeinfo(&snapshot)["owner"]["contact"], "owner@example.org");
}

/// Every text at its bound, the most neighbours, and more links than
/// that: every answer stays under yanic's buffer, control characters never
/// reach the JSON.
#[test]
fn hostile_fields_stay_bounded() {
    let long = "ü".repeat(MAX_TEXT);
    let mut own = own();
    own.hostname = format!("{}\u{1b}[31m\n", "h".repeat(10_000));
    own.is_gateway = true;
    let snapshot = Snapshot {
        info: NodeInfo {
            agent_version: long.clone(),
            firmware_base: Some(long.clone()),
            firmware_release: Some(long.clone()),
            model: Some("m".repeat(MAX_MODEL)),
            nproc: Some(4_096),
            location: Location::from_degrees(-90.0, 180.0),
            share_location: true,
            contact: Some(long.clone()),
            share_contact: true,
            autoupdater_branch: Some(long.clone()),
            domain: Some(long),
        },
        stats: Statistics {
            uptime_s: Some(u64::MAX),
            load_centi: Some(u32::MAX),
            memory_total_kib: Some(u64::MAX),
            memory_available_kib: Some(u64::MAX),
            rootfs_used_ppm: Some(u32::MAX),
        },
        links: (0..=255u8)
            .map(|b| NeighbourLink {
                peer: key(b),
                loss_ppm: u32::MAX,
            })
            .collect(),
        clients: Some(u32::MAX),
        gateway_nexthop: Some(key(200)),
        gateway: Some(key(201)),
    };
    let mut core = Respondd::new(own, policy());
    core.handle_snapshot(snapshot);
    let mut now = Instant::now();
    for request in [YANIC_REQUEST, b"nodeinfo", b"statistics", b"neighbours"] {
        now += Duration::from_secs(1);
        core.handle_request(link_local(MESH_IFINDEX), request, now)
            .expect("answered");
        let answer = core.poll_answer().expect("answer");
        assert!(answer.datagram.len() <= MAX_ANSWER_BYTES);
        let json = if request == YANIC_REQUEST {
            inflate(&answer.datagram)
        } else {
            serde_json::from_slice(&answer.datagram).expect("JSON")
        };
        let text = json.to_string();
        assert!(!text.contains("\\u001b") && !text.contains("\\n"), "{text}");
        if request == YANIC_REQUEST {
            let neighbours = &json["neighbours"]["batadv"][link_address(&key(1))]["neighbours"];
            assert_eq!(
                neighbours.as_object().map(serde_json::Map::len),
                Some(MAX_NEIGHBOURS)
            );
            let hostname = json["nodeinfo"]["hostname"].as_str().expect("hostname");
            assert!(hostname.len() <= MAX_TEXT);
        }
    }
}

#[test]
fn only_mesh_and_link_local_sources_on_mesh_interfaces_are_answered() {
    let mut core = core();
    let now = Instant::now();
    let v6 = |ip: &str, scope: u32| {
        SocketAddr::V6(SocketAddrV6::new(ip.parse().expect("ip"), 40_000, 0, scope))
    };
    for (from, answered) in [
        (link_local(MESH_IFINDEX), true),
        (v6("fd99::7", 0), true),
        (link_local(PUBLIC_IFINDEX), false),
        (link_local(0), false),
        (v6("fd99:0:0:c1::20", 0), false),
        (v6("2001:db8::1", 0), false),
        (v6("ff02::1", MESH_IFINDEX), false),
        (v6("::", MESH_IFINDEX), false),
        (v6("::ffff:10.99.0.7", 0), false),
        ("10.99.0.7:40000".parse().expect("addr"), false),
        (
            SocketAddr::V6(SocketAddrV6::new("fd99::7".parse().expect("ip"), 0, 0, 0)),
            false,
        ),
    ] {
        let result = core.handle_request(from, YANIC_REQUEST, now);
        assert_eq!(result.is_ok(), answered, "{from}");
        if !answered {
            assert_eq!(result, Err(Refusal::Source), "{from}");
        }
        assert_eq!(core.poll_answer().is_some(), answered, "{from}");
    }
    assert_eq!(core.counters().refused_source, 9);
    assert_eq!(core.counters().answered, 2);
    // An interface that goes away takes its link-local sources with it.
    core.handle_mesh_interfaces([]);
    assert_eq!(
        core.handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, now),
        Err(Refusal::Source)
    );
}

#[test]
fn answers_are_rate_limited() {
    let mut core = core();
    let t0 = Instant::now();
    for _ in 0..ANSWER_BURST {
        core.handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, t0)
            .expect("within the burst");
        assert!(core.poll_answer().is_some());
    }
    assert_eq!(
        core.handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, t0),
        Err(Refusal::RateLimited)
    );
    // Malformed and refused requests cost no token and are not "rate limited".
    assert_eq!(
        core.handle_request(link_local(MESH_IFINDEX), b"bogus", t0),
        Err(Refusal::NothingKnown)
    );
    let t1 = t0 + ANSWER_REFILL;
    core.handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, t1)
        .expect("one more after one interval");
    assert_eq!(
        core.handle_request(
            link_local(MESH_IFINDEX),
            YANIC_REQUEST,
            t1 + ANSWER_REFILL / 2
        ),
        Err(Refusal::RateLimited)
    );
    // A flood of a minute gets at most the burst plus the refill through.
    let mut answered = 0;
    for ms in 0..60_000u64 {
        let now = t1 + Duration::from_millis(ms);
        if core
            .handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, now)
            .is_ok()
        {
            answered += 1;
        }
        while core.poll_answer().is_some() {}
    }
    let most = 60_000 / u32::try_from(ANSWER_REFILL.as_millis()).expect("ms") + ANSWER_BURST;
    assert!(answered <= most, "{answered} > {most}");
    assert!(answered >= 60_000 / 200 - 1, "{answered}");
    // After a quiet time the whole burst is back, no more.
    let later = t1 + Duration::from_secs(3_600);
    let mut burst = 0;
    while core
        .handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, later)
        .is_ok()
    {
        burst += 1;
    }
    assert_eq!(burst, ANSWER_BURST);
    assert_eq!(core.counters().malformed, 1);
}

#[test]
fn nothing_is_answered_before_the_first_snapshot() {
    let mut core = Respondd::new(own(), policy());
    assert_eq!(
        core.handle_request(link_local(MESH_IFINDEX), YANIC_REQUEST, Instant::now()),
        Err(Refusal::NotReady)
    );
    assert!(core.poll_answer().is_none());
}

#[test]
fn the_answer_queue_is_bounded() {
    let mut core = core();
    let now = Instant::now();
    for _ in 0..ANSWER_BURST {
        let _ = core.handle_request(link_local(MESH_IFINDEX), b"nodeinfo", now);
    }
    let mut queued = 0;
    while core.poll_answer().is_some() {
        queued += 1;
    }
    assert_eq!(
        queued,
        ANSWER_BURST.min(u32::try_from(MAX_QUEUED_ANSWERS).expect("small"))
    );
}
