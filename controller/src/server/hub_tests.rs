//! The hub driven synchronously, as the whole-mesh simulator drives it: an
//! in-memory store, real `AgentMsg` / `ControllerMsg` values, a virtual
//! clock; no tokio, no sockets.

use std::net::{IpAddr, SocketAddr};

use freimesh_proto::api::EventKind;
use freimesh_proto::control::{
    AgentMsg, Candidate, ControllerMsg, ErrorCode, Hello, LinkChange, LinkMeasurement, Report,
    Roles, RouteChange,
};
use freimesh_proto::{PROTOCOL_VERSION, PublicKeyBytes};

use super::*;
use crate::hub_api::{AdminReply, AdminRequest};
use crate::records::MeshSettings;

const T0_MS: i64 = 1_800_000_000_000;
const T0_S: i64 = T0_MS / 1_000;
const HOUR_S: i64 = 3_600;
const SOURCE: &str = "192.0.2.7:40000";

fn settings() -> MeshSettings {
    MeshSettings {
        ula: "fd12:3456:789a::/48".parse().expect("ula"),
        ipv4: "10.99.0.0/16".parse().expect("v4"),
        approval: false,
        controller_public_key: PublicKeyBytes([99; 32]),
        clients_ipv4: None,
        client_subnet_len: 24,
    }
}

fn key(n: u8) -> PublicKeyBytes {
    PublicKeyBytes([n; 32])
}

fn source() -> SocketAddr {
    SOURCE.parse().expect("addr")
}

fn hello(token: Option<&str>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        join_token: token.map(str::to_owned),
        hostname: "node".into(),
        endpoints: vec![],
        prefixes: vec![],
        want_addresses: vec![],
        roles: Roles::default(),
    }
}

/// A hub over a fresh in-memory mesh, and `tokens` join tokens valid for
/// an hour.
fn hub(tokens: usize) -> (HubCore, Vec<String>) {
    let mut store = Store::open_in_memory().expect("store");
    store.init(&settings()).expect("init");
    let tokens = (0..tokens)
        .map(|_| store.create_token(T0_S + HOUR_S, &[], T0_S).expect("token"))
        .collect();
    let hub = HubCore::new(store, HubConfig::default(), T0_MS).expect("hub");
    (hub, tokens)
}

fn drain(hub: &mut HubCore) -> Vec<HubOutput> {
    std::iter::from_fn(|| hub.poll_output()).collect()
}

fn frames_to(outputs: &[HubOutput], to: u64) -> Vec<&ControllerMsg> {
    outputs
        .iter()
        .filter_map(|o| match o {
            HubOutput::Transmit { session, msg } if *session == to => Some(msg),
            _ => None,
        })
        .collect()
}

fn refusal(outputs: &[HubOutput]) -> Option<ErrorCode> {
    outputs.iter().find_map(|o| match o {
        HubOutput::Transmit {
            msg: ControllerMsg::Error(e),
            ..
        } => Some(e.code),
        _ => None,
    })
}

/// The round trip of link `a`–`b`: 1–3 is the slow side of the triangle.
fn rtt_us(a: u8, b: u8) -> u32 {
    if a.min(b) == 1 && a.max(b) == 3 {
        5_000
    } else {
        1_000
    }
}

/// Node `from`'s report: `(peer, up)` for each of its links.
fn report(from: u8, peers: &[(u8, bool)]) -> AgentMsg {
    AgentMsg::Report(Report {
        links: peers
            .iter()
            .map(|&(p, up)| LinkMeasurement {
                peer: key(p),
                rtt_us: rtt_us(from, p),
                loss_ppm: 0,
                up,
            })
            .collect(),
        candidates: peers
            .iter()
            .map(|&(p, _)| Candidate {
                peer: key(p),
                endpoint: None,
            })
            .collect(),
    })
}

/// Every active node's incremental routes equal a recomputation, and
/// every connected node was sent what a full planning gives.
fn assert_converged(hub: &HubCore) {
    let core = hub.controller();
    for (id, routes) in core.recomputed_routes() {
        assert_eq!(core.routes_of(id), routes, "node {id}");
    }
    assert_eq!(core.stale_sessions(), Vec::<u32>::new());
}

