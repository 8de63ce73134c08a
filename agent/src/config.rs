//! The agent's TOML configuration (documented in `docs/agent-config.md`).
//!
//! Parsing happens in two steps, "parse, don't validate": serde reads the
//! file into raw structs of strings, then [`AgentConfig::from_toml`] turns
//! each field into its typed value or fails with a [`ConfigError`] that names
//! the field (`link[1].public_key`) and the problem. Everything after this
//! module works with typed, already-checked values.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::segment::Segment;
use ipnet::IpNet;
use serde::Deserialize;

/// The link profiles an operator can name (timers in
/// `core::liveness::Profile`); `wireguard` is for plain WireGuard peers,
/// which send no heartbeats.
pub const PROFILES: [&str; 4] = ["fast", "default", "metered", "wireguard"];
/// The name that routes use for "this node".
pub const LOCAL_HOP: &str = "local";
/// WireGuard over IPv6 underlay needs 80 bytes; 1420 is what wg-quick uses.
pub const DEFAULT_MTU: u16 = 1420;
pub const DEFAULT_TUN_NAME: &str = "fm0";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/freimesh/agent.sock";
/// WireGuard's usual port, on every IPv4 address: a minimal router
/// configuration need not name it.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:51820";
/// The same port on every address, IPv6 included, for a router that
/// discovers neighbours: they are found at IPv6 link-local addresses.
pub const DEFAULT_LISTEN_MESH: &str = "[::]:51820";
pub use controller::{ControllerConfig, MAX_CONTROLLER_ENDPOINTS, StateFileConfig};
use controller::{RawController, check_controller, check_state_file};
pub use node::{MAX_DISCOVERED_LINKS_LIMIT, MAX_MESH_INTERFACES};
use node::{check_discovery, check_respondd, node_info_config};
pub use roles::{
    DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_MISSES, DEFAULT_DNSMASQ, DEFAULT_LEASE_TIME,
    GatewayConfig, PublicWifiConfig,
};
use roles::{RawGateway, RawPublicWifi, check_gateway, check_public_wifi};

/// A configuration problem: which field, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{field}: {problem}")]
    Field { field: String, problem: String },
}

