//! A standard WireGuard site in the city lab: the box in namespace `b2`
//! runs nothing of ours, only wireguard-go, `wg` and `ip`, configured from
//! the file `freimesh-controller site export` prints.
//!
//! The lab reads the wg-quick file itself instead of running wg-quick
//! (which wants resolvconf and a systemd-ish host): `Address` lines go on
//! the interface, every `AllowedIPs` prefix becomes a route into it, and
//! the rest (`wg-quick strip`'s output) goes to `wg setconf`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use ipnet::IpNet;

use super::{GW2, NAMES, SITE_HOST};
use crate::lab::Lab;
use crate::netns_mesh::LAB_PORT;
use crate::traffic::retry;

/// The node the site joins through, and the underlay veth between them.
pub const SITE_VIA: usize = GW2;
pub const SITE_NS: &str = "b2";
const VIA_ADDR: Ipv4Addr = Ipv4Addr::new(172, 29, 0, 1);

/// Where the site reaches its via node: what the operator passes to
/// `site export --endpoint` (the controller cannot know which of the via
/// node's addresses the site sees).
pub fn via_endpoint() -> SocketAddr {
    SocketAddr::from((VIA_ADDR, LAB_PORT))
}
const SITE_ADDR: Ipv4Addr = Ipv4Addr::new(172, 29, 0, 2);

static SITE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Keys of wg-quick's `[Interface]` that `wg setconf` does not know.
const WG_QUICK_ONLY: [&str; 9] = [
    "address",
    "dns",
    "mtu",
    "table",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
];

/// Creates the site's namespace, its underlay veth to the via node and
/// the address its LAN host answers on (before the agents start).
pub fn add_underlay(lab: &mut Lab) -> anyhow::Result<()> {
    lab.add_namespace(SITE_NS)?;
    lab.veth(
        NAMES[SITE_VIA],
        &format!("to-{SITE_NS}"),
        &format!("{VIA_ADDR}/24"),
        SITE_NS,
        &format!("to-{}", NAMES[SITE_VIA]),
        &format!("{SITE_ADDR}/24"),
    )?;
    lab.exec(
        SITE_NS,
        &["ip", "addr", "add", &format!("{SITE_HOST}/32"), "dev", "lo"],
    )?;
    Ok(())
}

/// A parsed wg-quick file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgQuick {
    /// `[Interface] Address`.
    pub addresses: Vec<IpNet>,
    /// Every peer's `AllowedIPs`, in file order.
    pub allowed_ips: Vec<IpNet>,
    /// Every peer's `Endpoint`, as written.
    pub endpoints: Vec<String>,
    /// The file without wg-quick's own keys: what `wg setconf` reads.
    pub stripped: String,
}

