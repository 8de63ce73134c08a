//! The underlay interfaces, for failover: which interface a peer is
//! reached over ([`underlay_interface`]) and when an interface's carrier
//! comes or goes ([`watch_carrier`]).
//!
//! The kernel announces every link change on the `RTNLGRP_LINK` multicast
//! group the moment it happens (a cable pulled, a veth peer set down, a
//! Wi-Fi client losing its association), so a link over a dead interface can
//! be marked down at once instead of after a probe timeout. [`watch_carrier`]
//! turns those notifications into one [`CarrierEvent`] per change of the
//! carrier state; the bookkeeping that decides what is a change is the pure
//! [`LinkTable`], tested without privileges.

use std::{collections::BTreeMap, io, net::IpAddr};

use tokio::sync::mpsc::Sender;

use super::{
    LinuxError,
    netlink::{Netlink, link_notifications, receive},
    wire::{
        self, IF_OPER_UNKNOWN, IF_OPER_UP, IFF_LOWER_UP, IFF_UP, Link, NLMSG_OVERRUN, RTM_DELLINK,
        RTM_NEWLINK,
    },
};

/// Maps a UDP underlay peer address to the index of the interface the
/// kernel would send to it over (`RTM_GETROUTE`, policy rules included), so
/// links can be associated with underlay interfaces and their carrier.
///
/// An IPv4-mapped IPv6 address (from a dual-stack socket) is looked up as
/// IPv4. A peer the kernel cannot reach is an error (`ENETUNREACH`). Opens a
/// netlink socket per call: meant for when a link is set up, not per packet.
pub async fn underlay_interface(peer: IpAddr) -> Result<u32, LinuxError> {
    let peer = peer.to_canonical();
    let netlink = Netlink::connect()?;
    let lookup_error = |cause| LinuxError::RouteLookup { peer, cause };
    let route = netlink.lookup_route(peer).await.map_err(lookup_error)?;
    route.and_then(|route| route.oif).ok_or_else(|| {
        lookup_error(io::Error::other(
            "the kernel's answer names no output interface",
        ))
    })
}

/// An interface whose carrier came or went (or that appeared or vanished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierEvent {
    /// Interface index, as [`super::underlay_interface`] returns it.
    pub ifindex: u32,
    /// Interface name at the time of the event.
    pub name: String,
    /// Whether the interface can carry packets now: administratively up,
    /// lower layer up, and its operational state not down or dormant.
    pub carrier_up: bool,
}

