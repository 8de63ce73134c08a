//! The `[gateway]` and `[public_wifi]` sections of the agent's
//! configuration (`docs/agent-config.md`): what a node does besides
//! forwarding. Parsed like the rest of [`super`]: raw strings first, then
//! typed values with errors that name the field.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, check_ifname, field_err, parse_ip};
use crate::publicwifi::DhcpMode;

/// 50 ms probes with 3 misses declare an uplink dead within 150–200 ms:
/// inside the 300 ms client-visible gap the failover target allows.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(50);
pub const DEFAULT_CHECK_MISSES: u32 = 3;
pub const DEFAULT_DNSMASQ: &str = "dnsmasq";
pub const DEFAULT_UCI: &str = "uci";
/// One hour: clients renew at half of it, so a restarted node hears of
/// every client within 30 minutes without flooding the air with renewals.
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(3600);
/// dnsmasq refuses leases shorter than two minutes.
const MIN_LEASE_TIME: Duration = Duration::from_secs(120);

/// The `[gateway]` section: this node has an uplink to the internet and
/// offers itself as a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The interface toward the internet.
    pub uplink: String,
    /// Far-side addresses probed through the uplink (ICMP echo); the uplink
    /// is down when none of them answers `check_misses` probes in a row.
    pub check: Vec<IpAddr>,
    /// How often each check address is probed (`check_interval_ms`).
    pub check_interval: Duration,
    pub check_misses: u32,
    /// Masquerade public clients' traffic leaving through the uplink.
    pub nat: bool,
}

/// The `[public_wifi]` section: this node serves public Wi-Fi clients on
/// `interface`, with addresses from the client prefixes the controller
/// assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicWifiConfig {
    pub interface: String,
    /// The dnsmasq program (a name looked up in `PATH`, or a path).
    pub dnsmasq: PathBuf,
    /// DNS servers handed to clients; empty means the node's own address
    /// on the client interface (dnsmasq answers there).
    pub dns: Vec<IpAddr>,
    pub lease_time: Duration,
    /// Who serves DHCPv4 and router advertisements (`dhcp`).
    pub dhcp: DhcpMode,
    /// The `uci` program, for [`DhcpMode::OpenWrt`].
    pub uci: PathBuf,
    /// The OpenWrt network (`/etc/config/network`) whose device is
    /// `interface`, for [`DhcpMode::OpenWrt`]; default: `interface`.
    pub network: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub(super) uplink: String,
    pub(super) check: Vec<String>,
    pub(super) check_interval_ms: Option<i64>,
    pub(super) check_misses: Option<i64>,
    pub(super) nat: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublicWifi {
    pub(super) interface: String,
    pub(super) dnsmasq: Option<String>,
    pub(super) dns: Option<Vec<String>>,
    pub(super) lease_time: Option<String>,
    pub(super) dhcp: Option<String>,
    pub(super) uci: Option<String>,
    pub(super) network: Option<String>,
}

/// A dnsmasq-style duration: a number of seconds, or a number followed by
/// `s`, `m`, `h`, `d` or `w`.
fn parse_lease_time(field: &str, text: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        field_err(
            field,
            format!("{text:?} is not a lease time (e.g. \"1h\", \"30m\", \"86400\")"),
        )
    };
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let factor: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(bad()),
    };
    let count: u64 = digits.parse().map_err(|_| bad())?;
    let secs = count.checked_mul(factor).ok_or_else(bad)?;
    let lease = Duration::from_secs(secs);
    if lease < MIN_LEASE_TIME {
        return Err(field_err(
            field,
            format!("{text:?} is shorter than dnsmasq's minimum of 2 minutes"),
        ));
    }
    Ok(lease)
}

pub(super) fn check_gateway(raw: RawGateway) -> Result<GatewayConfig, ConfigError> {
    check_ifname("gateway.uplink", &raw.uplink)?;
    if raw.check.is_empty() {
        return Err(field_err(
            "gateway.check",
            "needs at least one far-side address to probe through the uplink",
        ));
    }
    let mut check: Vec<IpAddr> = Vec::new();
    for (i, text) in raw.check.iter().enumerate() {
        let field = format!("gateway.check[{i}]");
        let addr = parse_ip(&field, text)?;
        if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
            return Err(field_err(
                field,
                format!("{addr} cannot be probed through an uplink"),
            ));
        }
        if check.contains(&addr) {
            return Err(field_err(field, format!("{addr} is listed twice")));
        }
        check.push(addr);
    }
    let check_interval = match raw.check_interval_ms {
        None => DEFAULT_CHECK_INTERVAL,
        Some(ms) => u64::try_from(ms)
            .ok()
            .filter(|ms| (10..=60_000).contains(ms))
            .map(Duration::from_millis)
            .ok_or_else(|| {
                field_err(
                    "gateway.check_interval_ms",
                    format!("{ms} is outside 10..=60000 milliseconds"),
                )
            })?,
    };
    let check_misses = match raw.check_misses {
        None => DEFAULT_CHECK_MISSES,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| field_err("gateway.check_misses", format!("{n} is outside 1..=100")))?,
    };
    Ok(GatewayConfig {
        uplink: raw.uplink,
        check,
        check_interval,
        check_misses,
        nat: raw.nat.unwrap_or(true),
    })
}

pub(super) fn check_public_wifi(raw: RawPublicWifi) -> Result<PublicWifiConfig, ConfigError> {
    check_ifname("public_wifi.interface", &raw.interface)?;
    let dnsmasq = raw.dnsmasq.unwrap_or_else(|| DEFAULT_DNSMASQ.to_owned());
    if dnsmasq.trim().is_empty() {
        return Err(field_err("public_wifi.dnsmasq", "must name a program"));
    }
    let dns = raw
        .dns
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, t)| parse_ip(&format!("public_wifi.dns[{i}]"), t))
        .collect::<Result<Vec<_>, _>>()?;
    let lease_time = match raw.lease_time {
        None => DEFAULT_LEASE_TIME,
        Some(text) => parse_lease_time("public_wifi.lease_time", &text)?,
    };
    let dhcp = match raw.dhcp.as_deref() {
        None | Some("dnsmasq") => DhcpMode::Dnsmasq,
        Some("openwrt") => DhcpMode::OpenWrt,
        Some(other) => {
            return Err(field_err(
                "public_wifi.dhcp",
                format!(
                    "{other:?} is neither \"dnsmasq\" (the agent runs its own) nor \"openwrt\" (the system's dnsmasq and odhcpd via UCI)"
                ),
            ));
        }
    };
    let uci = raw.uci.unwrap_or_else(|| DEFAULT_UCI.to_owned());
    if uci.trim().is_empty() {
        return Err(field_err("public_wifi.uci", "must name a program"));
    }
    let network = raw.network.unwrap_or_else(|| raw.interface.clone());
    if network.is_empty()
        || !network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(field_err(
            "public_wifi.network",
            format!("{network:?} is not an OpenWrt network name (letters, digits, '_', '-', '.')"),
        ));
    }
    Ok(PublicWifiConfig {
        interface: raw.interface,
        dnsmasq: PathBuf::from(dnsmasq),
        dns,
        lease_time,
        dhcp,
        uci: PathBuf::from(uci),
        network,
    })
}