fn field_err(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Which backend carries local traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A TUN device configured over netlink (needs CAP_NET_ADMIN).
    Linux,
    /// A smoltcp stack inside the agent (no privileges).
    Userspace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    pub name: String,
    pub public_key: PublicKeyBytes,
    pub endpoint: Option<SocketAddr>,
    pub profile: String,
    pub keepalive: Option<u16>,
    pub allowed_sources: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    Local,
    Link(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    pub prefix: IpNet,
    pub via: Vec<NextHop>,
    /// The destination's routing domain (`segment = "..."`, default
    /// infrastructure); a controller-less mesh states it per route.
    pub segment: Segment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxConfig {
    pub tun_name: String,
    pub mtu: u16,
    /// Prefixes steered from the kernel into the TUN device.
    pub kernel_routes: Vec<IpNet>,
    /// TUN offloads (`IFF_VNET_HDR`: the kernel hands the agent whole TCP
    /// segments of up to 64 KiB and takes coalesced ones back). On unless
    /// `linux.offload = false`.
    pub offload: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpForwardConfig {
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpExposeConfig {
    pub port: u16,
    pub target: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserspaceConfig {
    pub mtu: u16,
    pub tcp_forwards: Vec<TcpForwardConfig>,
    pub tcp_exposes: Vec<TcpExposeConfig>,
}

/// A checked agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub name: String,
    pub private_key_file: PathBuf,
    /// Create the key file on first start if it is missing.
    pub generate_key: bool,
    pub listen: SocketAddr,
    pub addresses: Vec<IpNet>,
    pub local_prefixes: Vec<IpNet>,
    pub backend: Backend,
    pub control_socket: PathBuf,
    pub linux: LinuxConfig,
    pub userspace: UserspaceConfig,
    pub links: Vec<LinkConfig>,
    pub routes: Vec<RouteConfig>,
    /// With a controller, `[[link]]`, `[[route]]` and `node.addresses` are
    /// optional: the controller assigns them.
    pub controller: Option<ControllerConfig>,
    pub gateway: Option<GatewayConfig>,
    pub public_wifi: Option<PublicWifiConfig>,
    /// Where the agent keeps its state under a controller, and how often
    /// it may write it.
    pub state_file: StateFileConfig,
    /// Interfaces to discover neighbours on (`node.mesh_interfaces`):
    /// beacons, and links to the neighbours heard (`crate::discovery`).
    pub mesh_interfaces: Vec<String>,
    /// At most this many discovered links per mesh interface
    /// (`node.max_discovered_links_per_interface`).
    pub max_discovered_links_per_interface: usize,

    /// Location, contact and the rest the owner configured for fleet
    /// telemetry (`[node] latitude`, `longitude`, `share_location`,
    /// `contact`, `share_contact`, `autoupdater_branch`, `domain`).
    pub node_info: crate::nodeinfo::NodeInfoConfig,
    /// Answer respondd requests on the mesh interfaces (`node.respondd`,
    /// off by default; `crate::respondd`).
    pub respondd: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    #[serde(default)]
    linux: RawLinux,
    #[serde(default)]
    userspace: RawUserspace,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    route: Vec<RawRoute>,
    controller: Option<RawController>,
    gateway: Option<RawGateway>,
    public_wifi: Option<RawPublicWifi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<String>,
    private_key_file: String,
    #[serde(default)]
    generate_key: bool,
    listen: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    local_prefixes: Vec<String>,
    backend: Option<String>,
    control_socket: Option<String>,
    state_file: Option<String>,
    state_write_interval_s: Option<i64>,
    #[serde(default)]
    mesh_interfaces: Vec<String>,
    max_discovered_links_per_interface: Option<i64>,

    // What the owner tells the fleet about the node (issue 15,
    // `crate::nodeinfo`).
    latitude: Option<f64>,
    longitude: Option<f64>,
    #[serde(default)]
    share_location: bool,
    contact: Option<String>,
    #[serde(default)]
    share_contact: bool,
    autoupdater_branch: Option<String>,
    domain: Option<String>,
    #[serde(default)]
    respondd: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLinux {
    tun_name: Option<String>,
    mtu: Option<i64>,
    kernel_routes: Option<Vec<String>>,
    offload: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserspace {
    mtu: Option<i64>,
    #[serde(default)]
    tcp_forward: Vec<RawForward>,
    #[serde(default)]
    tcp_expose: Vec<RawExpose>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    listen: String,
    target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpose {
    port: i64,
    target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    name: String,
    public_key: String,
    endpoint: Option<String>,
    profile: Option<String>,
    keepalive: Option<i64>,
    #[serde(default)]
    allowed_sources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    via: Vec<String>,
    segment: Option<String>,
}

fn parse_socket(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        field_err(
            field,
            format!("{text:?} is not an IP address with a port (e.g. 192.0.2.1:51820 or [2001:db8::1]:51820)"),
        )
    })
}

fn parse_net(field: &str, text: &str) -> Result<IpNet, ConfigError> {
    text.parse().map_err(|_| {
        field_err(
            field,
            format!("{text:?} is not a prefix (e.g. 10.99.0.0/16 or fd99::/64)"),
        )
    })
}

fn parse_mtu(field: &str, value: Option<i64>) -> Result<u16, ConfigError> {
    match value {
        None => Ok(DEFAULT_MTU),
        Some(v) => u16::try_from(v).ok().filter(|v| *v >= 1280).ok_or_else(|| {
            field_err(
                field,
                format!("{v} is outside 1280..=65535 (IPv6 needs at least 1280)"),
            )
        }),
    }
}

impl AgentConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::from_toml(&text).map_err(|err| match err {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks configuration text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = basic_toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Self::check(raw)
    }

    fn check(raw: RawConfig) -> Result<Self, ConfigError> {
        let node = raw.node;
        if node.private_key_file.trim().is_empty() {
            return Err(field_err("node.private_key_file", "must name a file"));
        }
        let listen = parse_socket(
            "node.listen",
            node.listen
                .as_deref()
                .unwrap_or(if node.mesh_interfaces.is_empty() {
                    DEFAULT_LISTEN
                } else {
                    DEFAULT_LISTEN_MESH
                }),
        )?;
        let state_file = check_state_file(node.state_file.clone(), node.state_write_interval_s)?;
        let controller = raw.controller.map(check_controller).transpose()?;
        if node.addresses.is_empty() && controller.is_none() {
            return Err(field_err(
                "node.addresses",
                "a node needs at least one overlay address",
            ));
        }
        let mut addresses = Vec::new();
        for (i, text) in node.addresses.iter().enumerate() {
            let field = format!("node.addresses[{i}]");
            let net = parse_net(&field, text)?;
            if addresses.iter().any(|a: &IpNet| a.addr() == net.addr()) {
                return Err(field_err(
                    field,
                    format!("address {} is listed twice", net.addr()),
                ));
            }
            addresses.push(net);
        }
        let local_prefixes = node
            .local_prefixes
            .iter()
            .enumerate()
            .map(|(i, t)| parse_net(&format!("node.local_prefixes[{i}]"), t).map(|n| n.trunc()))
            .collect::<Result<Vec<_>, _>>()?;
        let backend = match node.backend.as_deref() {
            None | Some("linux") => Backend::Linux,
            Some("userspace") => Backend::Userspace,
            Some(other) => {
                return Err(field_err(
                    "node.backend",
                    format!("{other:?} is not a backend; use \"linux\" or \"userspace\""),
                ));
            }
        };

        let links = check_links(raw.link)?;
        let routes = check_routes(raw.route, &links)?;
        for (i, route) in routes.iter().enumerate() {
            let own = addresses
                .iter()
                .any(|a| IpNet::from(a.addr()) == route.prefix);
            if own || local_prefixes.contains(&route.prefix) {
                return Err(field_err(
                    format!("route[{i}].prefix"),
                    format!(
                        "{} is this node's own (node.addresses / node.local_prefixes)",
                        route.prefix
                    ),
                ));
            }
        }

        let tun_name = raw
            .linux
            .tun_name
            .unwrap_or_else(|| DEFAULT_TUN_NAME.to_owned());
        check_ifname("linux.tun_name", &tun_name)?;
        let kernel_routes = match raw.linux.kernel_routes {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, t)| parse_net(&format!("linux.kernel_routes[{i}]"), t).map(|n| n.trunc()))
                .collect::<Result<Vec<_>, _>>()?,
            None => default_kernel_routes(&routes, &addresses, &local_prefixes),
        };
        let linux = LinuxConfig {
            tun_name,
            mtu: parse_mtu("linux.mtu", raw.linux.mtu)?,
            kernel_routes,
            offload: raw.linux.offload.unwrap_or(true),
        };

        let mut tcp_forwards = Vec::new();
        for (i, f) in raw.userspace.tcp_forward.iter().enumerate() {
            tcp_forwards.push(TcpForwardConfig {
                listen: parse_socket(&format!("userspace.tcp_forward[{i}].listen"), &f.listen)?,
                target: parse_socket(&format!("userspace.tcp_forward[{i}].target"), &f.target)?,
            });
        }
        let mut tcp_exposes: Vec<TcpExposeConfig> = Vec::new();
        for (i, e) in raw.userspace.tcp_expose.iter().enumerate() {
            let field = format!("userspace.tcp_expose[{i}].port");
            let port = u16::try_from(e.port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| field_err(&field, format!("{} is not a port (1-65535)", e.port)))?;
            if tcp_exposes.iter().any(|x| x.port == port) {
                return Err(field_err(field, format!("port {port} is exposed twice")));
            }
            tcp_exposes.push(TcpExposeConfig {
                port,
                target: parse_socket(&format!("userspace.tcp_expose[{i}].target"), &e.target)?,
            });
        }
        let userspace = UserspaceConfig {
            mtu: parse_mtu("userspace.mtu", raw.userspace.mtu)?,
            tcp_forwards,
            tcp_exposes,
        };

        let gateway = raw.gateway.map(check_gateway).transpose()?;
        let public_wifi = raw.public_wifi.map(check_public_wifi).transpose()?;
        if backend != Backend::Linux {
            let section = match (&gateway, &public_wifi) {
                (Some(_), _) => Some("gateway"),
                (None, Some(_)) => Some("public_wifi"),
                (None, None) => None,
            };
            if let Some(section) = section {
                return Err(field_err(
                    section,
                    "needs the linux backend (NAT, policy routing and DHCP are kernel features); remove node.backend = \"userspace\"",
                ));
            }
        }
        if let Some(wifi) = &public_wifi {
            if controller.is_none() {
                return Err(field_err(
                    "public_wifi",
                    "needs a [controller] section: the client prefixes come from the controller",
                ));
            }
            if wifi.interface == linux.tun_name {
                return Err(field_err(
                    "public_wifi.interface",
                    format!(
                        "{:?} is the mesh TUN device (linux.tun_name)",
                        wifi.interface
                    ),
                ));
            }
            if gateway.as_ref().is_some_and(|g| g.uplink == wifi.interface) {
                return Err(field_err(
                    "public_wifi.interface",
                    format!("{:?} is also gateway.uplink", wifi.interface),
                ));
            }
        }
        if gateway.as_ref().is_some_and(|g| g.uplink == linux.tun_name) {
            return Err(field_err(
                "gateway.uplink",
                format!(
                    "{:?} is the mesh TUN device (linux.tun_name)",
                    linux.tun_name
                ),
            ));
        }

        let (mesh_interfaces, max_discovered_links_per_interface) = check_discovery(
            &node.mesh_interfaces,
            node.max_discovered_links_per_interface,
            listen,
            &linux.tun_name,
        )?;

        let node_info = node_info_config(&node)?;
        check_respondd(node.respondd, &mesh_interfaces, public_wifi.as_ref())?;
        let name = node.name.unwrap_or_else(|| "freimesh".to_owned());
        if controller.is_some() {
            // The controller refuses a Hello whose hostname breaks this rule
            // (`BadHostname`); say so here, before the agent retries forever.
            freimesh_proto::control::check_hostname(&name)
                .map_err(|e| field_err("node.name", format!("{e} (the controller refuses it)")))?;
        }

        Ok(Self {
            name,
            private_key_file: PathBuf::from(node.private_key_file),
            generate_key: node.generate_key,
            listen,
            addresses,
            local_prefixes,
            backend,
            control_socket: PathBuf::from(
                node.control_socket
                    .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.to_owned()),
            ),
            linux,
            userspace,
            links,
            routes,
            controller,
            gateway,
            public_wifi,
            state_file,
            mesh_interfaces,
            max_discovered_links_per_interface,

            node_info,
            respondd: node.respondd,
        })
    }

    /// The node's own addresses as host prefixes (/32, /128): what the
    /// forwarding table delivers locally.
    pub fn host_addresses(&self) -> Vec<IpNet> {
        self.addresses
            .iter()
            .map(|a| IpNet::from(a.addr()))
            .collect()
    }
}

/// The longest interface name Linux accepts (`IFNAMSIZ` − 1 bytes).
pub(crate) const MAX_IFNAME_BYTES: usize = 15;

/// Checks a network interface name before it reaches the kernel, nftables
/// (`iifname "…"`), dnsmasq (`interface=…`) or UCI. Only letters, digits,
/// `-`, `_` and `.` (what OpenWrt and the kernel's own names use): a
/// newline would start a new dnsmasq or UCI line, a quote would end an
/// nftables string, a comma would add a second interface to dnsmasq's
/// list and `*` is an nftables wildcard, so none of those may pass.
pub(crate) fn check_ifname(field: &str, name: &str) -> Result<(), ConfigError> {
    let bad_char = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    let problem = if let Some(c) = bad_char {
        let kind = if c.is_control() {
            "a control character"
        } else if c.is_whitespace() {
            "whitespace"
        } else if matches!(c, '"' | '\'' | '`') {
            "a quote"
        } else {
            "the character"
        };
        Some(format!(
            "contains {kind} {c:?} (only letters, digits, '-', '_' and '.')"
        ))
    } else if name.is_empty() {
        Some("is empty".to_owned())
    } else if name.len() > MAX_IFNAME_BYTES {
        Some(format!(
            "is {} bytes long, more than the {MAX_IFNAME_BYTES} Linux allows",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("is not a name".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(field_err(
            field,
            format!("{name:?} is not a valid interface name: it {problem}"),
        )),
    }
}

fn parse_ip(field: &str, text: &str) -> Result<IpAddr, ConfigError> {
    text.parse().map_err(|_| {
        field_err(
            field,
            format!("{text:?} is not an IP address (e.g. 192.0.2.1 or 2001:db8::1)"),
        )
    })
}

fn parse_segment(field: &str, text: &str) -> Result<Segment, ConfigError> {
    Segment::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            let known: Vec<&str> = Segment::ALL.iter().map(|s| s.as_str()).collect();
            field_err(
                field,
                format!("unknown segment {text:?}; known: {}", known.join(", ")),
            )
        })
}

fn check_links(raw: Vec<RawLink>) -> Result<Vec<LinkConfig>, ConfigError> {
    let mut links: Vec<LinkConfig> = Vec::new();
    let mut names = BTreeSet::new();
    for (i, link) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("link[{i}].{f}");
        if link.name.is_empty() || link.name == LOCAL_HOP {
            return Err(field_err(
                at("name"),
                format!("{:?} is not usable as a link name", link.name),
            ));
        }
        if !names.insert(link.name.clone()) {
            return Err(field_err(
                at("name"),
                format!("link name {:?} is used twice", link.name),
            ));
        }
        let public_key = PublicKeyBytes::from_base64(&link.public_key)
            .map_err(|e| field_err(at("public_key"), e.to_string()))?;
        if let Some(other) = links.iter().find(|l| l.public_key == public_key) {
            return Err(field_err(
                at("public_key"),
                format!("the same key as link {:?}", other.name),
            ));
        }
        let endpoint = link
            .endpoint
            .as_deref()
            .map(|e| parse_socket(&at("endpoint"), e))
            .transpose()?;
        let profile = link.profile.unwrap_or_else(|| "default".to_owned());
        if !PROFILES.contains(&profile.as_str()) {
            return Err(field_err(
                at("profile"),
                format!(
                    "unknown profile {profile:?}; known: {}",
                    PROFILES.join(", ")
                ),
            ));
        }
        let keepalive = link
            .keepalive
            .map(|k| {
                u16::try_from(k).ok().filter(|k| *k > 0).ok_or_else(|| {
                    field_err(at("keepalive"), format!("{k} is outside 1..=65535 seconds"))
                })
            })
            .transpose()?;
        let allowed_sources = link
            .allowed_sources
            .iter()
            .enumerate()
            .map(|(j, t)| parse_net(&at(&format!("allowed_sources[{j}]")), t))
            .collect::<Result<Vec<_>, _>>()?;
        links.push(LinkConfig {
            name: link.name,
            public_key,
            endpoint,
            profile,
            keepalive,
            allowed_sources,
        });
    }
    Ok(links)
}

fn check_routes(raw: Vec<RawRoute>, links: &[LinkConfig]) -> Result<Vec<RouteConfig>, ConfigError> {
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, route) in raw.into_iter().enumerate() {
        let prefix = parse_net(&format!("route[{i}].prefix"), &route.prefix)?.trunc();
        if routes.iter().any(|r| r.prefix == prefix) {
            return Err(field_err(
                format!("route[{i}].prefix"),
                format!("{prefix} has two routes"),
            ));
        }
        if route.via.is_empty() {
            return Err(field_err(
                format!("route[{i}].via"),
                "needs at least one next hop",
            ));
        }
        let mut via = Vec::new();
        for (j, hop) in route.via.iter().enumerate() {
            let field = format!("route[{i}].via[{j}]");
            let next = if hop == LOCAL_HOP {
                NextHop::Local
            } else if links.iter().any(|l| &l.name == hop) {
                NextHop::Link(hop.clone())
            } else {
                return Err(field_err(
                    field,
                    format!("{hop:?} is neither a link name nor \"local\""),
                ));
            };
            if via.contains(&next) {
                return Err(field_err(field, format!("{hop:?} is listed twice")));
            }
            // A default route delivered here leaves through the uplink,
            // which can fail: then the alternates after it carry the
            // traffic. Any other "local" is always up.
            let gateway_default = prefix.prefix_len() == 0 && j == 0;
            if route.via.len() > 1 && next == NextHop::Local && !gateway_default {
                return Err(field_err(
                    field,
                    "\"local\" is always up, so it must be the only next hop (or the first of a default route, on a gateway)",
                ));
            }
            via.push(next);
        }
        let segment = match &route.segment {
            Some(text) => parse_segment(&format!("route[{i}].segment"), text)?,
            None => Segment::Infrastructure,
        };
        routes.push(RouteConfig {
            prefix,
            via,
            segment,
        });
    }
    Ok(routes)
}

/// By default the kernel sends into the TUN every prefix the mesh routes,
/// except the node's own addresses, what lies behind it locally and what
/// it delivers itself.
fn default_kernel_routes(
    routes: &[RouteConfig],
    addresses: &[IpNet],
    local: &[IpNet],
) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = routes
        .iter()
        // A gateway's default route (`local` first) leaves through its
        // uplink, not through the TUN device.
        .filter(|r| r.via.first() != Some(&NextHop::Local))
        .map(|r| r.prefix)
        .filter(|p| !local.contains(p) && !addresses.iter().any(|a| IpNet::from(a.addr()) == *p))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[path = "config_controller.rs"]
mod controller;
#[path = "config_node.rs"]
mod node;
#[path = "config_roles.rs"]
mod roles;
#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
