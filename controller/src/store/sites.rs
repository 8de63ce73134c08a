//! Standard WireGuard sites: buildings that cannot run the agent join the
//! mesh through one node (`site add`, `site export`).
//!
//! A site gets an overlay /32 from the same IPv4 pool as the nodes (the
//! index spaces are shared, see `alloc.rs`), and its LAN prefixes pass the
//! same claim checks as a node's.

use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};

use super::claims::{self, Claimant};
use super::{Pool, Result, SiteRecord, Store, StoreError, alloc};

/// A new site's key: the controller's own keypair, or the operator's
/// public key (the private key then stays with the site).
#[derive(Debug, Clone)]
pub struct SiteKey {
    pub public: PublicKeyBytes,
    /// Base64; kept in the database only so `site export` can print it.
    pub private: Option<String>,
}

impl Store {
    /// Adds site `name` behind node `via` with its LAN `prefixes`.
    pub fn add_site(
        &mut self,
        name: &str,
        via: u32,
        prefixes: &[IpNet],
        key: &SiteKey,
        now: i64,
    ) -> Result<SiteRecord> {
        let settings = self.settings()?;
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(StoreError::BadSiteName(name.to_owned()));
        }
        let tx = self.conn.transaction()?;
        let state: Option<String> = tx
            .query_row("SELECT state FROM nodes WHERE id = ?1", params![via], |r| {
                r.get(0)
            })
            .optional()?;
        match state.as_deref() {
            None => return Err(StoreError::NoSuchNode(via)),
            Some("active") => {}
            Some("pending") => return Err(StoreError::WrongState(via, "pending")),
            Some(_) => return Err(StoreError::WrongState(via, "revoked")),
        }
        let exists: i64 = tx.query_row(
            "SELECT COUNT(*) FROM sites WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?;
        if exists > 0 {
            return Err(StoreError::SiteExists(name.to_owned()));
        }
        let key_b64 = key.public.to_base64();
        let key_used: i64 = tx.query_row(
            "SELECT (SELECT COUNT(*) FROM nodes WHERE public_key = ?1) + (SELECT COUNT(*) FROM sites WHERE public_key = ?1)",
            params![key_b64],
            |r| r.get(0),
        )?;
        if key_used > 0 {
            return Err(StoreError::KeyExists(key.public));
        }
        if prefixes.is_empty() {
            return Err(StoreError::BadSiteName(format!(
                "{name}: a site needs at least one --prefix"
            )));
        }
        claims::check(&tx, &settings, prefixes, Claimant::Site(name))?;
        let (_, p4) = settings.pools();
        let index = alloc::lowest_free_v4(&tx, &p4)?;
        tx.execute(
            "INSERT INTO sites (name, via, public_key, private_key, addr4_index, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, via, key_b64, key.private, index, now],
        )?;
        for p in prefixes {
            tx.execute(
                "INSERT INTO site_prefixes (site, prefix) VALUES (?1, ?2)",
                params![name, p.trunc().to_string()],
            )?;
        }
        tx.commit()?;
        self.site(name)
    }

    /// Removes site `name`; its /32 stays reserved, like a revoked node's.
    pub fn remove_site(&mut self, name: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM site_prefixes WHERE site = ?1", params![name])?;
        // Keep the address index held: a placeholder row would complicate
        // every reader, so the index moves to the reserved list instead.
        let index: Option<i64> = tx
            .query_row(
                "SELECT addr4_index FROM sites WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let index = index.ok_or_else(|| StoreError::NoSuchSite(name.to_owned()))?;
        tx.execute("DELETE FROM sites WHERE name = ?1", params![name])?;
        tx.execute(
            "INSERT OR IGNORE INTO reserved_addr4 (addr4_index) VALUES (?1)",
            params![index],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn site(&self, name: &str) -> Result<SiteRecord> {
        self.sites()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StoreError::NoSuchSite(name.to_owned()))
    }

    /// Every site, by name.
    pub fn sites(&self) -> Result<Vec<SiteRecord>> {
        let settings = self.settings()?;
        let (_, p4) = settings.pools();
        let mut stmt = self.conn.prepare(
            "SELECT name, via, public_key, private_key, addr4_index FROM sites ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, via, key, private_key, index) = row?;
            out.push(SiteRecord {
                public_key: PublicKeyBytes::from_base64(&key)
                    .map_err(|_| StoreError::Corrupt(format!("site {name} key")))?,
                address: host(&p4, index, &name)?,
                prefixes: Vec::new(),
                name,
                via,
                private_key,
            });
        }
        let mut stmt = self
            .conn
            .prepare("SELECT site, prefix FROM site_prefixes ORDER BY site, prefix")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (site, text) = row?;
            let prefix: IpNet = text
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("site prefix {text:?}")))?;
            if let Some(s) = out.iter_mut().find(|s| s.name == site) {
                s.prefixes.push(prefix);
            }
        }
        Ok(out)
    }
}

fn host(pool: &Pool, index: i64, name: &str) -> Result<IpNet> {
    pool.host(index)
        .ok_or_else(|| StoreError::Corrupt(format!("site {name} address")))
}
