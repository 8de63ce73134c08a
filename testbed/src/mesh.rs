//! Turns a [`Topology`] into real agent configuration files: keys, overlay
//! addresses, links with endpoints, and static routes with loop-free
//! alternates. Used by the demo and by every lab.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use freimesh_agent::identity::PrivateKey;

use crate::topology::Topology;

/// Which backend the planned agents use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Linux,
    Userspace,
}

/// One planned node: where its files live and how to reach it.
#[derive(Debug, Clone)]
pub struct PlannedNode {
    pub index: usize,
    pub name: String,
    pub public_key: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl PlannedNode {
    pub fn overlay_v4(&self) -> Ipv4Addr {
        overlay_v4(self.index)
    }
    pub fn overlay_v6(&self) -> Ipv6Addr {
        overlay_v6(self.index)
    }
}

/// `10.99.0.<index+1>`.
pub fn overlay_v4(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, u8::try_from(index + 1).unwrap_or(u8::MAX))
}

/// `fd99::<index+1>`.
pub fn overlay_v6(index: usize) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd99,
        0,
        0,
        0,
        0,
        0,
        0,
        u16::try_from(index + 1).unwrap_or(u16::MAX),
    )
}

/// How the plan places nodes on the underlay.
pub trait Underlay {
    /// The address node `node` listens on.
    fn listen(&self, node: usize) -> SocketAddr;
    /// The address `from` sends to when it talks to `to`.
    fn endpoint(&self, from: usize, to: usize) -> SocketAddr;
}

/// Writes keys and configs for every node of `topology` into `dir`.
/// `extra(node)` is appended verbatim to that node's config (forwards,
/// exposes, a different TUN name…).
pub fn write_configs(
    dir: &Path,
    topology: &Topology,
    backend: Backend,
    underlay: &dyn Underlay,
    extra: &dyn Fn(usize) -> String,
) -> anyhow::Result<Vec<PlannedNode>> {
    write_configs_with_profiles(dir, topology, backend, underlay, &|_| None, extra)
}

/// Like [`write_configs`], with a link profile per link: `profile(k)` for
/// link `k` of `topology.links` (`None` leaves the agent's default).
pub fn write_configs_with_profiles(
    dir: &Path,
    topology: &Topology,
    backend: Backend,
    underlay: &dyn Underlay,
    profile: &dyn Fn(usize) -> Option<String>,
    extra: &dyn Fn(usize) -> String,
) -> anyhow::Result<Vec<PlannedNode>> {
    write_node_configs(dir, topology, backend, underlay, profile, extra, None)
}

/// How agents under a controller are configured: they enrol with a token,
/// take their routes from the controller, and list their topology
/// neighbours only as candidates.
pub struct ControllerPlan<'a> {
    /// Where node `i` reaches the controller.
    pub endpoint: &'a dyn Fn(usize) -> SocketAddr,
    pub public_key: String,
    /// One join token per node.
    pub tokens: Vec<String>,
    /// The overlay index a node asks for (`Some(i)`: `overlay_v4(i)` and
    /// `overlay_v6(i)`), or `None` to take what the controller assigns.
    pub fixed_address: &'a dyn Fn(usize) -> Option<usize>,
}

impl std::fmt::Debug for ControllerPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerPlan")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// Like [`write_configs`], for agents under a controller.
pub fn write_controlled_configs(
    dir: &Path,
    topology: &Topology,
    backend: Backend,
    underlay: &dyn Underlay,
    plan: &ControllerPlan<'_>,
    extra: &dyn Fn(usize) -> String,
) -> anyhow::Result<Vec<PlannedNode>> {
    write_node_configs(
        dir,
        topology,
        backend,
        underlay,
        &|_| None,
        extra,
        Some(plan),
    )
}

