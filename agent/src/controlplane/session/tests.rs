//! The session core on a virtual clock: Hello, chunked full sets,
//! Pending/Error, pings, the idle timeout, and what waits for the
//! controller while it is away.

use freimesh_proto::api::DownCause;
use freimesh_proto::control::{Candidate, ErrorCode};

use super::*;
use crate::controlplane::{ControlPath, EngineChange};

fn config(token: Option<&str>) -> ClientConfig {
    ClientConfig {
        controller_endpoints: vec!["127.0.0.1:7700".parse().expect("addr")],
        controller_key: PublicKeyBytes([1; 32]),
        join_token: token.map(str::to_owned),
        hostname: "t".into(),
        endpoints: Vec::new(),
        prefixes: Vec::new(),
        want_addresses: Vec::new(),
        roles: Default::default(),
    }
}

fn welcome() -> ControllerMsg {
    ControllerMsg::Welcome(Welcome {
        node_id: NodeId::of(&PublicKeyBytes([9; 32])),
        addresses: vec!["10.99.0.9/32".parse().expect("net")],
        mesh_prefixes: Vec::new(),
        client_prefixes: Vec::new(),
        signing_key: freimesh_proto::credential::SigningKeyBytes([5; 32]),
    })
}

fn failover(peer: u8) -> LinkEvent {
    LinkEvent {
        peer: PublicKeyBytes([peer; 32]),
        cause: DownCause::Silence,
        detection_ms: 150,
        switch_us: 20,
        rerouted: 3,
        lost: 0,
        age_ms: 0,
    }
}

fn sent(s: &mut Session) -> Vec<AgentMsg> {
    std::iter::from_fn(|| s.poll_report()).collect()
}

fn heard(s: &mut Session) -> Vec<ControllerEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn link(b: u8) -> LinkAssignment {
    LinkAssignment {
        peer: PublicKeyBytes([b; 32]),
        endpoint: None,
        profile: "default".into(),
        allowed_sources: Vec::new(),
    }
}

#[test]
fn the_join_token_goes_in_every_hello_until_the_first_welcome() {
    let t0 = Instant::now();
    let mut s = Session::new(config(Some("tok")));
    s.handle_connected(t0);
    assert!(
        matches!(&sent(&mut s)[..], [AgentMsg::Hello(h)] if h.join_token.as_deref() == Some("tok") && h.version == PROTOCOL_VERSION)
    );
    s.handle_disconnected("x".into(), Duration::from_secs(1));
    s.handle_connected(t0);
    assert!(matches!(&sent(&mut s)[..], [AgentMsg::Hello(h)] if h.join_token.is_some()));
    s.handle_message(welcome(), t0).expect("welcome");
    s.handle_disconnected("x".into(), Duration::from_secs(1));
    s.handle_connected(t0);
    assert!(matches!(&sent(&mut s)[..], [AgentMsg::Hello(h)] if h.join_token.is_none()));
}

#[test]
fn chunked_full_sets_are_handed_on_only_when_complete() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    heard(&mut s);
    s.handle_message(
        ControllerMsg::Links {
            links: vec![link(2)],
            last: false,
        },
        t0,
    )
    .expect("chunk");
    assert!(heard(&mut s).is_empty());
    s.handle_message(
        ControllerMsg::Links {
            links: vec![link(3)],
            last: true,
        },
        t0,
    )
    .expect("last");
    assert_eq!(
        heard(&mut s),
        vec![ControllerEvent::Links(vec![link(2), link(3)])]
    );
}

#[test]
fn the_control_path_applies_a_chunked_full_state_once_both_sets_are_complete() {
    let t0 = Instant::now();
    let mut path = ControlPath::new(config(None), Vec::new(), t0);
    path.handle_connected(t0);
    path.handle_message(welcome(), t0).expect("welcome");
    path.handle_message(
        ControllerMsg::Links {
            links: vec![link(2)],
            last: false,
        },
        t0,
    )
    .expect("chunk");
    path.handle_message(
        ControllerMsg::Links {
            links: vec![link(3)],
            last: true,
        },
        t0,
    )
    .expect("links");
    let route = Route {
        upstreams: Vec::new(),
        prefix: "10.99.0.2/32".parse().expect("net"),
        via: vec![PublicKeyBytes([2; 32])],
        segment: freimesh_proto::segment::Segment::Infrastructure,
    };
    path.handle_message(
        ControllerMsg::Routes {
            routes: vec![route.clone()],
            last: false,
        },
        t0,
    )
    .expect("chunk");
    assert_eq!(path.poll_change(), None, "routes not complete yet");
    path.handle_message(
        ControllerMsg::Routes {
            routes: Vec::new(),
            last: true,
        },
        t0,
    )
    .expect("routes");
    let changes: Vec<EngineChange> = std::iter::from_fn(|| path.poll_change()).collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(changes[2], EngineChange::SetRoute(route));
}

