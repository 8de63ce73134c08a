//! The registry in embedded SQLite: mesh settings, nodes with their
//! addresses, join tokens, approved prefixes, links and measurements; and
//! for the admin API the event history and operator tokens (`events.rs`).
//!
//! The database is the truth: the control server mirrors it in memory, but
//! every change is committed here first, in one transaction, before anyone
//! hears of it. A failed check rolls the transaction back, so a refused
//! request leaves the database as it was. WAL mode lets the CLI (`token
//! create`, `node revoke`, …) write while the server runs; the server notices
//! through `PRAGMA data_version`.

mod alloc;
mod claims;
mod clients;
mod events;
mod hub_rows;
mod ipam;
mod membership;
mod node_reports;
mod operators;
mod roles;
mod schema;
mod sites;
mod types;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use blake2::{Blake2s256, Digest};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{ErrorCode, Roles};
use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub use crate::records::{
    DEFAULT_CLIENT_SUBNET_LEN, Enrollment, LinkRecord, MeshSettings, NodeRecord, NodeState,
    SiteRecord,
};
pub use clients::{client_v4, client_v6};
pub use events::{kind_name, token_id};
pub use ipam::Pool;
pub use membership::RevocationList;
pub use operators::{
    MAX_OPERATOR_NAME, OperatorCredential, OperatorRecord, OperatorScope, operator_hash,
};
pub use sites::SiteKey;

use alloc::activate;
use roles::set_roles_in;

/// What went wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("database file {path}: {cause}")]
    File {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the mesh is not initialised; run `freimesh-controller init` first")]
    NotInitialised,
    #[error("the mesh is already initialised")]
    AlreadyInitialised,
    #[error("{0}")]
    BadSettings(String),
    #[error("no such join token")]
    TokenInvalid,
    #[error("join token expired")]
    TokenExpired,
    #[error("join token was already used")]
    TokenUsed,
    #[error("address {0} is outside the mesh pools")]
    OutOfPool(IpAddr),
    #[error("address {0} belongs to another node")]
    AddressTaken(IpAddr),
    #[error("the {0} pool has no free address left")]
    PoolExhausted(&'static str),
    #[error("prefix {0} is not approved for this node")]
    PrefixNotApproved(IpNet),
    #[error("prefix {0} is already approved for node {1}")]
    PrefixTaken(IpNet, u32),
    #[error(
        "prefix {0} overlaps the mesh's {1} {2}: building and site prefixes must lie outside the mesh's own pools"
    )]
    PrefixInPool(IpNet, &'static str, IpNet),
    #[error("prefix {prefix} overlaps {other}, already claimed by {owner}")]
    PrefixOverlaps {
        prefix: IpNet,
        other: IpNet,
        owner: String,
    },
    #[error(
        "this node serves public Wi-Fi but the mesh has no client pool; set one with `freimesh-controller pool clients --ipv4 CIDR --db DB`"
    )]
    NoClientPool,
    #[error("no site named {0:?} (see `freimesh-controller site list`)")]
    NoSuchSite(String),
    #[error("a site named {0:?} exists already")]
    SiteExists(String),
    #[error("bad site: {0:?} (a name without spaces, and at least one --prefix)")]
    BadSiteName(String),
    #[error("no node with id {0}")]
    NoSuchNode(u32),
    #[error("no link between nodes {0} and {1} (links appear when their agents report each other)")]
    NoSuchLink(u32, u32),
    #[error("node {0} is {1}")]
    WrongState(u32, &'static str),
    #[error("key {0} is already registered")]
    KeyExists(PublicKeyBytes),
    #[error("operator {0:?} exists already")]
    OperatorExists(String),
    #[error("no operator named {0:?}")]
    NoSuchOperator(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The code an agent is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TokenInvalid => ErrorCode::TokenInvalid,
            Self::TokenExpired => ErrorCode::TokenExpired,
            Self::TokenUsed => ErrorCode::TokenUsed,
            Self::OutOfPool(_) => ErrorCode::AddressOutOfPool,
            Self::AddressTaken(_) => ErrorCode::AddressTaken,
            Self::PoolExhausted(_) | Self::NoClientPool => ErrorCode::PoolExhausted,
            Self::PrefixNotApproved(_)
            | Self::PrefixTaken(..)
            | Self::PrefixInPool(..)
            | Self::PrefixOverlaps { .. } => ErrorCode::PrefixNotApproved,
            _ => ErrorCode::Internal,
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Owner read and write, nothing for anyone else: the database holds
/// private keys.
pub const DATABASE_MODE: u32 = 0o600;

/// The database file and the files SQLite keeps next to it.
pub fn database_files(path: &Path) -> [PathBuf; 3] {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with_suffix("-wal"), with_suffix("-shm")]
}

/// Creates the database file with [`DATABASE_MODE`] if it does not exist,
/// and takes group and other permissions away from it and its `-wal` and
/// `-shm` files if they exist with more (a database created before this
/// rule). The mode is set explicitly, so the umask does not matter.
fn restrict_database_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let file_err = |path: &Path, cause| StoreError::File {
        path: path.to_owned(),
        cause,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(DATABASE_MODE)
        .open(path)
    {
        Ok(file) => file
            .set_permissions(std::fs::Permissions::from_mode(DATABASE_MODE))
            .map_err(|e| file_err(path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(file_err(path, e)),
    }
    for file in database_files(path) {
        let meta = match std::fs::metadata(&file) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(file_err(&file, e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            tracing::warn!(file = %file.display(), mode = format!("{mode:o}"), "database file was readable by others; made it owner-only");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| file_err(&file, e))?;
        }
    }
    Ok(())
}

/// BLAKE2s of a join token: tokens are stored only hashed.
pub fn token_hash(token: &str) -> [u8; 32] {
    Blake2s256::new_with_prefix(b"freimesh join token v1")
        .chain_update(token.trim().as_bytes())
        .finalize()
        .into()
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split<T: std::str::FromStr>(text: &str) -> Result<Vec<T>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| StoreError::Corrupt(format!("list item {s:?}")))
        })
        .collect()
}

