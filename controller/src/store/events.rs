//! The admin API's tables: the event history, operator tokens and the join
//! token list as operators see it.
//!
//! Events are stored with the JSON of their [`EventKind`] so that a restart
//! replays exactly what clients saw; `node` and `peer` are copied into
//! columns so a node's history is one indexed query.

use std::collections::BTreeMap;

use blake2::{Blake2s256, Digest};
use freimesh_proto::api::{Event, EventKind, Token};
use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};

use super::{Result, Store, StoreError, split, token_hash};

/// BLAKE2s of an operator token (another domain than join tokens, so one
/// can never stand in for the other).
pub fn operator_hash(token: &str) -> [u8; 32] {
    Blake2s256::new_with_prefix(b"freimesh operator token v1")
        .chain_update(token.trim().as_bytes())
        .finalize()
        .into()
}

/// A join token's public id: the first 8 bytes of its hash, in hex.
pub fn token_id(hash: &[u8]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// An operator as `operator list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
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
        EventKind::RoleAwaitsApproval { node, .. } => ("role-awaits-approval", Some(*node), None),
        EventKind::RoleApproved { node, .. } => ("role-approved", Some(*node), None),
        EventKind::RoleRevoked { node, .. } => ("role-revoked", Some(*node), None),
        EventKind::LinkDisputed { a, b, .. } => ("link-disputed", Some(*a), Some(*b)),
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
    /// transaction.
    pub fn append_events(&mut self, events: &[Event]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for e in events {
            let (kind, node, peer) = columns(&e.kind);
            let body = serde_json::to_string(&e.kind)
                .map_err(|err| StoreError::Corrupt(format!("event body: {err}")))?;
            tx.execute(
                "INSERT INTO events (seq, at_ms, node, peer, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![from_seq(e.seq), e.at_ms, node, peer, kind, body],
            )?;
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

    /// Deletes all but the newest `keep` events.
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
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT seq, at_ms, body FROM events {filter}"))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (seq, at_ms, body) = row?;
            let kind: EventKind = serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
            Ok(Event {
                seq: to_seq(seq)?,
                at_ms,
                kind,
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

    /// Adds an operator and returns its new token (stored only hashed).
    pub fn add_operator(&mut self, name: &str, now: i64) -> Result<String> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(StoreError::BadSettings(format!(
                "operator name {name:?}: 1 to 64 printable characters"
            )));
        }
        let mut raw = [0u8; 24];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        let token = format!(
            "fmo1-{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let tx = self.conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM operators WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::OperatorExists(name.to_owned()));
        }
        tx.execute(
            "INSERT INTO operators (name, hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, operator_hash(&token).as_slice(), now],
        )?;
        tx.commit()?;
        Ok(token)
    }

    pub fn operators(&self) -> Result<Vec<OperatorRecord>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, created_at FROM operators ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(OperatorRecord {
                name: r.get(0)?,
                created_at: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn remove_operator(&mut self, name: &str) -> Result<()> {
        let n = self
            .conn
            .execute("DELETE FROM operators WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(StoreError::NoSuchOperator(name.to_owned()));
        }
        Ok(())
    }

    /// The hashes of every operator token: what the API checks against.
    pub fn operator_hashes(&self) -> Result<Vec<[u8; 32]>> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash FROM operators ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|row| {
            let h = row?;
            <[u8; 32]>::try_from(h.as_slice())
                .map_err(|_| StoreError::Corrupt("operator hash length".into()))
        })
        .collect()
    }

    /// The id of the join token with text `token`.
    pub fn token_id_of(token: &str) -> String {
        token_id(&token_hash(token))
    }
}
