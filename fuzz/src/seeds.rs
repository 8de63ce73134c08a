//! Seed inputs built from real encoded messages, so the fuzzers start deep:
//! every control frame and mesh message kind, a handshake message 1, engine
//! sessions carrying real packets, the TOML examples of the docs and the UCI
//! configurations the package ships. `cargo run --example seeds` writes them
//! to `corpus/<target>/` (then minimise with `cargo fuzz cmin`).

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_agent::core::packet::internet_checksum;
use freimesh_proto::NodeId;
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::api::DownCause;
use freimesh_proto::control::{
    self, AgentMsg, Candidate, ControllerMsg, ErrorCode, ErrorMsg, Hello, Initiator,
    LinkAssignment, LinkChange, LinkEvent, LinkMeasurement, LinkTraffic, Report, Roles, Route,
    RouteChange, Welcome,
};
use freimesh_proto::credential::{SignedCredential, SignedRevocationPage, SigningKeyBytes};
use freimesh_proto::mesh::{MeshMessage, MeshPacket, Timing, WirePrefix};
use freimesh_proto::segment::Segment;
use ipnet::IpNet;

use crate::engine::{op, overlay4, overlay6};

fn key(b: u8) -> PublicKeyBytes {
    PublicKeyBytes([b; 32])
}

fn endpoint() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 51820)
}

fn prefix(s: &str) -> IpNet {
    s.parse().expect("seed prefix")
}

fn agent_messages() -> Vec<AgentMsg> {
    vec![
        AgentMsg::Hello(Hello {
            version: freimesh_proto::PROTOCOL_VERSION,
            join_token: Some("fmj1-0123456789abcdef".into()),
            hostname: "rathaus".into(),
            endpoints: vec![endpoint(), "[2001:db8::7]:51820".parse().expect("addr")],
            prefixes: vec![prefix("10.20.5.0/24")],
            want_addresses: vec![IpAddr::V4(overlay4(5))],
            roles: Roles {
                gateway: true,
                public_wifi: true,
            },
        }),
        AgentMsg::Report(Report {
            links: vec![LinkMeasurement {
                peer: key(2),
                rtt_us: 1500,
                loss_ppm: 10,
                up: true,
            }],
            candidates: vec![Candidate {
                peer: key(3),
                endpoint: Some(endpoint()),
            }],
        }),
        AgentMsg::Ping(7),
        AgentMsg::Pong(7),
        AgentMsg::Events(vec![LinkEvent {
            peer: key(2),
            cause: DownCause::Silence,
            detection_ms: 300,
            switch_us: 40,
            rerouted: 3,
            lost: 1,
            age_ms: 1000,
        }]),
        AgentMsg::Traffic(vec![LinkTraffic {
            peer: key(2),
            tx_bytes: 1 << 20,
            rx_bytes: 1 << 30,
        }]),
        AgentMsg::Uplink { up: true },
        AgentMsg::Clients { count: 12 },
        AgentMsg::NodeInfo(freimesh_proto::telemetry::NodeInfo {
            agent_version: "0.3.0".into(),
            firmware_base: Some("OpenWrt".into()),
            firmware_release: Some("23.05.3".into()),
            model: Some("TP-Link Archer C7 v5".into()),
            nproc: Some(2),
            location: freimesh_proto::telemetry::Location::from_degrees(52.52, 13.405),
            share_location: true,
            contact: Some("owner@example.org".into()),
            share_contact: false,
            autoupdater_branch: Some("stable".into()),
            domain: Some("city".into()),
        }),
        AgentMsg::Statistics(freimesh_proto::telemetry::Statistics {
            uptime_s: Some(3_600),
            load_centi: Some(42),
            memory_total_kib: Some(124_680),
            memory_available_kib: Some(61_234),
            rootfs_used_ppm: Some(250_000),
        }),
    ]
}

