//! The rtnetlink socket of the backend: requests and their answers, reading
//! the kernel's addresses and routes into a [`NetState`] and applying
//! [`Change`]s. The messages themselves are built and read in
//! [`super::wire`] and [`super::messages`].
//!
//! One request at a time per socket (a mutex around it), each with its own
//! sequence number; answers to an earlier request that was given up (its
//! future dropped) are recognised by their number and skipped.

use std::{collections::BTreeSet, io, net::IpAddr};

use ipnet::IpNet;
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};
use tokio::sync::Mutex;

use super::{
    error::LinuxError,
    messages::{RouteOp, address_of, our_route, route_message},
    reconcile::{Change, NetState, Route},
    wire::{
        self, AF_INET, AF_INET6, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, RTM_NEWADDR, RTM_NEWLINK,
        RTM_NEWROUTE, Request,
    },
};

/// The netlink multicast group of link changes (`RTNLGRP_LINK`).
const RTNLGRP_LINK: u32 = 1;

/// Opens a rtnetlink socket bound to a port the kernel picks and connected
/// to the kernel.
fn route_socket() -> io::Result<TokioSocket> {
    let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
    socket.socket_mut().bind_auto()?;
    socket.socket_mut().connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// A rtnetlink socket subscribed to link changes only: it is never sent
/// requests, so everything it reads is a notification.
pub(crate) fn link_notifications() -> io::Result<TokioSocket> {
    let socket = route_socket()?;
    socket.socket_ref().add_membership(RTNLGRP_LINK)?;
    Ok(socket)
}

/// Waits for the next datagram on `socket`.
pub(crate) async fn receive(socket: &TokioSocket) -> io::Result<Vec<u8>> {
    socket.recv_from_full().await.map(|(datagram, _)| datagram)
}

/// The socket and the last sequence number used on it.
struct Exchange {
    socket: TokioSocket,
    seq: u32,
}

/// An rtnetlink socket in the calling thread's network namespace.
pub(crate) struct Netlink {
    exchange: Mutex<Exchange>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Netlink {
    /// Opens the socket. Must be called inside a tokio runtime.
    pub(crate) fn connect() -> Result<Self, LinuxError> {
        let socket = route_socket().map_err(|cause| LinuxError::NetlinkSocket { cause })?;
        Ok(Self {
            exchange: Mutex::new(Exchange { socket, seq: 0 }),
        })
    }

    /// Sends `request` and collects the payloads of the answers of type
    /// `answer` until the kernel says done: after a dump's last part, with
    /// an acknowledgement, or with the single answer to a plain get. A
    /// negative acknowledgement becomes its errno.
    pub(crate) async fn exchange(
        &self,
        request: &Request,
        answer: u16,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut exchange = self.exchange.lock().await;
        exchange.seq = exchange.seq.wrapping_add(1).max(1);
        let seq = exchange.seq;
        exchange.socket.send(&request.encode(seq)).await?;
        let mut answers = Vec::new();
        loop {
            let (datagram, _) = exchange.socket.recv_from_full().await?;
            for message in wire::messages(&datagram).filter(|message| message.seq == seq) {
                match message.kind {
                    NLMSG_ERROR => {
                        return match message.error_code() {
                            Some(0) => Ok(answers),
                            Some(code) => Err(io::Error::from_raw_os_error(-code)),
                            None => Err(io::Error::other("truncated netlink error message")),
                        };
                    }
                    NLMSG_DONE => {
                        // A dump that failed half-way says so here.
                        return match message.error_code() {
                            Some(code) if code < 0 => Err(io::Error::from_raw_os_error(-code)),
                            _ => Ok(answers),
                        };
                    }
                    kind if kind == answer => {
                        answers.push(message.payload.to_vec());
                        if message.flags & NLM_F_MULTI == 0 {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends a request that the kernel only acknowledges.
    pub(crate) async fn request(&self, request: &Request) -> io::Result<()> {
        self.exchange(request, NLMSG_ERROR).await.map(drop)
    }

    /// The interface called `name`, if there is one.
    pub(crate) async fn link_by_name(&self, name: &str) -> io::Result<Option<wire::Link>> {
        match self
            .exchange(&wire::get_link_by_name(name), RTM_NEWLINK)
            .await
        {
            Ok(answers) => Ok(answers
                .first()
                .and_then(|payload| wire::Link::parse(payload))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every interface.
    pub(crate) async fn links(&self) -> io::Result<Vec<wire::Link>> {
        let answers = self.exchange(&wire::dump_links(), RTM_NEWLINK).await?;
        Ok(answers
            .iter()
            .filter_map(|payload| wire::Link::parse(payload))
            .collect())
    }

    /// The route the kernel would use to send to `destination`.
    pub(crate) async fn lookup_route(
        &self,
        destination: IpAddr,
    ) -> io::Result<Option<wire::RouteMessage>> {
        let answers = self
            .exchange(&wire::RouteMessage::lookup(destination), RTM_NEWROUTE)
            .await?;
        Ok(answers
            .first()
            .and_then(|payload| wire::RouteMessage::parse(payload)))
    }

    /// Sets the MTU and brings the device up, in one request.
    pub(crate) async fn configure_link(
        &self,
        ifindex: u32,
        device: &str,
        mtu: u16,
    ) -> Result<(), LinuxError> {
        self.request(&wire::set_link(ifindex, Some(u32::from(mtu)), Some(true)))
            .await
            .map_err(|cause| LinuxError::ConfigureLink {
                device: device.to_owned(),
                mtu,
                cause,
            })
    }

    /// Deletes the device. Gone already (ENODEV) counts as done.
    pub(crate) async fn delete_link(&self, ifindex: u32, device: &str) -> Result<(), LinuxError> {
        match self.request(&wire::delete_link(ifindex)).await {
            Ok(()) => Ok(()),
            Err(cause) if cause.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            Err(cause) => Err(LinuxError::DeleteLink {
                device: device.to_owned(),
                cause,
            }),
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
        let answers = self
            .exchange(&wire::dump_addresses(), RTM_NEWADDR)
            .await
            .map_err(|cause| LinuxError::DumpAddresses {
                device: device.to_owned(),
                cause,
            })?;
        Ok(answers
            .iter()
            .filter_map(|payload| wire::Address::parse(payload))
            .filter(|address| address.index == ifindex)
            .filter_map(|address| address_of(&address))
            .collect())
    }

    async fn routes(&self) -> Result<BTreeSet<Route>, LinuxError> {
        Ok(self.tagged_routes().await?.into_iter().collect())
    }

    /// The routes of both families as dumped (payloads), for callers that
    /// pick some and delete them as they are.
    pub(crate) async fn dump_routes(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut routes = self
            .exchange(&wire::RouteMessage::dump(AF_INET), RTM_NEWROUTE)
            .await?;
        routes.extend(
            self.exchange(&wire::RouteMessage::dump(AF_INET6), RTM_NEWROUTE)
                .await?,
        );
        Ok(routes)
    }

    /// Every route tagged with our protocol in the main table, as the kernel
    /// lists them (duplicates included, which the tests look for).
    pub(crate) async fn tagged_routes(&self) -> Result<Vec<Route>, LinuxError> {
        let dumped = self
            .dump_routes()
            .await
            .map_err(|cause| LinuxError::DumpRoutes { cause })?;
        Ok(dumped
            .iter()
            .filter_map(|payload| wire::RouteMessage::parse(payload))
            .filter_map(|message| our_route(&message))
            .collect())
    }

    /// Adds an address; with `no_dad`, an IPv6 address is usable at once.
    pub(crate) async fn add_address(
        &self,
        ifindex: u32,
        address: IpNet,
        no_dad: bool,
    ) -> io::Result<()> {
        self.request(&wire::add_address(
            ifindex,
            address.addr(),
            address.prefix_len(),
            no_dad,
        ))
        .await
    }

    pub(crate) async fn remove_address(&self, ifindex: u32, address: IpNet) -> io::Result<()> {
        self.request(&wire::delete_address(
            ifindex,
            address.addr(),
            address.prefix_len(),
        ))
        .await
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
            // Without NODAD an IPv6 address stays "tentative" for a moment
            // after the add returns (the kernel finishes DAD in a work
            // queue, even on a NOARP device), and binding to it or choosing
            // it as source fails with EADDRNOTAVAIL. The controller assigns
            // overlay addresses uniquely, and nobody else is on the TUN link
            // to collide with.
            Change::AddAddress(address) => self
                .add_address(ifindex, address, address.addr().is_ipv6())
                .await
                .map_err(|cause| LinuxError::AddAddress {
                    address,
                    device: device.to_owned(),
                    cause,
                }),
            Change::RemoveAddress(address) => {
                self.remove_address(ifindex, address)
                    .await
                    .map_err(|cause| LinuxError::RemoveAddress {
                        address,
                        device: device.to_owned(),
                        cause,
                    })
            }
            Change::AddRoute(route) => self
                .request(&route_message(&route, RouteOp::Add).add(false))
                .await
                .map_err(|cause| LinuxError::AddRoute {
                    prefix: route.prefix,
                    device: device_of(route.ifindex),
                    cause,
                }),
            Change::RemoveRoute(route) => self
                .request(&route_message(&route, RouteOp::Remove).delete())
                .await
                .map_err(|cause| LinuxError::RemoveRoute {
                    prefix: route.prefix,
                    device: device_of(route.ifindex),
                    cause,
                }),
        }
    }
}
