//! Kernel policy routing for a public Wi-Fi client interface, over
//! rtnetlink:
//!
//! * the node's client addresses on the interface (first host of the IPv4
//!   subnet, `::1` of the /64), which also give the kernel its connected
//!   routes to the clients in the main table (needed for `rp_filter`);
//! * table [`CLIENT_TABLE`]: `default dev fm0` (IPv4 and IPv6) and the
//!   client prefixes on the client interface;
//! * a rule per family `iif <client-if> lookup 72` at [`CLIENT_RULE_PRIORITY`],
//!   ahead of the main table, so packets from clients can only go into the
//!   mesh or back to clients: never to a LAN or the uplink the node itself
//!   uses (the local table, priority 0, still comes first, so clients reach
//!   the node's own client address for DHCP and ND);
//! * strict reverse-path filtering (`rp_filter=1`) on the interface.
//!
//! Routes and rules carry [`RTPROT_FREIMESH`] like the agent's other
//! routes: [`ClientInterface::open`] first removes any left by a crashed
//! agent, [`ClientInterface::close`] removes them and the addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rtnetlink::{
    IpVersion, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        address::{AddressAttribute, AddressFlags},
        route::{RouteMessage, RouteProtocol, RouteScope, RouteType},
        rule::{RuleAction, RuleAttribute, RuleMessage},
    },
};

use super::{
    LinuxError, RTPROT_FREIMESH, error::os_error, messages::address_message, netlink::Netlink,
};

/// The routing table for traffic from public clients.
pub const CLIENT_TABLE: u32 = 72;
/// The priority of the `iif <client-if>` rules: before `main` (32766).
pub const CLIENT_RULE_PRIORITY: u32 = 7200;

/// The node's own address in each client prefix: the first host of the
/// IPv4 subnet, `::1` of the /64, with the prefix length kept.
pub fn node_client_addresses(prefixes: &[IpNet]) -> Vec<IpNet> {
    prefixes
        .iter()
        .filter_map(|prefix| match prefix.trunc() {
            IpNet::V4(net) => {
                let first = u32::from(net.network()).checked_add(1)?;
                (net.prefix_len() < 31).then(|| {
                    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(first), net.prefix_len()))
                })
            }
            IpNet::V6(net) => {
                let first = u128::from(net.network()).checked_add(1)?;
                (net.prefix_len() < 128).then(|| {
                    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(first), net.prefix_len()))
                })
            }
        })
        .collect()
}

/// A route in the client table: `prefix dev <ifindex>`, tagged.
pub(crate) fn client_table_route(prefix: IpNet, ifindex: u32) -> RouteMessage {
    let mut message = match prefix.trunc() {
        IpNet::V4(net) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.network(), net.prefix_len())
            .scope(RouteScope::Link)
            .table_id(CLIENT_TABLE)
            .build(),
        IpNet::V6(net) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(net.network(), net.prefix_len())
            .table_id(CLIENT_TABLE)
            .build(),
    };
    message.header.protocol = RouteProtocol::from(RTPROT_FREIMESH);
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(rtnetlink::packet_route::route::RouteAttribute::Oif(ifindex));
    message
}

/// Whether a dumped route is one of ours in the client table.
pub(crate) fn is_our_client_route(message: &RouteMessage) -> bool {
    let table = message
        .attributes
        .iter()
        .find_map(|a| match a {
            rtnetlink::packet_route::route::RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table));
    table == CLIENT_TABLE && message.header.protocol == RouteProtocol::from(RTPROT_FREIMESH)
}

/// Whether a dumped rule is one of ours.
pub(crate) fn is_our_rule(message: &RuleMessage) -> bool {
    message
        .attributes
        .contains(&RuleAttribute::Protocol(RouteProtocol::from(
            RTPROT_FREIMESH,
        )))
}

/// A public Wi-Fi node's client interface while the agent manages it.
#[derive(Debug)]
pub struct ClientInterface {
    netlink: Netlink,
    name: String,
    ifindex: u32,
    addresses: Vec<IpNet>,
}