fn controller_messages() -> Vec<ControllerMsg> {
    let assignment = LinkAssignment {
        peer: key(2),
        endpoint: Some(endpoint()),
        profile: "fast".into(),
        allowed_sources: vec![prefix("10.99.0.2/32")],
    };
    let route = Route {
        prefix: prefix("fd99::2/128"),
        via: vec![key(2), key(3)],
        segment: Segment::Infrastructure,
        upstreams: vec![key(4)],
    };
    vec![
        ControllerMsg::Welcome(Welcome {
            node_id: NodeId([1; 8]),
            addresses: vec![prefix("10.99.0.5/32"), prefix("fd99::5/128")],
            mesh_prefixes: vec![prefix("10.99.0.0/16")],
            client_prefixes: vec![prefix("10.77.1.0/24")],
            signing_key: SigningKeyBytes([7; 32]),
        }),
        // The decoder does not check signatures (the membership does), so
        // any bytes make a seed; real shapes keep the fuzzer near them.
        ControllerMsg::Credential(SignedCredential {
            body: vec![1; 120],
            signature: vec![2; 64],
        }),
        ControllerMsg::Revocations(vec![
            SignedRevocationPage {
                body: vec![3; 60],
                signature: vec![4; 64],
            };
            2
        ]),
        ControllerMsg::ControlExits(vec![
            "[fd00::1]:51819".parse().expect("addr"),
            "10.99.0.1:51819".parse().expect("addr"),
        ]),
        ControllerMsg::ExitGateway(Some(PublicKeyBytes([5; 32]))),
        ControllerMsg::Pending {
            node_id: NodeId([2; 8]),
        },
        ControllerMsg::Links {
            links: vec![assignment.clone()],
            last: true,
        },
        ControllerMsg::Routes {
            routes: vec![route.clone()],
            last: false,
        },
        ControllerMsg::LinksDelta(vec![
            LinkChange::Add(assignment),
            LinkChange::Remove(key(4)),
        ]),
        ControllerMsg::RoutesDelta(vec![
            RouteChange::Set(route),
            RouteChange::Remove(prefix("0.0.0.0/0")),
        ]),
        ControllerMsg::Error(ErrorMsg {
            code: ErrorCode::Internal,
            message: "database locked".into(),
        }),
        ControllerMsg::Ping(1),
        ControllerMsg::Pong(1),
    ]
}

/// Seeds of the `control` target: selector byte, then the frame.
pub fn control() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for msg in agent_messages() {
        seeds.push([&[0u8][..], &control::encode(&msg).expect("encode")].concat());
    }
    for msg in controller_messages() {
        seeds.push([&[1u8][..], &control::encode(&msg).expect("encode")].concat());
    }
    // A real message 1 to the target's controller key ([0x42; 32]).
    let controller = PublicKeyBytes(PublicKey::from(&StaticSecret::from([0x42; 32])).to_bytes());
    let (_, msg1) = Initiator::start(&[7; 32], &controller).expect("message 1");
    seeds.push([&[2u8][..], &msg1].concat());
    seeds
}

fn wire(addr: IpAddr, len: u8) -> WirePrefix {
    WirePrefix { addr, len }
}

fn mesh_messages() -> Vec<MeshPacket> {
    let prefixes = vec![
        wire(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 4)), 32),
        wire(IpAddr::V6(overlay6(4)), 128),
        wire(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    ];
    [
        MeshMessage::LinkState {
            hears_you: true,
            timing: Timing {
                clock_us: 1000,
                echo_us: 900,
                held_us: 50,
                interval_ms: 100,
            },
        },
        MeshMessage::Withdraw(prefixes.clone()),
        MeshMessage::Restore(prefixes.clone()),
        MeshMessage::LostSet(prefixes),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, message)| MeshPacket {
        incarnation: 0x5eed,
        sequence: u32::try_from(i).unwrap_or(0) + 1,
        message,
    })
    .collect()
}

/// Seeds of the `mesh` target.
pub fn mesh() -> Vec<Vec<u8>> {
    mesh_messages().iter().map(MeshPacket::encode).collect()
}

/// An IPv4 packet with a valid header checksum.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = internet_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    p[4..6].copy_from_slice(&len.to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

fn chunk(op: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    [&[op][..], &len.to_be_bytes(), bytes].concat()
}

/// Seeds of the `engine` target: sequences of chunks.
pub fn engine() -> Vec<Vec<u8>> {
    let udp = [0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, b'f', b'm', 0, 1];
    let icmp_echo = [8, 0, 0xf7, 0xfe, 0, 1, 0, 1];
    let a4 = overlay4(1);
    let b4 = overlay4(2);
    let packets_from_b = [
        ipv4(b4, a4, 1, &icmp_echo),
        ipv4(b4, overlay4(3), 17, &udp),
        ipv4(b4, overlay4(4), 17, &udp),
        ipv4(b4, Ipv4Addr::new(10, 20, 4, 9), 6, &[0; 20]),
        ipv4(
            Ipv4Addr::new(10, 77, 2, 5),
            Ipv4Addr::new(10, 20, 1, 9),
            17,
            &udp,
        ),
        ipv4(
            Ipv4Addr::new(10, 77, 2, 5),
            Ipv4Addr::new(9, 9, 9, 9),
            17,
            &udp,
        ),
        ipv4(overlay4(3), overlay4(4), 17, &udp),
        ipv6(overlay6(2), overlay6(1), 58, &[128, 0, 0, 0, 0, 1, 0, 1]),
        ipv6(overlay6(2), overlay6(3), 17, &udp),
    ];
    let mut seeds: Vec<Vec<u8>> = packets_from_b
        .iter()
        .map(|p| chunk(op::INNER_FROM_B, p))
        .collect();
    for packet in mesh_messages() {
        seeds.push(chunk(op::INNER_FROM_B, &packet.encode()));
        seeds.push(chunk(op::INNER_FROM_C, &packet.encode()));
    }
    // C may send from its own addresses only: one allowed, one spoofed.
    seeds.push(chunk(op::INNER_FROM_C, &ipv4(overlay4(3), b4, 17, &udp)));
    seeds.push(chunk(op::INNER_FROM_C, &ipv4(b4, a4, 1, &icmp_echo)));
    let local = [
        ipv4(a4, overlay4(3), 17, &udp),
        ipv4(a4, b4, 1, &icmp_echo),
        ipv4(a4, Ipv4Addr::new(1, 1, 1, 1), 17, &udp),
        ipv6(overlay6(1), overlay6(3), 17, &udp),
    ];
    seeds.extend(local.iter().map(|p| chunk(op::LOCAL, p)));
    // A whole session: withdrawals, traffic, time passing, restoration.
    let messages = mesh_messages();
    let mut session = Vec::new();
    session.extend(chunk(op::INNER_FROM_B, &messages[0].encode()));
    session.extend(chunk(op::INNER_FROM_B, &messages[1].encode()));
    session.extend(chunk(op::INNER_FROM_B, &packets_from_b[2]));
    session.extend(chunk(op::TIME, &[0x01, 0xf4]));
    session.extend(chunk(op::LOCAL, &local[0]));
    session.extend(chunk(op::INNER_FROM_B, &messages[2].encode()));
    session.extend(chunk(op::TIME, &[0x13, 0x88]));
    seeds.push(session);
    // Outer datagrams: WireGuard message types 1-4 with their lengths.
    for (kind, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32)] {
        let mut datagram = vec![0u8; len];
        datagram[0] = kind;
        seeds.push(chunk(op::OUTER_FROM_B, &datagram));
        seeds.push(chunk(op::OUTER_FROM_STRANGER, &datagram));
    }
    seeds
}