#[test]
fn three_nodes_enrol_link_up_and_get_deltas_when_a_link_fails_without_tokio() {
    let (mut hub, tokens) = hub(3);
    let mut now = T0_MS;
    // Session n is node n (ids count up from 1 in enrolment order).
    for n in 1..=3u8 {
        let session = u64::from(n);
        hub.handle_hello(
            session,
            source(),
            key(n),
            hello(Some(&tokens[usize::from(n) - 1])),
            now,
        );
        let out = drain(&mut hub);
        let frames = frames_to(&out, session);
        assert!(
            matches!(frames.first(), Some(ControllerMsg::Welcome(_))),
            "{out:?}"
        );
        assert!(
            frames
                .iter()
                .any(|m| matches!(m, ControllerMsg::Links { .. }))
        );
        assert!(
            frames
                .iter()
                .any(|m| matches!(m, ControllerMsg::Routes { .. }))
        );
        assert_eq!(hub.node_of(session), Some(u32::from(n)));
        now += 1_000;
    }
    // A triangle: 1–2 and 2–3 fast, 1–3 slow. Both ends report each link.
    let links = [
        (1u8, vec![(2u8, true), (3, true)]),
        (2, vec![(1, true), (3, true)]),
        (3, vec![(1, true), (2, true)]),
    ];
    let mut all = Vec::new();
    for (n, peers) in &links {
        hub.handle_agent_msg(u64::from(*n), report(*n, peers), now);
        all.extend(drain(&mut hub));
    }
    for n in 1..=3u64 {
        let frames = frames_to(&all, n);
        assert!(frames.iter().any(|m| matches!(m, ControllerMsg::LinksDelta(c) if c.iter().any(|c| matches!(c, LinkChange::Add(_))))), "node {n}: {frames:?}");
        assert!(
            frames
                .iter()
                .any(|m| matches!(m, ControllerMsg::RoutesDelta(_))),
            "node {n}"
        );
    }
    assert_converged(&hub);
    while hub.poll_event().is_some() {}

    // 2–3 fails; both ends say so.
    now += 5_000;
    hub.handle_agent_msg(2, report(2, &[(1, true), (3, false)]), now);
    hub.handle_agent_msg(3, report(3, &[(1, true), (2, false)]), now);
    let out = drain(&mut hub);
    assert!(
        out.iter().all(|o| matches!(
            o,
            HubOutput::Transmit {
                msg: ControllerMsg::LinksDelta(_) | ControllerMsg::RoutesDelta(_),
                ..
            }
        )),
        "only deltas after a failure: {out:?}"
    );
    // Node 1 now reaches 3 over their direct link.
    let to_3_direct = frames_to(&out, 1).iter().any(|m| match m {
        ControllerMsg::RoutesDelta(changes) => changes
            .iter()
            .any(|c| matches!(c, RouteChange::Set(r) if r.via.first() == Some(&key(3)))),
        _ => false,
    });
    assert!(to_3_direct, "{out:?}");
    // Node 3 routes around it too; the link stays assigned (its ends keep
    // probing it, so it can come back).
    assert!(
        frames_to(&out, 3)
            .iter()
            .any(|m| matches!(m, ControllerMsg::RoutesDelta(_)))
    );
    assert_converged(&hub);
    let events: Vec<EventKind> = std::iter::from_fn(|| hub.poll_event())
        .map(|e| e.kind)
        .collect();
    assert!(
        events.contains(&EventKind::LinkDown { a: 2, b: 3 }),
        "{events:?}"
    );

    // The connection of node 2 closes: a Disconnected event; the others
    // only hear that it is no control exit any more.
    let exits_before = hub.exits.current().to_vec();
    assert_eq!(exits_before.len(), 3, "every direct node is an exit");
    hub.handle_gone(2, now);
    let out = drain(&mut hub);
    for session in [1, 3] {
        let [ControllerMsg::ControlExits(exits)] = &frames_to(&out, session)[..] else {
            panic!("{out:?}");
        };
        assert_eq!(exits.len(), 2, "{exits:?}");
    }
    assert!(frames_to(&out, 2).is_empty());
    assert_eq!(hub.node_of(2), None);
}

