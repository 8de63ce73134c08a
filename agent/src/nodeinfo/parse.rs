//! Pure parsers for the files the collector reads: text in, values out, no
//! I/O, so every format quirk is tested without a file system.

use freimesh_proto::telemetry::{MAX_LOAD_CENTI, MAX_UPTIME_S, PPM};

/// The value of `key` in a shell-style assignment file
/// (`/etc/openwrt_release`, `/etc/os-release`): `KEY='v'`, `KEY="v"` or
/// `KEY=v`, quotes removed, OpenWrt's `'\''` escape undone. Every key is
/// optional; the last assignment wins; lines that are no assignment are
/// skipped.
pub fn shell_value(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        found = Some(unquote(v.trim()));
    }
    found
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].replace("'\\''", "'");
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return v[1..v.len() - 1].replace("\\\"", "\"");
    }
    v.to_owned()
}

/// Seconds since boot from `/proc/uptime` (`"12345.67 23456.78"`).
pub fn uptime_s(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let whole = first.split('.').next()?;
    whole.parse::<u64>().ok().filter(|u| *u <= MAX_UPTIME_S)
}

/// The 1-minute load average in hundredths from `/proc/loadavg`
/// (`"0.42 0.30 0.25 1/123 4567"`), parsed without floats.
pub fn load_centi(text: &str) -> Option<u32> {
    let first = text.split_whitespace().next()?;
    let (whole, frac) = first.split_once('.').unwrap_or((first, "0"));
    let whole: u32 = whole.parse().ok()?;
    let frac_digits: String = frac.chars().take(2).collect();
    let frac: u32 = format!("{frac_digits:0<2}").parse().ok()?;
    whole
        .checked_mul(100)?
        .checked_add(frac)
        .filter(|l| *l <= MAX_LOAD_CENTI)
}

/// `(MemTotal, MemAvailable)` in KiB from `/proc/meminfo`; before Linux
/// 3.14 there is no `MemAvailable`, then free + buffers + cached stands in.
pub fn memory_kib(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = field("MemTotal");
    let available = field("MemAvailable").or_else(|| {
        Some(field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0))
    });
    let available = match (total, available) {
        (Some(t), Some(a)) => Some(a.min(t)),
        (_, a) => a,
    };
    (total, available)
}

/// Used share of a file system in ppm from its block counts (as `df`
/// computes it: what is neither free nor reserved counts as used).
pub fn used_ppm(blocks: u64, blocks_free: u64) -> Option<u32> {
    if blocks == 0 {
        return None;
    }
    let used = blocks.saturating_sub(blocks_free.min(blocks));
    let ppm = u128::from(used) * u128::from(PPM) / u128::from(blocks);
    u32::try_from(ppm).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_values_with_every_quoting() {
        let text = "DISTRIB_ID='OpenWrt'\nDISTRIB_RELEASE='23.05.3'\nDISTRIB_DESCRIPTION='It'\\''s OpenWrt'\nNAME=\"Debian GNU/Linux\"\nID=debian\n# comment\ngarbage\n";
        assert_eq!(shell_value(text, "DISTRIB_ID").as_deref(), Some("OpenWrt"));
        assert_eq!(
            shell_value(text, "DISTRIB_DESCRIPTION").as_deref(),
            Some("It's OpenWrt")
        );
        assert_eq!(
            shell_value(text, "NAME").as_deref(),
            Some("Debian GNU/Linux")
        );
        assert_eq!(shell_value(text, "ID").as_deref(), Some("debian"));
        assert_eq!(shell_value(text, "DISTRIB_ARCH"), None);
    }

    #[test]
    fn proc_files() {
        assert_eq!(uptime_s("350735.47 234388.90\n"), Some(350_735));
        assert_eq!(uptime_s("nonsense"), None);
        assert_eq!(load_centi("0.42 0.30 0.25 1/123 4567\n"), Some(42));
        assert_eq!(load_centi("12.5 1 1"), Some(1_250));
        assert_eq!(load_centi("-1.0"), None);
        let meminfo = "MemTotal:         124680 kB\nMemFree:           40000 kB\nMemAvailable:      61234 kB\n";
        assert_eq!(memory_kib(meminfo), (Some(124_680), Some(61_234)));
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 25 kB\n";
        assert_eq!(memory_kib(old), (Some(1_000), Some(175)));
        assert_eq!(used_ppm(1_000, 250), Some(750_000));
        assert_eq!(used_ppm(0, 0), None);
        assert_eq!(used_ppm(10, 20), Some(0));
    }
}
