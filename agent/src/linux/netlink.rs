//! The rtnetlink side of the backend: reading the kernel's addresses and
//! routes into a [`NetState`] and applying [`Change`]s. The messages
//! themselves are built and read in [`super::messages`].
//!
//! rtnetlink's types come through its own re-exports (`rtnetlink::packet_*`)
//! so the two crates never disagree on a version (see NOTES.md).

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::{
    Handle, LinkUnspec, RouteMessageBuilder,
    packet_route::address::{AddressAttribute, AddressFlags},
};
use tokio::task::JoinHandle;

use super::{
    error::{LinuxError, os_error},
    messages::{RouteOp, address_message, address_of, our_route, route_message},
    reconcile::{Change, NetState, Route},
};

/// The task that drives an rtnetlink socket. Without it running no request
/// is ever sent or answered, so it is spawned with the socket; it is aborted
/// when its owner goes, so no socket outlives the backend.
#[derive(Debug)]
pub(crate) struct ConnectionTask(JoinHandle<()>);

impl ConnectionTask {
    pub(crate) fn spawn(connection: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(connection))
    }
}

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An rtnetlink socket in the calling thread's network namespace.
#[derive(Debug)]
pub(crate) struct Netlink {
    handle: Handle,
    _task: ConnectionTask,
}

impl Netlink {
    /// Opens the socket. Must be called inside a tokio runtime.
    pub(crate) fn connect() -> Result<Self, LinuxError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|cause| LinuxError::NetlinkSocket { cause })?;
        Ok(Self {
            handle,
            _task: ConnectionTask::spawn(connection),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Sets the MTU and brings the device up, in one request.
    pub(crate) async fn configure_link(
        &self,
        ifindex: u32,
        device: &str,
        mtu: u16,
    ) -> Result<(), LinuxError> {
        let message = LinkUnspec::new_with_index(ifindex)
            .mtu(u32::from(mtu))
            .up()
            .build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| LinuxError::ConfigureLink {
                device: device.to_owned(),
                mtu,
                cause: os_error(e),
            })
    }

    /// Deletes the device. Gone already (ENODEV) counts as done.
    pub(crate) async fn delete_link(&self, ifindex: u32, device: &str) -> Result<(), LinuxError> {
        match self.handle.link().del(ifindex).execute().await {
            Ok(()) => Ok(()),
            Err(e) => match os_error(e) {
                cause if cause.raw_os_error() == Some(libc::ENODEV) => Ok(()),
                cause => Err(LinuxError::DeleteLink {
                    device: device.to_owned(),
                    cause,
                }),
            },
        }
    }

    /// What the kernel has: the addresses on the device and every route
    /// tagged with our protocol in the main table, on any device.
    pub(crate) async fn state(&self, ifindex: u32, device: &str) -> Result<NetState, LinuxError> {
        Ok(NetState {
            addresses: self.addresses(ifindex, device).await?,
            routes: self.routes().await?,
        })
    }

    async fn addresses(&self, ifindex: u32, device: &str) -> Result<BTreeSet<IpNet>, LinuxError> {
        let dump_error = |e| LinuxError::DumpAddresses {
            device: device.to_owned(),
            cause: os_error(e),
        };
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut addresses = BTreeSet::new();
        while let Some(message) = dump.try_next().await.map_err(dump_error)? {
            if let Some(address) = address_of(&message) {
                addresses.insert(address);
            }
        }
        Ok(addresses)
    }

    async fn routes(&self) -> Result<BTreeSet<Route>, LinuxError> {
        Ok(self.tagged_routes().await?.into_iter().collect())
    }

    /// Every route tagged with our protocol in the main table, as the kernel
    /// lists them (duplicates included, which the tests look for).
    pub(crate) async fn tagged_routes(&self) -> Result<Vec<Route>, LinuxError> {
        let mut routes = Vec::new();
        let requests = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for request in requests {
            let mut dump = self.handle.route().get(request).execute();
            while let Some(message) = dump
                .try_next()
                .await
                .map_err(|e| LinuxError::DumpRoutes { cause: os_error(e) })?
            {
                if let Some(route) = our_route(&message) {
                    routes.push(route);
                }
            }
        }
        Ok(routes)
    }

    /// Applies one change. `device` names the TUN device (index `ifindex`)
    /// in error messages; routes on other devices are named by index.
    pub(crate) async fn apply(
        &self,
        change: &Change,
        ifindex: u32,
        device: &str,
    ) -> Result<(), LinuxError> {
        let device_of = |index: u32| {
            if index == ifindex {
                device.to_owned()
            } else {
                format!("interface #{index}")
            }
        };
        match *change {
            Change::AddAddress(address) => {
                let mut request =
                    self.handle
                        .address()
                        .add(ifindex, address.addr(), address.prefix_len());
                if address.addr().is_ipv6() {
                    // Without NODAD the address stays "tentative" for a
                    // moment after the add returns (the kernel finishes DAD
                    // in a work queue, even on a NOARP device), and binding
                    // to it or choosing it as source fails with
                    // EADDRNOTAVAIL. The controller assigns overlay
                    // addresses uniquely, and nobody else is on the TUN
                    // link to collide with.
                    request
                        .message_mut()
                        .attributes
                        .push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
                request.execute().await.map_err(|e| LinuxError::AddAddress {
                    address,
                    device: device.to_owned(),
                    cause: os_error(e),
                })
            }
            Change::RemoveAddress(address) => self
                .handle
                .address()
                .del(address_message(ifindex, address))
                .execute()
                .await
                .map_err(|e| LinuxError::RemoveAddress {
                    address,
                    device: device.to_owned(),
                    cause: os_error(e),
                }),
            Change::AddRoute(route) => self
                .handle
                .route()
                .add(route_message(&route, RouteOp::Add))
                .execute()
                .await
                .map_err(|e| LinuxError::AddRoute {
                    prefix: route.prefix,
                    device: device_of(route.ifindex),
                    cause: os_error(e),
                }),
            Change::RemoveRoute(route) => self
                .handle
                .route()
                .del(route_message(&route, RouteOp::Remove))
                .execute()
                .await
                .map_err(|e| LinuxError::RemoveRoute {
                    prefix: route.prefix,
                    device: device_of(route.ifindex),
                    cause: os_error(e),
                }),
        }
    }
}