fn write_node_configs(
    dir: &Path,
    topology: &Topology,
    backend: Backend,
    underlay: &dyn Underlay,
    profile: &dyn Fn(usize) -> Option<String>,
    extra: &dyn Fn(usize) -> String,
    controller: Option<&ControllerPlan<'_>>,
) -> anyhow::Result<Vec<PlannedNode>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys: Vec<PrivateKey> = topology
        .names
        .iter()
        .map(|_| PrivateKey::generate())
        .collect();
    let mut nodes = Vec::new();
    for (index, name) in topology.names.iter().enumerate() {
        let key_file = dir.join(format!("{name}.key"));
        if key_file.exists() {
            std::fs::remove_file(&key_file)
                .with_context(|| format!("replacing {}", key_file.display()))?;
        }
        keys[index].write_new(&key_file)?;
        let socket = dir.join(format!("{name}.sock"));
        let mut toml = String::new();
        let _ = writeln!(toml, "[node]");
        let _ = writeln!(toml, "name = \"{name}\"");
        let _ = writeln!(toml, "private_key_file = \"{}\"", key_file.display());
        let _ = writeln!(toml, "listen = \"{}\"", underlay.listen(index));
        let address_index = match controller {
            None => Some(index),
            Some(plan) => (plan.fixed_address)(index),
        };
        if let Some(at) = address_index {
            let _ = writeln!(
                toml,
                "addresses = [\"{}/32\", \"{}/128\"]",
                overlay_v4(at),
                overlay_v6(at)
            );
        }
        let _ = writeln!(
            toml,
            "backend = \"{}\"",
            if backend == Backend::Linux {
                "linux"
            } else {
                "userspace"
            }
        );
        let _ = writeln!(toml, "control_socket = \"{}\"", socket.display());
        // Each node its own state file inside the lab's directory (the
        // default, /var/lib/freimesh/state, is one per machine).
        let _ = writeln!(
            toml,
            "state_file = \"{}\"",
            dir.join(format!("{name}.state")).display()
        );
        for peer in topology.neighbours(index) {
            let _ = writeln!(toml, "\n[[link]]");
            let _ = writeln!(toml, "name = \"{}\"", topology.names[peer]);
            let _ = writeln!(toml, "public_key = \"{}\"", keys[peer].public());
            let _ = writeln!(toml, "endpoint = \"{}\"", underlay.endpoint(index, peer));
            let link = topology
                .links
                .iter()
                .position(|&(a, b)| (a, b) == (index, peer) || (a, b) == (peer, index));
            if let Some(name) = link.and_then(profile) {
                let _ = writeln!(toml, "profile = \"{name}\"");
            }
        }
        if let Some(plan) = controller {
            let token = plan
                .tokens
                .get(index)
                .map(String::as_str)
                .unwrap_or_default();
            let _ = writeln!(
                toml,
                "\n[controller]\nendpoint = \"{}\"\npublic_key = \"{}\"\njoin_token = \"{token}\"",
                (plan.endpoint)(index),
                plan.public_key
            );
        }
        let static_routes = if controller.is_none() {
            topology.routes_from(index)
        } else {
            Default::default()
        };
        for (dst, hops) in static_routes {
            let via: Vec<String> = hops
                .iter()
                .map(|h| format!("\"{}\"", topology.names[*h]))
                .collect();
            for prefix in [
                format!("{}/32", overlay_v4(dst)),
                format!("{}/128", overlay_v6(dst)),
            ] {
                let _ = writeln!(
                    toml,
                    "\n[[route]]\nprefix = \"{prefix}\"\nvia = [{}]",
                    via.join(", ")
                );
            }
        }
        toml.push('\n');
        toml.push_str(&extra(index));
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
        nodes.push(PlannedNode {
            index,
            name: name.clone(),
            public_key: keys[index].public().to_base64(),
            config,
            socket,
            log: dir.join(format!("{name}.log")),
        });
    }
    Ok(nodes)
}

/// Every node on 127.0.0.1, one UDP port each.
#[derive(Debug, Clone)]
pub struct Loopback {
    pub ports: Vec<u16>,
}

impl Loopback {
    /// Picks `count` UDP ports that are free right now.
    pub fn free_ports(count: usize) -> anyhow::Result<Self> {
        let sockets = (0..count)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .context("finding free UDP ports on 127.0.0.1")?;
        let ports = sockets
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ports })
    }
}

impl Underlay for Loopback {
    fn listen(&self, node: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[node]))
    }
    fn endpoint(&self, _from: usize, to: usize) -> SocketAddr {
        self.listen(to)
    }
}
