//! What a public Wi-Fi node runs on Linux besides the mesh: its client
//! interface set up for the client prefixes the controller assigned
//! ([`crate::linux::ClientInterface`]: addresses, policy routing into the
//! mesh, `rp_filter`), an nftables fence around it ([`firewall`]), DHCPv4
//! and router advertisements, and the client count ([`leases`]), the only
//! thing about clients that leaves the node. DHCPv4 and RA come from a
//! dnsmasq the agent runs ([`dnsmasq`], `[public_wifi] dhcp = "dnsmasq"`)
//! or, on OpenWrt, from the system's dnsmasq and odhcpd configured through
//! UCI ([`uci`], `dhcp = "openwrt"`).
//!
//! Everything is undone by [`PublicWifi::stop`]. See `docs/gateways.md`.

pub mod dnsmasq;
pub mod firewall;
pub mod leases;
pub mod uci;

#[cfg(test)]
mod tests;

use std::{
    io,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use tokio::sync::mpsc;

pub use self::dnsmasq::{Dnsmasq, DnsmasqSettings};
pub use self::uci::{UciDhcp, UciSettings};
use crate::linux::{ClientInterface, LinuxError, nft};

/// The DNS servers handed to clients, IPv4 then IPv6 (DHCPv4 options and
/// router advertisements carry them separately), in configured order.
fn dns_by_family(dns: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
    dns.iter().partition(|ip| ip.is_ipv4())
}

/// How often the lease file is counted.
pub const COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// An error of the public Wi-Fi functions.
#[derive(Debug, thiserror::Error)]
pub enum PublicWifiError {
    #[error(transparent)]
    Linux(#[from] LinuxError),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    /// dnsmasq could not be started.
    #[error(
        "starting {binary}: {cause} (is dnsmasq installed? Debian: dnsmasq-base, OpenWrt: dnsmasq)"
    )]
    Dnsmasq { binary: String, cause: io::Error },
    /// The state directory or a file in it could not be written.
    #[error("writing {path}: {cause}")]
    StateDir { path: String, cause: io::Error },
    /// `uci` or an init script could not be run.
    #[error("running {command}: {cause}")]
    UciSpawn { command: String, cause: io::Error },
    /// `uci` or an init script failed.
    #[error("{command} failed ({status}): {stderr}")]
    Uci {
        command: String,
        status: String,
        stderr: String,
    },
    /// The controller assigned no client prefix.
    #[error(
        "no client prefixes assigned to this node; is it a public Wi-Fi node in the controller?"
    )]
    NoPrefixes,
}

/// Who serves DHCPv4 and router advertisements (`[public_wifi] dhcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMode {
    /// `"dnsmasq"`: the agent runs its own dnsmasq (any Linux).
    Dnsmasq,
    /// `"openwrt"`: the system's dnsmasq and odhcpd, configured via UCI.
    OpenWrt,
}

/// How DHCPv4 and router advertisements are served, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpService {
    /// The agent's own dnsmasq: the program.
    Dnsmasq { binary: PathBuf },
    /// The system's services through UCI.
    OpenWrt {
        /// The `uci` program.
        uci: PathBuf,
        /// Where the `dnsmasq` and `odhcpd` init scripts are.
        init_dir: PathBuf,
        /// The system dnsmasq's lease file.
        lease_file: PathBuf,
        /// The OpenWrt network of the client interface.
        network: String,
    },
}

/// What the public Wi-Fi side needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicWifiSettings {
    /// The client interface (e.g. `br-client`).
    pub interface: String,
    /// The TUN device (`fm0`) and its index.
    pub tun_name: String,
    pub tun_ifindex: u32,
    /// The node's client /64 and IPv4 subnet.
    pub client_prefixes: Vec<IpNet>,
    pub dhcp: DhcpService,
    pub dns: Vec<IpAddr>,
    pub lease_time: Duration,
    /// Where the agent's dnsmasq keeps its config and lease file.
    pub state_dir: PathBuf,
}

/// The public Wi-Fi side while it runs.
#[derive(Debug)]
pub struct PublicWifi {
    interface: ClientInterface,
    dhcp: Dhcp,
    client_prefixes: Vec<IpNet>,
}

/// The running DHCP side.
#[derive(Debug)]
enum Dhcp {
    Dnsmasq(Dnsmasq),
    Uci(UciDhcp),
}

