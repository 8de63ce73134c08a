//! The `[node]` keys of newer features: the mesh interfaces discovery
//! beacons on (issue 13) and what the owner tells the fleet about the
//! router and whether it answers respondd (issue 15). Split from `config.rs` to keep it readable; the
//! parsing conventions are the same ("parse, don't validate").

use std::net::SocketAddr;

use super::{ConfigError, RawNode, check_ifname, field_err};

/// The most mesh interfaces one agent discovers on.
pub const MAX_MESH_INTERFACES: usize = 16;
/// The most discovered links per interface an operator may allow.
pub const MAX_DISCOVERED_LINKS_LIMIT: i64 = 64;

/// Checks `node.mesh_interfaces` and `node.max_discovered_links_per_interface`.
/// Discovered neighbours are reached at IPv6 link-local addresses, which an
/// IPv4 underlay socket cannot send to: discovery needs `listen` on `[::]`
/// (dual-stack on Linux) or an IPv6 address.
pub(super) fn check_discovery(
    names: &[String],
    max_links: Option<i64>,
    listen: SocketAddr,
    tun_name: &str,
) -> Result<(Vec<String>, usize), ConfigError> {
    if names.len() > MAX_MESH_INTERFACES {
        return Err(field_err(
            "node.mesh_interfaces",
            format!("{} interfaces; at most {MAX_MESH_INTERFACES}", names.len()),
        ));
    }
    let mut interfaces: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let field = format!("node.mesh_interfaces[{i}]");
        check_ifname(&field, name)?;
        if name == tun_name {
            return Err(field_err(
                field,
                format!("{name:?} is the mesh TUN device (linux.tun_name)"),
            ));
        }
        if interfaces.contains(name) {
            return Err(field_err(field, format!("{name:?} is listed twice")));
        }
        interfaces.push(name.clone());
    }
    if !interfaces.is_empty() && listen.is_ipv4() {
        return Err(field_err(
            "node.listen",
            format!(
                "{listen} is IPv4; node.mesh_interfaces needs \"[::]:{}\" (neighbours are found at IPv6 link-local addresses)",
                listen.port()
            ),
        ));
    }
    let max = match max_links {
        None => crate::discovery::DEFAULT_MAX_DISCOVERED_LINKS,
        Some(v) => (1..=MAX_DISCOVERED_LINKS_LIMIT)
            .contains(&v)
            .then(|| usize::try_from(v).ok())
            .flatten()
            .ok_or_else(|| {
                field_err(
                    "node.max_discovered_links_per_interface",
                    format!("{v} is outside 1..={MAX_DISCOVERED_LINKS_LIMIT}"),
                )
            })?,
    };
    Ok((interfaces, max))
}

/// The `[node]` keys for fleet telemetry: a location needs both
/// coordinates in range; texts are bounded like everything in the report.
pub(super) fn node_info_config(
    node: &RawNode,
) -> Result<crate::nodeinfo::NodeInfoConfig, ConfigError> {
    use freimesh_proto::telemetry::{Location, MAX_TEXT, bounded_text};
    let location = match (node.latitude, node.longitude) {
        (None, None) => None,
        (Some(lat), Some(lon)) => Some(Location::from_degrees(lat, lon).ok_or_else(|| {
            field_err(
                "node.latitude",
                "latitude must lie within ±90 and longitude within ±180 degrees",
            )
        })?),
        _ => {
            return Err(field_err(
                "node.latitude",
                "latitude and longitude go together: set both or neither",
            ));
        }
    };
    let text = |field: &str, v: &Option<String>| -> Result<Option<String>, ConfigError> {
        match v {
            Some(v) if v.len() > MAX_TEXT => Err(field_err(
                format!("node.{field}"),
                format!("at most {MAX_TEXT} bytes"),
            )),
            Some(v) => Ok(bounded_text(v, MAX_TEXT)),
            None => Ok(None),
        }
    };
    Ok(crate::nodeinfo::NodeInfoConfig {
        location,
        share_location: node.share_location,
        contact: text("contact", &node.contact)?,
        share_contact: node.share_contact,
        autoupdater_branch: text("autoupdater_branch", &node.autoupdater_branch)?,
        domain: text("domain", &node.domain)?,
    })
}

/// `node.respondd`: answers go out on the mesh interfaces, so there must be
/// one, and never on the public Wi-Fi interface: what respondd tells is
/// for the community's monitoring, not for every client in range.
pub(super) fn check_respondd(
    enabled: bool,
    mesh_interfaces: &[String],
    public_wifi: Option<&super::PublicWifiConfig>,
) -> Result<(), ConfigError> {
    if !enabled {
        return Ok(());
    }
    if mesh_interfaces.is_empty() {
        return Err(field_err(
            "node.respondd",
            "answers on node.mesh_interfaces: list at least one",
        ));
    }
    if let Some(wifi) = public_wifi
        && let Some(i) = mesh_interfaces.iter().position(|n| *n == wifi.interface)
    {
        return Err(field_err(
            format!("node.mesh_interfaces[{i}]"),
            format!(
                "{:?} is the public Wi-Fi interface (public_wifi.interface): respondd never answers there",
                wifi.interface
            ),
        ));
    }
    Ok(())
}