impl ClientInterface {
    /// Sets up `interface` for the client prefixes (see the module docs),
    /// routing client traffic into the TUN device `tun_ifindex`.
    pub async fn open(
        interface: &str,
        tun_ifindex: u32,
        prefixes: &[IpNet],
    ) -> Result<Self, LinuxError> {
        let netlink = Netlink::connect()?;
        let ifindex = link_index(&netlink, interface).await?;
        let this = Self {
            netlink,
            name: interface.to_owned(),
            ifindex,
            addresses: node_client_addresses(prefixes),
        };
        this.remove_rules_and_routes().await?;
        this.netlink
            .handle()
            .link()
            .set(LinkUnspec::new_with_index(ifindex).up().build())
            .execute()
            .await
            .map_err(|e| LinuxError::ClientInterface {
                interface: interface.to_owned(),
                what: "bringing it up".into(),
                cause: os_error(e),
            })?;
        for address in &this.addresses {
            this.add_address(*address).await?;
        }
        // Without a client prefix of a family, its default still goes
        // into the mesh: the rule must never fall through to `main`.
        let routes = [IpNet::V4(Ipv4Net::default()), IpNet::V6(Ipv6Net::default())]
            .map(|default| (default, tun_ifindex))
            .into_iter()
            .chain(prefixes.iter().map(|prefix| (prefix.trunc(), ifindex)));
        for (prefix, oif) in routes {
            this.netlink
                .handle()
                .route()
                .add(client_table_route(prefix, oif))
                .replace()
                .execute()
                .await
                .map_err(|e| LinuxError::AddRoute {
                    prefix,
                    device: format!("interface #{oif} (table {CLIENT_TABLE})"),
                    cause: os_error(e),
                })?;
        }
        for v6 in [false, true] {
            let rule = this
                .netlink
                .handle()
                .rule()
                .add()
                .input_interface(interface)
                .table_id(CLIENT_TABLE)
                .priority(CLIENT_RULE_PRIORITY)
                .action(RuleAction::ToTable);
            let result =
                if v6 {
                    let mut rule = rule.v6();
                    rule.message_mut().attributes.push(RuleAttribute::Protocol(
                        RouteProtocol::from(RTPROT_FREIMESH),
                    ));
                    rule.execute().await
                } else {
                    let mut rule = rule.v4();
                    rule.message_mut().attributes.push(RuleAttribute::Protocol(
                        RouteProtocol::from(RTPROT_FREIMESH),
                    ));
                    rule.execute().await
                };
            result.map_err(|e| LinuxError::ClientInterface {
                interface: interface.to_owned(),
                what: format!("adding rule iif {interface} lookup {CLIENT_TABLE}"),
                cause: os_error(e),
            })?;
        }
        let rp_filter = format!("/proc/sys/net/ipv4/conf/{interface}/rp_filter");
        std::fs::write(&rp_filter, "1").map_err(|cause| LinuxError::ClientInterface {
            interface: interface.to_owned(),
            what: format!("writing {rp_filter}"),
            cause,
        })?;
        tracing::info!(%interface, addresses = ?this.addresses, table = CLIENT_TABLE, "client interface ready");
        Ok(this)
    }

    /// The node's addresses on the interface.
    pub fn addresses(&self) -> &[IpNet] {
        &self.addresses
    }

