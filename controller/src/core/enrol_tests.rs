//! One test per row of `docs/protocol.md`'s enrolment table, and the
//! refusals the plan decides on its own. (Token rows that need the token's
//! stored state, and AddressTaken, are decided in the store's transaction:
//! `server/hub_tests.rs` drives them through the hub.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use freimesh_proto::PROTOCOL_VERSION;
use freimesh_proto::control::{ErrorCode, Hello, Roles};
use freimesh_proto::{NodeId, PublicKeyBytes};

use super::*;
use crate::core::quota::PendingGate;
use crate::records::{MeshSettings, NodeRecord, NodeState};

const NOW_MS: i64 = 1_800_000_000_000;
const SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn settings(approval: bool) -> MeshSettings {
    MeshSettings {
        ula: "fd12:3456:789a::/48".parse().expect("ula"),
        ipv4: "10.99.0.0/16".parse().expect("v4"),
        approval,
        controller_public_key: PublicKeyBytes([9; 32]),
        clients_ipv4: None,
        client_subnet_len: 24,
    }
}

fn key(id: u8) -> PublicKeyBytes {
    PublicKeyBytes([id; 32])
}

fn node(id: u8, state: NodeState) -> NodeRecord {
    NodeRecord {
        id: u32::from(id),
        public_key: key(id),
        hostname: format!("n{id}"),
        addresses: vec![],
        state,
        drained: false,
        endpoints: vec![],
        gateway: false,
        public_wifi: false,
        client_prefixes: vec![],
        requested_roles: Roles::default(),
        approved_roles: Roles::default(),
    }
}

/// A registry with node 1 active (prefix 192.168.50.0/24 approved), 2
/// pending and 3 revoked.
fn core(approval: bool) -> Controller {
    Controller::new(
        settings(approval),
        vec![
            node(1, NodeState::Active),
            node(2, NodeState::Pending),
            node(3, NodeState::Revoked),
        ],
        vec![(1, "192.168.50.0/24".parse().expect("prefix"))],
        vec![],
    )
}

fn hello(token: Option<&str>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        join_token: token.map(str::to_owned),
        hostname: "rathaus".into(),
        endpoints: vec![],
        prefixes: vec![],
        want_addresses: vec![],
        roles: Roles::default(),
    }
}

fn plan(core: &Controller, id: u8, hello: &Hello) -> HelloPlan {
    plan_hello(
        core,
        &mut PendingGate::default(),
        &key(id),
        hello,
        SOURCE,
        NOW_MS,
    )
}

fn refused(plan: &HelloPlan) -> Option<ErrorCode> {
    match plan {
        HelloPlan::Refuse { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn unknown_key_with_a_token_enrols_with_that_token() {
    assert_eq!(
        plan(&core(false), 9, &hello(Some("fmj1-abc"))),
        HelloPlan::Enrol {
            token: "fmj1-abc".into()
        }
    );
}

#[test]
fn unknown_key_without_token_in_approval_mode_becomes_a_new_pending_node() {
    let mut h = hello(None);
    h.roles.gateway = true;
    assert_eq!(
        plan(&core(true), 9, &h),
        HelloPlan::Pending {
            node_id: NodeId::of(&key(9)),
            new: Some(NewPending {
                hostname: "rathaus".into(),
                endpoints: vec![],
                roles: h.roles,
            }),
        }
    );
}

#[test]
fn unknown_key_without_token_is_refused_as_unknown() {
    assert_eq!(
        refused(&plan(&core(false), 9, &hello(None))),
        Some(ErrorCode::UnknownKey)
    );
}

#[test]
fn pending_key_with_a_token_enrols_like_an_unknown_one() {
    assert_eq!(
        plan(&core(true), 2, &hello(Some("fmj1-abc"))),
        HelloPlan::Enrol {
            token: "fmj1-abc".into()
        }
    );
}

#[test]
fn pending_key_without_token_hears_pending_again_and_nothing_is_written() {
    assert_eq!(
        plan(&core(true), 2, &hello(None)),
        HelloPlan::Pending {
            node_id: NodeId::of(&key(2)),
            new: None,
        }
    );
    assert_eq!(
        refused(&plan(&core(false), 2, &hello(None))),
        Some(ErrorCode::UnknownKey)
    );
}

#[test]
fn active_key_is_welcomed_and_its_token_ignored() {
    for token in [None, Some("fmj1-anything")] {
        assert_eq!(
            plan(&core(false), 1, &hello(token)),
            HelloPlan::Welcome {
                id: 1,
                refresh: RefreshNode::default()
            }
        );
    }
}

#[test]
fn active_key_with_new_endpoints_and_roles_plans_their_refresh() {
    let endpoint: SocketAddr = "198.51.100.1:51820".parse().expect("addr");
    let mut h = hello(None);
    h.endpoints = vec![endpoint];
    h.roles.public_wifi = true;
    assert_eq!(
        plan(&core(false), 1, &h),
        HelloPlan::Welcome {
            id: 1,
            refresh: RefreshNode {
                endpoints: Some(vec![endpoint]),
                roles: Some(RolesRequest {
                    before: Roles::default(),
                    now: h.roles,
                }),
            }
        }
    );
}

#[test]
fn revoked_key_is_refused_whatever_it_sends() {
    let mut bad_name = hello(Some("fmj1-abc"));
    bad_name.hostname = "evil\x1b[2J".into();
    for h in [hello(None), hello(Some("fmj1-abc")), bad_name] {
        assert_eq!(refused(&plan(&core(true), 3, &h)), Some(ErrorCode::Revoked));
    }
}

#[test]
fn a_bad_hostname_is_refused_for_every_key_but_a_revoked_one() {
    let mut h = hello(Some("fmj1-abc"));
    h.hostname = String::new();
    for id in [1, 2, 9] {
        assert_eq!(
            refused(&plan(&core(true), id, &h)),
            Some(ErrorCode::BadHostname)
        );
    }
}

#[test]
fn an_unapproved_prefix_is_refused_and_an_approved_one_welcomed() {
    let mut h = hello(None);
    h.prefixes = vec!["192.168.51.0/24".parse().expect("prefix")];
    assert_eq!(
        refused(&plan(&core(false), 1, &h)),
        Some(ErrorCode::PrefixNotApproved)
    );
    h.prefixes = vec!["192.168.50.0/24".parse().expect("prefix")];
    assert!(matches!(
        plan(&core(false), 1, &h),
        HelloPlan::Welcome { id: 1, .. }
    ));
}

#[test]
fn too_many_pending_nodes_are_refused_by_the_gate() {
    let core = core(true);
    // Node 2 waits already: a cap of one is full.
    let mut full = PendingGate::new(1, 10, 16);
    let plan = plan_hello(&core, &mut full, &key(9), &hello(None), SOURCE, NOW_MS);
    assert_eq!(refused(&plan), Some(ErrorCode::TooManyPending));
    // One new pending node per source and minute: the second is refused.
    let mut per_source = PendingGate::new(100, 1, 16);
    let first = plan_hello(
        &core,
        &mut per_source,
        &key(9),
        &hello(None),
        SOURCE,
        NOW_MS,
    );
    assert!(matches!(first, HelloPlan::Pending { new: Some(_), .. }));
    let second = plan_hello(
        &core,
        &mut per_source,
        &key(10),
        &hello(None),
        SOURCE,
        NOW_MS,
    );
    assert_eq!(refused(&second), Some(ErrorCode::TooManyPending));
}
