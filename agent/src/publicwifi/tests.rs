//! The public Wi-Fi side against the kernel: a veth pair stands in for the
//! client interface (the far end in a second namespace is "the client"),
//! a veth without ARP for `fm0`. Checks what start sets up, that a spoofed
//! source is dropped while a client-prefix source passes, that a client
//! gets DHCP and ping from the node but not SSH or LuCI, and that stop
//! removes everything.

use std::time::Duration;

use super::{DhcpService, PublicWifi, PublicWifiSettings};
use crate::linux::tests::{PeerNamespace, in_netns, sh};

async fn output(program: &str, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Packets sent out of `fm0`. `/proc/thread-self/net`, not `/sys` or
/// `/proc/net`: those show the namespace of the mount or of the process,
/// while this test's namespace is its thread's.
async fn fm0_tx_packets() -> Result<u64, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("fm0:"))
        .ok_or("no fm0 in /proc/thread-self/net/dev")?;
    // Receive: 8 fields after the name, then transmit bytes and packets.
    let fields: Vec<&str> = line.split_whitespace().collect();
    Ok(fields.get(10).ok_or("short /proc/net/dev line")?.parse()?)
}

#[test]
fn client_interface_is_fenced_routed_into_the_mesh_and_released() {
    in_netns(
        "client_interface_is_fenced_routed_into_the_mesh_and_released",
        || async {
            let client = PeerNamespace::create("client")?;
            let state = tempfile::tempdir()?;
            sh("ip", &["link", "set", "lo", "up"]).await?;
            // A veth without ARP stands in for the TUN device: packets routed to
            // it leave at once and are counted (no dummy module on every host).
            sh(
                "ip",
                &[
                    "link", "add", "fm0", "type", "veth", "peer", "name", "fm0peer",
                ],
            )
            .await?;
            sh("ip", &["link", "set", "fm0", "arp", "off"]).await?;
            sh("ip", &["link", "set", "fm0peer", "up"]).await?;
            sh("ip", &["link", "set", "fm0", "up"]).await?;
            sh(
                "ip",
                &[
                    "link",
                    "add",
                    "cl0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "sta0",
                    "netns",
                    &client.name,
                ],
            )
            .await?;
            client.exec("ip", &["link", "set", "sta0", "up"]).await?;
            client
                .exec("ip", &["addr", "add", "10.100.4.50/24", "dev", "sta0"])
                .await?;
            client
                .exec("ip", &["addr", "add", "10.7.0.9/24", "dev", "sta0"])
                .await?;
            let netlink = crate::linux::tests::netlink()?;
            let fm0 = crate::linux::tests::ifindex(&netlink, "fm0")
                .await?
                .ok_or("no fm0")?;
            let wifi = PublicWifi::start(&PublicWifiSettings {
                interface: "cl0".into(),
                tun_name: "fm0".into(),
                tun_ifindex: fm0,
                client_prefixes: vec!["10.100.4.0/24".parse()?, "fd99:0:0:104::/64".parse()?],
                dhcp: DhcpService::Dnsmasq {
                    binary: "dnsmasq".into(),
                },
                dns: vec!["9.9.9.9".parse()?],
                lease_time: Duration::from_secs(3600),
                state_dir: state.path().to_owned(),
            })
            .await?;

            let rules = output("ip", &["-4", "rule", "show"]).await?;
            assert!(
                rules.contains("7200:\tfrom all iif cl0 lookup 72 proto 70"),
                "{rules}"
            );
            let rules6 = output("ip", &["-6", "rule", "show"]).await?;
            assert!(rules6.contains("iif cl0 lookup 72 proto 70"), "{rules6}");
            let table = output("ip", &["-4", "route", "show", "table", "72"]).await?;
            assert!(table.contains("default dev fm0 proto 70"), "{table}");
            assert!(table.contains("10.100.4.0/24 dev cl0 proto 70"), "{table}");
            let table6 = output("ip", &["-6", "route", "show", "table", "72"]).await?;
            assert!(table6.contains("default dev fm0 proto 70"), "{table6}");
            let addresses = output("ip", &["addr", "show", "dev", "cl0"]).await?;
            assert!(addresses.contains("inet 10.100.4.1/24"), "{addresses}");
            assert!(
                addresses.contains("inet6 fd99:0:0:104::1/64"),
                "{addresses}"
            );
            assert_eq!(
                std::fs::read_to_string("/proc/sys/net/ipv4/conf/cl0/rp_filter")?.trim(),
                "1"
            );
            let tables = output("nft", &["list", "tables"]).await?;
            assert!(tables.contains("table inet freimesh_clients"), "{tables}");
            assert!(state.path().join("dnsmasq-cl0.conf").exists());

            // A client-prefix source toward the internet goes into the mesh;
            // a spoofed one is dropped before routing. Forwarding must be on
            // for the node to route at all.
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
            client
                .exec(
                    "ip",
                    &[
                        "route",
                        "add",
                        "default",
                        "via",
                        "10.100.4.1",
                        "src",
                        "10.100.4.50",
                    ],
                )
                .await?;
            let before = fm0_tx_packets().await?;
            let _ = client
                .exec(
                    "ping",
                    &["-c", "1", "-W", "1", "-I", "10.100.4.50", "198.51.100.7"],
                )
                .await;
            let legit = fm0_tx_packets().await? - before;
            let before = fm0_tx_packets().await?;
            let _ = client
                .exec(
                    "ping",
                    &["-c", "1", "-W", "1", "-I", "10.7.0.9", "198.51.100.7"],
                )
                .await;
            let spoofed = fm0_tx_packets().await? - before;
            assert_eq!((legit, spoofed), (1, 0));

            // On the node itself a client reaches DHCP and ping, nothing
            // else: SSH and LuCI listen on its client address, so without
            // the input chain these connections would succeed.
            let _ssh = std::net::TcpListener::bind("10.100.4.1:22")?;
            let _luci = std::net::TcpListener::bind("10.100.4.1:80")?;
            client
                .exec("ping", &["-c", "1", "-W", "2", "10.100.4.1"])
                .await?;
            client
                .exec(
                    "busybox",
                    &[
                        "udhcpc",
                        "-i",
                        "sta0",
                        "-f",
                        "-n",
                        "-q",
                        "-t",
                        "5",
                        "-T",
                        "1",
                        "-s",
                        "/bin/true",
                    ],
                )
                .await
                .map_err(|e| format!("DHCP from the client side: {e}"))?;
            for port in [22, 80] {
                let connect = format!("exec 3<>/dev/tcp/10.100.4.1/{port}");
                let attempt = client.exec("timeout", &["2", "bash", "-c", &connect]).await;
                assert!(
                    attempt.is_err(),
                    "TCP {port} on the node reachable from a client"
                );
            }
            let input = output(
                "nft",
                &["list", "chain", "inet", "freimesh_clients", "input"],
            )
            .await?;
            let dropped: u64 = input
                .lines()
                .find(|l| l.contains("counter packets") && l.trim_end().ends_with("drop"))
                .and_then(|l| l.split_whitespace().skip_while(|w| *w != "packets").nth(1))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("no drop counter in {input}"))?;
            assert!(dropped >= 2, "the input chain dropped {dropped}: {input}");

            wifi.stop().await?;
            let rules = output("ip", &["rule", "show"]).await?;
            assert!(!rules.contains("lookup 72"), "{rules}");
            let table = output("ip", &["-4", "route", "show", "table", "72"]).await?;
            assert!(table.trim().is_empty(), "{table}");
            let addresses = output("ip", &["addr", "show", "dev", "cl0"]).await?;
            assert!(!addresses.contains("10.100.4.1"), "{addresses}");
            let tables = output("nft", &["list", "tables"]).await?;
            assert!(!tables.contains("freimesh_clients"), "{tables}");
            Ok(())
        },
    );
}
