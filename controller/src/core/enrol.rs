//! The enrolment decision (`docs/protocol.md`, "Enrolment and
//! authentication"): what one Hello leads to, decided from the core's
//! mirror of the registry and the pending-node gate, without I/O.
//!
//! The hub commits the plan's store writes in one transaction and only then
//! tells the agent; a refusal writes nothing. Join tokens are the one input
//! the plan does not judge: whether a token exists, has expired or was used
//! is read and spent in the same transaction that enrols the node
//! ([`HelloPlan::Enrol`]), so two agents racing with one token cannot both
//! win. A failure there becomes a refusal with the store error's code.

use std::net::{IpAddr, SocketAddr};

use freimesh_proto::control::{ErrorCode, Hello, Roles, check_hostname};
use freimesh_proto::{NodeId, PublicKeyBytes};

use super::quota::PendingGate;
use super::{Controller, KeyStatus};
use crate::records::NodeState;

/// What the hub does with one Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloPlan {
    /// Nothing is written; the agent hears `Error { code, message }` and the
    /// session closes.
    Refuse { code: ErrorCode, message: String },
    /// Not enrolled, no token, approval mode: the agent hears `Pending` and
    /// the session closes. `new` is the row to write for a key seen for the
    /// first time (`None`: it already waits).
    Pending {
        node_id: NodeId,
        new: Option<NewPending>,
    },
    /// Enrol with `token` and the Hello's hostname, endpoints, wanted
    /// addresses, prefixes and roles: one store transaction checks and
    /// spends the token, allocates addresses and activates the node; then
    /// Welcome.
    Enrol { token: String },
    /// An enrolled key: write what its Hello changed, then Welcome.
    Welcome { id: u32, refresh: RefreshNode },
}

/// A node to register as pending (no addresses until approved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPending {
    pub hostname: String,
    pub endpoints: Vec<SocketAddr>,
    pub roles: Roles,
}

/// What an enrolled node's Hello changes in its row; both `None` = nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshNode {
    /// New underlay endpoints (its neighbours' link assignments carry them).
    pub endpoints: Option<Vec<SocketAddr>>,
    /// The roles it now requests, and what it requested before (an event is
    /// raised only for a role newly awaiting approval). Also set when a
    /// public Wi-Fi role in effect still lacks its client subnets, so that
    /// the store allocates them.
    pub roles: Option<RolesRequest>,
}

/// A node's requested roles, before and now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolesRequest {
    pub before: Roles,
    pub now: Roles,
}

/// Decides what `hello` from `key` (authenticated by the Noise handshake,
/// arriving from `source`) leads to. `gate` is spent only when a new pending
/// node is planned; `now_ms` is Unix milliseconds.
pub fn plan_hello(
    core: &Controller,
    gate: &mut PendingGate,
    key: &PublicKeyBytes,
    hello: &Hello,
    source: IpAddr,
    now_ms: i64,
) -> HelloPlan {
    let refuse = |code, message: String| HelloPlan::Refuse { code, message };
    let status = core.lookup(key);
    // Checked on every Hello (a revoked key hears that it is revoked
    // instead): nothing unchecked reaches the store, and an old database's
    // bad hostname is noticed when its node returns.
    if !matches!(status, KeyStatus::Revoked(_))
        && let Err(e) = check_hostname(&hello.hostname)
    {
        return refuse(ErrorCode::BadHostname, e.to_string());
    }
    match status {
        KeyStatus::Revoked(_) => refuse(ErrorCode::Revoked, format!("key {key} was revoked")),
        // Enrolled: the key alone authenticates; a token is ignored.
        KeyStatus::Active(id) => match core.unapproved_prefix(id, &hello.prefixes) {
            Some(p) => refuse(
                ErrorCode::PrefixNotApproved,
                format!(
                    "prefix {p} is not approved for this node (freimesh-controller prefix approve {id} {p})"
                ),
            ),
            None => HelloPlan::Welcome {
                id,
                refresh: refresh_of(core, id, hello),
            },
        },
        KeyStatus::Unknown | KeyStatus::Pending(_) => match &hello.join_token {
            Some(token) => HelloPlan::Enrol {
                token: token.clone(),
            },
            None if core.settings().approval => {
                let new = match status {
                    KeyStatus::Pending(_) => None,
                    _ => {
                        let pending = core
                            .nodes()
                            .values()
                            .filter(|n| n.state == NodeState::Pending)
                            .count();
                        if let Err(e) = gate.handle_new_pending(source, pending, now_ms) {
                            return refuse(ErrorCode::TooManyPending, e.to_string());
                        }
                        Some(NewPending {
                            hostname: hello.hostname.clone(),
                            endpoints: hello.endpoints.clone(),
                            roles: hello.roles,
                        })
                    }
                };
                HelloPlan::Pending {
                    node_id: NodeId::of(key),
                    new,
                }
            }
            None => refuse(
                ErrorCode::UnknownKey,
                format!("unknown key {key}: not enrolled and no join token given"),
            ),
        },
    }
}

/// The roles in a Hello are a request: persisted from every Hello, in
/// effect only where an operator approved them.
fn refresh_of(core: &Controller, id: u32, hello: &Hello) -> RefreshNode {
    let Some(rec) = core.nodes().get(&id) else {
        return RefreshNode::default();
    };
    let needs_subnets =
        hello.roles.public_wifi && rec.approved_roles.public_wifi && rec.client_prefixes.is_empty();
    RefreshNode {
        endpoints: (rec.endpoints != hello.endpoints).then(|| hello.endpoints.clone()),
        roles: (rec.requested_roles != hello.roles || needs_subnets).then_some(RolesRequest {
            before: rec.requested_roles,
            now: hello.roles,
        }),
    }
}

#[cfg(test)]
#[path = "enrol_tests.rs"]
mod tests;