#[test]
fn a_relayed_session_is_no_exit_and_every_node_hears_the_list_after_its_welcome() {
    let (mut hub, tokens) = hub(2);
    hub.handle_hello(1, source(), key(1), hello(Some(&tokens[0])), T0_MS);
    let out = drain(&mut hub);
    let frames = frames_to(&out, 1);
    let Some(ControllerMsg::ControlExits(exits)) = frames.last() else {
        panic!("{frames:?}");
    };
    assert_eq!(exits.len(), 1, "itself: a direct session");
    assert!(matches!(frames.first(), Some(ControllerMsg::Welcome(_))));
    // Node 2 comes through node 1's relay: not an exit; it gets the list.
    hub.handle_hello_via(
        2,
        source(),
        key(2),
        hello(Some(&tokens[1])),
        Some(key(1)),
        T0_MS,
    );
    let out = drain(&mut hub);
    let frames = frames_to(&out, 2);
    assert!(
        matches!(frames.last(), Some(ControllerMsg::ControlExits(e)) if *e == hub.exits.current())
    );
    assert_eq!(hub.exits.current().len(), 1);
    assert!(frames_to(&out, 1).is_empty(), "the list did not change");
    assert_eq!(hub.node_of(2), Some(2));
}

#[test]
fn token_refusals_come_from_the_store_and_write_nothing() {
    let (mut hub, tokens) = hub(2);
    hub.handle_hello(1, source(), key(1), hello(Some(&tokens[0])), T0_MS);
    assert_eq!(refusal(&drain(&mut hub)), None);
    let dump = hub.store.dump().expect("dump");

    let cases: [(u8, Option<String>, ErrorCode); 3] = [
        (2, Some("fmj1-00".into()), ErrorCode::TokenInvalid),
        (3, Some(tokens[0].clone()), ErrorCode::TokenUsed),
        // Valid for an hour: two hours later it has expired.
        (4, Some(tokens[1].clone()), ErrorCode::TokenExpired),
    ];
    for (i, (n, token, code)) in cases.into_iter().enumerate() {
        let now = if code == ErrorCode::TokenExpired {
            T0_MS + 2 * HOUR_S * 1_000
        } else {
            T0_MS
        };
        let session = 10 + u64::try_from(i).expect("small");
        hub.handle_hello(session, source(), key(n), hello(token.as_deref()), now);
        let out = drain(&mut hub);
        assert_eq!(refusal(&out), Some(code));
        assert_eq!(out.last(), Some(&HubOutput::Close { session }));
        assert_eq!(
            hub.store.dump().expect("dump"),
            dump,
            "{code:?} wrote something"
        );
    }
}

#[test]
fn a_taken_address_is_refused_and_a_revoked_node_hears_revoked() {
    let (mut hub, tokens) = hub(2);
    hub.handle_hello(1, source(), key(1), hello(Some(&tokens[0])), T0_MS);
    drain(&mut hub);
    let taken: Vec<IpAddr> = hub.controller().nodes()[&1]
        .addresses
        .iter()
        .map(|a| a.addr())
        .collect();
    let mut h = hello(Some(&tokens[1]));
    h.want_addresses = taken;
    hub.handle_hello(2, source(), key(2), h, T0_MS);
    assert_eq!(refusal(&drain(&mut hub)), Some(ErrorCode::AddressTaken));

    let reply = hub.handle_admin(
        AdminRequest::Revoke {
            id: 1,
            by: "test".into(),
        },
        T0_MS,
    );
    assert!(matches!(reply, Ok(AdminReply::Node(_))));
    let out = drain(&mut hub);
    assert_eq!(refusal(&out), Some(ErrorCode::Revoked));
    assert_eq!(out.last(), Some(&HubOutput::Close { session: 1 }));
    hub.handle_hello(3, source(), key(1), hello(None), T0_MS);
    assert_eq!(refusal(&drain(&mut hub)), Some(ErrorCode::Revoked));
}