    /// Name of the interface.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the rules, the client table's routes and the addresses.
    pub async fn close(self) -> Result<(), LinuxError> {
        self.remove_rules_and_routes().await?;
        for address in &self.addresses {
            match self
                .netlink
                .handle()
                .address()
                .del(address_message(self.ifindex, *address))
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) => {
                    let cause = os_error(e);
                    // Gone already (the interface went, or someone removed it).
                    if cause.raw_os_error() != Some(libc::EADDRNOTAVAIL)
                        && cause.raw_os_error() != Some(libc::ENODEV)
                    {
                        return Err(LinuxError::RemoveAddress {
                            address: *address,
                            device: self.name.clone(),
                            cause,
                        });
                    }
                }
            }
        }
        tracing::info!(interface = %self.name, "client interface released");
        Ok(())
    }

    async fn add_address(&self, address: IpNet) -> Result<(), LinuxError> {
        let mut request =
            self.netlink
                .handle()
                .address()
                .add(self.ifindex, address.addr(), address.prefix_len());
        if address.addr().is_ipv6() {
            // dnsmasq binds and advertises from this address at once; a
            // tentative (DAD) address cannot be bound for a second.
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) => match os_error(e) {
                // Left by a crashed agent: it is the address we want.
                cause if cause.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                cause => Err(LinuxError::AddAddress {
                    address,
                    device: self.name.clone(),
                    cause,
                }),
            },
        }
    }

    /// Every tagged rule and every tagged route of the client table.
    async fn remove_rules_and_routes(&self) -> Result<(), LinuxError> {
        let handle = self.netlink.handle();
        let dump_error = |e| LinuxError::ClientInterface {
            interface: self.name.clone(),
            what: "listing rules and routes".into(),
            cause: os_error(e),
        };
        for version in [IpVersion::V4, IpVersion::V6] {
            let rules: Vec<RuleMessage> = handle
                .rule()
                .get(version)
                .execute()
                .try_collect()
                .await
                .map_err(dump_error)?;
            for rule in rules.into_iter().filter(is_our_rule) {
                handle.rule().del(rule).execute().await.map_err(|e| {
                    LinuxError::ClientInterface {
                        interface: self.name.clone(),
                        what: "removing a rule".into(),
                        cause: os_error(e),
                    }
                })?;
            }
        }
        let requests = [
            RouteMessageBuilder::<Ipv4Addr>::new()
                .table_id(CLIENT_TABLE)
                .build(),
            RouteMessageBuilder::<Ipv6Addr>::new()
                .table_id(CLIENT_TABLE)
                .build(),
        ];
        for request in requests {
            let routes: Vec<RouteMessage> = handle
                .route()
                .get(request)
                .execute()
                .try_collect()
                .await
                .map_err(dump_error)?;
            for route in routes.into_iter().filter(is_our_client_route) {
                handle.route().del(route).execute().await.map_err(|e| {
                    LinuxError::ClientInterface {
                        interface: self.name.clone(),
                        what: format!("removing a route of table {CLIENT_TABLE}"),
                        cause: os_error(e),
                    }
                })?;
            }
        }
        Ok(())
    }
}

async fn link_index(netlink: &Netlink, name: &str) -> Result<u32, LinuxError> {
    let mut links = netlink
        .handle()
        .link()
        .get()
        .match_name(name.to_owned())
        .execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(LinuxError::ClientInterface {
            interface: name.to_owned(),
            what: "looking it up".into(),
            cause: std::io::Error::from_raw_os_error(libc::ENODEV),
        }),
        Err(e) => Err(LinuxError::ClientInterface {
            interface: name.to_owned(),
            what: "looking it up".into(),
            cause: os_error(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| match s.parse() {
                Ok(net) => net,
                Err(e) => panic!("bad test prefix {s}: {e}"),
            })
            .collect()
    }

    #[test]
    fn node_takes_the_first_host_of_each_prefix() {
        assert_eq!(
            node_client_addresses(&nets(&[
                "10.100.4.0/24",
                "fd99:0:0:104::/64",
                "10.100.5.9/24"
            ])),
            nets(&["10.100.4.1/24", "fd99:0:0:104::1/64", "10.100.5.1/24"])
        );
        // No room for clients besides the node: nothing to serve.
        assert_eq!(
            node_client_addresses(&nets(&["10.100.4.0/31", "fd99::/128"])),
            vec![]
        );
    }

    #[test]
    fn client_routes_are_tagged_in_table_72() {
        let message = client_table_route("10.100.4.0/24".parse().unwrap_or_default(), 5);
        assert!(is_our_client_route(&message));
        assert_eq!(message.header.table, 72);
        assert_eq!(message.header.scope, RouteScope::Link);
        let mut foreign = client_table_route(IpNet::V6(Ipv6Net::default()), 5);
        foreign.header.protocol = RouteProtocol::Boot;
        assert!(!is_our_client_route(&foreign));
    }

    #[test]
    fn only_tagged_rules_are_ours() {
        let mut rule = RuleMessage::default();
        assert!(!is_our_rule(&rule));
        rule.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::from(
                RTPROT_FREIMESH,
            )));
        assert!(is_our_rule(&rule));
    }
}
