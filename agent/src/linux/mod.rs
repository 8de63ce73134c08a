//! The `linux` backend: where the node's own traffic enters and leaves the
//! mesh on a Linux host, through one TUN device (`fm0`) configured over
//! rtnetlink.
//!
//! The forwarding engine moves packets from tunnel to tunnel by itself; the
//! kernel only needs to hand it the packets that local programs send into
//! the mesh and to take the packets addressed to this node. So the backend
//! keeps the kernel's part small and declarative:
//!
//! * one TUN device (`IFF_NO_PI`: every read or write is one bare IP packet),
//! * the node's overlay addresses on it (e.g. `10.99.0.1/32`, `fd99::1/128`),
//! * a few aggregate routes into it (the mesh prefixes, e.g. `10.99.0.0/16`),
//!   tagged with [`RTPROT_FREIMESH`] so that a restarted agent can find the
//!   routes it (or its crashed predecessor) installed.
//!
//! Configuration is reconciled by diff, the way innernet's `PeerDiff` works:
//! the backend dumps what the kernel has, subtracts it from what the
//! settings ask for, logs every resulting [`Change`] and applies it. The same
//! code runs at start-up ([`LinuxBackend::open`]), on updates
//! ([`LinuxBackend::update`]) and at shutdown ([`LinuxBackend::close`]), so
//! a restart after a crash neither duplicates routes nor leaves stale ones.
//!
//! Two helpers serve failover rather than the TUN: [`watch_carrier`] reports
//! carrier changes of the underlay interfaces as they happen (netlink
//! multicast, no polling) and [`underlay_interface`] says which interface
//! the kernel would use to reach a peer, so links can be tied to interfaces.
//!
//! Everything here talks to the network namespace of the thread that calls
//! it: netlink sockets and the TUN file descriptor belong to the namespace
//! current when they are opened.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use freimesh_agent::linux::{DEFAULT_MTU, LinuxBackend, LinuxSettings};
//!
//! let backend = LinuxBackend::open(LinuxSettings {
//!     tun_name: "fm0".into(),
//!     mtu: DEFAULT_MTU,
//!     addresses: vec!["10.99.0.1/32".parse()?, "fd99::1/128".parse()?],
//!     routes: vec!["10.99.0.0/16".parse()?, "fd99::/64".parse()?],
//!     offload: false,
//! })
//! .await?;
//! // One task reads what local programs send into the mesh…
//! let device = backend.device();
//! let mut packet = vec![0u8; 65535];
//! let len = device.recv(&mut packet).await?;
//! // …another writes what arrives for this node.
//! backend.device().send(&packet[..len]).await?;
//! backend.close().await?;
//! # Ok(())
//! # }
//! ```

mod error;
mod messages;
mod netlink;
pub mod nft;
mod policy;
mod reconcile;
mod tun;
mod underlay;
mod wire;

#[cfg(test)]
pub(crate) mod tests;

use std::{fmt, sync::Arc};

use ipnet::IpNet;
use tun_rs::AsyncDevice;

use self::netlink::Netlink;
pub use self::{
    error::LinuxError,
    policy::{CLIENT_RULE_PRIORITY, CLIENT_TABLE, ClientInterface, node_client_addresses},
    reconcile::{Change, NetState, Route},
    underlay::{CarrierEvent, underlay_interface, watch_carrier},
};

/// The route protocol number (`rtm_protocol`) on every route the agent
/// installs. The kernel does not interpret values above `RTPROT_STATIC` (4);
/// 70 (ASCII `F`) is not taken in iproute2's `rt_protos` (babel is 42, bird
/// 12, bgp 186…). `ip route show proto 70` lists the agent's routes.
pub const RTPROT_FREIMESH: u8 = 70;

/// The metric (`RTA_PRIORITY`) of the agent's routes. Explicit because the
/// kernel's defaults differ by family (IPv4 0, IPv6 1024) and the diff must
/// compare exactly; 1024 is the IPv6 default, so the agent's routes look like
/// any hand-added route and a more specific or lower-metric route an
/// operator adds by hand still wins.
pub const ROUTE_METRIC: u32 = 1024;

/// WireGuard's usual tunnel MTU: 1500 minus 80 bytes of the worst-case
/// encapsulation (IPv6 40 + UDP 8 + WireGuard 32), so a full-size inner
/// packet never fragments on an Ethernet underlay.
pub const DEFAULT_MTU: u16 = 1420;

/// IPv6 needs a link MTU of at least 1280 (RFC 8200); below it the kernel
/// disables IPv6 on the device and adding an IPv6 address fails.
const IPV6_MIN_MTU: u16 = 1280;

/// What the backend sets up in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxSettings {
    /// Name of the TUN device, at most 15 bytes (e.g. `fm0`).
    pub tun_name: String,
    /// Link MTU of the TUN device; [`DEFAULT_MTU`] unless the underlay needs
    /// less. At least 1280 if any address or route is IPv6.
    pub mtu: u16,
    /// The node's overlay addresses on the device, host bits kept
    /// (e.g. `10.99.0.1/32`, `fd99::1/128`).
    pub addresses: Vec<IpNet>,
    /// Prefixes routed into the device (e.g. `10.99.0.0/16`, `fd99::/64`).
    /// Host bits are cleared before they reach the kernel.
    pub routes: Vec<IpNet>,
    /// Open the device with offloads (`IFF_VNET_HDR`, TSO and checksum
    /// offload): reads may be 64 KiB TCP segments, writes carry a virtio
    /// header ([`tun_rs::AsyncDevice::recv_multiple`]).
    pub offload: bool,
}

