//! Policy routing for a public Wi-Fi client interface against the kernel:
//! what a crashed agent left (rules and client-table routes of both
//! families, found by dumping and deleted as dumped) is replaced on the next
//! open, and close removes it all, leaving other routes of the table alone.

use super::*;
use crate::linux::{CLIENT_TABLE, ClientInterface};

/// What `ip ARGS…` prints.
async fn ip(args: &[&str]) -> Result<String, Box<dyn Error>> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|line| line.contains(needle)).count()
}

#[test]
fn client_interface_replaces_a_crashed_agents_leftovers_and_cleans_up() {
    in_netns(
        "client_interface_replaces_a_crashed_agents_leftovers_and_cleans_up",
        || async {
            let netlink = Netlink::connect()?;
            set_up(&netlink, "lo", true).await?;
            // Veth pairs stand in for the TUN device and the Wi-Fi interface.
            add_veth("fm0", "fm0peer").await?;
            add_veth("cl0", "cl0peer").await?;
            for name in ["fm0", "fm0peer", "cl0", "cl0peer"] {
                set_up(&netlink, name, true).await?;
            }
            let fm0 = ifindex(&netlink, "fm0").await?.ok_or("no fm0")?;
            let table = CLIENT_TABLE.to_string();
            let prefixes = nets(&["10.100.4.0/24", "fd99:0:0:104::/64"]);

            // A crashed agent: set up, never closed.
            drop(ClientInterface::open("cl0", fm0, &prefixes).await?);
            // Someone else's route in the same table.
            ip(&[
                "-6",
                "route",
                "add",
                "fd00:1::/64",
                "dev",
                "cl0",
                "table",
                &table,
            ])
            .await?;

            let client = ClientInterface::open("cl0", fm0, &prefixes).await?;
            for family in ["-4", "-6"] {
                let rules = ip(&[family, "rule", "show"]).await?;
                assert_eq!(count(&rules, "iif cl0 lookup 72 proto 70"), 1, "{rules}");
                let routes = ip(&[family, "route", "show", "table", &table]).await?;
                assert_eq!(count(&routes, "default dev fm0 proto 70"), 1, "{routes}");
                assert_eq!(count(&routes, "dev cl0 proto 70"), 1, "{routes}");
            }
            let addresses = ip(&["addr", "show", "dev", "cl0"]).await?;
            assert_eq!(count(&addresses, "inet 10.100.4.1/24"), 1, "{addresses}");
            assert_eq!(
                count(&addresses, "inet6 fd99:0:0:104::1/64"),
                1,
                "{addresses}"
            );

            client.close().await?;
            let rules = ip(&["rule", "show"]).await? + &ip(&["-6", "rule", "show"]).await?;
            assert_eq!(count(&rules, "lookup 72"), 0, "{rules}");
            let routes4 = ip(&["-4", "route", "show", "table", &table]).await?;
            assert!(routes4.trim().is_empty(), "{routes4}");
            let routes6 = ip(&["-6", "route", "show", "table", &table]).await?;
            assert_eq!(routes6.lines().count(), 1, "{routes6}");
            assert!(routes6.contains("fd00:1::/64 dev cl0"), "{routes6}");
            let addresses = ip(&["addr", "show", "dev", "cl0"]).await?;
            assert!(!addresses.contains("10.100.4.1"), "{addresses}");
            assert!(!addresses.contains("fd99:0:0:104::1"), "{addresses}");
            Ok(())
        },
    );
}
