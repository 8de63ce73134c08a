//! Operator actions from the admin API, run on the hub: check, write the
//! store (one transaction), update the core (agents get their deltas in the
//! same step, not at the next registry poll), raise the event, naming the
//! operator who asked.
//!
//! A check that fails returns before anything is written.

use freimesh_proto::api::{self, EventKind};

use super::hub::HubCore;
use crate::clock::MS_PER_S;
use crate::clock::parse_duration;
use crate::hub_api::OpError;
use crate::records::NodeState;
use crate::store::{StoreError, token_hash, token_id};

impl HubCore {
    fn state_of(&self, id: u32) -> Result<(NodeState, bool), OpError> {
        self.core
            .nodes()
            .get(&id)
            .map(|n| (n.state, n.drained))
            .ok_or(OpError::NoSuchNode(id))
    }

    /// Drains (no transit through it) or undrains node `id`.
    pub(super) fn set_drained(
        &mut self,
        id: u32,
        drained: bool,
        by: &str,
    ) -> Result<api::Node, OpError> {
        let (state, now) = self.state_of(id)?;
        if state == NodeState::Revoked {
            return Err(OpError::Conflict(format!("node {id} is revoked")));
        }
        if now == drained {
            let what = if drained { "drained" } else { "not drained" };
            return Err(OpError::Conflict(format!("node {id} is already {what}")));
        }
        self.store.set_drained(id, drained)?;
        self.timed(|core| core.set_drained(id, drained));
        self.emit_by(
            if drained {
                EventKind::Drained { node: id }
            } else {
                EventKind::Undrained { node: id }
            },
            by,
        );
        tracing::info!(
            node = id,
            drained,
            operator = by,
            "drain changed by the admin API"
        );
        self.node(id)
    }

    /// Approves pending node `id`: it gets its addresses and is welcomed
    /// when it next connects.
    pub(super) fn approve(&mut self, id: u32, by: &str) -> Result<api::Node, OpError> {
        let (state, _) = self.state_of(id)?;
        if state != NodeState::Pending {
            return Err(OpError::Conflict(format!(
                "node {id} is {}, not pending",
                state.as_str()
            )));
        }
        let rec = self.store.approve(id)?;
        self.timed(|core| core.upsert_node(rec, Vec::new()));
        self.emit_by(EventKind::Approved { node: id }, by);
        tracing::info!(node = id, operator = by, "approved by the admin API");
        self.node(id)
    }

    /// Revokes node `id`: its key is refused from now on, its connection is
    /// closed and its neighbours drop their links to it.
    pub(super) fn revoke(&mut self, id: u32, by: &str) -> Result<api::Node, OpError> {
        let (state, _) = self.state_of(id)?;
        if state == NodeState::Revoked {
            return Err(OpError::Conflict(format!("node {id} is already revoked")));
        }
        self.store.revoke(id)?;
        self.timed(|core| core.revoke(id));
        self.telemetry.forget_node(id);
        self.event_quota.forget(id);
        self.emit_by(EventKind::Revoked { node: id }, by);
        tracing::info!(node = id, operator = by, "revoked by the admin API");
        self.node(id)
    }

    /// Approves (`approved`) or withdraws `role` for node `id`; it takes
    /// effect at once: default routes move toward or away from a gateway,
    /// a public Wi-Fi node gets its client subnets (refused, nothing
    /// written, without a client pool).
    pub(super) fn set_role_approval(
        &mut self,
        id: u32,
        role: api::Role,
        approved: bool,
        by: &str,
    ) -> Result<api::Node, OpError> {
        let (state, _) = self.state_of(id)?;
        if state == NodeState::Revoked {
            return Err(OpError::Conflict(format!("node {id} is revoked")));
        }
        let before = self.core.nodes().get(&id).map(|n| n.approved_roles);
        if before.is_some_and(|r| role.is_in(&r) == approved) {
            let what = if approved { "approved" } else { "not approved" };
            return Err(OpError::Conflict(format!(
                "role {role} is already {what} for node {id}"
            )));
        }
        let rec = match self.store.set_role_approval(id, role, approved) {
            Ok(rec) => rec,
            Err(e @ StoreError::NoClientPool) => return Err(OpError::Conflict(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        let in_effect = role.is_in(&rec.roles());
        self.timed(|core| core.upsert_node(rec, Vec::new()));
        self.emit_by(
            if approved {
                EventKind::RoleApproved { node: id, role }
            } else {
                EventKind::RoleRevoked { node: id, role }
            },
            by,
        );
        tracing::info!(node = id, %role, approved, in_effect, "role approval changed by the admin API");
        self.node(id)
    }

    /// Creates a one-time join token.
    pub(super) fn create_token(
        &mut self,
        req: &api::CreateToken,
        by: &str,
    ) -> Result<api::CreatedToken, OpError> {
        let ttl = parse_duration(&req.ttl).map_err(|e| OpError::BadRequest(format!("ttl: {e}")))?;
        let now = self.now_ms / MS_PER_S;
        let expires = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let roles = api::Role::to_roles(&req.roles);
        let token = self
            .store
            .create_token_with_roles(expires, &req.prefixes, roles, now)?;
        let id = token_id(&token_hash(&token));
        // Known now, so the next registry poll does not announce it again.
        self.known_tokens.insert(id.clone());
        self.emit_by(EventKind::TokenCreated { id: id.clone() }, by);
        tracing::info!(token = %id, operator = by, "join token created by the admin API");
        Ok(api::CreatedToken {
            token,
            id,
            expires_at_ms: expires.saturating_mul(MS_PER_S),
        })
    }
}
