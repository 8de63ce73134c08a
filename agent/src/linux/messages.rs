//! Between the backend's types ([`Route`], [`IpNet`]) and the kernel's
//! messages ([`super::wire`]): pure functions, so the mapping (which routes
//! count as ours, how a removal must look to hit exactly our route) is
//! unit-tested without privileges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{
    RTPROT_FREIMESH,
    reconcile::Route,
    wire::{
        AF_INET, AF_INET6, Address, RT_SCOPE_LINK, RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE,
        RT_TABLE_MAIN, RTN_UNICAST, RouteMessage,
    },
};

/// Whether a route message is to install or to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteOp {
    Add,
    Remove,
}

/// The netlink message for one of our routes. Removal carries the protocol,
/// so the kernel never deletes someone else's route of the same prefix, and
/// the metric, because a delete without one removes the lowest-metric match.
pub(super) fn route_message(route: &Route, op: RouteOp) -> RouteMessage {
    let prefix = route.prefix.trunc();
    let mut message = RouteMessage::new(prefix.network(), prefix.prefix_len());
    message.protocol = RTPROT_FREIMESH;
    message.scope = match (op, prefix) {
        // What `ip route add … dev X` uses for a route without gateway.
        (RouteOp::Add, IpNet::V4(_)) => RT_SCOPE_LINK,
        (RouteOp::Add, IpNet::V6(_)) => RT_SCOPE_UNIVERSE,
        // "Any scope", as `ip route del` sends: a stale route may have been
        // added with another scope than we would use.
        (RouteOp::Remove, _) => RT_SCOPE_NOWHERE,
    };
    message.oif = Some(route.ifindex);
    message.priority = Some(route.metric);
    message
}

/// The address of an `RTM_NEWADDR` message. For IPv4, `IFA_LOCAL` is the
/// interface's own address (`IFA_ADDRESS` is the peer on point-to-point
/// links); IPv6 only sends `IFA_ADDRESS`.
pub(super) fn address_of(message: &Address) -> Option<IpNet> {
    let ip = message.local.or(message.address)?;
    match IpNet::new(ip, message.prefix_len) {
        Ok(net) => Some(net),
        Err(_) => {
            tracing::warn!(%ip, prefix_len = message.prefix_len, "kernel reported an impossible prefix length; ignored");
            None
        }
    }
}

/// One of our routes, if the dumped route is one: unicast, in the main
/// table, tagged [`RTPROT_FREIMESH`]. Other kinds (blackhole, …) are never
/// installed by the agent and left alone.
pub(super) fn our_route(message: &RouteMessage) -> Option<Route> {
    if message.protocol != RTPROT_FREIMESH
        || message.kind != RTN_UNICAST
        || message.table != RT_TABLE_MAIN
    {
        return None;
    }
    // No RTA_DST means the default route of the family.
    let destination = message.destination.or(match message.family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        _ => None,
    })?;
    let prefix = IpNet::new(destination, message.destination_prefix_len).ok()?;
    Some(Route {
        prefix: prefix.trunc(),
        // The kernel omits RTA_PRIORITY for IPv4 metric 0.
        ifindex: message.oif.unwrap_or(0),
        metric: message.priority.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::wire::RTPROT_STATIC;

    fn route(prefix: &str, ifindex: u32, metric: u32) -> Route {
        match prefix.parse() {
            Ok(prefix) => Route {
                prefix,
                ifindex,
                metric,
            },
            Err(e) => panic!("bad test prefix {prefix}: {e}"),
        }
    }

    /// Through the bytes, as the kernel would send the route back.
    fn on_the_wire(message: &RouteMessage) -> Option<RouteMessage> {
        RouteMessage::parse(&message.payload())
    }

    #[test]
    fn route_messages_round_trip_through_the_dump_parser() {
        for route in [
            route("10.99.0.0/16", 7, 1024),
            route("fd99::/64", 7, 1024),
            route("0.0.0.0/0", 3, 0),
        ] {
            let message = route_message(&route, RouteOp::Add);
            let parsed = on_the_wire(&message);
            assert_eq!(parsed.and_then(|m| our_route(&m)), Some(route));
        }
    }

    #[test]
    fn default_route_without_destination_attribute_is_the_family_default() {
        let mut message = route_message(&route("::/0", 3, 5), RouteOp::Add);
        message.destination = None;
        assert_eq!(our_route(&message), Some(route("::/0", 3, 5)));
    }

    #[test]
    fn foreign_routes_are_not_ours() {
        let mut message = route_message(&route("10.99.0.0/16", 7, 1024), RouteOp::Add);
        message.protocol = RTPROT_STATIC;
        assert_eq!(on_the_wire(&message).and_then(|m| our_route(&m)), None);

        let mut message = route_message(&route("10.99.0.0/16", 7, 1024), RouteOp::Add);
        message.table = 1000;
        assert_eq!(on_the_wire(&message).and_then(|m| our_route(&m)), None);
    }

    #[test]
    fn removal_matches_any_scope_but_only_our_protocol() {
        let message = route_message(&route("10.99.0.0/16", 7, 1024), RouteOp::Remove);
        assert_eq!(message.scope, RT_SCOPE_NOWHERE);
        assert_eq!(message.protocol, RTPROT_FREIMESH);
        assert_eq!(message.priority, Some(1024));
    }

    #[test]
    fn ipv4_addresses_prefer_the_local_address() {
        let address = Address {
            family: AF_INET,
            prefix_len: 32,
            index: 2,
            local: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        };
        assert_eq!(address_of(&address), "10.0.0.1/32".parse().ok());
        let impossible = Address {
            prefix_len: 33,
            ..address
        };
        assert_eq!(address_of(&impossible), None);
    }
}
