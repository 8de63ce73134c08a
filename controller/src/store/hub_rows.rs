//! Store calls the hub needs beyond the CLI's: an in-memory database (for
//! tests and the whole-mesh simulator), one node's approved prefixes, and
//! the one-transaction refresh of an enrolled node's Hello.

use std::net::SocketAddr;

use freimesh_proto::control::Roles;
use ipnet::IpNet;
use rusqlite::{Connection, params};

use super::roles::set_roles_in;
use super::{NodeRecord, Result, Store, StoreError, join, schema};

impl Store {
    /// A database in memory, migrated to the newest schema: what `open`
    /// gives, without a file (nothing survives the value).
    pub fn open_in_memory() -> Result<Self> {
        let open_err = |cause| StoreError::Open {
            path: ":memory:".into(),
            cause,
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        schema::migrate(&mut conn).map_err(open_err)?;
        Ok(Self { conn })
    }

    /// Node `id`'s approved prefixes, ordered.
    pub fn prefixes_of(&self, id: u32) -> Result<Vec<IpNet>> {
        let mut stmt = self
            .conn
            .prepare("SELECT prefix FROM prefixes WHERE node_id = ?1 ORDER BY prefix")?;
        let rows = stmt.query_map(params![id], |r| r.get::<_, String>(0))?;
        rows.map(|row| {
            let text = row?;
            text.parse()
                .map_err(|_| StoreError::Corrupt(format!("prefix {text:?}")))
        })
        .collect()
    }

    /// What an enrolled node's Hello changed, in one transaction: its
    /// endpoints and its requested roles (which may allocate its client
    /// subnets). Returns the row as stored.
    pub fn refresh_node(
        &mut self,
        id: u32,
        endpoints: Option<&[SocketAddr]>,
        roles: Option<Roles>,
    ) -> Result<NodeRecord> {
        let settings = self.settings()?;
        let tx = self.conn.transaction()?;
        if let Some(endpoints) = endpoints {
            tx.execute(
                "UPDATE nodes SET endpoints = ?1 WHERE id = ?2",
                params![join(endpoints), id],
            )?;
        }
        if let Some(roles) = roles {
            set_roles_in(&tx, &settings, id, roles)?;
        }
        tx.commit()?;
        self.node(id)
    }
}
