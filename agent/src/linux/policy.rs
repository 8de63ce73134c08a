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

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    LinuxError, RTPROT_FREIMESH,
    netlink::Netlink,
    wire::{
        self, AF_INET, AF_INET6, RT_SCOPE_LINK, RTM_DELROUTE, RTM_DELRULE, RTM_NEWRULE,
        RTN_UNICAST, RouteMessage,
    },
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
    let prefix = prefix.trunc();
    let mut message = RouteMessage::new(prefix.network(), prefix.prefix_len());
    if prefix.addr().is_ipv4() {
        message.scope = RT_SCOPE_LINK;
    }
    message.table = CLIENT_TABLE;
    message.protocol = RTPROT_FREIMESH;
    message.kind = RTN_UNICAST;
    message.oif = Some(ifindex);
    message
}

/// Whether a dumped route is one of ours in the client table.
pub(crate) fn is_our_client_route(message: &RouteMessage) -> bool {
    message.table == CLIENT_TABLE && message.protocol == RTPROT_FREIMESH
}

/// Whether a dumped rule is one of ours.
pub(crate) fn is_our_rule(payload: &[u8]) -> bool {
    wire::rule_protocol(payload) == Some(RTPROT_FREIMESH)
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
            .request(&wire::set_link(ifindex, None, Some(true)))
            .await
            .map_err(|cause| LinuxError::ClientInterface {
                interface: interface.to_owned(),
                what: "bringing it up".into(),
                cause,
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
                .request(&client_table_route(prefix, oif).add(true))
                .await
                .map_err(|cause| LinuxError::AddRoute {
                    prefix,
                    device: format!("interface #{oif} (table {CLIENT_TABLE})"),
                    cause,
                })?;
        }
        for family in [AF_INET, AF_INET6] {
            let rule = wire::add_rule(
                family,
                interface,
                CLIENT_TABLE,
                CLIENT_RULE_PRIORITY,
                RTPROT_FREIMESH,
            );
            this.netlink
                .request(&rule)
                .await
                .map_err(|cause| LinuxError::ClientInterface {
                    interface: interface.to_owned(),
                    what: format!("adding rule iif {interface} lookup {CLIENT_TABLE}"),
                    cause,
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
            match self.netlink.remove_address(self.ifindex, *address).await {
                Ok(()) => {}
                // Gone already (the interface went, or someone removed it).
                Err(cause)
                    if cause.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                        || cause.raw_os_error() == Some(libc::ENODEV) => {}
                Err(cause) => {
                    return Err(LinuxError::RemoveAddress {
                        address: *address,
                        device: self.name.clone(),
                        cause,
                    });
                }
            }
        }
        tracing::info!(interface = %self.name, "client interface released");
        Ok(())
    }

    async fn add_address(&self, address: IpNet) -> Result<(), LinuxError> {
        // dnsmasq binds and advertises from an IPv6 address at once; a
        // tentative (DAD) address cannot be bound for a second.
        let no_dad = address.addr().is_ipv6();
        match self
            .netlink
            .add_address(self.ifindex, address, no_dad)
            .await
        {
            Ok(()) => Ok(()),
            // Left by a crashed agent: it is the address we want.
            Err(cause) if cause.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(cause) => Err(LinuxError::AddAddress {
                address,
                device: self.name.clone(),
                cause,
            }),
        }
    }

    /// Every tagged rule and every tagged route of the client table.
    async fn remove_rules_and_routes(&self) -> Result<(), LinuxError> {
        let failed = |what: String| {
            move |cause| LinuxError::ClientInterface {
                interface: self.name.clone(),
                what,
                cause,
            }
        };
        for family in [AF_INET, AF_INET6] {
            let rules = self
                .netlink
                .exchange(&wire::dump_rules(family), RTM_NEWRULE)
                .await
                .map_err(failed("listing rules and routes".into()))?;
            for rule in rules.iter().filter(|rule| is_our_rule(rule)) {
                self.netlink
                    .request(&wire::echo(RTM_DELRULE, rule))
                    .await
                    .map_err(failed("removing a rule".into()))?;
            }
        }
        let routes = self
            .netlink
            .dump_routes()
            .await
            .map_err(failed("listing rules and routes".into()))?;
        for payload in &routes {
            if RouteMessage::parse(payload).is_some_and(|route| is_our_client_route(&route)) {
                self.netlink
                    .request(&wire::echo(RTM_DELROUTE, payload))
                    .await
                    .map_err(failed(format!("removing a route of table {CLIENT_TABLE}")))?;
            }
        }
        Ok(())
    }
}

async fn link_index(netlink: &Netlink, name: &str) -> Result<u32, LinuxError> {
    let failed = |cause| LinuxError::ClientInterface {
        interface: name.to_owned(),
        what: "looking it up".into(),
        cause,
    };
    match netlink.link_by_name(name).await {
        Ok(Some(link)) => Ok(link.index),
        Ok(None) => Err(failed(std::io::Error::from_raw_os_error(libc::ENODEV))),
        Err(cause) => Err(failed(cause)),
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
        let sent = RouteMessage::parse(&message.payload());
        assert!(sent.is_some_and(|route| is_our_client_route(&route)));
        assert_eq!(message.payload()[4], 72);
        assert_eq!(message.scope, RT_SCOPE_LINK);
        let mut foreign = client_table_route(IpNet::V6(Ipv6Net::default()), 5);
        foreign.protocol = 3; // RTPROT_BOOT
        assert!(!is_our_client_route(&foreign));
    }

    #[test]
    fn only_tagged_rules_are_ours() {
        let ours = wire::add_rule(AF_INET, "wlan1", CLIENT_TABLE, 7200, RTPROT_FREIMESH).encode(1);
        let payloads: Vec<&[u8]> = wire::messages(&ours).map(|m| m.payload).collect();
        assert!(payloads.iter().all(|payload| is_our_rule(payload)));
        let foreign = wire::add_rule(AF_INET, "wlan1", CLIENT_TABLE, 7200, 4).encode(1);
        assert!(wire::messages(&foreign).all(|m| !is_our_rule(m.payload)));
        // A rule without protocol attribute (as older tools add them).
        assert!(!is_our_rule(&[0; 12]));
    }
}
