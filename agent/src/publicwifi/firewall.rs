//! The nftables table that fences in a public Wi-Fi client interface
//! (`table inet freimesh_clients`), applied with the `nft` tool:
//!
//! * **prerouting** (priority raw, before conntrack and routing):
//!   anti-spoofing. A packet from the client interface must come from a
//!   client prefix, or be DHCP from `0.0.0.0`, or ICMPv6 from `::`
//!   (duplicate address detection) or from a link-local address (ND, RS,
//!   MLD); everything else from that interface is dropped;
//! * **input**: clients reach only the services a client needs on the
//!   node: DHCPv4 (UDP 67, to the broadcast or the node's client address),
//!   ICMP to the node's client address, ICMPv6 (ND, RS, MLD, echo) to its
//!   client, link-local and multicast addresses, and DNS (UDP and TCP 53,
//!   to the client addresses) only when the node answers DNS itself.
//!   Everything else is dropped and counted: SSH, LuCI, the controller
//!   socket, any other port, and the router's other addresses (its LAN or
//!   management address) whatever the port;
//! * **forward**: what clients send leaves only through `fm0`, into the
//!   mesh, whatever a route might say.

use ipnet::IpNet;

use crate::gateway::nat::split_families;
use crate::linux::nft;

/// The nftables family and table of the client interface's rules.
pub const CLIENT_FAMILY: &str = "inet";
pub const CLIENT_TABLE_NAME: &str = "freimesh_clients";

