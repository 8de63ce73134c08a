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

use futures::{StreamExt, TryStreamExt};
use rtnetlink::{
    Handle, MulticastGroup,
    packet_core::NetlinkPayload,
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkFlags, LinkMessage, State},
    },
};
use tokio::sync::mpsc::Sender;

use super::{
    LinuxError,
    error::os_error,
    messages::{lookup_message, output_interface},
    netlink::{ConnectionTask, Netlink},
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
    let mut answer = netlink.handle().route().get(lookup_message(peer)).execute();
    while let Some(route) = answer
        .try_next()
        .await
        .map_err(|e| lookup_error(os_error(e)))?
    {
        if let Some(oif) = output_interface(&route) {
            return Ok(oif);
        }
    }
    Err(lookup_error(io::Error::other(
        "the kernel's answer names no output interface",
    )))
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
    let (connection, handle, mut notifications) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(watch_error)?;
    let _task = ConnectionTask::spawn(connection);
    let mut table = LinkTable::default();

    let snapshot = dump_links(&handle).await?;
    if !send_all(&events, table.resync(&snapshot)).await {
        return Ok(());
    }
    loop {
        let notification = tokio::select! {
            () = events.closed() => return Ok(()),
            notification = notifications.next() => notification,
        };
        let Some((message, _)) = notification else {
            return Err(watch_error(io::Error::other("netlink connection closed")));
        };
        let changes = match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                table.observe(&link).into_iter().collect()
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                table.remove(link.header.index).into_iter().collect()
            }
            NetlinkPayload::Overrun(_) => {
                tracing::warn!("link notifications lost (socket buffer full); re-reading links");
                table.resync(&dump_links(&handle).await?)
            }
            _ => Vec::new(),
        };
        if !send_all(&events, changes).await {
            return Ok(());
        }
    }
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

async fn dump_links(handle: &Handle) -> Result<Vec<LinkMessage>, LinuxError> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| LinuxError::WatchLinks { cause: os_error(e) })
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
    pub(crate) fn observe(&mut self, link: &LinkMessage) -> Option<CarrierEvent> {
        let ifindex = link.header.index;
        let now = CarrierEvent {
            ifindex,
            name: name_of(link)
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
    pub(crate) fn resync(&mut self, dump: &[LinkMessage]) -> Vec<CarrierEvent> {
        let present: Vec<u32> = dump.iter().map(|link| link.header.index).collect();
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

fn name_of(link: &LinkMessage) -> Option<String> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
}

/// Up means usable: the flags say administratively up with the lower layer
/// up (`IFF_LOWER_UP`, the carrier), and RFC 2863 operstate, where the
/// driver reports one, is neither down nor dormant (a Wi-Fi station not yet
/// authenticated is `dormant` with its carrier on). Loopback and TUN devices
/// report operstate `unknown`, which does not count against them.
fn carrier_up(link: &LinkMessage) -> bool {
    let flags = link.header.flags;
    if !flags.contains(LinkFlags::Up) || !flags.contains(LinkFlags::LowerUp) {
        return false;
    }
    let operstate = link
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::OperState(state) => Some(*state),
            _ => None,
        });
    matches!(operstate, None | Some(State::Up | State::Unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, name: &str, flags: LinkFlags, state: State) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = ifindex;
        message.header.flags = flags;
        message.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::OperState(state),
        ];
        message
    }

    fn up(ifindex: u32, name: &str) -> LinkMessage {
        link(ifindex, name, LinkFlags::Up | LinkFlags::LowerUp, State::Up)
    }

    fn no_carrier(ifindex: u32, name: &str) -> LinkMessage {
        link(ifindex, name, LinkFlags::Up, State::LowerLayerDown)
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
        assert!(!carrier_up(&link(
            2,
            "eth0",
            LinkFlags::empty(),
            State::Down
        )));
        let dormant = link(
            3,
            "wlan0",
            LinkFlags::Up | LinkFlags::LowerUp,
            State::Dormant,
        );
        assert!(!carrier_up(&dormant));
        let tun = link(4, "fm0", LinkFlags::Up | LinkFlags::LowerUp, State::Unknown);
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