#[test]
fn pending_and_error_end_the_session_and_reach_the_run_loop() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected(t0);
    let node_id = NodeId::of(&PublicKeyBytes([9; 32]));
    assert_eq!(
        s.handle_message(ControllerMsg::Pending { node_id }, t0),
        Err(SessionEnded::Pending)
    );
    assert_eq!(heard(&mut s), vec![ControllerEvent::Pending { node_id }]);
    let err = ErrorMsg {
        code: ErrorCode::Revoked,
        message: "revoked".into(),
    };
    assert_eq!(
        s.handle_message(ControllerMsg::Error(err.clone()), t0),
        Err(SessionEnded::Refused(err.clone()))
    );
    assert_eq!(heard(&mut s), vec![ControllerEvent::Refused(err)]);
    // Pending never welcomed the session: nothing but the Hello went out.
    assert!(matches!(&sent(&mut s)[..], [AgentMsg::Hello(_)]));
    assert!(!s.session_welcomed());
}

#[test]
fn a_session_through_the_mesh_pings_every_5_s_and_gives_up_after_15() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected_via(t0, Keepalive::THROUGH_MESH);
    sent(&mut s);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    s.handle_tick(t0 + Duration::from_secs(5)).expect("alive");
    assert_eq!(sent(&mut s), vec![AgentMsg::Ping(1)]);
    s.handle_tick(t0 + Duration::from_secs(10)).expect("alive");
    assert_eq!(sent(&mut s), vec![AgentMsg::Ping(2)]);
    assert_eq!(
        s.handle_tick(t0 + Duration::from_secs(15)),
        Err(SessionEnded::IdleTimeout)
    );
}

#[test]
fn pings_every_keepalive_and_gives_up_on_a_silent_controller() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected(t0);
    sent(&mut s);
    assert_eq!(s.poll_timeout(), Some(t0 + KEEPALIVE));
    let mut t = t0;
    let mut pings = Vec::new();
    while t < t0 + IDLE_TIMEOUT - Duration::from_secs(1) {
        t += Duration::from_secs(1);
        s.handle_tick(t).expect("alive");
        pings.extend(sent(&mut s));
    }
    assert_eq!(
        pings,
        vec![AgentMsg::Ping(1), AgentMsg::Ping(2), AgentMsg::Ping(3)],
        "at 25, 50 and 75 s"
    );
    s.handle_message(ControllerMsg::Ping(7), t).expect("heard");
    assert_eq!(sent(&mut s), vec![AgentMsg::Pong(7)]);
    assert_eq!(
        s.handle_tick(t + IDLE_TIMEOUT - Duration::from_secs(1)),
        Ok(())
    );
    assert_eq!(
        s.handle_tick(t + IDLE_TIMEOUT),
        Err(SessionEnded::IdleTimeout)
    );
}

#[test]
fn failovers_wait_for_the_controller_with_their_age_and_a_bound() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    let overflow = 10;
    for i in 0..PENDING_FAILOVERS + overflow {
        let peer = u8::try_from(i % 256).expect("fits");
        s.handle_upstream(Upstream::Failovers(vec![(failover(peer), t0)]), t0);
    }
    s.handle_upstream(Upstream::Traffic(Vec::new()), t0);
    assert!(sent(&mut s).is_empty(), "nothing without a session");
    let back = t0 + Duration::from_secs(2);
    s.handle_connected(back);
    s.handle_message(welcome(), back).expect("welcome");
    let out = sent(&mut s);
    let [AgentMsg::Hello(_), AgentMsg::Events(events)] = &out[..] else {
        panic!("pending failovers go as one Events frame after the Welcome: {out:?}");
    };
    assert_eq!(events.len(), PENDING_FAILOVERS, "bounded");
    // The oldest were dropped first.
    assert_eq!(events[0].peer, PublicKeyBytes([10; 32]));
    assert!(
        events.iter().all(|e| e.age_ms == 2_000),
        "age counts the wait"
    );
    s.handle_upstream(Upstream::Traffic(Vec::new()), back);
    assert_eq!(
        sent(&mut s),
        vec![AgentMsg::Traffic(Vec::new())],
        "sent once"
    );
}

#[test]
fn after_a_welcome_uplink_goes_first_then_clients_then_the_newest_report() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_upstream(Upstream::Report(Report::default()), t0);
    let newer = Report {
        links: Vec::new(),
        candidates: vec![Candidate {
            peer: PublicKeyBytes([2; 32]),
            endpoint: None,
        }],
    };
    s.handle_upstream(Upstream::Report(newer.clone()), t0);
    s.handle_upstream(Upstream::Clients(4), t0);
    s.handle_upstream(Upstream::Uplink(false), t0);
    s.handle_upstream(Upstream::Clients(7), t0);
    s.handle_upstream(Upstream::Uplink(true), t0);
    s.handle_upstream(Upstream::Uplink(false), t0);
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    assert_eq!(
        sent(&mut s)[1..],
        [
            AgentMsg::Uplink { up: false },
            AgentMsg::Clients { count: 7 },
            AgentMsg::Report(newer),
        ]
    );
}

