//! Desired kernel state minus actual kernel state = a typed list of changes.
//!
//! Pure: no netlink here, so the rules that decide what the agent touches are
//! unit-tested without privileges. [`super::netlink`] produces the actual
//! state and applies the changes.

use std::{collections::BTreeSet, fmt};

use ipnet::IpNet;

use super::ROUTE_METRIC;

/// One route the agent owns: a prefix into an interface at a metric, in the
/// main table, tagged [`super::RTPROT_FREIMESH`]. The kernel keys routes by
/// (table, prefix, tos, metric); the interface is part of our key too, so a
/// tagged route left on another device counts as stale, not as ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Destination, host bits cleared.
    pub prefix: IpNet,
    /// Output interface index.
    pub ifindex: u32,
    /// Route metric (`RTA_PRIORITY`).
    pub metric: u32,
}

/// The part of the kernel's state the backend manages. Sorted sets, so the
/// diff comes out in the same order every time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetState {
    /// Addresses on the TUN device, host bits kept.
    pub addresses: BTreeSet<IpNet>,
    /// Routes tagged with the agent's protocol in the main table.
    pub routes: BTreeSet<Route>,
}

impl NetState {
    /// What the settings ask for on the device with index `ifindex`.
    pub fn desired(addresses: &[IpNet], routes: &[IpNet], ifindex: u32) -> Self {
        Self {
            addresses: addresses.iter().copied().collect(),
            routes: routes
                .iter()
                // The kernel refuses an IPv4 prefix with host bits set
                // (EINVAL) and stores IPv6 ones cleared, which the diff
                // would then never match.
                .map(|prefix| Route {
                    prefix: prefix.trunc(),
                    ifindex,
                    metric: ROUTE_METRIC,
                })
                .collect(),
        }
    }
}

/// One step that brings the kernel closer to the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Delete a tagged route that is not desired (stale).
    RemoveRoute(Route),
    /// Delete an address from the device.
    RemoveAddress(IpNet),
    /// Add an address to the device.
    AddAddress(IpNet),
    /// Install a route.
    AddRoute(Route),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RemoveRoute(route) => write!(f, "remove route {route}"),
            Self::RemoveAddress(address) => write!(f, "remove address {address}"),
            Self::AddAddress(address) => write!(f, "add address {address}"),
            Self::AddRoute(route) => write!(f, "add route {route}"),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} dev #{} metric {}",
            self.prefix, self.ifindex, self.metric
        )
    }
}

/// The changes that turn `actual` into `desired`, in the order to apply
/// them: removals first, because the kernel refuses a second route with the
/// same (prefix, metric) even on another device (EEXIST), so a stale route
/// must go before its replacement comes. Routes are removed before
/// addresses and added after them, so no route of ours outlives or predates
/// the addresses local programs would use as source over it.
///
/// IPv6 link-local addresses the kernel added to the device are left alone.
pub fn diff(desired: &NetState, actual: &NetState) -> Vec<Change> {
    let remove_routes = actual
        .routes
        .difference(&desired.routes)
        .copied()
        .map(Change::RemoveRoute);
    let remove_addresses = actual
        .addresses
        .difference(&desired.addresses)
        .filter(|address| !kernel_managed(address))
        .copied()
        .map(Change::RemoveAddress);
    let add_addresses = desired
        .addresses
        .difference(&actual.addresses)
        .copied()
        .map(Change::AddAddress);
    let add_routes = desired
        .routes
        .difference(&actual.routes)
        .copied()
        .map(Change::AddRoute);
    remove_routes
        .chain(remove_addresses)
        .chain(add_addresses)
        .chain(add_routes)
        .collect()
}