/// Watches all interfaces of the calling thread's network namespace and
/// sends an event per carrier change, as the kernel reports it (no polling).
///
/// It first sends one event per existing interface with its current state,
/// so the receiver starts from the truth rather than from an assumption,
/// then one event each time an interface's carrier state flips, appears or
/// disappears (a vanished interface reports `carrier_up: false`). If the
/// kernel drops notifications because the socket buffer overflowed, the
/// watcher re-reads all interfaces and reports whatever changed meanwhile.
///
/// Runs until the receiver of `events` is dropped (then returns `Ok`) or the
/// netlink socket fails. Must run inside a tokio runtime.
pub async fn watch_carrier(events: Sender<CarrierEvent>) -> Result<(), LinuxError> {
    let watch_error = |cause| LinuxError::WatchLinks { cause };
    // Subscribe before the first dump, so no change can fall between the
    // dump and the subscription. A change seen by both is reported once; a
    // flip already undone by the time of the dump may be replayed (up, then
    // down again), but the last event per interface is always the kernel's
    // latest state.
    let notifications = link_notifications().map_err(watch_error)?;
    let netlink = Netlink::connect()?;
    let mut table = LinkTable::default();

    let snapshot = netlink.links().await.map_err(watch_error)?;
    if !send_all(&events, table.resync(&snapshot)).await {
        return Ok(());
    }
    loop {
        let datagram = tokio::select! {
            () = events.closed() => return Ok(()),
            datagram = receive(&notifications) => datagram,
        };
        let mut changes = Vec::new();
        match datagram {
            Ok(datagram) => {
                for message in wire::messages(&datagram) {
                    match message.kind {
                        RTM_NEWLINK => {
                            changes.extend(
                                Link::parse(message.payload).and_then(|link| table.observe(&link)),
                            );
                        }
                        RTM_DELLINK => {
                            changes.extend(
                                Link::parse(message.payload)
                                    .and_then(|link| table.remove(link.index)),
                            );
                        }
                        NLMSG_OVERRUN => changes.extend(resync(&netlink, &mut table).await?),
                        _ => {}
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                changes = resync(&netlink, &mut table).await?;
            }
            Err(e) => return Err(watch_error(e)),
        }
        if !send_all(&events, changes).await {
            return Ok(());
        }
    }
}

/// After lost notifications: what changed meanwhile, from a fresh dump.
async fn resync(netlink: &Netlink, table: &mut LinkTable) -> Result<Vec<CarrierEvent>, LinuxError> {
    tracing::warn!("link notifications lost (socket buffer full); re-reading links");
    let links = netlink
        .links()
        .await
        .map_err(|cause| LinuxError::WatchLinks { cause })?;
    Ok(table.resync(&links))
}

/// Sends in order; false once the receiver is gone.
async fn send_all(events: &Sender<CarrierEvent>, changes: Vec<CarrierEvent>) -> bool {
    for event in changes {
        tracing::debug!(ifindex = event.ifindex, name = %event.name, up = event.carrier_up, "carrier");
        if events.send(event).await.is_err() {
            return false;
        }
    }
    true
}

/// The last carrier state reported per interface. A `BTreeMap`, so a resync
/// reports in a stable order.
#[derive(Debug, Default)]
pub(crate) struct LinkTable {
    links: BTreeMap<u32, CarrierEvent>,
}

impl LinkTable {
    /// Records an `RTM_NEWLINK`; returns an event if the interface is new or
    /// its carrier state flipped. Most notifications (MTU, statistics,
    /// addresses of the link layer) change nothing and return `None`.
    pub(crate) fn observe(&mut self, link: &Link) -> Option<CarrierEvent> {
        let ifindex = link.index;
        let now = CarrierEvent {
            ifindex,
            name: link
                .name
                .clone()
                .or_else(|| self.links.get(&ifindex).map(|known| known.name.clone()))
                .unwrap_or_default(),
            carrier_up: carrier_up(link),
        };
        let changed = self
            .links
            .get(&ifindex)
            .is_none_or(|before| before.carrier_up != now.carrier_up);
        self.links.insert(ifindex, now.clone());
        changed.then_some(now)
    }

    /// Records an `RTM_DELLINK`: a vanished interface carries nothing.
    pub(crate) fn remove(&mut self, ifindex: u32) -> Option<CarrierEvent> {
        let gone = self.links.remove(&ifindex)?;
        Some(CarrierEvent {
            carrier_up: false,
            ..gone
        })
    }

    /// Replaces the table with a full dump; returns what differs from what
    /// was reported before (new, flipped, vanished).
    pub(crate) fn resync(&mut self, dump: &[Link]) -> Vec<CarrierEvent> {
        let present: Vec<u32> = dump.iter().map(|link| link.index).collect();
        let vanished: Vec<u32> = self
            .links
            .keys()
            .copied()
            .filter(|ifindex| !present.contains(ifindex))
            .collect();
        let mut changes: Vec<CarrierEvent> = vanished
            .into_iter()
            .filter_map(|ifindex| self.remove(ifindex))
            .collect();
        changes.extend(dump.iter().filter_map(|link| self.observe(link)));
        changes
    }
}

/// Up means usable: the flags say administratively up with the lower layer
/// up (`IFF_LOWER_UP`, the carrier), and RFC 2863 operstate, where the
/// driver reports one, is neither down nor dormant (a Wi-Fi station not yet
/// authenticated is `dormant` with its carrier on). Loopback and TUN devices
/// report operstate `unknown`, which does not count against them.
fn carrier_up(link: &Link) -> bool {
    if link.flags & IFF_UP == 0 || link.flags & IFF_LOWER_UP == 0 {
        return false;
    }
    matches!(link.operstate, None | Some(IF_OPER_UP | IF_OPER_UNKNOWN))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::linux::wire::{IF_OPER_DORMANT, IF_OPER_DOWN, IF_OPER_LOWERLAYERDOWN};

    /// A link as the kernel would send it, read back through the parser.
    fn link(ifindex: u32, name: &str, flags: u32, state: u8) -> Link {
        let sent = Link {
            index: ifindex,
            flags,
            name: Some(name.to_owned()),
            operstate: Some(state),
            mtu: None,
        };
        Link::parse(&sent.encode()).unwrap_or_default()
    }

    fn up(ifindex: u32, name: &str) -> Link {
        link(ifindex, name, IFF_UP | IFF_LOWER_UP, IF_OPER_UP)
    }

    fn no_carrier(ifindex: u32, name: &str) -> Link {
        link(ifindex, name, IFF_UP, IF_OPER_LOWERLAYERDOWN)
    }

    fn event(ifindex: u32, name: &str, carrier_up: bool) -> CarrierEvent {
        CarrierEvent {
            ifindex,
            name: name.to_owned(),
            carrier_up,
        }
    }

    #[test]
    fn carrier_needs_up_lower_up_and_a_live_operstate() {
        assert!(carrier_up(&up(2, "eth0")));
        assert!(!carrier_up(&no_carrier(2, "eth0")));
        assert!(!carrier_up(&link(2, "eth0", 0, IF_OPER_DOWN)));
        let dormant = link(3, "wlan0", IFF_UP | IFF_LOWER_UP, IF_OPER_DORMANT);
        assert!(!carrier_up(&dormant));
        let tun = link(4, "fm0", IFF_UP | IFF_LOWER_UP, IF_OPER_UNKNOWN);
        assert!(carrier_up(&tun));
    }

    #[test]
    fn only_flips_are_reported() {
        let mut table = LinkTable::default();
        assert_eq!(table.observe(&up(2, "eth0")), Some(event(2, "eth0", true)));
        // An MTU change or statistics update: same carrier, no event.
        assert_eq!(table.observe(&up(2, "eth0")), None);
        assert_eq!(
            table.observe(&no_carrier(2, "eth0")),
            Some(event(2, "eth0", false))
        );
        assert_eq!(table.observe(&no_carrier(2, "eth0")), None);
        assert_eq!(table.observe(&up(2, "eth0")), Some(event(2, "eth0", true)));
    }

    #[test]
    fn vanished_interface_reports_down_once() {
        let mut table = LinkTable::default();
        table.observe(&up(2, "eth0"));
        assert_eq!(table.remove(2), Some(event(2, "eth0", false)));
        assert_eq!(table.remove(2), None);
    }

    #[test]
    fn resync_reports_only_the_difference() {
        let mut table = LinkTable::default();
        assert_eq!(
            table.resync(&[up(1, "lo"), up(2, "eth0"), up(3, "eth1")]),
            vec![
                event(1, "lo", true),
                event(2, "eth0", true),
                event(3, "eth1", true),
            ]
        );
        // While notifications were lost: eth0 lost carrier, eth1 vanished.
        assert_eq!(
            table.resync(&[up(1, "lo"), no_carrier(2, "eth0")]),
            vec![event(3, "eth1", false), event(2, "eth0", false)]
        );
    }
}