#[test]
fn a_full_set_past_the_bound_ends_the_session() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    let chunk: Vec<LinkAssignment> = (0..1024).map(|_| link(2)).collect();
    let mut ended = None;
    for _ in 0..=MAX_FULL_SET_ENTRIES / chunk.len() {
        let msg = ControllerMsg::Links {
            links: chunk.clone(),
            last: false,
        };
        if let Err(e) = s.handle_message(msg, t0) {
            ended = Some(e);
            break;
        }
    }
    assert_eq!(ended, Some(SessionEnded::FullSetTooLarge));
}

#[test]
fn credentials_and_revocation_pages_are_handed_on_in_order() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    let credential = freimesh_proto::credential::SignedCredential {
        body: vec![1, 2, 3],
        signature: vec![0; 64],
    };
    let page = freimesh_proto::credential::SignedRevocationPage {
        body: vec![4],
        signature: vec![0; 64],
    };
    s.handle_message(ControllerMsg::Credential(credential.clone()), t0)
        .expect("credential");
    let pages = vec![page; MAX_REVOCATION_PAGES_PER_FRAME];
    s.handle_message(ControllerMsg::Revocations(pages.clone()), t0)
        .expect("revocations");
    let events = heard(&mut s);
    assert!(matches!(&events[..], [
        ControllerEvent::Welcome(_),
        ControllerEvent::Credential(c),
        ControllerEvent::Revocations(p),
    ] if *c == credential && *p == pages));
}

#[test]
fn the_exit_gateway_becomes_an_event() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    heard(&mut s);
    let gateway = PublicKeyBytes([9; 32]);
    s.handle_message(ControllerMsg::ExitGateway(Some(gateway)), t0)
        .expect("exit gateway");
    s.handle_message(ControllerMsg::ExitGateway(None), t0)
        .expect("no exit gateway");
    assert_eq!(
        heard(&mut s),
        vec![
            ControllerEvent::ExitGateway(Some(gateway)),
            ControllerEvent::ExitGateway(None)
        ]
    );
}

#[test]
fn a_frame_with_more_than_16_revocation_pages_ends_the_session() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    heard(&mut s);
    let page = freimesh_proto::credential::SignedRevocationPage {
        body: vec![4],
        signature: vec![0; 64],
    };
    let too_many = vec![page; MAX_REVOCATION_PAGES_PER_FRAME + 1];
    assert_eq!(
        s.handle_message(ControllerMsg::Revocations(too_many), t0),
        Err(SessionEnded::TooManyRevocationPages(
            MAX_REVOCATION_PAGES_PER_FRAME + 1
        ))
    );
    assert!(heard(&mut s).is_empty(), "nothing of it is handed on");
}

#[test]
fn node_info_goes_out_on_change_and_after_every_welcome() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    let info = NodeInfo {
        agent_version: "0.3.0".into(),
        ..NodeInfo::default()
    };
    s.handle_upstream(Upstream::NodeInfo(info.clone()), t0);
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    assert_eq!(sent(&mut s)[1..], [AgentMsg::NodeInfo(info.clone())]);
    s.handle_upstream(Upstream::NodeInfo(info.clone()), t0);
    assert_eq!(sent(&mut s), [], "unchanged information is not sent again");
    let newer = NodeInfo {
        agent_version: "0.3.1".into(),
        ..info
    };
    s.handle_upstream(Upstream::NodeInfo(newer.clone()), t0);
    assert_eq!(sent(&mut s), [AgentMsg::NodeInfo(newer.clone())]);
    s.handle_disconnected("test".into(), Duration::from_secs(1));
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    assert_eq!(sent(&mut s)[1..], [AgentMsg::NodeInfo(newer)]);
}

#[test]
fn statistics_are_rate_limited_and_the_latest_follows_a_welcome() {
    let t0 = Instant::now();
    let mut s = Session::new(config(None));
    let stats = |uptime| Statistics {
        uptime_s: Some(uptime),
        ..Statistics::default()
    };
    s.handle_upstream(Upstream::Statistics(stats(1)), t0);
    s.handle_connected(t0);
    s.handle_message(welcome(), t0).expect("welcome");
    assert_eq!(sent(&mut s)[1..], [AgentMsg::Statistics(stats(1))]);
    let soon = t0 + MIN_STATISTICS_SPACING / 2;
    s.handle_upstream(Upstream::Statistics(stats(2)), soon);
    assert_eq!(sent(&mut s), [], "too soon after the last one");
    let later = t0 + MIN_STATISTICS_SPACING;
    s.handle_upstream(Upstream::Statistics(stats(3)), later);
    assert_eq!(sent(&mut s), [AgentMsg::Statistics(stats(3))]);
}