/// The ruleset for `interface` with the node's client addresses
/// `node_addresses` (prefix length = the client prefix) and the mesh
/// device `tun`; `serves_dns`: the node answers DNS on its client
/// addresses (no `[public_wifi] dns` servers configured). Deterministic,
/// for comparison and tests.
pub fn client_ruleset(
    interface: &str,
    tun: &str,
    node_addresses: &[IpNet],
    serves_dns: bool,
) -> String {
    let (v4_prefixes, v6_prefixes) = split_families(node_addresses);
    let v4_own: Vec<String> = node_addresses
        .iter()
        .filter(|a| matches!(a, IpNet::V4(_)))
        .map(|a| a.addr().to_string())
        .collect();
    let v6_own: Vec<String> = node_addresses
        .iter()
        .filter(|a| matches!(a, IpNet::V6(_)))
        .map(|a| a.addr().to_string())
        .collect();
    let i = format!("iifname \"{interface}\"");
    let mut b = String::new();
    b.push_str("\tchain prerouting {\n");
    b.push_str("\t\ttype filter hook prerouting priority raw; policy accept;\n");
    b.push_str(&format!("\t\tiifname != \"{interface}\" accept\n"));
    if !v4_prefixes.is_empty() {
        b.push_str(&format!(
            "\t\tip saddr {{ {} }} accept\n",
            v4_prefixes.join(", ")
        ));
    }
    b.push_str("\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n");
    if !v6_prefixes.is_empty() {
        b.push_str(&format!(
            "\t\tip6 saddr {{ {} }} accept\n",
            v6_prefixes.join(", ")
        ));
    }
    b.push_str("\t\tip6 saddr { ::, fe80::/10 } meta l4proto ipv6-icmp accept\n");
    b.push_str("\t\tcounter drop\n");
    b.push_str("\t}\n");
    b.push_str("\tchain input {\n");
    b.push_str("\t\ttype filter hook input priority filter; policy accept;\n");
    if !v4_own.is_empty() {
        let own = v4_own.join(", ");
        b.push_str(&format!(
            "\t\t{i} ip daddr {{ 255.255.255.255, {own} }} udp dport 67 accept\n"
        ));
        b.push_str(&format!(
            "\t\t{i} ip daddr {{ {own} }} meta l4proto icmp accept\n"
        ));
        if serves_dns {
            b.push_str(&format!(
                "\t\t{i} ip daddr {{ {own} }} udp dport 53 accept\n"
            ));
            b.push_str(&format!(
                "\t\t{i} ip daddr {{ {own} }} tcp dport 53 accept\n"
            ));
        }
    }
    let mut v6_icmp = vec!["fe80::/10".to_owned(), "ff00::/8".to_owned()];
    v6_icmp.extend(v6_own.iter().cloned());
    b.push_str(&format!(
        "\t\t{i} ip6 daddr {{ {} }} meta l4proto ipv6-icmp accept\n",
        v6_icmp.join(", ")
    ));
    if serves_dns && !v6_own.is_empty() {
        let own = v6_own.join(", ");
        b.push_str(&format!(
            "\t\t{i} ip6 daddr {{ {own} }} udp dport 53 accept\n"
        ));
        b.push_str(&format!(
            "\t\t{i} ip6 daddr {{ {own} }} tcp dport 53 accept\n"
        ));
    }
    b.push_str(&format!("\t\t{i} counter drop\n"));
    b.push_str("\t}\n");
    b.push_str("\tchain forward {\n");
    b.push_str("\t\ttype filter hook forward priority filter; policy accept;\n");
    b.push_str(&format!("\t\t{i} oifname != \"{tun}\" counter drop\n"));
    b.push_str("\t}\n");
    nft::replace_table(CLIENT_FAMILY, CLIENT_TABLE_NAME, &b)
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
    fn ruleset_admits_only_client_sources_and_leaves_only_into_the_mesh() {
        let ruleset = client_ruleset(
            "wlan0",
            "fm0",
            &nets(&["10.100.4.1/24", "fd99:0:0:104::1/64"]),
            true,
        );
        let expected = "table inet freimesh_clients {}\n\
delete table inet freimesh_clients\n\
table inet freimesh_clients {\n\
\tchain prerouting {\n\
\t\ttype filter hook prerouting priority raw; policy accept;\n\
\t\tiifname != \"wlan0\" accept\n\
\t\tip saddr { 10.100.4.0/24 } accept\n\
\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n\
\t\tip6 saddr { fd99:0:0:104::/64 } accept\n\
\t\tip6 saddr { ::, fe80::/10 } meta l4proto ipv6-icmp accept\n\
\t\tcounter drop\n\
\t}\n\
\tchain input {\n\
\t\ttype filter hook input priority filter; policy accept;\n\
\t\tiifname \"wlan0\" ip daddr { 255.255.255.255, 10.100.4.1 } udp dport 67 accept\n\
\t\tiifname \"wlan0\" ip daddr { 10.100.4.1 } meta l4proto icmp accept\n\
\t\tiifname \"wlan0\" ip daddr { 10.100.4.1 } udp dport 53 accept\n\
\t\tiifname \"wlan0\" ip daddr { 10.100.4.1 } tcp dport 53 accept\n\
\t\tiifname \"wlan0\" ip6 daddr { fe80::/10, ff00::/8, fd99:0:0:104::1 } meta l4proto ipv6-icmp accept\n\
\t\tiifname \"wlan0\" ip6 daddr { fd99:0:0:104::1 } udp dport 53 accept\n\
\t\tiifname \"wlan0\" ip6 daddr { fd99:0:0:104::1 } tcp dport 53 accept\n\
\t\tiifname \"wlan0\" counter drop\n\
\t}\n\
\tchain forward {\n\
\t\ttype filter hook forward priority filter; policy accept;\n\
\t\tiifname \"wlan0\" oifname != \"fm0\" counter drop\n\
\t}\n\
}\n";
        assert_eq!(ruleset, expected);
    }

    #[test]
    fn without_local_dns_port_53_is_closed_and_nothing_else_opens() {
        let ruleset = client_ruleset(
            "wlan0",
            "fm0",
            &nets(&["10.100.4.1/24", "fd99:0:0:104::1/64"]),
            false,
        );
        assert!(!ruleset.contains("dport 53"), "{ruleset}");
        // Whatever the settings: the only ports opened to clients are DHCP
        // and DNS, so SSH (22), LuCI (80/443) and the rest hit the drop.
        for with_dns in [false, true] {
            let ruleset = client_ruleset(
                "wlan0",
                "fm0",
                &nets(&["10.100.4.1/24", "fd99:0:0:104::1/64"]),
                with_dns,
            );
            let input = ruleset
                .split("chain input {")
                .nth(1)
                .and_then(|rest| rest.split("chain forward").next())
                .unwrap_or_default();
            for line in input.lines().filter(|l| l.contains("dport")) {
                assert!(
                    line.contains("dport 67") || line.contains("dport 53"),
                    "{line}"
                );
            }
            let accepts: Vec<&str> = input.lines().filter(|l| l.ends_with(" accept")).collect();
            assert!(
                accepts.iter().all(|l| l.contains("dport")
                    || l.contains("l4proto icmp")
                    || l.contains("l4proto ipv6-icmp")),
                "{accepts:?}"
            );
            assert!(input.contains("\t\tiifname \"wlan0\" counter drop\n"));
        }
    }

    #[test]
    fn without_an_ipv4_subnet_no_ipv4_client_is_admitted() {
        let ruleset = client_ruleset("wlan0", "fm0", &nets(&["fd99:0:0:104::1/64"]), true);
        assert!(!ruleset.contains("ip saddr {"));
        assert!(!ruleset.contains("ip daddr"));
        // Still dropped at the end of prerouting.
        assert!(ruleset.contains("\t\tcounter drop\n"));
    }
}
