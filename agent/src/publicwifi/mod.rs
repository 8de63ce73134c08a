//! What a public Wi-Fi node runs on Linux besides the mesh: its client
//! interface set up for the client prefixes the controller assigned
//! ([`crate::linux::ClientInterface`]: addresses, policy routing into the
//! mesh, `rp_filter`), an nftables fence around it ([`firewall`]), dnsmasq
//! for DHCPv4 and router advertisements ([`dnsmasq`]), and the client
//! count ([`leases`]), the only thing about clients that leaves the node.
//!
//! Everything is undone by [`PublicWifi::stop`]. See `docs/gateways.md`.

pub mod dnsmasq;
pub mod firewall;
pub mod leases;

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
use crate::linux::{ClientInterface, LinuxError, nft};

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
    /// The controller assigned no client prefix.
    #[error(
        "no client prefixes assigned to this node; is it a public Wi-Fi node in the controller?"
    )]
    NoPrefixes,
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
    pub dnsmasq: PathBuf,
    pub dns: Vec<IpAddr>,
    pub lease_time: Duration,
    /// Where dnsmasq's config and lease file go.
    pub state_dir: PathBuf,
}

/// The public Wi-Fi side while it runs.
#[derive(Debug)]
pub struct PublicWifi {
    interface: ClientInterface,
    dnsmasq: Dnsmasq,
}

impl PublicWifi {
    /// Sets up the interface, the firewall and dnsmasq, in that order
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
        );
        let what = format!("the client firewall for {}", settings.interface);
        if let Err(err) = nft::apply(&ruleset, &what).await {
            undo(interface, false).await;
            return Err(err.into());
        }
        let dnsmasq_settings = DnsmasqSettings {
            binary: settings.dnsmasq.clone(),
            interface: settings.interface.clone(),
            node_addresses: interface.addresses().to_vec(),
            dns: settings.dns.clone(),
            lease_time: settings.lease_time,
            state_dir: settings.state_dir.clone(),
        };
        match Dnsmasq::start(&dnsmasq_settings).await {
            Ok(dnsmasq) => Ok(Self { interface, dnsmasq }),
            Err(err) => {
                undo(interface, true).await;
                Err(err)
            }
        }
    }

    /// The lease file to count clients in.
    pub fn lease_file(&self) -> &Path {
        self.dnsmasq.lease_file()
    }

    /// Stops dnsmasq, removes the firewall, the rules, routes and addresses.
    pub async fn stop(self) -> Result<(), PublicWifiError> {
        self.dnsmasq.stop().await;
        nft::delete_table(firewall::CLIENT_FAMILY, firewall::CLIENT_TABLE_NAME).await?;
        self.interface.close().await?;
        Ok(())
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

/// Counts the live leases every [`COUNT_INTERVAL`] and sends the count
/// when it changes (and once at start), until the receiver goes away.
pub async fn watch_clients(lease_file: PathBuf, counts: mpsc::Sender<u32>) {
    let mut last = None;
    let mut ticks = tokio::time::interval(COUNT_INTERVAL);
    loop {
        ticks.tick().await;
        let count = match leases::count_lease_file(&lease_file) {
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
