//! The city lab of issue 7: public Wi-Fi, two gateways, a building and a
//! standard WireGuard site, all in network namespaces, under a controller.
//!
//! ```text
//!                      inet (198.51.100.10, 2001:db8:100::10)
//!                     /uplink 192.0.2.0/30    \uplink 192.0.2.4/30
//!  client ~ ap ─── t1 ─── gw1 ──────────────── gw2 ─── b2 (wireguard-go site,
//!   (DHCP)       │   └──────────────────────── ┘          LAN 10.20.2.0/24)
//!               b1 ─── lan1 (10.20.1.10, building LAN 10.20.1.0/24)
//! ```
//!
//! Mesh nodes (one agent each): `ap` (public Wi-Fi on its `wifi` veth to
//! the `client` namespace), the transit node `t1`, the gateways `gw1` and
//! `gw2` (each an `uplink` veth to `inet`, masquerading client traffic),
//! and the building `b1` (its approved LAN on the `lan` veth to `lan1`).
//! Operator link costs make `gw1` the primary gateway of `t1`: the path a
//! client's traffic takes is ap → t1 → gw1 → inet, two mesh hops and a
//! gateway. `b2` is not a mesh node: it joins through `gw2` as a standard
//! WireGuard peer (see [`site`]).
//!
//! ```text
//! mod.rs    CityLab: namespaces, uplinks, DHCP client, diagnostics
//! bench.rs  `freimesh-testbed gateway-bench`
//! flow.rs   the 1 kHz probe flow and the gateway failover scenario
//! site.rs   `site add`/`site export`, the wg-quick file, wireguard-go
//! ```

pub mod bench;
pub mod flow;
pub mod site;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use ipnet::{IpNet, Ipv4Net};

use crate::failover::inject::{nft_drop, nft_undrop};
use crate::netns_mesh::{ControlledOptions, NetnsMesh};
use crate::topology::Topology;
use crate::traffic::{retry, status};

/// Node indices of the mesh.
pub const AP: usize = 0;
pub const T1: usize = 1;
pub const GW1: usize = 2;
pub const GW2: usize = 3;
pub const B1: usize = 4;
pub const NAMES: [&str; 5] = ["ap", "t1", "gw1", "gw2", "b1"];

/// The "internet" host (documentation addresses, only inside `inet`).
pub const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const INTERNET_HOST_V6: &str = "2001:db8:100::10";
/// The public client pool `freimesh-controller init --clients-ipv4` gets.
pub const CLIENTS_IPV4: &str = "10.100.0.0/16";
/// The building's approved LAN and its host.
pub const LAN1: &str = "10.20.1.0/24";
pub const LAN1_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 1);
pub const LAN1_HOST: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 10);
/// The standard WireGuard site's LAN and the address its box answers on.
pub const SITE_LAN: &str = "10.20.2.0/24";
pub const SITE_HOST: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 1);
/// The client's interface in its namespace, and the public Wi-Fi
/// interface on `ap`.
pub const CLIENT_IF: &str = "eth0";
pub const WIFI_IF: &str = "wifi";
/// A gateway's uplink interface.
pub const UPLINK_IF: &str = "uplink";
/// How long a leased client waits for an answer from the internet host
/// after the mesh starts (enrolment, links, routes, dnsmasq).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Operator cost of a clean hop, and of the hop `t1`–`gw2` that keeps
/// `gw2` the alternate rather than a tie.
const HOP_COST: u32 = 1000;
const BACKUP_COST: u32 = 3000;

/// The udhcpc script: puts the leased address and default route on the
/// interface, as a client's network manager would.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	for r in $router; do
		ip route replace default via "$r" dev "$interface"
		break
	done
	;;
esac
exit 0
"#;

/// The uplink /30 of gateway `n` (0 or 1): the gateway's address and the
/// internet side's.
fn uplink_addresses(n: u8) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::new(192, 0, 2, 4 * n + 1),
        Ipv4Addr::new(192, 0, 2, 4 * n + 2),
    )
}

/// a ~ ap — t1 — {gw1, gw2}, gw1 — gw2, t1 — b1.
pub fn topology() -> Topology {
    Topology {
        names: NAMES.iter().map(|n| (*n).to_owned()).collect(),
        links: vec![(AP, T1), (T1, GW1), (T1, GW2), (GW1, GW2), (T1, B1)],
    }
}

/// The running city lab.
#[derive(Debug)]
pub struct CityLab {
    pub mesh: NetnsMesh,
}