/// The ```toml blocks of a Markdown file.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Seeds of the `agent_config` target: the TOML examples of the docs.
pub fn agent_config(repo: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut seeds = Vec::new();
    for doc in [
        "agent-config.md",
        "protocol.md",
        "openwrt.md",
        "gateways.md",
    ] {
        let Ok(text) = fs::read_to_string(repo.join("docs").join(doc)) else {
            continue;
        };
        seeds.extend(toml_blocks(&text).into_iter().map(String::into_bytes));
    }
    Ok(seeds)
}

/// A configuration with every section uci2toml reads.
const FULL_UCI: &str = "config agent 'agent'
\toption enabled '1'
\toption name 'rathaus'
\toption listen_port '51820'
\toption listen_address '0.0.0.0'
\tlist address '10.99.0.5/32'
\tlist address 'fd99::5/128'
\tlist local_prefix '10.20.5.0/24'
\tlist kernel_route '10.20.6.0/24'
\toption tun_name 'fm0'
\toption mtu '1420'
\toption profile 'default'
config controller 'controller'
\toption endpoint '[2001:db8::1]:51800'
\toption public_key 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='
\toption join_token 'fmj1-0123abcd'
config interface
\toption network 'wan'
\toption profile 'metered'
config link
\toption name 'schule'
\toption public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='
\toption endpoint '192.0.2.2:51820'
\toption interface 'wan'
\toption keepalive '25'
\tlist allowed_source '10.99.0.9/32'
config route
\toption prefix '10.99.0.0/16'
\tlist via 'schule'
\tlist via 'local'
config public_wifi 'public_wifi'
\toption network 'client'
\tlist dns '9.9.9.9'
\toption lease_time '1h'
";

/// Seeds of the `uci2toml` target: the shipped configuration, the same
/// with every commented example enabled, and one with every section.
pub fn uci2toml(repo: &Path) -> io::Result<Vec<Vec<u8>>> {
    let shipped = fs::read_to_string(repo.join("openwrt-package/freimesh/files/freimesh.config"))?;
    let enabled: String = shipped
        .lines()
        .map(|l| {
            let t = l.trim_start().trim_start_matches('#');
            if t.starts_with("config ") || t.starts_with("option ") || t.starts_with("list ") {
                t.replace("option enabled '0'", "option enabled '1'")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok([shipped.as_str(), &enabled, FULL_UCI]
        .iter()
        .map(|uci| crate::uci::to_fuzz_text(uci).into_bytes())
        .collect())
}

/// Writes every target's seeds to `corpus/<target>/seed-<n>`.
pub fn write_all(fuzz_dir: &Path) -> io::Result<()> {
    let repo = fuzz_dir.join("..");
    let sets = [
        ("control", control()),
        ("mesh", mesh()),
        ("engine", engine()),
        ("agent_config", agent_config(&repo)?),
        ("uci2toml", uci2toml(&repo)?),
    ];
    for (target, seeds) in sets {
        let dir = fuzz_dir.join("corpus").join(target);
        fs::create_dir_all(&dir)?;
        for (n, seed) in seeds.iter().enumerate() {
            fs::write(dir.join(format!("seed-{n:02}")), seed)?;
        }
    }
    Ok(())
}
