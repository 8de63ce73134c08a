//! Address allocation inside an enrolment or approval transaction: the
//! lowest free index per pool, or the wanted address if it is in the pool
//! and free. The UNIQUE constraints on `addr6_index` / `addr4_index` back
//! every choice made here. Sites take /32s from the same IPv4 pool
//! (`sites.addr4_index`, UNIQUE too) and a removed site's index stays held
//! in `reserved_addr4`, so the IPv4 checks look at all three.

use std::net::IpAddr;

use rusqlite::{OptionalExtension, Transaction, params};

use super::{MeshSettings, Pool, Result, StoreError};

/// Gives pending node `id` its addresses (the wanted ones if free and in the
/// pools, else the lowest free) and makes it active.
pub(super) fn activate(
    tx: &Transaction<'_>,
    settings: &MeshSettings,
    id: u32,
    want: &[IpAddr],
) -> Result<()> {
    let state: Option<String> = tx
        .query_row("SELECT state FROM nodes WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
        .optional()?;
    match state.as_deref() {
        None => return Err(StoreError::NoSuchNode(id)),
        Some("pending") => {}
        Some("active") => return Err(StoreError::WrongState(id, "already active")),
        Some(_) => return Err(StoreError::WrongState(id, "revoked")),
    }
    let (p6, p4) = settings.pools();
    let mut i6 = None;
    let mut i4 = None;
    for addr in want {
        let (pool, column, slot) = match addr {
            IpAddr::V6(_) => (p6, "addr6_index", &mut i6),
            IpAddr::V4(_) => (p4, "addr4_index", &mut i4),
        };
        let index = pool.index(*addr).ok_or(StoreError::OutOfPool(*addr))?;
        let taken: i64 = tx.query_row(
            &format!("SELECT COUNT(*) FROM ({}) WHERE i = ?1", held(column)),
            params![index],
            |r| r.get(0),
        )?;
        if taken > 0 || slot.is_some() {
            return Err(StoreError::AddressTaken(*addr));
        }
        *slot = Some(index);
    }
    let i6 = match i6 {
        Some(i) => i,
        None => lowest_free(tx, "addr6_index", &p6).ok_or(StoreError::PoolExhausted("IPv6"))??,
    };
    let i4 = match i4 {
        Some(i) => i,
        None => lowest_free(tx, "addr4_index", &p4).ok_or(StoreError::PoolExhausted("IPv4"))??,
    };
    tx.execute(
        "UPDATE nodes SET addr6_index = ?1, addr4_index = ?2, state = 'active' WHERE id = ?3",
        params![i6, i4, id],
    )?;
    Ok(())
}

/// The indices held in the pool of `column`, as SQL yielding rows `i`.
fn held(column: &str) -> String {
    let nodes = format!("SELECT {column} AS i FROM nodes WHERE {column} IS NOT NULL");
    if column == "addr4_index" {
        format!(
            "{nodes} UNION ALL SELECT addr4_index FROM sites UNION ALL SELECT addr4_index FROM reserved_addr4"
        )
    } else {
        nodes
    }
}

/// The lowest free IPv4 index (for a site's /32).
pub(super) fn lowest_free_v4(tx: &Transaction<'_>, pool: &Pool) -> Result<i64> {
    lowest_free(tx, "addr4_index", pool).ok_or(StoreError::PoolExhausted("IPv4"))?
}

/// The lowest index in `pool` that nobody holds, or `None` if it is full.
fn lowest_free(tx: &Transaction<'_>, column: &str, pool: &Pool) -> Option<Result<i64>> {
    let held = held(column);
    let sql = format!(
        "SELECT MIN(c) FROM (SELECT 1 AS c UNION ALL SELECT i + 1 FROM ({held}))
         WHERE c NOT IN (SELECT i FROM ({held}))"
    );
    match tx.query_row(&sql, [], |r| r.get::<_, i64>(0)) {
        Ok(c) if c <= pool.max_index() => Some(Ok(c)),
        Ok(_) => None,
        Err(e) => Some(Err(e.into())),
    }
}
