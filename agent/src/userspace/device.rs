//! A smoltcp `phy::Device` (`Medium::Ip`) over two packet queues, and the
//! `Interface` on it.
//!
//! Inbound holds at most one packet: the stack task puts a packet in and
//! calls `Interface::poll_ingress_single` right away, so it can re-arm
//! listening sockets between packets. Outbound is bounded: when it is full,
//! `transmit` says so and smoltcp keeps the data in its sockets until the
//! stack task has moved packets on to `to_mesh`. That is how a slow engine
//! pushes back on the stack.

use std::collections::VecDeque;
use std::net::IpAddr;

use ipnet::IpNet;
use smoltcp::iface::{Config, Interface};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use super::{MIN_MTU, UserspaceError, UserspaceSettings};

/// Packets the stack may queue for `to_mesh` before smoltcp is told the
/// device is busy. About two 64 KiB windows of full-size segments: enough to
/// keep the engine busy between two wake-ups of the stack task.
pub(super) const OUTBOUND_LIMIT: usize = 128;

#[derive(Debug)]
pub(super) struct QueueDevice {
    inbound: Option<Vec<u8>>,
    outbound: VecDeque<Vec<u8>>,
    mtu: usize,
    /// Immediate replies (RST, echo reply) produced while outbound was full.
    dropped: u64,
}

impl QueueDevice {
    pub(super) fn new(mtu: u16) -> Self {
        Self {
            inbound: None,
            outbound: VecDeque::with_capacity(OUTBOUND_LIMIT),
            mtu: usize::from(mtu),
            dropped: 0,
        }
    }

    /// Offers one packet to the next `poll_ingress_single`.
    pub(super) fn put_inbound(&mut self, packet: Vec<u8>) {
        self.inbound = Some(packet);
    }

    pub(super) fn pop_outbound(&mut self) -> Option<Vec<u8>> {
        self.outbound.pop_front()
    }

    pub(super) fn has_outbound(&self) -> bool {
        !self.outbound.is_empty()
    }

    pub(super) fn outbound_is_full(&self) -> bool {
        self.outbound.len() >= OUTBOUND_LIMIT
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = InboundToken;
    type TxToken<'a> = OutboundToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.inbound.take()?;
        Some((
            InboundToken(packet),
            OutboundToken {
                queue: &mut self.outbound,
                dropped: &mut self.dropped,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if self.outbound_is_full() {
            return None;
        }
        Some(OutboundToken {
            queue: &mut self.outbound,
            dropped: &mut self.dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// The smoltcp interface on `device`: the overlay addresses, and default
/// routes so that the stack can reach any address (the engine decides where
/// a packet goes).
pub(super) fn interface(
    settings: &UserspaceSettings,
    device: &mut QueueDevice,
    seed: u64,
    now: Instant,
) -> Result<Interface, UserspaceError> {
    if settings.mtu < MIN_MTU {
        return Err(UserspaceError::Mtu { mtu: settings.mtu });
    }
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = seed;
    let mut iface = Interface::new(config, device, now);
    for &address in &settings.addresses {
        let bad = |reason| UserspaceError::Address { address, reason };
        let ip = IpAddress::from(address.addr());
        if !ip.is_unicast() {
            return Err(bad("not a unicast address"));
        }
        let mut full = false;
        iface.update_ip_addrs(|addrs| {
            full = addrs.push(IpCidr::new(ip, address.prefix_len())).is_err();
        });
        if full {
            return Err(bad("more addresses than the stack holds (8)"));
        }
    }
    // Everything not on an overlay prefix leaves through the mesh. With
    // `Medium::Ip` smoltcp only checks that a route exists (there is no
    // neighbour to resolve), so the gateway is just our own address.
    let route_error = |address: IpNet| UserspaceError::Address {
        address,
        reason: "no room for its default route",
    };
    let v4 = settings.addresses.iter().find_map(|net| match net.addr() {
        IpAddr::V4(addr) => Some((net, addr)),
        IpAddr::V6(_) => None,
    });
    if let Some((net, gateway)) = v4 {
        let routes = iface.routes_mut();
        routes
            .add_default_ipv4_route(gateway)
            .map_err(|_| route_error(*net))?;
    }
    let v6 = settings.addresses.iter().find_map(|net| match net.addr() {
        IpAddr::V6(addr) => Some((net, addr)),
        IpAddr::V4(_) => None,
    });
    if let Some((net, gateway)) = v6 {
        let routes = iface.routes_mut();
        routes
            .add_default_ipv6_route(gateway)
            .map_err(|_| route_error(*net))?;
    }
    Ok(iface)
}

#[derive(Debug)]
pub(super) struct InboundToken(Vec<u8>);

impl phy::RxToken for InboundToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

#[derive(Debug)]
pub(super) struct OutboundToken<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
    dropped: &'a mut u64,
}

impl phy::TxToken for OutboundToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut packet = vec![0; len];
        let result = f(&mut packet);
        // A token handed out by `receive` (for an immediate reply) may find
        // the queue full; smoltcp cannot be told, so the reply is dropped.
        if self.queue.len() < OUTBOUND_LIMIT {
            self.queue.push_back(packet);
        } else {
            *self.dropped += 1;
        }
        result
    }
}