impl CityLab {
    /// Builds everything, starts the controller and the agents, and sets
    /// the operator's link costs. Does not wait for the client: see
    /// [`CityLab::lease`].
    pub fn start(tag: &str) -> anyhow::Result<Self> {
        let mut options = ControlledOptions {
            init_args: vec!["--clients-ipv4".into(), CLIENTS_IPV4.into()],
            ..ControlledOptions::default()
        };
        options.token_prefixes.insert(B1, vec![LAN1.into()]);
        for gw in [GW1, GW2] {
            options.extra.insert(
                gw,
                format!("[gateway]\nuplink = \"{UPLINK_IF}\"\ncheck = [\"{INTERNET_HOST}\"]\n"),
            );
        }
        options
            .extra
            .insert(AP, format!("[public_wifi]\ninterface = \"{WIFI_IF}\"\n"));
        let mut mesh = NetnsMesh::prepare(tag, topology(), Some(options))?;
        // The building announces its LAN (`node.local_prefixes`); the
        // token approved it.
        let config = mesh.config_path(B1).to_owned();
        let text = std::fs::read_to_string(&config)?.replacen(
            "[node]\n",
            &format!("[node]\nlocal_prefixes = [\"{LAN1}\"]\n"),
            1,
        );
        std::fs::write(&config, text)?;
        let lab = &mut mesh.lab;
        lab.add_namespace("inet")?;
        lab.exec(
            "inet",
            &[
                "ip",
                "addr",
                "add",
                &format!("{INTERNET_HOST}/32"),
                "dev",
                "lo",
            ],
        )?;
        lab.exec(
            "inet",
            &[
                "ip",
                "addr",
                "add",
                &format!("{INTERNET_HOST_V6}/128"),
                "dev",
                "lo",
            ],
        )?;
        for (n, gw) in [(0u8, GW1), (1, GW2)] {
            let name = NAMES[gw];
            let (ours, far) = uplink_addresses(n);
            lab.veth(
                name,
                UPLINK_IF,
                &format!("{ours}/30"),
                "inet",
                &format!("up-{name}"),
                &format!("{far}/30"),
            )?;
            // The ISP's default route, as the operator (or DHCP on the
            // WAN port) sets it; the gateway forwards client traffic.
            lab.exec(
                name,
                &["ip", "route", "add", "default", "via", &far.to_string()],
            )?;
        }
        lab.add_namespace("client")?;
        lab.exec(
            "ap",
            &[
                "ip",
                "link",
                "add",
                WIFI_IF,
                "type",
                "veth",
                "peer",
                "name",
                CLIENT_IF,
                "netns",
                &lab.ns("client"),
            ],
        )?;
        lab.exec("ap", &["ip", "link", "set", WIFI_IF, "up"])?;
        lab.exec("client", &["ip", "link", "set", CLIENT_IF, "up"])?;
        lab.add_namespace("lan1")?;
        lab.veth(
            "b1",
            "lan",
            &format!("{LAN1_ROUTER}/24"),
            "lan1",
            CLIENT_IF,
            &format!("{LAN1_HOST}/24"),
        )?;
        lab.exec(
            "lan1",
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &LAN1_ROUTER.to_string(),
            ],
        )?;
        // Routers forward: on OpenWrt this is the firewall's default; on a
        // Linux gateway or building box the operator's (docs/agent-config.md).
        for name in ["gw1", "gw2", "b1", "ap"] {
            lab.exec(name, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
            lab.exec(
                name,
                &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
            )?;
        }
        site::add_underlay(&mut mesh.lab)?;
        mesh.start_agents()?;
        let this = Self { mesh };
        this.set_costs()?;
        Ok(this)
    }

    /// Operator costs: every hop clean except t1–gw2, so t1 prefers gw1.
    fn set_costs(&self) -> anyhow::Result<()> {
        let controller = self.mesh.controller.as_ref().context("controller")?;
        retry(Duration::from_secs(30), || {
            let ids = controller.node_ids()?;
            let id = |n: usize| ids.get(NAMES[n]).copied().context("node in node list");
            for &(x, y) in &self.mesh.topology.links {
                let cost = if (x, y) == (T1, GW2) {
                    BACKUP_COST
                } else {
                    HOP_COST
                };
                controller.link_cost(id(x)?, id(y)?, cost)?;
            }
            Ok(())
        })
    }

    /// Runs a DHCP client in `client` until it holds a lease; returns the
    /// address. udhcpc (busybox) quits once bound; the address stays.
    pub fn lease(&self) -> anyhow::Result<Ipv4Net> {
        let script = self.mesh.dir().join("udhcpc.sh");
        std::fs::write(&script, UDHCPC_SCRIPT)
            .with_context(|| format!("writing {}", script.display()))?;
        let script = script.to_string_lossy().into_owned();
        self.mesh.lab.exec("client", &["chmod", "755", &script])?;
        retry(READY_TIMEOUT, || {
            self.mesh.lab.exec(
                "client",
                &[
                    "busybox", "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", CLIENT_IF,
                    "-s", &script,
                ],
            )?;
            self.client_address()?
                .context("udhcpc exited without an address on the client")
        })
        .with_context(|| format!("no DHCP lease for the client\n{}", self.diagnose()))
    }

    /// The client's IPv4 address now (`None` without one).
    pub fn client_address(&self) -> anyhow::Result<Option<Ipv4Net>> {
        let out = self.mesh.lab.exec(
            "client",
            &["ip", "-4", "-o", "addr", "show", "dev", CLIENT_IF],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
            .find_map(|a| a.parse().ok()))
    }

