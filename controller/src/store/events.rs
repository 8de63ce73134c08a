//! The admin API's tables: the event history, the audit log and the join
//! token list as operators see it (operator tokens: `operators.rs`).
//!
//! Events are stored with the JSON of their [`EventKind`] so that a restart
//! replays exactly what clients saw; `node` and `peer` are copied into
//! columns so a node's history is one indexed query. Audit events
//! ([`EventKind::is_audit`]) are written to the `audit` table as well, under
//! the same seq; pruning the history never touches that table.

use std::collections::BTreeMap;

use freimesh_proto::api::{Event, EventKind, Token};
use ipnet::IpNet;
use rusqlite::params;

use super::{Result, Store, StoreError, split, token_hash};

/// A join token's public id: the first 8 bytes of its hash, in hex.
pub fn token_id(hash: &[u8]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The event's kind name as in its JSON `kind` tag, and the nodes it concerns.
fn columns(kind: &EventKind) -> (&'static str, Option<u32>, Option<u32>) {
    match kind {
        EventKind::LinkUp { a, b } => ("link-up", Some(*a), Some(*b)),
        EventKind::LinkDown { a, b } => ("link-down", Some(*a), Some(*b)),
        EventKind::Failover { node, peer, .. } => ("failover", Some(*node), Some(*peer)),
        EventKind::Enrolled { node, .. } => ("enrolled", Some(*node), None),
        EventKind::Approved { node } => ("approved", Some(*node), None),
        EventKind::Revoked { node } => ("revoked", Some(*node), None),
        EventKind::Drained { node } => ("drained", Some(*node), None),
        EventKind::Undrained { node } => ("undrained", Some(*node), None),
        EventKind::Connected { node } => ("connected", Some(*node), None),
        EventKind::Disconnected { node } => ("disconnected", Some(*node), None),
        EventKind::TokenCreated { .. } => ("token-created", None, None),
        EventKind::UplinkUp { node } => ("uplink-up", Some(*node), None),
        EventKind::UplinkDown { node } => ("uplink-down", Some(*node), None),
        EventKind::SiteAdded { via, .. } => ("site-added", Some(*via), None),
        EventKind::SiteRemoved { .. } => ("site-removed", None, None),
        EventKind::OperatorAdded { .. } => ("operator-added", None, None),
        EventKind::OperatorRemoved { .. } => ("operator-removed", None, None),
        EventKind::RoleAwaitsApproval { node, .. } => ("role-awaits-approval", Some(*node), None),
        EventKind::RoleApproved { node, .. } => ("role-approved", Some(*node), None),
        EventKind::RoleRevoked { node, .. } => ("role-revoked", Some(*node), None),
        EventKind::LinkDisputed { a, b, .. } => ("link-disputed", Some(*a), Some(*b)),
        EventKind::AgentVersionChanged { node, .. } => ("agent-version-changed", Some(*node), None),
        EventKind::Rebooted { node, .. } => ("rebooted", Some(*node), None),
    }
}

/// The `kind` tag of an event, as the SSE `event:` field carries it.
pub fn kind_name(kind: &EventKind) -> &'static str {
    columns(kind).0
}

fn to_seq(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("event seq {v}")))
}

