//! Silent failures in a running lab: nftables netdev ingress chains with
//! policy drop, one per interface, in the node's own namespace. Frames are
//! dropped before ARP and IP see them, the carrier stays up, nobody is
//! told. (Carrier loss is a plain `ip link set down`, in the runner.)

use std::path::Path;

use anyhow::Context as _;

use super::files::LabTopology;
use crate::lab::Lab;

/// The nftables table the lab adds in a node's namespace for cuts/kills.
const NFT_TABLE: &str = "freimesh_lab";

/// The node's interfaces (`to-<peer>`).
pub fn node_interfaces(topo: &LabTopology, node: usize) -> Vec<String> {
    topo.topology
        .neighbours(node)
        .into_iter()
        .map(|m| format!("to-{}", topo.name(m)))
        .collect()
}

fn chain(kind: &str, ifname: &str) -> String {
    format!("{kind}_{}", ifname.replace('-', "_"))
}

/// Drops everything arriving on `ifs` in `node`'s namespace (netdev
/// ingress, before ARP and IP: the link stays up and says nothing).
pub fn nft_drop(lab: &Lab, dir: &Path, node: &str, ifs: &[&str], kind: &str) -> anyhow::Result<()> {
    let mut script = format!("add table netdev {NFT_TABLE}\n");
    for ifname in ifs {
        script.push_str(&format!(
            "add chain netdev {NFT_TABLE} {} {{ type filter hook ingress device \"{ifname}\" priority -500; policy drop; }}\n",
            chain(kind, ifname)
        ));
    }
    nft(lab, dir, node, &script)
}

/// Removes the drops `nft_drop` added for `ifs` and `kind`.
pub fn nft_undrop(
    lab: &Lab,
    dir: &Path,
    node: &str,
    ifs: &[&str],
    kind: &str,
) -> anyhow::Result<()> {
    let script: String = ifs
        .iter()
        .map(|ifname| format!("delete chain netdev {NFT_TABLE} {}\n", chain(kind, ifname)))
        .collect();
    nft(lab, dir, node, &script)
}

fn nft(lab: &Lab, dir: &Path, node: &str, script: &str) -> anyhow::Result<()> {
    let path = dir.join(format!("{node}.nft"));
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    lab.exec(node, &["nft", "-f", &path.to_string_lossy()])
        .map(drop)
}
