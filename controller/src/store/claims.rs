//! Who may claim a prefix: the checks behind `prefix approve`, `token
//! create --prefix`, enrolment and `site add`.
//!
//! A building or site prefix is routed to exactly one owner across the
//! whole mesh, so it must lie outside the mesh's own pools (those are the
//! routers' and the public clients' addresses) and overlap no prefix that
//! belongs to another node or site: an overlap would make longest-prefix
//! match send one building's traffic to another, or to the public.

use ipnet::IpNet;
use rusqlite::{Transaction, params};

use super::{MeshSettings, Result, StoreError, split};

/// Who asks for the prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claimant<'a> {
    Node(u32),
    Site(&'a str),
    /// A join token being created: also refused if another unused token
    /// claims the prefix (two buildings enrolling for one LAN).
    Token {
        now: i64,
    },
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Refuses the first prefix of `prefixes` that `claimant` may not have.
pub(super) fn check(
    tx: &Transaction<'_>,
    settings: &MeshSettings,
    prefixes: &[IpNet],
    claimant: Claimant<'_>,
) -> Result<()> {
    let mut pools = vec![
        ("overlay pool", IpNet::V6(settings.ula)),
        ("overlay pool", IpNet::V4(settings.ipv4)),
    ];
    pools.extend(
        settings
            .clients_ipv4
            .map(|p| ("public client pool", IpNet::V4(p))),
    );
    let mut taken: Vec<(IpNet, String)> = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT node_id, prefix FROM prefixes ORDER BY node_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (node, text) = row?;
            if claimant != Claimant::Node(node) {
                taken.push((parse(&text)?, format!("node {node}")));
            }
        }
        let mut stmt = tx.prepare("SELECT site, prefix FROM site_prefixes ORDER BY site")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (site, text) = row?;
            if claimant != Claimant::Site(&site) {
                taken.push((parse(&text)?, format!("site {site:?}")));
            }
        }
    }
    if let Claimant::Token { now } = claimant {
        let mut stmt = tx.prepare(
            "SELECT prefixes FROM tokens WHERE used_at IS NULL AND expires_at > ?1 AND prefixes != ''",
        )?;
        let rows = stmt.query_map(params![now], |r| r.get::<_, String>(0))?;
        for row in rows {
            for p in split::<IpNet>(&row?)? {
                taken.push((p, "an unused join token".to_owned()));
            }
        }
    }
    for (i, p) in prefixes.iter().enumerate() {
        let p = p.trunc();
        if let Some((what, pool)) = pools.iter().find(|(_, pool)| overlaps(&p, pool)) {
            return Err(StoreError::PrefixInPool(p, what, *pool));
        }
        if let Some(q) = prefixes[..i]
            .iter()
            .map(IpNet::trunc)
            .find(|q| *q != p && overlaps(&p, q))
        {
            return Err(StoreError::PrefixOverlaps {
                prefix: p,
                other: q,
                owner: "this same request".to_owned(),
            });
        }
        if let Some((q, owner)) = taken.iter().find(|(q, _)| overlaps(&p, q)) {
            return Err(StoreError::PrefixOverlaps {
                prefix: p,
                other: *q,
                owner: owner.clone(),
            });
        }
    }
    Ok(())
}

fn parse(text: &str) -> Result<IpNet> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("prefix {text:?}")))
}
