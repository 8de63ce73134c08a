//! The hub's registry poll: what the CLI wrote to the database (approvals,
//! revocations, drains, roles, sites, operators, tokens) reaches the core
//! and raises the events the admin API would have raised.

use std::collections::{BTreeMap, BTreeSet};

use freimesh_proto::api::{self, EventKind};
use freimesh_proto::control::Roles;

use super::hub::{CLI_OPERATOR, HubCore};
use crate::clock::MS_PER_S;
use crate::records::NodeState;
use crate::store::{OperatorCredential, StoreError};

impl HubCore {
    /// Sites from the store into the core, with events for what changed.
    pub(super) fn reload_sites(&mut self) -> Result<(), StoreError> {
        let sites = self.store.sites()?;
        let before = self.core.sites().clone();
        let mut kinds = Vec::new();
        for s in &sites {
            if !before.contains_key(&s.name) {
                kinds.push(EventKind::SiteAdded {
                    name: s.name.clone(),
                    via: s.via,
                });
            }
        }
        for name in before.keys() {
            if !sites.iter().any(|s| &s.name == name) {
                kinds.push(EventKind::SiteRemoved { name: name.clone() });
            }
        }
        self.timed(|core| core.load_sites(sites));
        for kind in kinds {
            self.emit(kind);
        }
        Ok(())
    }

    pub(super) fn poll_registry(&mut self) {
        let version = match self.store.data_version() {
            Ok(v) => v,
            Err(e) => return tracing::error!(error = %e, "checking the database failed"),
        };
        if version == self.data_version {
            return;
        }
        self.data_version = version;
        // The CLI may have revoked a node or changed what credentials name.
        self.credentials_may_have_changed();
        let snapshot = (|| {
            Ok::<_, StoreError>((
                self.store.nodes()?,
                self.store.prefixes()?,
                self.store.links()?,
            ))
        })();
        match snapshot {
            Ok((nodes, prefixes, links)) => {
                tracing::info!("registry changed; resynchronising nodes");
                let before: BTreeMap<u32, (NodeState, bool)> = self
                    .core
                    .nodes()
                    .values()
                    .map(|n| (n.id, (n.state, n.drained)))
                    .collect();
                let roles_before = self.approved_roles();
                self.timed(|core| core.handle_registry(nodes, prefixes, links));
                self.registry_events(&before);
                self.role_events(&roles_before);
                if let Err(e) = self.reload_sites() {
                    tracing::error!(error = %e, "reloading the sites failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "reloading the registry failed"),
        }
        self.reload_operators();
        self.announce_cli_tokens();
    }

    /// Operators from the store into the list the API checks, with audit
    /// events for the ones the CLI added or removed.
    fn reload_operators(&mut self) {
        let fresh = match self.store.operator_credentials() {
            Ok(list) => list,
            Err(e) => return tracing::error!(error = %e, "reloading operator tokens failed"),
        };
        let before = match self.operators.write() {
            Ok(mut shared) => std::mem::replace(&mut *shared, fresh.clone()),
            Err(_) => return tracing::error!("operator token list poisoned"),
        };
        let names = |list: &[OperatorCredential]| -> BTreeSet<String> {
            list.iter().map(|c| c.name.clone()).collect()
        };
        let old = names(&before);
        for c in fresh.iter().filter(|c| !old.contains(&c.name)) {
            tracing::info!(operator = %c.name, scope = c.scope.as_str(), "operator added");
            self.emit_by(
                EventKind::OperatorAdded {
                    name: c.name.clone(),
                    scope: c.scope.as_str().to_owned(),
                    expires_at_ms: c.expires_at.map(|s| s.saturating_mul(MS_PER_S)),
                },
                CLI_OPERATOR,
            );
        }
        let new = names(&fresh);
        for name in old.difference(&new) {
            tracing::info!(operator = %name, "operator removed; its token and streams end");
            self.emit_by(
                EventKind::OperatorRemoved { name: name.clone() },
                CLI_OPERATOR,
            );
        }
    }

    /// Join tokens the CLI created since the last poll, as audit events.
    fn announce_cli_tokens(&mut self) {
        let tokens = match self.store.tokens() {
            Ok(t) => t,
            Err(e) => return tracing::error!(error = %e, "reading the join tokens failed"),
        };
        for t in tokens {
            if self.known_tokens.insert(t.id.clone()) {
                self.emit_by(EventKind::TokenCreated { id: t.id }, CLI_OPERATOR);
            }
        }
    }

    /// Every node's approved roles.
    fn approved_roles(&self) -> BTreeMap<u32, Roles> {
        self.core
            .nodes()
            .values()
            .map(|n| (n.id, n.approved_roles))
            .collect()
    }

    /// Events for role approvals the CLI changed (`role approve|revoke`).
    fn role_events(&mut self, before: &BTreeMap<u32, Roles>) {
        let mut kinds = Vec::new();
        for n in self.core.nodes().values() {
            let was = before.get(&n.id).copied().unwrap_or_default();
            for role in api::Role::ALL {
                match (role.is_in(&was), role.is_in(&n.approved_roles)) {
                    (false, true) => kinds.push(EventKind::RoleApproved { node: n.id, role }),
                    (true, false) => kinds.push(EventKind::RoleRevoked { node: n.id, role }),
                    _ => {}
                }
            }
        }
        for kind in kinds {
            self.emit_by(kind, CLI_OPERATOR);
        }
    }

    /// Events for what the CLI changed: approvals, revocations, drains.
    fn registry_events(&mut self, before: &BTreeMap<u32, (NodeState, bool)>) {
        let mut kinds = Vec::new();
        for n in self.core.nodes().values() {
            let node = n.id;
            let (state, drained) = before
                .get(&node)
                .copied()
                .unwrap_or((NodeState::Pending, false));
            match (state, n.state) {
                (NodeState::Pending, NodeState::Active) => kinds.push(EventKind::Approved { node }),
                (NodeState::Pending | NodeState::Active, NodeState::Revoked) => {
                    kinds.push(EventKind::Revoked { node });
                }
                _ => {}
            }
            match (drained, n.drained) {
                (false, true) => kinds.push(EventKind::Drained { node }),
                (true, false) => kinds.push(EventKind::Undrained { node }),
                _ => {}
            }
        }
        for kind in kinds {
            if let EventKind::Revoked { node } = kind {
                self.telemetry.forget_node(node);
                self.event_quota.forget(node);
            }
            self.emit_by(kind, CLI_OPERATOR);
        }
    }
}