/// An open registry.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    /// The file is made owner-only (0600) first: it holds site private keys,
    /// and SQLite gives the `-wal` and `-shm` files it creates the database
    /// file's permissions.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |cause| StoreError::Open {
            path: path.to_owned(),
            cause,
        };
        restrict_database_files(path)?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // FULL: a commit survives power loss, not just a killed process.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        // The CLI and the running controller write the same file. A deferred
        // transaction that reads first and then writes fails at once with
        // "database is locked" when the other committed in between (the
        // busy timeout cannot help it); taking the write lock at BEGIN makes
        // every writer wait its turn instead.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        schema::migrate(&mut conn).map_err(open_err)?;
        Ok(Self { conn })
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    pub fn latest_schema() -> usize {
        schema::latest()
    }

    /// Changes whenever another connection commits: how the server notices
    /// the CLI's writes.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }

    pub fn init(&mut self, settings: &MeshSettings) -> Result<()> {
        settings.check()?;
        let tx = self.conn.transaction()?;
        let exists: i64 = tx.query_row("SELECT COUNT(*) FROM settings", [], |r| r.get(0))?;
        if exists > 0 {
            return Err(StoreError::AlreadyInitialised);
        }
        tx.execute(
            "INSERT INTO settings (id, ula, ipv4, approval, controller_public_key, clients_ipv4, client_subnet_len)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                settings.ula.to_string(),
                settings.ipv4.to_string(),
                settings.approval,
                settings.controller_public_key.to_base64(),
                settings.clients_ipv4.map(|p| p.to_string()),
                settings.client_subnet_len,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn settings(&self) -> Result<MeshSettings> {
        let row = self
            .conn
            .query_row(
                "SELECT ula, ipv4, approval, controller_public_key, clients_ipv4, client_subnet_len FROM settings WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, u8>(5)?,
                    ))
                },
            )
            .optional()?
            .ok_or(StoreError::NotInitialised)?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("settings.{what}"));
        Ok(MeshSettings {
            ula: row.0.parse().map_err(|_| corrupt("ula"))?,
            ipv4: row.1.parse().map_err(|_| corrupt("ipv4"))?,
            approval: row.2,
            controller_public_key: PublicKeyBytes::from_base64(&row.3)
                .map_err(|_| corrupt("controller_public_key"))?,
            clients_ipv4: row
                .4
                .map(|t| t.parse())
                .transpose()
                .map_err(|_| corrupt("clients_ipv4"))?,
            client_subnet_len: row.5,
        })
    }

    /// Sets the public Wi-Fi client pool of an existing mesh (`pool
    /// clients`). Once a subnet is handed out the pool is fixed: changing
    /// it would renumber every public node's clients.
    pub fn set_client_pool(&mut self, pool: ipnet::Ipv4Net, subnet_len: u8) -> Result<()> {
        let mut settings = self.settings()?;
        let tx = self.conn.transaction()?;
        let used: i64 = tx.query_row("SELECT COUNT(*) FROM client_subnets", [], |r| r.get(0))?;
        if used > 0
            && (settings.clients_ipv4 != Some(pool) || settings.client_subnet_len != subnet_len)
        {
            return Err(StoreError::BadSettings(format!(
                "the client pool is {} with /{} subnets and {used} node(s) hold subnets from it; it cannot change",
                settings
                    .clients_ipv4
                    .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                settings.client_subnet_len
            )));
        }
        settings.clients_ipv4 = Some(pool);
        settings.client_subnet_len = subnet_len;
        types::check_client_pool(&settings, pool)?;
        // Buildings already approved inside the new pool would be routed
        // as public clients.
        let approved: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT prefix FROM prefixes UNION ALL SELECT prefix FROM site_prefixes",
            )?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for text in approved {
            let p: IpNet = text
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("prefix {text:?}")))?;
            let pool_net = IpNet::V4(pool);
            if pool_net.contains(&p) || p.contains(&pool_net) {
                return Err(StoreError::BadSettings(format!(
                    "client pool {pool} overlaps the approved prefix {p}"
                )));
            }
        }
        tx.execute(
            "UPDATE settings SET clients_ipv4 = ?1, client_subnet_len = ?2 WHERE id = 1",
            params![pool.to_string(), subnet_len],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Stores a new one-time token (hashed) and returns its text.
    pub fn create_token(
        &mut self,
        expires_at: i64,
        prefixes: &[IpNet],
        now: i64,
    ) -> Result<String> {
        self.create_token_with_roles(expires_at, prefixes, Roles::default(), now)
    }

    /// [`Self::create_token`] whose node also gets `roles` approved.
    pub fn create_token_with_roles(
        &mut self,
        expires_at: i64,
        prefixes: &[IpNet],
        roles: Roles,
        now: i64,
    ) -> Result<String> {
        let settings = self.settings()?;
        {
            let tx = self.conn.transaction()?;
            claims::check(&tx, &settings, prefixes, claims::Claimant::Token { now })?;
        }
        let mut raw = [0u8; 20];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        let token = format!(
            "fmj1-{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        self.conn.execute(
            "INSERT INTO tokens (hash, expires_at, prefixes, created_at, roles) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                token_hash(&token).as_slice(),
                expires_at,
                join(prefixes),
                now,
                roles::roles_text(roles),
            ],
        )?;
        Ok(token)
    }

    /// Enrols a node with a token in one transaction: checks the token, the
    /// prefixes and the wanted addresses, allocates, inserts, marks the token
    /// used. Any refusal leaves the database untouched.
    pub fn enroll(&mut self, e: &Enrollment<'_>, now: i64) -> Result<NodeRecord> {
        let settings = self.settings()?;
        let tx = self.conn.transaction()?;
        let hash = token_hash(e.token);
        let token: Option<(i64, Option<i64>, String, String)> = tx
            .query_row(
                "SELECT expires_at, used_at, prefixes, roles FROM tokens WHERE hash = ?1",
                params![hash.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (expires_at, used_at, token_prefixes, token_roles) =
            token.ok_or(StoreError::TokenInvalid)?;
        if used_at.is_some() {
            return Err(StoreError::TokenUsed);
        }
        if expires_at <= now {
            return Err(StoreError::TokenExpired);
        }
        let token_prefixes: Vec<IpNet> = split(&token_prefixes)?;
        if let Some(p) = e.prefixes.iter().find(|p| !token_prefixes.contains(p)) {
            return Err(StoreError::PrefixNotApproved(*p));
        }
        let existing: Option<(u32, String)> = tx
            .query_row(
                "SELECT id, state FROM nodes WHERE public_key = ?1",
                params![e.key.to_base64()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let id = match existing {
            Some((id, state)) if state == "pending" => id,
            Some(_) => return Err(StoreError::KeyExists(e.key)),
            None => {
                tx.execute(
                    "INSERT INTO nodes (public_key, hostname, state, endpoints, created_at, gateway, public_wifi) VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6)",
                    params![e.key.to_base64(), e.hostname, join(e.endpoints), now, e.roles.gateway, e.roles.public_wifi],
                )?;
                u32::try_from(tx.last_insert_rowid())
                    .map_err(|_| StoreError::Corrupt("node id".into()))?
            }
        };
        activate(&tx, &settings, id, e.want_addresses)?;
        roles::approve_in(&tx, id, roles::parse_roles(&token_roles)?)?;
        set_roles_in(&tx, &settings, id, e.roles)?;
        claims::check(&tx, &settings, &token_prefixes, claims::Claimant::Node(id))?;
        for prefix in &token_prefixes {
            insert_prefix(&tx, id, *prefix)?;
        }
        tx.execute(
            "UPDATE tokens SET used_at = ?1, used_by = ?2 WHERE hash = ?3",
            params![now, id, hash.as_slice()],
        )?;
        tx.commit()?;
        self.node(id)
    }

    /// Registers a node that came without a token, to wait for approval.
    pub fn add_pending(
        &mut self,
        key: PublicKeyBytes,
        hostname: &str,
        endpoints: &[SocketAddr],
        roles: Roles,
        now: i64,
    ) -> Result<NodeRecord> {
        self.conn.execute(
            "INSERT INTO nodes (public_key, hostname, state, endpoints, created_at, gateway, public_wifi) VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6)",
            params![key.to_base64(), hostname, join(endpoints), now, roles.gateway, roles.public_wifi],
        )?;
        let id = u32::try_from(self.conn.last_insert_rowid())
            .map_err(|_| StoreError::Corrupt("node id".into()))?;
        self.node(id)
    }

    /// Approves a pending node: it gets its addresses and becomes active.
    pub fn approve(&mut self, id: u32) -> Result<NodeRecord> {
        let settings = self.settings()?;
        let tx = self.conn.transaction()?;
        activate(&tx, &settings, id, &[])?;
        roles::assign_clients_if_serving(&tx, &settings, id)?;
        tx.commit()?;
        self.node(id)
    }

    /// Records the roles an active node requests in its Hello; a node whose
    /// public Wi-Fi role is requested and approved gets its client subnets
    /// now if it has none. Refused (nothing written) without a client pool.
    pub fn set_roles(&mut self, id: u32, roles: Roles) -> Result<NodeRecord> {
        let settings = self.settings()?;
        let tx = self.conn.transaction()?;
        set_roles_in(&tx, &settings, id, roles)?;
        tx.commit()?;
        self.node(id)
    }

    /// Revokes a node: its key is refused from now on, its links go, and it
    /// joins the revocation list until its last credential expires. Its
    /// addresses stay reserved so that no other node inherits stale routes.
    pub fn revoke(&mut self, id: u32) -> Result<()> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE nodes SET state = 'revoked' WHERE id = ?1 AND state != 'revoked'",
            params![id],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchNode(id));
        }
        tx.execute("DELETE FROM links WHERE a = ?1 OR b = ?1", params![id])?;
        membership::list_revoked_in(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_drained(&mut self, id: u32, drained: bool) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE nodes SET drained = ?1 WHERE id = ?2",
            params![drained, id],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchNode(id));
        }
        Ok(())
    }

    /// Approves `prefix` (e.g. a building LAN) for node `id`.
    pub fn approve_prefix(&mut self, id: u32, prefix: IpNet) -> Result<()> {
        let settings = self.settings()?;
        let tx = self.conn.transaction()?;
        roles::require_not_revoked(&tx, id)?;
        claims::check(&tx, &settings, &[prefix], claims::Claimant::Node(id))?;
        insert_prefix(&tx, id, prefix.trunc())?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_endpoints(&mut self, id: u32, endpoints: &[SocketAddr]) -> Result<()> {
        self.conn.execute(
            "UPDATE nodes SET endpoints = ?1 WHERE id = ?2",
            params![join(endpoints), id],
        )?;
        Ok(())
    }

    pub fn node(&self, id: u32) -> Result<NodeRecord> {
        self.select_nodes("WHERE id = ?1", Some(id))?
            .pop()
            .ok_or(StoreError::NoSuchNode(id))
    }

    /// All nodes, ordered by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.select_nodes("", None)
    }

    fn select_nodes(&self, filter: &str, id: Option<u32>) -> Result<Vec<NodeRecord>> {
        let settings = self.settings()?;
        let (p6, p4) = settings.pools();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id, public_key, hostname, addr6_index, addr4_index, state, drained, endpoints,
                    gateway, public_wifi, c.v4_index, c.v6_index,
                    approved_gateway, approved_public_wifi
             FROM nodes LEFT JOIN client_subnets c ON c.node_id = nodes.id {filter} ORDER BY id"
        ))?;
        let params = match id {
            Some(id) => vec![id],
            None => vec![],
        };
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, String>(7)?,
                (
                    r.get::<_, bool>(8)?,
                    r.get::<_, bool>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                    r.get::<_, Option<i64>>(11)?,
                    r.get::<_, bool>(12)?,
                    r.get::<_, bool>(13)?,
                ),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, key, hostname, i6, i4, state, drained, endpoints, roles) = row?;
            let (gateway, public_wifi, c4, c6, approved_gateway, approved_public_wifi) = roles;
            let requested_roles = Roles {
                gateway,
                public_wifi,
            };
            let approved_roles = Roles {
                gateway: approved_gateway,
                public_wifi: approved_public_wifi,
            };
            let client_prefixes = match (c4, c6) {
                (Some(c4), Some(c6)) => clients::client_prefixes(&settings, c4, c6)?,
                _ => Vec::new(),
            };
            let mut addresses = Vec::new();
            if let (Some(i6), Some(i4)) = (i6, i4) {
                addresses.push(
                    p6.host(i6)
                        .ok_or_else(|| StoreError::Corrupt(format!("node {id} addr6")))?,
                );
                addresses.push(
                    p4.host(i4)
                        .ok_or_else(|| StoreError::Corrupt(format!("node {id} addr4")))?,
                );
            }
            out.push(NodeRecord {
                id,
                public_key: PublicKeyBytes::from_base64(&key)
                    .map_err(|_| StoreError::Corrupt(format!("node {id} key")))?,
                hostname,
                addresses,
                state: NodeState::parse(&state)?,
                drained,
                endpoints: split(&endpoints)?,
                gateway: gateway && approved_gateway,
                public_wifi: public_wifi && approved_public_wifi,
                client_prefixes,
                requested_roles,
                approved_roles,
            });
        }
        Ok(out)
    }

    /// Approved prefixes as `(node id, prefix)`, ordered.
    pub fn prefixes(&self) -> Result<Vec<(u32, IpNet)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT node_id, prefix FROM prefixes ORDER BY node_id, prefix")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (id, text) = row?;
            let prefix = text
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("prefix {text:?}")))?;
            Ok((id, prefix))
        })
        .collect()
    }

    pub fn links(&self) -> Result<Vec<LinkRecord>> {
        let mut stmt = self
            .conn
            .prepare("SELECT a, b, rtt_us, loss_ppm, up, override_cost FROM links ORDER BY a, b")?;
        let rows = stmt.query_map([], |r| {
            Ok(LinkRecord {
                a: r.get(0)?,
                b: r.get(1)?,
                rtt_us: r.get(2)?,
                loss_ppm: r.get(3)?,
                up: r.get(4)?,
                override_cost: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets (or with `None` clears) the operator's cost for the link between
    /// `a` and `b`, which then replaces the cost measured from RTT and loss.
    pub fn set_link_cost(&mut self, a: u32, b: u32, cost: Option<u32>) -> Result<()> {
        let (lo, hi) = (a.min(b), a.max(b));
        let n = self.conn.execute(
            "UPDATE links SET override_cost = ?3 WHERE a = ?1 AND b = ?2",
            params![lo, hi, cost],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchLink(a, b));
        }
        Ok(())
    }

    /// Inserts or updates links (measurements, up/down) in one transaction.
    pub fn save_links(&mut self, links: &[LinkRecord], now: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        for l in links {
            tx.execute(
                "INSERT INTO links (a, b, rtt_us, loss_ppm, up, measured_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (a, b) DO UPDATE SET rtt_us = excluded.rtt_us, loss_ppm = excluded.loss_ppm,
                 up = excluded.up, measured_at = excluded.measured_at",
                params![l.a, l.b, l.rtt_us, l.loss_ppm, l.up, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every row of every registry table as text, in a stable order: tests
    /// compare dumps to prove that a refused request changed nothing. The
    /// event history is left out: it is a log, and connections coming and
    /// going add to it at any time.
    pub fn dump(&self) -> Result<String> {
        let mut out = String::new();
        for table in [
            "settings",
            "nodes",
            "tokens",
            "prefixes",
            "links",
            "operators",
            "client_subnets",
            "sites",
            "site_prefixes",
            "reserved_addr4",
        ] {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT * FROM {table} ORDER BY {}",
                if table == "reserved_addr4" {
                    "1"
                } else {
                    "1, 2"
                }
            ))?;
            let cols = stmt.column_count();
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                out.push_str(table);
                for i in 0..cols {
                    let v: rusqlite::types::Value = row.get(i)?;
                    out.push_str(&format!(" {v:?}"));
                }
                out.push('\n');
            }
        }
        Ok(out)
    }
}

fn insert_prefix(tx: &Transaction<'_>, id: u32, prefix: IpNet) -> Result<()> {
    let owner: Option<u32> = tx
        .query_row(
            "SELECT node_id FROM prefixes WHERE prefix = ?1",
            params![prefix.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    match owner {
        Some(o) if o == id => Ok(()),
        Some(o) => Err(StoreError::PrefixTaken(prefix, o)),
        None => {
            tx.execute(
                "INSERT INTO prefixes (node_id, prefix) VALUES (?1, ?2)",
                params![id, prefix.to_string()],
            )?;
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pool_tests.rs"]
mod pool_tests;

#[cfg(test)]
#[path = "roles_tests.rs"]
mod roles_tests;