/// Addresses the diff never removes: addrconf gives the device an IPv6
/// link-local address when it comes up, and that one is the kernel's.
fn kernel_managed(address: &IpNet) -> bool {
    match address {
        IpNet::V6(net) => net.addr().is_unicast_link_local(),
        IpNet::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUN: u32 = 7;

    fn net(s: &str) -> IpNet {
        match s.parse() {
            Ok(net) => net,
            Err(e) => panic!("bad test prefix {s}: {e}"),
        }
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| net(s)).collect()
    }

    fn route(prefix: &str, ifindex: u32) -> Route {
        Route {
            prefix: net(prefix),
            ifindex,
            metric: ROUTE_METRIC,
        }
    }

    fn desired() -> NetState {
        NetState::desired(
            &nets(&["10.99.0.1/32", "fd99::1/128"]),
            &nets(&["10.99.0.0/16", "fd99::/64"]),
            TUN,
        )
    }

    #[test]
    fn fresh_device_gets_addresses_then_routes() {
        let changes = diff(&desired(), &NetState::default());
        assert_eq!(
            changes,
            vec![
                Change::AddAddress(net("10.99.0.1/32")),
                Change::AddAddress(net("fd99::1/128")),
                Change::AddRoute(route("10.99.0.0/16", TUN)),
                Change::AddRoute(route("fd99::/64", TUN)),
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_kernel_matches() {
        assert_eq!(diff(&desired(), &desired()), vec![]);
    }

    #[test]
    fn stale_routes_are_removed_before_new_ones_are_added() {
        let mut actual = desired();
        // Left behind by a crashed agent: an old mesh prefix on a device
        // that no longer exists, and the current prefix on another device.
        actual.routes.insert(route("10.98.0.0/16", 3));
        actual.routes.remove(&route("fd99::/64", TUN));
        actual.routes.insert(route("fd99::/64", 1));
        assert_eq!(
            diff(&desired(), &actual),
            vec![
                Change::RemoveRoute(route("10.98.0.0/16", 3)),
                Change::RemoveRoute(route("fd99::/64", 1)),
                Change::AddRoute(route("fd99::/64", TUN)),
            ]
        );
    }

    #[test]
    fn route_with_other_metric_is_replaced() {
        let mut actual = desired();
        let mut odd = route("10.99.0.0/16", TUN);
        odd.metric = 5;
        actual.routes.remove(&route("10.99.0.0/16", TUN));
        actual.routes.insert(odd);
        assert_eq!(
            diff(&desired(), &actual),
            vec![
                Change::RemoveRoute(odd),
                Change::AddRoute(route("10.99.0.0/16", TUN)),
            ]
        );
    }

    #[test]
    fn host_bits_are_cleared_and_duplicates_merged() {
        let state = NetState::desired(&[], &nets(&["10.99.3.4/16", "10.99.0.0/16"]), TUN);
        assert_eq!(
            state.routes.into_iter().collect::<Vec<_>>(),
            vec![route("10.99.0.0/16", TUN)]
        );
    }

    #[test]
    fn addresses_keep_host_bits() {
        let state = NetState::desired(&nets(&["10.99.0.1/16"]), &[], TUN);
        assert!(state.addresses.contains(&net("10.99.0.1/16")));
    }

    #[test]
    fn stale_address_is_removed_but_link_local_stays() {
        let mut actual = desired();
        actual.addresses.insert(net("10.99.0.9/32"));
        actual.addresses.insert(net("fe80::1234/64"));
        assert_eq!(
            diff(&desired(), &actual),
            vec![Change::RemoveAddress(net("10.99.0.9/32"))]
        );
    }

    #[test]
    fn empty_desired_state_removes_everything_ours() {
        let mut actual = desired();
        actual.addresses.insert(net("fe80::1/64"));
        assert_eq!(
            diff(&NetState::default(), &actual),
            vec![
                Change::RemoveRoute(route("10.99.0.0/16", TUN)),
                Change::RemoveRoute(route("fd99::/64", TUN)),
                Change::RemoveAddress(net("10.99.0.1/32")),
                Change::RemoveAddress(net("fd99::1/128")),
            ]
        );
    }

    #[test]
    fn changes_read_like_ip_route() {
        let change = Change::AddRoute(route("10.99.0.0/16", TUN));
        assert_eq!(
            change.to_string(),
            "add route 10.99.0.0/16 dev #7 metric 1024"
        );
    }
}
