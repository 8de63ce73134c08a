//! NAT at a gateway: mesh sources leaving through the uplink are
//! masqueraded, in an nftables table the agent owns whole
//! (`table inet freimesh_nat`), applied with the `nft` tool and deleted on
//! shutdown. Forwarding is switched on, since the gateway's kernel routes
//! between `fm0` and the uplink.
//!
//! Masqueraded are the mesh prefixes (`Welcome.mesh_prefixes`: the ULA /48,
//! the IPv4 overlay pool, the public client pool): public clients' IPv4
//! addresses and their IPv6 addresses (each client /64 lies inside the ULA
//! /48, which the internet does not route) and nodes' own overlay
//! addresses all leave with the uplink's address. Replies are de-NATed by
//! conntrack and routed back into `fm0`, where the mesh prefixes point.

use std::path::Path;

use ipnet::IpNet;

use super::GatewayError;
use crate::linux::nft;

/// The nftables family and table of the gateway's NAT.
pub const NAT_FAMILY: &str = "inet";
pub const NAT_TABLE: &str = "freimesh_nat";

/// The forwarding sysctls a gateway needs; in a network namespace they are
/// the namespace's own.
pub const FORWARDING_SYSCTLS: [&str; 2] = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv6/conf/all/forwarding",
];

/// The ruleset: masquerade `sources` out of `uplink`. Deterministic (the
/// prefixes are sorted and deduplicated) so it can be compared and tested.
pub fn nat_ruleset(uplink: &str, sources: &[IpNet]) -> String {
    let (v4, v6) = split_families(sources);
    let mut body = String::new();
    body.push_str("\tchain postrouting {\n");
    body.push_str("\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    if !v4.is_empty() {
        body.push_str(&format!(
            "\t\toifname \"{uplink}\" ip saddr {{ {} }} masquerade\n",
            v4.join(", ")
        ));
    }
    if !v6.is_empty() {
        body.push_str(&format!(
            "\t\toifname \"{uplink}\" ip6 saddr {{ {} }} masquerade\n",
            v6.join(", ")
        ));
    }
    body.push_str("\t}\n");
    nft::replace_table(NAT_FAMILY, NAT_TABLE, &body)
}

/// The prefixes of each family as nft writes them: host bits cleared,
/// sorted, without duplicates.
pub(crate) fn split_families(prefixes: &[IpNet]) -> (Vec<String>, Vec<String>) {
    let set: std::collections::BTreeSet<IpNet> = prefixes.iter().map(IpNet::trunc).collect();
    let v4 = set
        .iter()
        .filter(|p| matches!(p, IpNet::V4(_)))
        .map(ToString::to_string)
        .collect();
    let v6 = set
        .iter()
        .filter(|p| matches!(p, IpNet::V6(_)))
        .map(ToString::to_string)
        .collect();
    (v4, v6)
}

/// The NAT table while it is installed.
#[derive(Debug)]
pub struct Nat {
    uplink: String,
}

impl Nat {
    /// Switches on forwarding and installs (or replaces) the NAT table.
    pub async fn install(uplink: &str, sources: &[IpNet]) -> Result<Self, GatewayError> {
        enable_forwarding()?;
        nft::apply(
            &nat_ruleset(uplink, sources),
            &format!("the NAT table for uplink {uplink}"),
        )
        .await?;
        tracing::info!(%uplink, sources = sources.len(), "NAT installed");
        Ok(Self {
            uplink: uplink.to_owned(),
        })
    }

    /// Replaces the masqueraded prefixes (e.g. after the controller
    /// changed the mesh prefixes).
    pub async fn update(&self, sources: &[IpNet]) -> Result<(), GatewayError> {
        nft::apply(
            &nat_ruleset(&self.uplink, sources),
            &format!("the NAT table for uplink {}", self.uplink),
        )
        .await?;
        Ok(())
    }

    /// Deletes the NAT table. Forwarding stays on: other routing on the
    /// host may rely on it, and it is harmless without the NAT.
    pub async fn remove(self) -> Result<(), GatewayError> {
        nft::delete_table(NAT_FAMILY, NAT_TABLE).await?;
        tracing::info!(uplink = %self.uplink, "NAT removed");
        Ok(())
    }
}

/// Writes one sysctl through `/proc/sys`.
/// Switches on IPv4 and IPv6 forwarding: gateways and public Wi-Fi nodes
/// route between an interface of theirs and the mesh.
pub fn enable_forwarding() -> Result<(), GatewayError> {
    for path in FORWARDING_SYSCTLS {
        write_sysctl(Path::new(path), "1")?;
    }
    Ok(())
}

pub(crate) fn write_sysctl(path: &Path, value: &str) -> Result<(), GatewayError> {
    std::fs::write(path, value).map_err(|cause| GatewayError::Sysctl {
        path: path.display().to_string(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| match s.parse() {
                Ok(net) => net,
                Err(e) => panic!("bad test prefix {s}: {e}"),
            })
            .collect()
    }

    #[test]
    fn ruleset_masquerades_both_families_sorted() {
        let ruleset = nat_ruleset(
            "wan",
            &nets(&["fd99::/48", "10.100.0.0/16", "10.99.0.0/16", "10.99.3.4/16"]),
        );
        assert_eq!(
            ruleset,
            "table inet freimesh_nat {}\n\
             delete table inet freimesh_nat\n\
             table inet freimesh_nat {\n\
             \tchain postrouting {\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname \"wan\" ip saddr { 10.99.0.0/16, 10.100.0.0/16 } masquerade\n\
             \t\toifname \"wan\" ip6 saddr { fd99::/48 } masquerade\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn a_family_without_prefixes_gets_no_rule() {
        let ruleset = nat_ruleset("eth1", &nets(&["10.99.0.0/16"]));
        assert!(ruleset.contains("ip saddr { 10.99.0.0/16 } masquerade"));
        assert!(!ruleset.contains("ip6"));
    }
}
