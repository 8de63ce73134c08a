//! Node roles (gateway, public Wi-Fi): what a node requests and what an
//! operator approved, kept apart.
//!
//! A node's Hello only *requests* roles (`nodes.gateway`,
//! `nodes.public_wifi`); an operator approves them (`role approve`, the
//! admin API, the TUI, or a join token that carries them:
//! `nodes.approved_gateway`, `nodes.approved_public_wifi`). A role is in
//! effect only when both hold, and only then does a public Wi-Fi node get
//! client subnets. Approving a role nobody requested is allowed: it takes
//! effect when the node asks for it (like a token's pre-approval).

use freimesh_proto::api::Role;
use freimesh_proto::control::Roles;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{MeshSettings, NodeRecord, Result, Store, StoreError, clients};

/// The store's text for a set of roles: `gateway,public-wifi`.
pub(super) fn roles_text(roles: Roles) -> String {
    Role::list(&roles)
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses [`roles_text`].
pub(super) fn parse_roles(text: &str) -> Result<Roles> {
    let mut out = Roles::default();
    for name in text.split(',').filter(|s| !s.is_empty()) {
        let role: Role = name
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("role {name:?}")))?;
        role.set_in(&mut out, true);
    }
    Ok(out)
}

/// Records the roles node `id` requests; allocates its client subnets if
/// public Wi-Fi is now in effect.
pub(super) fn set_roles_in(
    tx: &Transaction<'_>,
    settings: &MeshSettings,
    id: u32,
    requested: Roles,
) -> Result<()> {
    let n = tx.execute(
        "UPDATE nodes SET gateway = ?1, public_wifi = ?2 WHERE id = ?3",
        params![requested.gateway, requested.public_wifi, id],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchNode(id));
    }
    assign_clients_if_serving(tx, settings, id)
}

/// Adds `roles` to what is approved for node `id` (a join token's roles).
pub(super) fn approve_in(tx: &Transaction<'_>, id: u32, roles: Roles) -> Result<()> {
    for role in Role::list(&roles) {
        set_approval_in(tx, id, role, true)?;
    }
    Ok(())
}

fn set_approval_in(tx: &Transaction<'_>, id: u32, role: Role, approved: bool) -> Result<()> {
    let sql = match role {
        Role::Gateway => "UPDATE nodes SET approved_gateway = ?1 WHERE id = ?2",
        Role::PublicWifi => "UPDATE nodes SET approved_public_wifi = ?1 WHERE id = ?2",
    };
    if tx.execute(sql, params![approved, id])? == 0 {
        return Err(StoreError::NoSuchNode(id));
    }
    Ok(())
}

/// Gives node `id` client subnets if public Wi-Fi is in effect for it
/// (requested and approved) and it is no longer pending.
pub(super) fn assign_clients_if_serving(
    tx: &Transaction<'_>,
    settings: &MeshSettings,
    id: u32,
) -> Result<()> {
    let serving: Option<(bool, String)> = tx
        .query_row(
            "SELECT public_wifi AND approved_public_wifi, state FROM nodes WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match serving {
        None => Err(StoreError::NoSuchNode(id)),
        Some((true, state)) if state == "active" => clients::assign(tx, settings, id),
        Some(_) => Ok(()),
    }
}

impl Store {
    /// Approves (`approved = true`) or withdraws `role` for node `id`.
    /// Approving public Wi-Fi for an active node that requests it
    /// allocates its client subnets in the same transaction (refused,
    /// nothing written, without a client pool). Refused for revoked nodes.
    pub fn set_role_approval(&mut self, id: u32, role: Role, approved: bool) -> Result<NodeRecord> {
        let settings = self.settings()?;
        let tx = self.conn.transaction()?;
        require_not_revoked(&tx, id)?;
        set_approval_in(&tx, id, role, approved)?;
        assign_clients_if_serving(&tx, &settings, id)?;
        tx.commit()?;
        self.node(id)
    }
}

/// Refuses unknown and revoked nodes: what an operator may approve
/// something for (prefixes, roles).
pub(super) fn require_not_revoked(tx: &Transaction<'_>, id: u32) -> Result<()> {
    let state: Option<String> = tx
        .query_row("SELECT state FROM nodes WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
        .optional()?;
    match state.as_deref() {
        None => Err(StoreError::NoSuchNode(id)),
        Some("revoked") => Err(StoreError::WrongState(id, "revoked")),
        Some(_) => Ok(()),
    }
}