impl PublicWifi {
    /// Sets up the interface, the firewall and DHCP/RA, in that order
    /// (dnsmasq binds to the addresses the interface gets). On an error,
    /// what was set up already is undone.
    pub async fn start(settings: &PublicWifiSettings) -> Result<Self, PublicWifiError> {
        if settings.client_prefixes.is_empty() {
            return Err(PublicWifiError::NoPrefixes);
        }
        let interface = ClientInterface::open(
            &settings.interface,
            settings.tun_ifindex,
            &settings.client_prefixes,
        )
        .await?;
        let ruleset = firewall::client_ruleset(
            &settings.interface,
            &settings.tun_name,
            interface.addresses(),
            // The node answers DNS itself only without configured servers.
            settings.dns.is_empty(),
        );
        let what = format!("the client firewall for {}", settings.interface);
        if let Err(err) = nft::apply(&ruleset, &what).await {
            undo(interface, false).await;
            return Err(err.into());
        }
        let dhcp = match &settings.dhcp {
            DhcpService::Dnsmasq { binary } => Dnsmasq::start(&DnsmasqSettings {
                binary: binary.clone(),
                interface: settings.interface.clone(),
                node_addresses: interface.addresses().to_vec(),
                dns: settings.dns.clone(),
                lease_time: settings.lease_time,
                state_dir: settings.state_dir.clone(),
            })
            .await
            .map(Dhcp::Dnsmasq),
            DhcpService::OpenWrt {
                uci,
                init_dir,
                lease_file,
                network,
            } => UciDhcp::apply(&UciSettings {
                uci: uci.clone(),
                init_dir: init_dir.clone(),
                lease_file: lease_file.clone(),
                interface: settings.interface.clone(),
                network: network.clone(),
                node_addresses: interface.addresses().to_vec(),
                dns: settings.dns.clone(),
                lease_time: settings.lease_time,
            })
            .await
            .map(Dhcp::Uci),
        };
        match dhcp {
            Ok(dhcp) => Ok(Self {
                interface,
                dhcp,
                client_prefixes: settings.client_prefixes.clone(),
            }),
            Err(err) => {
                undo(interface, true).await;
                Err(err)
            }
        }
    }

    /// The lease file to count clients in.
    pub fn lease_file(&self) -> &Path {
        match &self.dhcp {
            Dhcp::Dnsmasq(dnsmasq) => dnsmasq.lease_file(),
            Dhcp::Uci(uci) => uci.lease_file(),
        }
    }

    /// The client prefixes: only leases inside them are counted.
    pub fn client_prefixes(&self) -> &[IpNet] {
        &self.client_prefixes
    }

    /// Stops dnsmasq (or removes the UCI section), removes the firewall,
    /// the rules, routes and addresses. A UCI failure does not keep the
    /// rest in place; it is reported after.
    pub async fn stop(self) -> Result<(), PublicWifiError> {
        let dhcp = match self.dhcp {
            Dhcp::Dnsmasq(dnsmasq) => {
                dnsmasq.stop().await;
                Ok(())
            }
            Dhcp::Uci(uci) => uci.remove().await,
        };
        nft::delete_table(firewall::CLIENT_FAMILY, firewall::CLIENT_TABLE_NAME).await?;
        self.interface.close().await?;
        dhcp
    }
}

/// Undoes a half-done start; the original error is what the caller needs
/// to see, so failures here are only logged.
async fn undo(interface: ClientInterface, firewall: bool) {
    if firewall
        && let Err(err) =
            nft::delete_table(firewall::CLIENT_FAMILY, firewall::CLIENT_TABLE_NAME).await
    {
        tracing::warn!(%err, "removing the client firewall");
    }
    if let Err(err) = interface.close().await {
        tracing::warn!(%err, "releasing the client interface");
    }
}

/// Counts the live leases inside `within` (the client prefixes; all if
/// empty) every [`COUNT_INTERVAL`] and sends the count when it changes
/// (and once at start), until the receiver goes away.
pub async fn watch_clients(lease_file: PathBuf, within: Vec<IpNet>, counts: mpsc::Sender<u32>) {
    let mut last = None;
    let mut ticks = tokio::time::interval(COUNT_INTERVAL);
    loop {
        ticks.tick().await;
        let count = match leases::count_lease_file(&lease_file, &within) {
            Ok(count) => count,
            Err(err) => {
                tracing::debug!(%err, "reading the lease file");
                continue;
            }
        };
        if last != Some(count) {
            last = Some(count);
            tracing::debug!(clients = count, "public Wi-Fi clients");
            if counts.send(count).await.is_err() {
                return;
            }
        }
    }
}