fn from_seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Appends events (their `seq` chosen by the caller, increasing) in one
    /// transaction; audit events go to the audit log too.
    pub fn append_events(&mut self, events: &[Event]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for e in events {
            let (kind, node, peer) = columns(&e.kind);
            let body = serde_json::to_string(&e.kind)
                .map_err(|err| StoreError::Corrupt(format!("event body: {err}")))?;
            tx.execute(
                "INSERT INTO events (seq, at_ms, node, peer, kind, body, operator) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![from_seq(e.seq), e.at_ms, node, peer, kind, body, e.operator],
            )?;
            if e.kind.is_audit() {
                tx.execute(
                    "INSERT INTO audit (seq, at_ms, node, kind, body, operator) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![from_seq(e.seq), e.at_ms, node, kind, body, e.operator],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The highest `seq` ever stored (0 if none): the history continues
    /// after a restart.
    pub fn last_event_seq(&self) -> Result<u64> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
        to_seq(v.unwrap_or(0))
    }

    /// Audit events with `seq > since`, oldest first, at most `limit`: the
    /// audit log, which pruning never shortens.
    pub fn audit_since(&self, since: u64, limit: u32) -> Result<Vec<Event>> {
        self.select_from(
            "audit",
            "WHERE seq > ?1 ORDER BY seq ASC LIMIT ?2",
            params![from_seq(since), limit],
        )
    }

    /// Deletes all but the newest `keep` events (the audit log stays).
    pub fn prune_events(&mut self, keep: u64) -> Result<usize> {
        let last = self.last_event_seq()?;
        let cut = last.saturating_sub(keep);
        Ok(self
            .conn
            .execute("DELETE FROM events WHERE seq <= ?1", params![from_seq(cut)])?)
    }

    /// Events with `seq > since`, oldest first, at most `limit`.
    pub fn events_since(&self, since: u64, limit: u32) -> Result<Vec<Event>> {
        self.select_events(
            "WHERE seq > ?1 ORDER BY seq ASC LIMIT ?2",
            params![from_seq(since), limit],
        )
    }

    /// The newest `limit` events that concern node `id`, newest first.
    pub fn node_events(&self, id: u32, limit: u32) -> Result<Vec<Event>> {
        self.select_events(
            "WHERE node = ?1 OR peer = ?1 ORDER BY seq DESC LIMIT ?2",
            params![id, limit],
        )
    }

    /// The newest `limit` events of one kind (`failover`, …), newest first.
    pub fn events_of_kind(&self, kind: &str, limit: u32) -> Result<Vec<Event>> {
        self.select_events(
            "WHERE kind = ?1 ORDER BY seq DESC LIMIT ?2",
            params![kind, limit],
        )
    }

    /// When each node was last seen connecting or disconnecting (epoch ms).
    pub fn last_seen(&self) -> Result<BTreeMap<u32, i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT node, MAX(at_ms) FROM events WHERE kind IN ('connected', 'disconnected') AND node IS NOT NULL GROUP BY node",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn select_events(&self, filter: &str, params: impl rusqlite::Params) -> Result<Vec<Event>> {
        self.select_from("events", filter, params)
    }

    /// `table` is `events` or `audit` (same columns for what is read here).
    fn select_from(
        &self,
        table: &'static str,
        filter: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT seq, at_ms, body, operator FROM {table} {filter}"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (seq, at_ms, body, operator) = row?;
            let kind: EventKind = serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
            Ok(Event {
                seq: to_seq(seq)?,
                at_ms,
                kind,
                operator,
            })
        })
        .collect()
    }

    /// Join tokens as stored, newest first (their values are not stored).
    pub fn tokens(&self) -> Result<Vec<Token>> {
        let mut stmt = self.conn.prepare(
            "SELECT hash, created_at, expires_at, used_at, used_by, prefixes, roles FROM tokens ORDER BY created_at DESC, hash",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<u32>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let ms = |s: i64| s.saturating_mul(1000);
        rows.map(|row| {
            let (hash, created, expires, used_at, used_by, prefixes, roles) = row?;
            let prefixes: Vec<IpNet> = split(&prefixes)?;
            let roles = freimesh_proto::api::Role::list(&super::roles::parse_roles(&roles)?);
            Ok(Token {
                id: token_id(&hash),
                created_at_ms: ms(created),
                expires_at_ms: ms(expires),
                used_at_ms: used_at.map(ms),
                used_by,
                prefixes,
                roles,
            })
        })
        .collect()
    }

    /// The id of the join token with text `token`.
    pub fn token_id_of(token: &str) -> String {
        token_id(&token_hash(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, kind: EventKind, operator: Option<&str>) -> Event {
        Event {
            seq,
            at_ms: i64::try_from(seq).expect("small"),
            kind,
            operator: operator.map(str::to_owned),
        }
    }

    #[test]
    fn audit_events_survive_pruning_and_carry_their_operator() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("mesh.db")).expect("open");
        let mut events = vec![
            event(1, EventKind::Approved { node: 4 }, Some("city-it")),
            event(2, EventKind::TokenCreated { id: "ab".into() }, Some("cli")),
        ];
        events.extend((3..=50).map(|seq| event(seq, EventKind::Connected { node: 1 }, None)));
        store.append_events(&events).expect("append");
        store.prune_events(10).expect("prune");

        let history = store.events_since(0, 1_000).expect("history");
        assert_eq!(history.len(), 10, "the history was pruned");
        assert_eq!(history[0].seq, 41);
        let audit = store.audit_since(0, 1_000).expect("audit");
        assert_eq!(audit, events[..2].to_vec(), "the audit log was not");
        assert_eq!(store.audit_since(1, 1_000).expect("page")[0].seq, 2);
        // The operator column round-trips through the history too.
        let last = store.events_since(49, 10).expect("last");
        assert_eq!(last[0].operator, None);
    }
}
