//! What membership credentials need from the registry: the controller's
//! Ed25519 signing key, when each node's last credential expires, and the
//! revocation list with its serial (`docs/security.md`).
//!
//! The signing key lives in the database (not in a file like the Noise
//! key) so that a backup of the database is a backup of everything
//! credentials depend on. The serial only grows, and survives restarts and
//! restores from a newer backup: agents ignore a list whose serial is not
//! higher than the one they hold.

use ed25519_dalek::SigningKey;
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::credential::{Credential, Revoked, SignedCredential, SigningKeyBytes};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Result, Store, StoreError};

/// The revocation list as stored: its serial and its entries in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    pub serial: u64,
    pub entries: Vec<Revoked>,
}

fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Store {
    /// The controller's signing key, created (from the operating system's
    /// random source) and stored the first time it is asked for.
    pub fn signing_key(&mut self, now_s: i64) -> Result<SigningKey> {
        if let Some(key) = self.stored_signing_key()? {
            return Ok(key);
        }
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        // OR IGNORE: a CLI process that created one in between wins, and
        // both use the same key from then on.
        self.conn.execute(
            "INSERT OR IGNORE INTO signing_key (id, secret, created_at) VALUES (1, ?1, ?2)",
            params![secret.as_slice(), now_s],
        )?;
        self.stored_signing_key()?
            .ok_or_else(|| StoreError::Corrupt("signing_key missing after insert".into()))
    }

    fn stored_signing_key(&self) -> Result<Option<SigningKey>> {
        let secret: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT secret FROM signing_key WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        secret
            .map(|s| {
                <[u8; 32]>::try_from(s.as_slice())
                    .map(|b| SigningKey::from_bytes(&b))
                    .map_err(|_| StoreError::Corrupt("signing_key.secret".into()))
            })
            .transpose()
    }

    /// The public half of the signing key, if one was created yet (what
    /// operators may pin; `freimesh-controller keys`).
    pub fn signing_key_public(&self) -> Result<Option<SigningKeyBytes>> {
        Ok(self
            .stored_signing_key()?
            .map(|key| SigningKeyBytes::of(&key)))
    }

    /// Records the credentials about to go to the nodes in `issued` (node,
    /// signed credential, its expiry), in one transaction. Returns the
    /// nodes that may have them: those still active (a node the CLI
    /// revoked in the meantime gets none). A node's recorded expiry never
    /// moves back, so a revocation always outlives every credential the
    /// node holds.
    pub fn record_credentials(
        &mut self,
        issued: &[(u32, &SignedCredential, u64)],
    ) -> Result<Vec<u32>> {
        let tx = self.conn.transaction()?;
        let mut active = Vec::new();
        for (id, signed, expires) in issued {
            let blob = postcard::to_allocvec(signed)
                .map_err(|e| StoreError::Corrupt(format!("credential of node {id}: {e}")))?;
            let n = tx.execute(
                "UPDATE nodes SET credential_expires = max(coalesce(credential_expires, 0), ?1),
                 credential = ?2 WHERE id = ?3 AND state = 'active'",
                params![to_sql(*expires), blob, id],
            )?;
            if n > 0 {
                active.push(*id);
            }
        }
        tx.commit()?;
        Ok(active)
    }

    /// The last credential recorded for each active node, decoded without
    /// checking the signature (the controller wrote them itself); a row
    /// that does not decode is left out, and that node simply gets a new
    /// one.
    pub fn credentials(&self) -> Result<Vec<(u32, SignedCredential, Credential)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, credential FROM nodes WHERE state = 'active' AND credential IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, blob) = row?;
            let Ok(signed) = postcard::from_bytes::<SignedCredential>(&blob) else {
                continue;
            };
            let Ok(credential) = postcard::from_bytes::<Credential>(&signed.body) else {
                continue;
            };
            out.push((id, signed, credential));
        }
        Ok(out)
    }

    /// The revocation list.
    pub fn revocations(&self) -> Result<RevocationList> {
        let serial: i64 = self.conn.query_row(
            "SELECT serial FROM revocation_serial WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let mut stmt = self
            .conn
            .prepare("SELECT node_key, until_unix_s FROM revocations ORDER BY node_key")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut entries = Vec::new();
        for row in rows {
            let (key, until) = row?;
            entries.push(Revoked {
                node_key: PublicKeyBytes::from_base64(&key)
                    .map_err(|_| StoreError::Corrupt(format!("revocation key {key:?}")))?,
                until_unix_s: from_sql(until),
            });
        }
        Ok(RevocationList {
            serial: from_sql(serial),
            entries,
        })
    }

    /// Drops the entries whose node's last credential has expired by
    /// `now_unix_s` (such a node cannot show a valid credential any more);
    /// the serial grows if any went. Returns how many went.
    pub fn prune_revocations(&mut self, now_unix_s: u64) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM revocations WHERE until_unix_s <= ?1",
            params![to_sql(now_unix_s)],
        )?;
        if n > 0 {
            bump_serial(&tx)?;
        }
        tx.commit()?;
        Ok(n)
    }
}

