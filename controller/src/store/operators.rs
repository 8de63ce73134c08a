//! Operators of the admin API: their names, token hashes, scopes and
//! expiry. A token is shown once at `operator add` and stored only as a
//! hash; the running server reloads [`OperatorCredential`]s whenever the
//! database changes, so a removed operator's token stops working within
//! one registry poll.

use blake2::{Blake2s256, Digest};
use rusqlite::{OptionalExtension, params};

use super::{Result, Store, StoreError};

/// The longest operator name: it appears in every event the operator
/// causes, so it stays short enough for one line of the TUI.
pub const MAX_OPERATOR_NAME: usize = 64;

/// BLAKE2s of an operator token (another domain than join tokens, so one
/// can never stand in for the other).
pub fn operator_hash(token: &str) -> [u8; 32] {
    Blake2s256::new_with_prefix(b"freimesh operator token v1")
        .chain_update(token.trim().as_bytes())
        .finalize()
        .into()
}

/// What an operator's token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OperatorScope {
    /// Reads only: GET endpoints, the event stream, `/metrics`, the
    /// meshviewer export (Prometheus, map scrapers, dashboards).
    Read,
    /// Reads and actions (drain, approve, revoke, join tokens).
    Full,
}

impl OperatorScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Full => "full",
        }
    }
}

impl std::str::FromStr for OperatorScope {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "read" => Ok(Self::Read),
            "full" => Ok(Self::Full),
            other => Err(StoreError::BadSettings(format!(
                "operator scope {other:?}: read or full"
            ))),
        }
    }
}

/// An operator as `operator list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    pub scope: OperatorScope,
    /// Unix seconds after which the token is refused; `None`: never.
    pub expires_at: Option<i64>,
}

/// What the API checks a token against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCredential {
    pub name: String,
    pub hash: [u8; 32],
    pub scope: OperatorScope,
    /// Unix seconds; `None`: never expires.
    pub expires_at: Option<i64>,
}

impl OperatorCredential {
    /// Has the token expired at `now` (Unix seconds)?
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

fn scope_of(text: &str) -> rusqlite::Result<OperatorScope> {
    text.parse().map_err(|e: StoreError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

impl Store {
    /// Adds an operator and returns its new token (stored only hashed).
    pub fn add_operator(
        &mut self,
        name: &str,
        scope: OperatorScope,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<String> {
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_OPERATOR_NAME || name.chars().any(char::is_control) {
            return Err(StoreError::BadSettings(format!(
                "operator name {name:?}: 1 to {MAX_OPERATOR_NAME} printable characters"
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
            "INSERT INTO operators (name, hash, created_at, scope, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                operator_hash(&token).as_slice(),
                now,
                scope.as_str(),
                expires_at
            ],
        )?;
        tx.commit()?;
        Ok(token)
    }

    pub fn operators(&self) -> Result<Vec<OperatorRecord>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, created_at, scope, expires_at FROM operators ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(OperatorRecord {
                name: r.get(0)?,
                created_at: r.get(1)?,
                scope: scope_of(&r.get::<_, String>(2)?)?,
                expires_at: r.get(3)?,
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

    /// Every operator's token hash, scope and expiry: what the API checks
    /// against.
    pub fn operator_credentials(&self) -> Result<Vec<OperatorCredential>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, hash, scope, expires_at FROM operators ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                scope_of(&r.get::<_, String>(2)?)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (name, hash, scope, expires_at) = row?;
            let hash = <[u8; 32]>::try_from(hash.as_slice())
                .map_err(|_| StoreError::Corrupt(format!("operator {name:?}: hash length")))?;
            Ok(OperatorCredential {
                name,
                hash,
                scope,
                expires_at,
            })
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_expiry_are_stored_with_the_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("mesh.db")).expect("open");
        let read = store
            .add_operator("prometheus", OperatorScope::Read, Some(2_000), 1_000)
            .expect("add");
        store
            .add_operator("city-it", OperatorScope::Full, None, 1_000)
            .expect("add");
        let creds = store.operator_credentials().expect("creds");
        assert_eq!(creds.len(), 2);
        let prom = creds.iter().find(|c| c.name == "prometheus").expect("prom");
        assert_eq!(prom.hash, operator_hash(&read));
        assert_eq!(prom.scope, OperatorScope::Read);
        assert!(!prom.expired(1_999));
        assert!(prom.expired(2_000));
        let it = creds.iter().find(|c| c.name == "city-it").expect("it");
        assert_eq!((it.scope, it.expires_at), (OperatorScope::Full, None));
        assert!(!it.expired(i64::MAX));
        let listed = store.operators().expect("list");
        assert_eq!(listed[1].expires_at, Some(2_000));
    }
}
