//! Radio cells for the field labs: a cell is a Linux bridge in its own
//! namespace, a router's mesh interface a veth whose other end is a port
//! of that bridge, so every router in a cell hears every other's
//! link-local multicast, as on an 802.11s mesh or a shared LAN. Used by
//! the discovery and mesh-control labs (`testbed/tests/`).

use std::net::IpAddr;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::lab::Lab;

/// Adds namespace `cell` with a bridge `br0` that floods multicast to
/// every port (no snooping: routers do not send MLD reports for the
/// discovery group before they hear a querier).
pub fn add_cell(lab: &mut Lab, cell: &str) -> anyhow::Result<()> {
    lab.add_namespace(cell)?;
    lab.exec(
        cell,
        &[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    lab.exec(cell, &["ip", "link", "set", "br0", "up"])?;
    Ok(())
}

/// Adds a router's namespace. No duplicate address detection: link-local
/// addresses are usable the moment an interface is up, as on a router
/// that has been up.
pub fn add_router(lab: &mut Lab, router: &str) -> anyhow::Result<()> {
    lab.add_namespace(router)?;
    lab.exec(
        router,
        &[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    )?;
    Ok(())
}

/// Puts `router`'s interface `iface` into `cell` (the bridge port is
/// named `port` there) and brings both ends up.
pub fn attach(lab: &Lab, router: &str, iface: &str, cell: &str, port: &str) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["link", "add", iface, "netns", &lab.ns(router)])
        .args(["type", "veth", "peer", "name", port])
        .args(["netns", &lab.ns(cell)])
        .status()?;
    if !status.success() {
        bail!("creating {router}'s {iface} into {cell}");
    }
    lab.exec(cell, &["ip", "link", "set", port, "master", "br0"])?;
    lab.exec(cell, &["ip", "link", "set", port, "up"])?;
    lab.exec(router, &["ip", "link", "set", iface, "up"])?;
    Ok(())
}

/// The link-local address of `router`'s `iface`.
pub fn link_local(lab: &Lab, router: &str, iface: &str) -> anyhow::Result<String> {
    let out = lab.exec(
        router,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", iface, "scope", "link",
        ],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_suffix("/64").filter(|a| a.starts_with("fe80")))
        .map(str::to_owned)
        .with_context(|| format!("no link-local address on {router}'s {iface}: {text}"))
}

/// One ping from `from` to `to`, waiting `wait` seconds (fractions
/// allowed) for the reply.
pub fn ping_within(lab: &Lab, from: &str, to: IpAddr, wait: &str) -> bool {
    lab.try_exec(
        from,
        &["ping", "-n", "-q", "-c", "1", "-W", wait, &to.to_string()],
    )
    .is_ok_and(|o| o.status.success())
}