/// The TUN device and the kernel state that goes with it.
///
/// Dropping the backend without [`close`](Self::close) (as a crash would)
/// closes the device, and the kernel removes the device's addresses and
/// routes with it; the next [`open`](Self::open) cleans up anything tagged
/// [`RTPROT_FREIMESH`] that survived elsewhere. One agent per network
/// namespace: `open` removes every route with that tag in the main table.
pub struct LinuxBackend {
    device: Arc<AsyncDevice>,
    name: String,
    ifindex: u32,
    mtu: u16,
    netlink: Netlink,
}

impl LinuxBackend {
    /// Creates (or re-opens) the TUN device `settings.tun_name`, sets its
    /// MTU, brings it up, and reconciles its addresses and the agent's routes
    /// with `settings`, all over rtnetlink.
    ///
    /// Must run inside a tokio runtime with I/O enabled, on a thread in the
    /// network namespace the device should live in.
    pub async fn open(settings: LinuxSettings) -> Result<Self, LinuxError> {
        check_settings(&settings)?;
        let name = settings.tun_name.clone();
        let device = tun::create(&name, settings.offload)?;
        let ifindex = device.if_index().map_err(|cause| LinuxError::Device {
            device: name.clone(),
            cause,
        })?;
        let netlink = Netlink::connect()?;
        netlink.configure_link(ifindex, &name, settings.mtu).await?;
        let backend = Self {
            device: Arc::new(device),
            name,
            ifindex,
            mtu: settings.mtu,
            netlink,
        };
        let desired = NetState::desired(&settings.addresses, &settings.routes, ifindex);
        backend.reconcile(&desired).await?;
        tracing::info!(device = %backend.name, ifindex, mtu = settings.mtu, "TUN device ready");
        Ok(backend)
    }

    /// The device for the I/O loops: one task reads packets
    /// ([`AsyncDevice::recv`]), another writes them ([`AsyncDevice::send`]);
    /// both take `&self`, so the tasks share this `Arc`.
    pub fn device(&self) -> Arc<AsyncDevice> {
        Arc::clone(&self.device)
    }

    /// Interface index of the TUN device.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Name of the TUN device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Brings addresses and routes to a new desired set (e.g. when the
    /// controller assigns a client prefix), changing only what differs.
    pub async fn update(
        &mut self,
        addresses: &[IpNet],
        routes: &[IpNet],
    ) -> Result<Vec<Change>, LinuxError> {
        check_addresses(&self.name, self.mtu, addresses, routes)?;
        let desired = NetState::desired(addresses, routes, self.ifindex);
        self.reconcile(&desired).await
    }

    /// Clean shutdown: removes the agent's routes and the device's addresses,
    /// then deletes the device (even while I/O tasks still hold clones of
    /// [`device`](Self::device)). Their pending and later reads and writes
    /// fail with `EBADFD`, which ends the I/O loops.
    pub async fn close(self) -> Result<(), LinuxError> {
        self.reconcile(&NetState::default()).await?;
        self.netlink.delete_link(self.ifindex, &self.name).await?;
        tracing::info!(device = %self.name, "TUN device removed");
        Ok(())
    }

    /// Dumps the kernel's state, diffs, logs and applies each change.
    async fn reconcile(&self, desired: &NetState) -> Result<Vec<Change>, LinuxError> {
        let actual = self.netlink.state(self.ifindex, &self.name).await?;
        let changes = reconcile::diff(desired, &actual);
        if changes.is_empty() {
            tracing::debug!(device = %self.name, "kernel state already as desired");
        }
        for change in &changes {
            tracing::info!(device = %self.name, "{change}");
            self.netlink.apply(change, self.ifindex, &self.name).await?;
        }
        Ok(changes)
    }
}

impl fmt::Debug for LinuxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinuxBackend")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .finish_non_exhaustive()
    }
}

/// Rejects settings the kernel would reject later with a less helpful error.
fn check_settings(settings: &LinuxSettings) -> Result<(), LinuxError> {
    let name = &settings.tun_name;
    // IFNAMSIZ is 16 including the terminating NUL.
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        return Err(LinuxError::InvalidName { name: name.clone() });
    }
    check_addresses(name, settings.mtu, &settings.addresses, &settings.routes)
}

fn check_addresses(
    device: &str,
    mtu: u16,
    addresses: &[IpNet],
    routes: &[IpNet],
) -> Result<(), LinuxError> {
    let wants_ipv6 = addresses
        .iter()
        .chain(routes)
        .any(|net| matches!(net, IpNet::V6(_)));
    if wants_ipv6 && mtu < IPV6_MIN_MTU {
        return Err(LinuxError::MtuTooSmallForIpv6 {
            device: device.to_owned(),
            mtu,
        });
    }
    Ok(())
}
