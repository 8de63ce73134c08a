//! Schema migrations, applied in order and counted in SQLite's
//! `user_version`. A migration is never edited once released: append a new
//! one instead.

use rusqlite::Connection;

/// Each entry takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the registry.
    "CREATE TABLE settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        ula TEXT NOT NULL,
        ipv4 TEXT NOT NULL,
        approval INTEGER NOT NULL,
        controller_public_key TEXT NOT NULL
    );
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        public_key TEXT NOT NULL UNIQUE,
        hostname TEXT NOT NULL,
        addr6_index INTEGER UNIQUE,
        addr4_index INTEGER UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked')),
        drained INTEGER NOT NULL DEFAULT 0,
        endpoints TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        CHECK (state = 'pending' OR (addr6_index IS NOT NULL AND addr4_index IS NOT NULL))
    );
    CREATE TABLE tokens (
        hash BLOB PRIMARY KEY,
        expires_at INTEGER NOT NULL,
        prefixes TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        used_at INTEGER,
        used_by INTEGER REFERENCES nodes(id)
    );
    CREATE TABLE prefixes (
        node_id INTEGER NOT NULL REFERENCES nodes(id),
        prefix TEXT NOT NULL UNIQUE,
        PRIMARY KEY (node_id, prefix)
    );
    CREATE TABLE links (
        a INTEGER NOT NULL REFERENCES nodes(id),
        b INTEGER NOT NULL REFERENCES nodes(id),
        rtt_us INTEGER,
        loss_ppm INTEGER,
        up INTEGER NOT NULL DEFAULT 1,
        override_cost INTEGER,
        measured_at INTEGER,
        PRIMARY KEY (a, b),
        CHECK (a < b)
    );",
    // 2: the admin API: its event history and the operators' tokens.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        node INTEGER,
        peer INTEGER,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_by_node ON events (node, seq);
    CREATE INDEX events_by_peer ON events (peer, seq);
    CREATE INDEX events_by_kind ON events (kind, seq);
    CREATE TABLE operators (
        name TEXT PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );",
    // 3: gateways, public Wi-Fi client pools and standard WireGuard sites.
    "ALTER TABLE settings ADD COLUMN clients_ipv4 TEXT;
    ALTER TABLE settings ADD COLUMN client_subnet_len INTEGER NOT NULL DEFAULT 24;
    ALTER TABLE nodes ADD COLUMN gateway INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN public_wifi INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE client_subnets (
        node_id INTEGER PRIMARY KEY REFERENCES nodes(id),
        v4_index INTEGER NOT NULL UNIQUE,
        v6_index INTEGER NOT NULL UNIQUE
    );
    CREATE TABLE sites (
        name TEXT PRIMARY KEY,
        via INTEGER NOT NULL REFERENCES nodes(id),
        public_key TEXT NOT NULL UNIQUE,
        private_key TEXT,
        addr4_index INTEGER NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE site_prefixes (
        site TEXT NOT NULL REFERENCES sites(name) ON DELETE CASCADE,
        prefix TEXT NOT NULL UNIQUE,
        PRIMARY KEY (site, prefix)
    );
    CREATE TABLE reserved_addr4 (addr4_index INTEGER PRIMARY KEY);",
    // 4 (slice ctl-enrol-events): who acted, the audit log, operator scopes.
    // `audit` holds a copy of every audit event (`EventKind::is_audit`) under
    // the event's own seq and is never pruned; tokens from before this
    // migration keep working as `full`, without expiry.
    "ALTER TABLE events ADD COLUMN operator TEXT;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        node INTEGER,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        operator TEXT
    );
    ALTER TABLE operators ADD COLUMN scope TEXT NOT NULL DEFAULT 'full'
        CHECK (scope IN ('read', 'full'));
    ALTER TABLE operators ADD COLUMN expires_at INTEGER;",
    // 5 (slice links-roles): roles need the operator. `gateway` and `public_wifi`
    // now hold what the node's Hello requests; the approvals are separate.
    // Roles in effect before this migration were approved implicitly, so
    // an upgrade takes no gateway away (`docs/decisions.md`).
    "ALTER TABLE nodes ADD COLUMN approved_gateway INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN approved_public_wifi INTEGER NOT NULL DEFAULT 0;
    UPDATE nodes SET approved_gateway = gateway, approved_public_wifi = public_wifi;
    ALTER TABLE tokens ADD COLUMN roles TEXT NOT NULL DEFAULT '';",
    // 6 (issue 13, credentials): the controller's Ed25519 signing key
    // (created at the first start that needs it, `membership.rs`), each
    // node's last credential and the latest expiry it was ever given, and
    // the revocation list with a serial that only grows.
    "CREATE TABLE signing_key (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        secret BLOB NOT NULL CHECK (length(secret) = 32),
        created_at INTEGER NOT NULL
    );
    ALTER TABLE nodes ADD COLUMN credential_expires INTEGER;
    ALTER TABLE nodes ADD COLUMN credential BLOB;
    CREATE TABLE revocations (
        node_key TEXT PRIMARY KEY,
        until_unix_s INTEGER NOT NULL
    );
    CREATE TABLE revocation_serial (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        serial INTEGER NOT NULL
    );
    INSERT INTO revocation_serial (id, serial) VALUES (1, 0);",
    // 7 (issue 15, fleet telemetry): each node's newest node information
    // and statistics (JSON of the protocol's types), when they came, and
    // its boot time by the controller's clock. Enrolment time is
    // `nodes.created_at`; last seen comes from the events.
    "CREATE TABLE node_reports (
        node_id INTEGER PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
        info TEXT,
        info_at_ms INTEGER,
        stats TEXT,
        stats_at_ms INTEGER,
        boot_time_ms INTEGER
    );",
];

/// Brings the database to the newest schema, one transaction per step.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_up_to(conn, MIGRATIONS.len())
}

/// Applies the migrations from the database's `user_version` up to schema
/// `version`, one transaction per step.
fn migrate_up_to(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let start = usize::try_from(current).unwrap_or(usize::MAX);
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version).skip(start) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema version this build writes.
pub fn latest() -> usize {
    MIGRATIONS.len()
}

/// Brings the database to schema `version` and no further: how tests build
/// a database as an older release left it.
#[cfg(test)]
pub(super) fn migrate_to(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    migrate_up_to(conn, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_tokens_from_before_scopes_keep_working_as_full_without_expiry() {
        let mut conn = Connection::open_in_memory().expect("open");
        for (i, sql) in MIGRATIONS.iter().take(3).enumerate() {
            conn.execute_batch(sql).expect("old migration");
            conn.pragma_update(None, "user_version", i64::try_from(i + 1).expect("small"))
                .expect("version");
        }
        conn.execute(
            "INSERT INTO operators (name, hash, created_at) VALUES ('old', x'00', 1)",
            [],
        )
        .expect("old operator");
        migrate(&mut conn).expect("migrate");
        let (scope, expires): (String, Option<i64>) = conn
            .query_row(
                "SELECT scope, expires_at FROM operators WHERE name = 'old'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row");
        assert_eq!((scope.as_str(), expires), ("full", None));
        let bad = conn.execute(
            "INSERT INTO operators (name, hash, created_at, scope) VALUES ('x', x'01', 1, 'root')",
            [],
        );
        assert!(bad.is_err(), "an unknown scope is refused");
    }
}