#[test]
fn approval_mode_registers_a_pending_node_that_an_admin_request_approves() {
    let mut store = Store::open_in_memory().expect("store");
    store.init(&settings()).expect("init");
    let config = HubConfig {
        require_approval: true,
        ..HubConfig::default()
    };
    let mut hub = HubCore::new(store, config, T0_MS).expect("hub");
    hub.handle_hello(1, source(), key(1), hello(None), T0_MS);
    let out = drain(&mut hub);
    assert!(matches!(
        frames_to(&out, 1).as_slice(),
        [ControllerMsg::Pending { .. }]
    ));
    assert_eq!(out.last(), Some(&HubOutput::Close { session: 1 }));
    let reply = hub.handle_admin(
        AdminRequest::Approve {
            id: 1,
            by: "test".into(),
        },
        T0_MS,
    );
    assert!(matches!(reply, Ok(AdminReply::Node(_))), "{reply:?}");
    hub.handle_hello(2, source(), key(1), hello(None), T0_MS);
    let out = drain(&mut hub);
    assert!(matches!(
        frames_to(&out, 2).first(),
        Some(ControllerMsg::Welcome(_))
    ));
    let events: Vec<EventKind> = std::iter::from_fn(|| hub.poll_event())
        .map(|e| e.kind)
        .collect();
    assert!(
        events.contains(&EventKind::Approved { node: 1 }),
        "{events:?}"
    );
}

/// The simulator's load on the hub alone: 1,000 nodes enrol, report a ring
/// with chords, then one link fails or returns every virtual second for
/// ten virtual minutes. Prints the wall time (`--ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check; run with --release --ignored --nocapture"]
fn a_thousand_nodes_with_a_failure_every_second_for_ten_minutes() {
    const NODES: u32 = 1_000;
    const CHORD: u32 = 7;
    const VIRTUAL_SECONDS: u32 = 600;
    let mut store = Store::open_in_memory().expect("store");
    store.init(&settings()).expect("init");
    let tokens: Vec<String> = (0..NODES)
        .map(|_| store.create_token(T0_S + HOUR_S, &[], T0_S).expect("token"))
        .collect();
    let mut hub = HubCore::new(store, HubConfig::default(), T0_MS).expect("hub");
    let key_of = |n: u32| {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k[31] = 1;
        PublicKeyBytes(k)
    };
    let neighbours = |n: u32| {
        [
            (n + 1) % NODES,
            (n + CHORD) % NODES,
            (n + NODES - 1) % NODES,
            (n + NODES - CHORD) % NODES,
        ]
    };
    let report_of = |n: u32, down: Option<u32>| {
        AgentMsg::Report(Report {
            links: neighbours(n)
                .iter()
                .map(|&p| LinkMeasurement {
                    peer: key_of(p),
                    rtt_us: 1_000 + (n + p) % 500,
                    loss_ppm: 0,
                    up: Some(p) != down,
                })
                .collect(),
            candidates: vec![],
        })
    };
    let start = std::time::Instant::now();
    let mut now = T0_MS;
    for n in 0..NODES {
        let mut h = hello(Some(&tokens[usize::try_from(n).expect("fits")]));
        h.hostname = format!("n{n}");
        hub.handle_hello(u64::from(n), source(), key_of(n), h, now);
        drain(&mut hub);
    }
    for n in 0..NODES {
        hub.handle_agent_msg(u64::from(n), report_of(n, None), now);
        drain(&mut hub);
    }
    let enrolled = start.elapsed();
    let mut frames = 0usize;
    for s in 0..VIRTUAL_SECONDS {
        now += 1_000;
        // Every other second a link fails; the next second it returns.
        let a = (s / 2 * 37) % NODES;
        let b = (a + 1) % NODES;
        let down = (s % 2 == 0).then_some(b);
        hub.handle_agent_msg(u64::from(a), report_of(a, down), now);
        hub.handle_agent_msg(u64::from(b), report_of(b, down.map(|_| a)), now);
        hub.handle_tick(now);
        frames += drain(&mut hub).len();
        while hub.poll_event().is_some() {}
    }
    assert_converged(&hub);
    println!(
        "{NODES} nodes: enrolment and first reports {enrolled:?}, {VIRTUAL_SECONDS} link changes {:?} ({frames} frames)",
        start.elapsed() - enrolled
    );
}

// Membership credentials and the revocation list (issue 13).

use crate::server::credentials;

const LIFETIME_MS: i64 = 7 * 24 * 3_600 * 1_000;