    /// The client's global IPv6 addresses (from router advertisements).
    pub fn client_v6(&self) -> anyhow::Result<Vec<IpNet>> {
        let out = self.mesh.lab.exec(
            "client",
            &[
                "ip", "-6", "-o", "addr", "show", "dev", CLIENT_IF, "scope", "global",
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet6").nth(1))
            .filter_map(|a| a.parse().ok())
            .collect())
    }

    /// `count` pings from namespace `from` to `to` (optionally from source
    /// `source`); how many replies came back.
    pub fn ping(
        &self,
        from: &str,
        to: IpAddr,
        source: Option<IpAddr>,
        count: u32,
    ) -> anyhow::Result<u32> {
        let count = count.to_string();
        let to = to.to_string();
        let source = source.map(|s| s.to_string());
        let mut args = vec!["ping", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "1"];
        if let Some(s) = &source {
            args.extend(["-I", s]);
        }
        args.push(&to);
        crate::netns_mesh::parse_ping_received(&self.mesh.lab.try_exec(from, &args)?)
    }

    /// Waits until the client's pings reach the internet host.
    pub fn wait_internet(&self, timeout: Duration) -> anyhow::Result<()> {
        retry(timeout, || {
            match self.ping("client", INTERNET_HOST.into(), None, 1)? {
                0 => bail!("the internet host does not answer the client"),
                _ => Ok(()),
            }
        })
        .with_context(|| format!("client offline\n{}", self.diagnose()))
    }

    /// The gateway `t1` forwards default traffic to now (node index), and
    /// every next hop its default route lists.
    pub fn default_hop(&self, node: usize) -> anyhow::Result<(Option<usize>, Vec<usize>)> {
        self.mesh.route_of(node, "0.0.0.0/0".parse()?)
    }

    /// Waits until `node`'s default route goes to `gateway` first.
    pub fn wait_default_via(
        &self,
        node: usize,
        gateway: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        retry(timeout, || match self.default_hop(node)? {
            (Some(hop), _) if hop == gateway => Ok(()),
            other => bail!("{}'s default route: {other:?}", NAMES[node]),
        })
        .with_context(|| {
            format!(
                "{} never sent default traffic to {}\n{}",
                NAMES[node],
                NAMES[gateway],
                self.diagnose()
            )
        })
    }

    /// Silently cuts gateway `gw`'s uplink: both ends drop everything at
    /// netdev ingress, the carrier stays up, nobody is told.
    pub fn cut_uplink(&self, gw: usize) -> anyhow::Result<()> {
        let name = NAMES[gw];
        let dir = self.mesh.dir();
        nft_drop(&self.mesh.lab, dir, name, &[UPLINK_IF], "uplink")?;
        nft_drop(
            &self.mesh.lab,
            dir,
            "inet",
            &[&format!("up-{name}")],
            "uplink",
        )
    }

    /// Undoes [`CityLab::cut_uplink`].
    pub fn restore_uplink(&self, gw: usize) -> anyhow::Result<()> {
        let name = NAMES[gw];
        let dir = self.mesh.dir();
        nft_undrop(&self.mesh.lab, dir, name, &[UPLINK_IF], "uplink")?;
        nft_undrop(
            &self.mesh.lab,
            dir,
            "inet",
            &[&format!("up-{name}")],
            "uplink",
        )
    }

    /// A node's overlay addresses, from its agent.
    pub fn overlay(&self, node: usize) -> anyhow::Result<Vec<IpAddr>> {
        Ok(status(&self.mesh.nodes[node].socket)?
            .addresses
            .iter()
            .map(IpNet::addr)
            .collect())
    }

    /// Every agent's status and log tail, the client's addresses and
    /// routes: for failure messages.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.mesh.nodes.iter().enumerate() {
            let state = match status(&node.socket) {
                Ok(s) => freimesh_agent::control::render_status(&s),
                Err(err) => format!("{}: {err:#}", NAMES[i]),
            };
            let log = self.mesh.log(i);
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            out.push_str(&format!(
                "{state}\n{}'s log (last lines):\n{}\n",
                NAMES[i],
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        for (ns, args) in [
            ("client", &["ip", "addr"][..]),
            ("client", &["ip", "route"][..]),
            ("ap", &["ip", "addr", "show", WIFI_IF][..]),
            ("ap", &["ip", "rule"][..]),
            ("b1", &["ip", "route"][..]),
            ("b2", &["ip", "route"][..]),
            ("gw2", &["ip", "route"][..]),
        ] {
            if let Ok(o) = self.mesh.lab.try_exec(ns, args) {
                out.push_str(&format!(
                    "{ns}$ {}\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stdout)
                ));
            }
        }
        if let Some(c) = &self.mesh.controller {
            let log = std::fs::read_to_string(&c.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!(
                "controller log (last lines):\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }
}
