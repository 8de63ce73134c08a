//! Building and reading rtnetlink messages: pure functions between the
//! backend's types ([`Route`], [`IpNet`]) and the kernel's, so the mapping
//! (which routes count as ours, how a removal must look to hit exactly our
//! route) is unit-tested without privileges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::{
    AddressMessageBuilder, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        address::{AddressAttribute, AddressMessage},
        route::{
            RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
            RouteType,
        },
    },
};

use super::{RTPROT_FREIMESH, reconcile::Route};

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
    let (builder, family_scope) = match route.prefix {
        IpNet::V4(net) => (
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net.network(), net.prefix_len())
                .build(),
            // What `ip route add … dev X` uses for a route without gateway.
            RouteScope::Link,
        ),
        IpNet::V6(net) => (
            RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(net.network(), net.prefix_len())
                .build(),
            RouteScope::Universe,
        ),
    };
    let mut message = builder;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::from(RTPROT_FREIMESH);
    message.header.kind = RouteType::Unicast;
    message.header.scope = match op {
        RouteOp::Add => family_scope,
        // "Any scope", as `ip route del` sends: a stale route may have been
        // added with another scope than we would use.
        RouteOp::Remove => RouteScope::NoWhere,
    };
    message.attributes.push(RouteAttribute::Oif(route.ifindex));
    message
        .attributes
        .push(RouteAttribute::Priority(route.metric));
    message
}

pub(super) fn address_message(ifindex: u32, address: IpNet) -> AddressMessage {
    match address {
        IpNet::V4(net) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(ifindex)
            .address(net.addr(), net.prefix_len())
            .build(),
        IpNet::V6(net) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(ifindex)
            .address(net.addr(), net.prefix_len())
            .build(),
    }
}

/// The address of an `RTM_NEWADDR` message. For IPv4, `IFA_LOCAL` is the
/// interface's own address (`IFA_ADDRESS` is the peer on point-to-point
/// links); IPv6 only sends `IFA_ADDRESS`.
pub(super) fn address_of(message: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    match IpNet::new(ip, message.header.prefix_len) {
        Ok(net) => Some(net),
        Err(_) => {
            tracing::warn!(%ip, prefix_len = message.header.prefix_len, "kernel reported an impossible prefix length; ignored");
            None
        }
    }
}

/// One of our routes, if the dumped route is one: unicast, in the main
/// table, tagged [`RTPROT_FREIMESH`]. Other kinds (blackhole, …) are never
/// installed by the agent and left alone.
pub(super) fn our_route(message: &RouteMessage) -> Option<Route> {
    let header = &message.header;
    if header.protocol != RouteProtocol::from(RTPROT_FREIMESH)
        || header.kind != RouteType::Unicast
        || table_of(message) != u32::from(RouteHeader::RT_TABLE_MAIN)
    {
        return None;
    }
    let mut destination = None;
    let mut ifindex = 0;
    // The kernel omits RTA_PRIORITY for IPv4 metric 0.
    let mut metric = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                destination = Some(IpAddr::V4(*ip));
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                destination = Some(IpAddr::V6(*ip));
            }
            RouteAttribute::Oif(index) => ifindex = *index,
            RouteAttribute::Priority(priority) => metric = *priority,
            _ => {}
        }
    }
    // No RTA_DST means the default route of the family.
    let destination = destination.or(match header.address_family {
        AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        _ => None,
    })?;
    let prefix = IpNet::new(destination, header.destination_prefix_length).ok()?;
    Some(Route {
        prefix: prefix.trunc(),
        ifindex,
        metric,
    })
}

/// An `RTM_GETROUTE` for one address: with a destination set, rtnetlink
/// sends a lookup, not a dump, and the kernel answers with the one route it
/// would use (policy rules included).
pub(super) fn lookup_message(destination: IpAddr) -> RouteMessage {
    match destination {
        IpAddr::V4(address) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(address, 32)
            .build(),
        IpAddr::V6(address) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(address, 128)
            .build(),
    }
}

/// Tables above 255 only appear in `RTA_TABLE`; the header then says 252
/// (`RT_TABLE_COMPAT`).
fn table_of(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

pub(super) fn output_interface(message: &RouteMessage) -> Option<u32> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn route_messages_round_trip_through_the_dump_parser() {
        for route in [
            route("10.99.0.0/16", 7, 1024),
            route("fd99::/64", 7, 1024),
            route("0.0.0.0/0", 3, 0),
        ] {
            let message = route_message(&route, RouteOp::Add);
            assert_eq!(our_route(&message), Some(route));
        }
    }

    #[test]
    fn foreign_routes_are_not_ours() {
        let mut message = route_message(&route("10.99.0.0/16", 7, 1024), RouteOp::Add);
        message.header.protocol = RouteProtocol::Kernel;
        assert_eq!(our_route(&message), None);

        let mut message = route_message(&route("10.99.0.0/16", 7, 1024), RouteOp::Add);
        message.attributes.push(RouteAttribute::Table(1000));
        assert_eq!(our_route(&message), None);
    }

    #[test]
    fn removal_matches_any_scope_but_only_our_protocol() {
        let message = route_message(&route("10.99.0.0/16", 7, 1024), RouteOp::Remove);
        assert_eq!(message.header.scope, RouteScope::NoWhere);
        assert_eq!(
            message.header.protocol,
            RouteProtocol::from(RTPROT_FREIMESH)
        );
    }
}