impl WgQuick {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut addresses = Vec::new();
        let mut allowed_ips = Vec::new();
        let mut endpoints = Vec::new();
        let mut stripped = String::new();
        let mut section = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_ascii_lowercase();
                stripped.push_str(line);
                stripped.push('\n');
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("line {}: {raw:?} is not KEY = VALUE", n + 1))?;
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            let list = || -> anyhow::Result<Vec<IpNet>> {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        v.parse()
                            .with_context(|| format!("line {}: {v:?} is not a prefix", n + 1))
                    })
                    .collect()
            };
            match (section.as_str(), key.as_str()) {
                ("[interface]", "address") => addresses.extend(list()?),
                ("[interface]", k) if WG_QUICK_ONLY.contains(&k) => {}
                ("[peer]", "allowedips") => {
                    allowed_ips.extend(list()?);
                    stripped.push_str(line);
                    stripped.push('\n');
                }
                ("[peer]", "endpoint") => {
                    endpoints.push(value.to_owned());
                    stripped.push_str(line);
                    stripped.push('\n');
                }
                ("[interface]" | "[peer]", _) => {
                    stripped.push_str(line);
                    stripped.push('\n');
                }
                _ => bail!("line {}: {raw:?} outside [Interface] or [Peer]", n + 1),
            }
        }
        if addresses.is_empty() {
            bail!("no [Interface] Address");
        }
        if allowed_ips.is_empty() {
            bail!("no [Peer] AllowedIPs");
        }
        Ok(Self {
            addresses,
            allowed_ips,
            endpoints,
            stripped,
        })
    }

    /// The stripped config with `PrivateKey` set to `key` (an export for
    /// a site whose operator gave only its public key leaves it for them
    /// to fill in) and every `Endpoint` set to `endpoint` (the address the
    /// site reaches its via node at, which only the site's operator knows
    /// for sure).
    pub fn setconf(&self, key: &str, endpoint: Option<SocketAddr>) -> String {
        let has_key = self.stripped.to_ascii_lowercase().contains("privatekey");
        let mut out = String::new();
        for line in self.stripped.lines() {
            let lower = line.to_ascii_lowercase().replace(' ', "");
            if lower.starts_with("privatekey=") {
                out.push_str(&format!("PrivateKey = {key}\n"));
                continue;
            }
            match endpoint {
                Some(e) if lower.starts_with("endpoint=") => {
                    out.push_str(&format!("Endpoint = {e}\n"));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            if lower == "[interface]" && !has_key {
                out.push_str(&format!("PrivateKey = {key}\n"));
            }
        }
        out
    }
}

/// wireguard-go running the site's interface in its namespace; killed by
/// its own pid on drop.
#[derive(Debug)]
pub struct SiteBox {
    child: Child,
    pub ifname: String,
    pub config: WgQuick,
}

impl Drop for SiteBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SiteBox {
    /// Starts wireguard-go in the site's namespace and configures it from
    /// `export` with the site's private key `key`.
    pub fn start(
        lab: &Lab,
        dir: &std::path::Path,
        export: &str,
        key: &str,
    ) -> anyhow::Result<Self> {
        let config = WgQuick::parse(export).context("reading the exported wg-quick file")?;
        let n = SITE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let ifname = format!("fs{}x{n}", std::process::id() % 100_000);
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(SITE_NS),
                "wireguard-go",
                "-f",
                &ifname,
            ])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting wireguard-go")?;
        let this = Self {
            child,
            ifname: ifname.clone(),
            config,
        };
        retry(Duration::from_secs(10), || {
            lab.exec(SITE_NS, &["ip", "link", "show", &ifname])
                .map(drop)
        })?;
        let file = dir.join(format!("{ifname}.conf"));
        std::fs::write(&file, this.config.setconf(key, None))
            .with_context(|| format!("writing {}", file.display()))?;
        lab.exec(
            SITE_NS,
            &["wg", "setconf", &ifname, &file.to_string_lossy()],
        )?;
        for a in &this.config.addresses {
            lab.exec(
                SITE_NS,
                &["ip", "addr", "add", &a.to_string(), "dev", &ifname],
            )?;
        }
        lab.exec(SITE_NS, &["ip", "link", "set", &ifname, "up"])?;
        for p in &this.config.allowed_ips {
            lab.exec(
                SITE_NS,
                &[
                    "ip",
                    "route",
                    "replace",
                    &p.trunc().to_string(),
                    "dev",
                    &ifname,
                ],
            )?;
        }
        Ok(this)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = "# freimesh site b2 via gw2\n[Interface]\nPrivateKey = (fill in)\nAddress = 10.99.0.9/32, 10.20.2.0/24\nDNS = 10.99.0.1\n\n[Peer]\nPublicKey = abc=\nEndpoint = 192.0.2.7:51820\nAllowedIPs = 10.99.0.0/16, fd99::/48,10.20.1.0/24\nPersistentKeepalive = 25\n";

    #[test]
    fn wg_quick_keys_are_read_and_stripped() -> anyhow::Result<()> {
        let c = WgQuick::parse(EXPORT)?;
        assert_eq!(c.addresses.len(), 2);
        assert_eq!(c.allowed_ips.len(), 3);
        assert_eq!(c.endpoints, vec!["192.0.2.7:51820".to_owned()]);
        assert!(!c.stripped.contains("Address"));
        assert!(!c.stripped.contains("DNS"));
        assert!(c.stripped.contains("PersistentKeepalive = 25"));
        let set = c.setconf("KEY=", Some("172.29.0.1:51820".parse()?));
        assert!(set.contains("PrivateKey = KEY=\n"), "{set}");
        assert!(set.contains("Endpoint = 172.29.0.1:51820\n"), "{set}");
        assert!(!set.contains("fill in"));
        Ok(())
    }

    #[test]
    fn a_missing_private_key_is_added_to_the_interface() -> anyhow::Result<()> {
        let text = "[Interface]\nAddress = 10.99.0.9/32\n[Peer]\nPublicKey = abc=\nAllowedIPs = 10.99.0.0/16\n";
        let set = WgQuick::parse(text)?.setconf("K=", None);
        assert!(set.starts_with("[Interface]\nPrivateKey = K=\n"), "{set}");
        Ok(())
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(WgQuick::parse("[Interface]\nAddress = nonsense\n").is_err());
        assert!(WgQuick::parse("Address = 10.0.0.1/32\n").is_err());
        assert!(WgQuick::parse("[Interface]\nAddress = 10.0.0.1/32\n").is_err());
    }
}