fn bump_serial(tx: &Transaction<'_>) -> Result<()> {
    tx.execute(
        "UPDATE revocation_serial SET serial = serial + 1 WHERE id = 1",
        [],
    )?;
    Ok(())
}

/// Part of revoking node `id` (inside the revocation's transaction): lists
/// its key until its last credential expires and grows the serial. A node
/// that never got a credential needs no entry: it cannot link offline.
pub(super) fn list_revoked_in(tx: &Transaction<'_>, id: u32) -> Result<()> {
    let (key, expires): (String, Option<i64>) = tx.query_row(
        "SELECT public_key, credential_expires FROM nodes WHERE id = ?1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some(expires) = expires else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO revocations (node_key, until_unix_s) VALUES (?1, ?2)
         ON CONFLICT (node_key) DO UPDATE SET until_unix_s = max(until_unix_s, excluded.until_unix_s)",
        params![key, expires],
    )?;
    bump_serial(tx)
}

#[cfg(test)]
mod tests {
    use crate::records::{Enrollment, MeshSettings};

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mesh.db");
        let mut store = Store::open(&path).expect("open");
        store
            .init(&MeshSettings {
                ula: "fd12:3456:789a::/48".parse().expect("ula"),
                ipv4: "10.99.0.0/16".parse().expect("v4"),
                approval: false,
                controller_public_key: PublicKeyBytes([9; 32]),
                clients_ipv4: None,
                client_subnet_len: 24,
            })
            .expect("init");
        (dir, path, store)
    }

    fn enrol(store: &mut Store, key: u8) -> u32 {
        let token = store.create_token(NOW + 600, &[], NOW).expect("token");
        store
            .enroll(
                &Enrollment {
                    key: PublicKeyBytes([key; 32]),
                    hostname: "node",
                    endpoints: &[],
                    token: &token,
                    want_addresses: &[],
                    prefixes: &[],
                    roles: Default::default(),
                },
                NOW,
            )
            .expect("enrol")
            .id
    }

    #[test]
    fn a_revoked_node_is_listed_until_its_last_credential_expires() {
        let (_dir, _path, mut store) = fresh();
        let (a, b, c) = (
            enrol(&mut store, 1),
            enrol(&mut store, 2),
            enrol(&mut store, 3),
        );
        let signed = SignedCredential {
            body: vec![1],
            signature: vec![2; 64],
        };
        assert_eq!(
            store
                .record_credentials(&[(a, &signed, 5_000), (b, &signed, 7_000)])
                .expect("record"),
            vec![a, b]
        );
        // The expiry never moves back (a shorter lifetime configured later).
        store
            .record_credentials(&[(a, &signed, 4_000)])
            .expect("record");
        store.revoke(a).expect("revoke");
        // A node that never got a credential needs no entry.
        store.revoke(c).expect("revoke");
        let list = store.revocations().expect("list");
        assert_eq!(list.serial, 1);
        assert_eq!(
            list.entries,
            vec![Revoked {
                node_key: PublicKeyBytes([1; 32]),
                until_unix_s: 5_000
            }]
        );
        // A revoked node gets no more credentials.
        assert_eq!(
            store
                .record_credentials(&[(a, &signed, 9_000), (b, &signed, 9_000)])
                .expect("record"),
            vec![b]
        );
        assert_eq!(store.prune_revocations(4_999).expect("prune"), 0);
        assert_eq!(store.prune_revocations(5_000).expect("prune"), 1);
        let list = store.revocations().expect("list");
        assert_eq!((list.serial, list.entries.len()), (2, 0));
    }

    #[test]
    fn a_backup_of_the_database_carries_the_signing_key_and_the_list() {
        let (dir, path, mut store) = fresh();
        assert_eq!(store.signing_key_public().expect("public"), None);
        let key = store.signing_key(NOW).expect("create");
        assert_eq!(
            store.signing_key(NOW + 1).expect("again").to_bytes(),
            key.to_bytes(),
            "created once"
        );
        let a = enrol(&mut store, 1);
        let signed = SignedCredential {
            body: vec![1],
            signature: vec![2; 64],
        };
        store
            .record_credentials(&[(a, &signed, 5_000)])
            .expect("record");
        store.revoke(a).expect("revoke");
        // What `sqlite3 mesh.db ".backup copy.db"` does, online.
        let copy = dir.path().join("copy.db");
        store
            .conn
            .execute("VACUUM INTO ?1", params![copy.to_string_lossy()])
            .expect("backup");
        drop(store);
        for restored in [copy, path] {
            let restored = Store::open(&restored).expect("open");
            assert_eq!(
                restored.signing_key_public().expect("public"),
                Some(SigningKeyBytes::of(&key))
            );
            assert_eq!(restored.revocations().expect("list").serial, 1);
        }
    }
}
