//! Client pools: each public Wi-Fi node's IPv4 subnet and IPv6 /64.
//!
//! Like overlay addresses, a node stores *indices* (UNIQUE in
//! `client_subnets`), allocated once inside the transaction that enrols,
//! approves or re-roles it, and never handed to anyone else, even after the
//! node stops serving clients or is revoked: a reused subnet would route a
//! stale client's traffic to a stranger.
//!
//! The /64s come from the mesh's ULA. Overlay host addresses are pool
//! indices below 2⁶³ (`Pool::max_index`), so they all lie in the ULA's
//! first /64 (index 0); client /64s start at index 1 and can never overlap
//! them.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{MeshSettings, Result, StoreError};

/// The IPv4 client subnet at `index` (0-based) of the client pool.
pub fn client_v4(settings: &MeshSettings, index: i64) -> Option<Ipv4Net> {
    let pool = settings.clients_ipv4?;
    let len = settings.client_subnet_len;
    if index < 0 || index > max_v4(settings)? {
        return None;
    }
    let step = 1u64 << (32 - u32::from(len));
    let off = u64::try_from(index).ok()?.checked_mul(step)?;
    let base = u64::from(u32::from(pool.network())).checked_add(off)?;
    Ipv4Net::new(Ipv4Addr::from(u32::try_from(base).ok()?), len).ok()
}

/// The largest IPv4 subnet index.
fn max_v4(settings: &MeshSettings) -> Option<i64> {
    let pool = settings.clients_ipv4?;
    let bits = u32::from(settings.client_subnet_len).checked_sub(u32::from(pool.prefix_len()))?;
    Some((1i64 << bits) - 1)
}

/// The client /64 at `index` (1-based: index 0 holds the overlay hosts).
pub fn client_v6(settings: &MeshSettings, index: i64) -> Option<Ipv6Net> {
    if index < 1 || index > max_v6(settings)? {
        return None;
    }
    let off = u128::try_from(index).ok()? << 64;
    let base = u128::from(settings.ula.network()).checked_add(off)?;
    Ipv6Net::new(Ipv6Addr::from(base), 64).ok()
}

fn max_v6(settings: &MeshSettings) -> Option<i64> {
    let bits = 64u32.checked_sub(u32::from(settings.ula.prefix_len()))?;
    if bits == 0 {
        return None;
    }
    Some(if bits >= 63 {
        i64::MAX
    } else {
        (1i64 << bits) - 1
    })
}

/// A node's client prefixes from its stored indices: the /64, then the
/// IPv4 subnet (the order of overlay addresses).
pub fn client_prefixes(settings: &MeshSettings, v4: i64, v6: i64) -> Result<Vec<IpNet>> {
    let corrupt = || StoreError::Corrupt(format!("client subnet indices {v4}/{v6}"));
    Ok(vec![
        IpNet::V6(client_v6(settings, v6).ok_or_else(corrupt)?),
        IpNet::V4(client_v4(settings, v4).ok_or_else(corrupt)?),
    ])
}

/// Gives node `id` its client subnets unless it has them already.
pub(super) fn assign(tx: &Transaction<'_>, settings: &MeshSettings, id: u32) -> Result<()> {
    let have: Option<i64> = tx
        .query_row(
            "SELECT node_id FROM client_subnets WHERE node_id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    if have.is_some() {
        return Ok(());
    }
    if settings.clients_ipv4.is_none() {
        return Err(StoreError::NoClientPool);
    }
    let v4 = lowest_free(tx, "v4_index", 0, max_v4(settings).unwrap_or(-1))?
        .ok_or(StoreError::PoolExhausted("IPv4 client"))?;
    let v6 = lowest_free(tx, "v6_index", 1, max_v6(settings).unwrap_or(0))?
        .ok_or(StoreError::PoolExhausted("IPv6 client"))?;
    tx.execute(
        "INSERT INTO client_subnets (node_id, v4_index, v6_index) VALUES (?1, ?2, ?3)",
        params![id, v4, v6],
    )?;
    Ok(())
}

/// The lowest index `>= first` in `column` that no node holds, if `<= max`.
fn lowest_free(tx: &Transaction<'_>, column: &str, first: i64, max: i64) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT MIN(c) FROM (SELECT ?1 AS c UNION ALL SELECT {column} + 1 FROM client_subnets)
         WHERE c >= ?1 AND c NOT IN (SELECT {column} FROM client_subnets)"
    );
    let c: i64 = tx.query_row(&sql, params![first], |r| r.get(0))?;
    Ok((c <= max).then_some(c))
}

#[cfg(test)]
mod tests {
    use freimesh_proto::PublicKeyBytes;

    use super::*;

    fn settings() -> MeshSettings {
        MeshSettings {
            ula: "fd12:3456:789a::/48".parse().expect("ula"),
            ipv4: "10.99.0.0/16".parse().expect("v4"),
            approval: false,
            controller_public_key: PublicKeyBytes([9; 32]),
            clients_ipv4: Some("10.100.0.0/16".parse().expect("clients")),
            client_subnet_len: 24,
        }
    }

    #[test]
    fn subnets_tile_the_pools_and_skip_the_overlay_hosts() {
        let s = settings();
        assert_eq!(client_v4(&s, 0), "10.100.0.0/24".parse().ok());
        assert_eq!(client_v4(&s, 255), "10.100.255.0/24".parse().ok());
        assert_eq!(client_v4(&s, 256), None);
        assert_eq!(client_v6(&s, 0), None);
        assert_eq!(client_v6(&s, 1), "fd12:3456:789a:1::/64".parse().ok());
        assert_eq!(
            client_v6(&s, 65535),
            "fd12:3456:789a:ffff::/64".parse().ok()
        );
        assert_eq!(client_v6(&s, 65536), None);
    }
}
