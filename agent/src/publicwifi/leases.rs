//! Counting a dnsmasq lease file: only the number of live leases leaves
//! this module, never a line of the file (each holds a client's MAC, its
//! address and often its host name).
//!
//! dnsmasq writes one lease per line, `<expiry> <MAC> <IP> <hostname>
//! <client-id>`, where the expiry is seconds since the epoch (0 = never
//! expires), plus a `duid <server DUID>` line once DHCPv6 is on. SLAAC
//! clients have no lease, so the count is of DHCPv4 (and DHCPv6) clients.
//! A lease file shared with other networks (OpenWrt's system dnsmasq) is
//! counted only inside the client prefixes ([`count_leases_within`]).

use ipnet::IpNet;
use std::{
    net::IpAddr,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

/// Live leases in the text of a lease file at `now` (seconds since the
/// epoch). Lines that are not leases (the `duid` line, anything garbled)
/// and expired leases are not counted.
pub fn count_leases(text: &str, now: u64) -> u32 {
    count_leases_within(text, now, &[])
}

/// Like [`count_leases`], counting only leases whose address is inside
/// one of `within` (all of them when `within` is empty).
pub fn count_leases_within(text: &str, now: u64, within: &[IpNet]) -> u32 {
    let live = text
        .lines()
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let Some(Ok(expiry)) = fields.next().map(str::parse::<u64>) else {
                return false;
            };
            // MAC (or IAID for DHCPv6) and address must be there.
            fields.next().is_some()
                && fields.next().is_some_and(|ip| {
                    ip.parse::<IpAddr>().is_ok_and(|ip| {
                        within.is_empty() || within.iter().any(|net| net.contains(&ip))
                    })
                })
                && (expiry == 0 || expiry > now)
        })
        .count();
    u32::try_from(live).unwrap_or(u32::MAX)
}

/// Live leases inside `within` (all if empty) in the file at `path` now;
/// a missing file (dnsmasq has not written one yet) counts as none.
pub fn count_lease_file(path: &Path, within: &[IpNet]) -> std::io::Result<u32> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(count_leases_within(&text, now, within))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn live_leases_are_counted_expired_and_garbage_are_not() {
        let text = "\
1700000600 02:00:00:00:00:01 10.100.4.17 laptop 01:02:00:00:00:00:01
1700000001 02:00:00:00:00:02 10.100.4.18 * *
1699999999 02:00:00:00:00:03 10.100.4.19 old *
0 02:00:00:00:00:04 10.100.4.20 static *
duid 00:01:00:01:2c:4f:aa:bb:02:00:00:00:00:09
1700000600 1234 fd99:0:0:104::77 phone 00:01:00:01
garbage
1700000600
1700000600 02:00:00:00:00:05 not-an-ip x *
-5 02:00:00:00:00:06 10.100.4.21 x *


";
        // 2 live v4, 1 that never expires, 1 live v6.
        assert_eq!(count_leases(text, NOW), 4);
    }

    #[test]
    fn a_shared_lease_file_is_counted_inside_the_client_prefixes_only() {
        // OpenWrt's system dnsmasq: the LAN's leases are in the same file.
        let text = "\
1700000600 02:00:00:00:00:01 10.100.4.17 laptop *
1700000600 02:00:00:00:00:02 192.168.1.20 desktop *
1700000600 1234 fd99:0:0:104::77 phone 00:01
1700000600 1235 fd00:1::5 printer 00:02
";
        let within: Vec<IpNet> = ["10.100.4.0/24", "fd99:0:0:104::/64"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        assert_eq!(count_leases_within(text, NOW, &within), 2);
        assert_eq!(count_leases_within(text, NOW, &[]), 4);
    }

    #[test]
    fn empty_file_counts_zero_and_missing_file_too() {
        assert_eq!(count_leases("", NOW), 0);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        assert_eq!(
            count_lease_file(&dir.path().join("leases"), &[]).ok(),
            Some(0)
        );
        let path = dir.path().join("present");
        std::fs::write(&path, "0 02:00:00:00:00:04 10.100.4.20 * *\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        assert_eq!(count_lease_file(&path, &[]).ok(), Some(1));
    }
}