fn credentials_in(frames: &[&ControllerMsg]) -> Vec<freimesh_proto::credential::SignedCredential> {
    frames
        .iter()
        .filter_map(|m| match m {
            ControllerMsg::Credential(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// The revocation list `frames` carry: serial and revoked keys, every
/// page checked against the hub's signing key.
fn revocations_in(
    hub: &HubCore,
    frames: &[&ControllerMsg],
) -> Option<(u64, Vec<freimesh_proto::credential::Revoked>)> {
    let mut found = None;
    for m in frames {
        if let ControllerMsg::Revocations(pages) = m {
            let mut entries = Vec::new();
            let mut serial = 0;
            for page in pages {
                let page = page.verify(&hub.signing_key()).expect("page verifies");
                serial = page.serial;
                entries.extend(page.entries);
            }
            found = Some((serial, entries));
        }
    }
    found
}

#[test]
fn a_credential_issued_at_enrolment_verifies_and_names_the_node() {
    let prefix: ipnet::IpNet = "10.20.0.0/24".parse().expect("net");
    let mut store = Store::open_in_memory().expect("store");
    store.init(&settings()).expect("init");
    let gateway = Roles {
        gateway: true,
        public_wifi: false,
    };
    let token = store
        .create_token_with_roles(T0_S + HOUR_S, &[prefix], gateway, T0_S)
        .expect("token");
    let mut hub = HubCore::new(store, HubConfig::default(), T0_MS).expect("hub");
    let mut h = hello(Some(&token));
    h.prefixes = vec![prefix];
    h.roles = gateway;
    hub.handle_hello(1, source(), key(1), h.clone(), T0_MS);
    let out = drain(&mut hub);
    let frames = frames_to(&out, 1);
    let Some(ControllerMsg::Welcome(welcome)) = frames.first() else {
        panic!("no Welcome first: {frames:?}");
    };
    assert_eq!(welcome.signing_key, hub.signing_key());
    let credentials = credentials_in(&frames);
    assert_eq!(credentials.len(), 1, "{frames:?}");
    let credential = credentials[0]
        .verify(&welcome.signing_key, credentials::unix_seconds(T0_MS))
        .expect("verifies");
    assert_eq!(credential.node_key, key(1));
    assert_eq!(credential.addresses, welcome.addresses);
    assert_eq!(credential.roles, gateway);
    assert_eq!(credential.prefixes, vec![prefix]);
    assert_eq!(
        credential.expires_unix_s,
        credentials::unix_seconds(T0_MS + LIFETIME_MS)
    );
    // The (empty) revocation list follows, after the credential.
    let at = |f: fn(&ControllerMsg) -> bool| frames.iter().position(|m| f(m));
    assert!(
        at(|m| matches!(m, ControllerMsg::Credential(_)))
            < at(|m| matches!(m, ControllerMsg::Revocations(_)))
    );
    assert_eq!(revocations_in(&hub, &frames), Some((0, vec![])));
    // A reconnect brings the same credential again (no renewal due): no
    // signature, no store write.
    hub.handle_gone(1, T0_MS + 5_000);
    h.join_token = None;
    hub.handle_hello(2, source(), key(1), h, T0_MS + 6_000);
    let out = drain(&mut hub);
    assert_eq!(credentials_in(&frames_to(&out, 2)), credentials);
    // One that no longer asks for the gateway role gets a new one at once.
    hub.handle_gone(2, T0_MS + 7_000);
    hub.handle_hello(3, source(), key(1), hello(None), T0_MS + 8_000);
    let out = drain(&mut hub);
    let renewed = credentials_in(&frames_to(&out, 3));
    assert_eq!(renewed.len(), 1);
    let renewed = renewed[0].verify(&hub.signing_key(), 0).expect("verifies");
    assert_eq!(renewed.roles, Roles::default());
    assert_eq!(
        renewed.issued_unix_s,
        credentials::unix_seconds(T0_MS + 8_000)
    );
}

#[test]
fn a_credential_is_renewed_at_half_its_lifetime_and_when_roles_change() {
    let (mut hub, tokens) = hub(1);
    let mut h = hello(Some(&tokens[0]));
    h.roles.gateway = true;
    hub.handle_hello(1, source(), key(1), h, T0_MS);
    drain(&mut hub);
    let half = T0_MS + LIFETIME_MS / 2;
    hub.handle_tick(half - 1_000);
    assert!(credentials_in(&frames_to(&drain(&mut hub), 1)).is_empty());
    hub.handle_tick(half);
    let renewed = credentials_in(&frames_to(&drain(&mut hub), 1));
    assert_eq!(renewed.len(), 1, "renewed with half the lifetime left");
    let renewed = renewed[0].verify(&hub.signing_key(), 0).expect("verifies");
    assert_eq!(renewed.issued_unix_s, credentials::unix_seconds(half));
    assert!(!renewed.roles.gateway, "requested, not approved");
    hub.handle_tick(half + 1_000);
    assert!(credentials_in(&frames_to(&drain(&mut hub), 1)).is_empty());
    // The operator approves the gateway role: a new credential says so.
    let approve = AdminRequest::SetRoleApproval {
        id: 1,
        role: freimesh_proto::api::Role::Gateway,
        approved: true,
        by: "op".into(),
    };
    hub.handle_admin(approve, half + 2_000).expect("approve");
    let changed = credentials_in(&frames_to(&drain(&mut hub), 1));
    assert_eq!(changed.len(), 1);
    assert!(
        changed[0]
            .verify(&hub.signing_key(), 0)
            .expect("verifies")
            .roles
            .gateway
    );
}

#[test]
fn a_revoked_node_is_in_the_next_list_every_connected_node_gets() {
    let (mut hub, tokens) = hub(3);
    for n in 1..=3u8 {
        hub.handle_hello(
            u64::from(n),
            source(),
            key(n),
            hello(Some(&tokens[usize::from(n) - 1])),
            T0_MS,
        );
    }
    drain(&mut hub);
    let revoke = AdminRequest::Revoke {
        id: 3,
        by: "op".into(),
    };
    hub.handle_admin(revoke, T0_MS + 1_000).expect("revoke");
    let out = drain(&mut hub);
    for n in 1..=2u64 {
        let (serial, entries) = revocations_in(&hub, &frames_to(&out, n)).expect("list");
        assert_eq!(serial, 1);
        assert_eq!(
            entries,
            vec![freimesh_proto::credential::Revoked {
                node_key: key(3),
                until_unix_s: credentials::unix_seconds(T0_MS + LIFETIME_MS),
            }]
        );
    }
    // A node that connects later gets it too.
    hub.handle_gone(1, T0_MS + 2_000);
    hub.handle_hello(4, source(), key(1), hello(None), T0_MS + 3_000);
    let out = drain(&mut hub);
    assert_eq!(
        revocations_in(&hub, &frames_to(&out, 4)).map(|(s, e)| (s, e.len())),
        Some((1, 1))
    );
}

#[test]
fn the_signing_key_and_the_serial_survive_a_restart_and_expired_entries_go() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("mesh.db");
    let mut store = Store::open(&path).expect("store");
    store.init(&settings()).expect("init");
    let tokens: Vec<String> = (0..2)
        .map(|_| store.create_token(T0_S + HOUR_S, &[], T0_S).expect("token"))
        .collect();
    let mut hub = HubCore::new(store, HubConfig::default(), T0_MS).expect("hub");
    for n in 1..=2u8 {
        let session = u64::from(n);
        hub.handle_hello(
            session,
            source(),
            key(n),
            hello(Some(&tokens[usize::from(n) - 1])),
            T0_MS,
        );
    }
    drain(&mut hub);
    // The command line revokes node 2; the hub notices at its next tick.
    Store::open(&path).expect("cli").revoke(2).expect("revoke");
    hub.handle_tick(T0_MS + 1_000);
    let out = drain(&mut hub);
    let (serial, entries) = revocations_in(&hub, &frames_to(&out, 1)).expect("list");
    assert_eq!((serial, entries.len()), (1, 1));
    let signing_key = hub.signing_key();
    drop(hub.into_store());

    let store = Store::open(&path).expect("reopen");
    let mut hub = HubCore::new(store, HubConfig::default(), T0_MS + 2_000).expect("hub");
    assert_eq!(hub.signing_key(), signing_key);
    assert_eq!(hub.revocation_list().serial, 1);
    hub.handle_hello(3, source(), key(1), hello(None), T0_MS + 3_000);
    let out = drain(&mut hub);
    // Node 1's credential from before the restart is still good: sent
    // again as it was.
    let again = credentials_in(&frames_to(&out, 3));
    assert_eq!(again.len(), 1);
    let again = again[0].verify(&signing_key, 0).expect("verifies");
    assert_eq!(again.issued_unix_s, credentials::unix_seconds(T0_MS));
    assert_eq!(
        revocations_in(&hub, &frames_to(&out, 3)).map(|(s, e)| (s, e.len())),
        Some((1, 1))
    );
    // Once node 2's last credential has expired its entry goes, and the
    // serial grows again.
    let expired = T0_MS + LIFETIME_MS;
    hub.handle_tick(expired);
    let out = drain(&mut hub);
    assert_eq!(revocations_in(&hub, &frames_to(&out, 3)), Some((2, vec![])));
    assert_eq!(
        Store::open(&path)
            .expect("cli")
            .revocations()
            .expect("list")
            .serial,
        2
    );
}

#[test]
fn renewal_is_due_when_at_most_half_the_lifetime_is_left() {
    let base = freimesh_proto::credential::Credential {
        node_key: key(1),
        node_id: freimesh_proto::NodeId::of(&key(1)),
        addresses: vec![],
        roles: Roles::default(),
        prefixes: vec![],
        issued_unix_s: 1_000,
        expires_unix_s: 2_000,
    };
    assert!(credentials::needs_renewal(None, &base, 1_000));
    assert!(!credentials::needs_renewal(Some(&base), &base, 1_499));
    assert!(credentials::needs_renewal(Some(&base), &base, 1_500));
    let mut moved = base.clone();
    moved.prefixes = vec!["10.1.0.0/24".parse().expect("net")];
    assert!(credentials::needs_renewal(Some(&base), &moved, 1_001));
    assert_eq!(credentials::unix_seconds(1_999), 1);
    assert_eq!(credentials::unix_seconds(-5), 0);
}

#[test]
fn an_offline_node_keeps_its_last_default_route_for_the_map() {
    let mut store = Store::open_in_memory().expect("store");
    store.init(&settings()).expect("init");
    let gateway = Roles {
        gateway: true,
        public_wifi: false,
    };
    let tokens = [
        store
            .create_token_with_roles(T0_S + HOUR_S, &[], gateway, T0_S)
            .expect("token"),
        store.create_token(T0_S + HOUR_S, &[], T0_S).expect("token"),
    ];
    let mut hub = HubCore::new(store, HubConfig::default(), T0_MS).expect("hub");
    let mut now = T0_MS;
    for n in 1..=2u8 {
        let mut h = hello(Some(&tokens[usize::from(n) - 1]));
        if n == 1 {
            h.roles = gateway;
        }
        hub.handle_hello(u64::from(n), source(), key(n), h, now);
        now += 1_000;
    }
    hub.handle_agent_msg(1, report(1, &[(2, true)]), now);
    hub.handle_agent_msg(2, report(2, &[(1, true)]), now);
    let out = drain(&mut hub);
    // Node 2 heard its exit gateway once the link made one.
    assert!(
        frames_to(&out, 2)
            .iter()
            .any(|m| matches!(m, ControllerMsg::ExitGateway(Some(g)) if *g == key(1))),
        "{out:?}"
    );
    let route = |hub: &HubCore| hub.map().gateways.get(&2).map(|g| (g.gateway, g.nexthop));
    assert_eq!(route(&hub), Some((1, 1)));
    hub.handle_gone(2, now + 1_000);
    drain(&mut hub);
    assert_eq!(hub.node_of(2), None);
    assert_eq!(route(&hub), Some((1, 1)), "the last known, while offline");
    // Its link goes down: the live routes no longer reach it, the map
    // still shows where it left the mesh.
    hub.handle_agent_msg(1, report(1, &[(2, false)]), now + 2_000);
    drain(&mut hub);
    assert_eq!(route(&hub), Some((1, 1)));
}
