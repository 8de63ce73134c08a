//! Fleet telemetry as the TUI reads it (issue 15): agent versions compared
//! numerically, uptimes in words, which nodes are short of memory, and the
//! two fleet-wide findings the overview turns into alerts (low memory and
//! version drift). Pure functions of the nodes the API sent and of `now`.

use std::cmp::Ordering;

use freimesh_proto::api::{Node, NodeState};
use freimesh_proto::telemetry::Statistics;

/// A node is short of memory when less than this share (in percent) of
/// its memory is available.
pub const LOW_MEMORY_PERCENT: u64 = 10;

/// An agent version, semver-like: up to three numeric parts (missing parts
/// are 0), an optional leading `v`; a pre-release (`-rc1`) sorts before
/// its release, build metadata (`+abc`) is ignored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub numbers: [u64; 3],
    /// True for a release, false for a pre-release: `true > false`, so a
    /// release sorts after its pre-releases.
    pub release: bool,
}

impl Version {
    /// Parses `0.3.0`, `v1.2`, `0.3.0-rc1+git`; `None` if the numeric part
    /// is not 1–3 dot-separated numbers.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text.split('+').next().unwrap_or(text);
        let (core, release) = match text.split_once('-') {
            Some((core, _pre)) => (core, false),
            None => (text, true),
        };
        let mut numbers = [0u64; 3];
        let mut parts = core.split('.');
        for slot in &mut numbers {
            match parts.next() {
                Some(part) => *slot = part.parse().ok()?,
                None => break,
            }
        }
        if parts.next().is_some() || core.is_empty() {
            return None;
        }
        Some(Version { numbers, release })
    }
}

/// Orders two agent version strings: missing ones first, then unparseable
/// ones by text, then parseable ones numerically.
pub fn compare_versions(a: Option<&str>, b: Option<&str>) -> Ordering {
    let key = |v: Option<&str>| v.map(|s| (Version::parse(s), s.to_string()));
    key(a).cmp(&key(b))
}

/// The node's agent version, if it reported one.
pub fn agent_version(node: &Node) -> Option<&str> {
    node.telemetry
        .info
        .as_ref()
        .map(|i| i.agent_version.as_str())
        .filter(|v| !v.is_empty())
}

/// The node's newest statistics, if any.
pub fn stats(node: &Node) -> Option<&Statistics> {
    node.telemetry.stats.as_ref()
}

/// How long the node has been up at `now_ms`, from its boot time; for an
/// offline node, how long it had been up at its last report (it may have
/// rebooted since, which we cannot know).
pub fn uptime_ms(node: &Node, now_ms: i64) -> Option<i64> {
    let until = match node.telemetry.stats_at_ms {
        Some(reported) if !node.online => reported.min(now_ms),
        _ => now_ms,
    };
    node.telemetry
        .boot_time_ms
        .map(|boot| until.saturating_sub(boot).max(0))
}

/// An uptime in its two largest units: `3 d 4 h`, `5 h 12 min`, `7 min`.
pub fn format_uptime(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    let (days, hours, mins) = (minutes / 1_440, minutes / 60 % 24, minutes % 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else {
        format!("{mins} min")
    }
}

/// Used memory in percent (0–100), when both values are known.
pub fn memory_used_percent(stats: &Statistics) -> Option<u64> {
    let total = stats.memory_total_kib.filter(|t| *t > 0)?;
    let available = stats.memory_available_kib?.min(total);
    Some((total - available) * 100 / total)
}

/// Less than [`LOW_MEMORY_PERCENT`] of the memory is available.
pub fn is_low_memory(stats: &Statistics) -> bool {
    match (stats.memory_total_kib, stats.memory_available_kib) {
        (Some(total), Some(available)) if total > 0 => {
            u128::from(available) * 100 < u128::from(total) * u128::from(LOW_MEMORY_PERCENT)
        }
        _ => false,
    }
}

/// A 1-minute load average in hundredths as `0.42`.
pub fn format_load(centi: u32) -> String {
    format!("{}.{:02}", centi / 100, centi % 100)
}

/// Whether the node counts for fleet alerts: revoked ones left the fleet.
fn in_fleet(node: &&Node) -> bool {
    node.state != NodeState::Revoked
}

/// Nodes with low memory, by id (the API sends nodes sorted by id);
/// revoked nodes are left out.
pub fn low_memory_nodes(nodes: &[Node]) -> Vec<&Node> {
    nodes
        .iter()
        .filter(in_fleet)
        .filter(|n| stats(n).is_some_and(is_low_memory))
        .collect()
}

/// Version drift: the newest agent version in the fleet and how many nodes
/// run an older one; `None` while every reporting node runs the newest.
/// Revoked nodes and unparseable versions are left out.
pub fn version_drift(nodes: &[Node]) -> Option<(String, usize)> {
    let versions: Vec<(Version, &str)> = nodes
        .iter()
        .filter(in_fleet)
        .filter_map(agent_version)
        .filter_map(|v| Version::parse(v).map(|parsed| (parsed, v)))
        .collect();
    let (newest, newest_text) = versions.iter().max_by(|a, b| a.0.cmp(&b.0))?;
    let older = versions.iter().filter(|(v, _)| v < newest).count();
    (older > 0).then(|| (newest_text.to_string(), older))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect(s)
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(v("0.10.0") > v("0.9.3"));
        assert!(v("1.0") > v("0.99.99"));
        assert_eq!(v("v0.3"), v("0.3.0"));
        assert!(v("0.3.0-rc1") < v("0.3.0"));
        assert!(v("0.3.0-rc1") > v("0.2.9"));
        assert_eq!(v("0.3.0+git1"), v("0.3.0"));
        assert_eq!(Version::parse(""), None);
        assert_eq!(Version::parse("abc"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert_eq!(Version::parse("1..2"), None);
    }

    #[test]
    fn version_strings_order_with_missing_and_odd_ones() {
        use Ordering::*;
        assert_eq!(compare_versions(Some("0.10.0"), Some("0.9.0")), Greater);
        assert_eq!(compare_versions(None, Some("0.1.0")), Less);
        assert_eq!(compare_versions(Some("odd"), Some("0.1.0")), Less);
        assert_eq!(compare_versions(Some("0.2.0"), Some("0.2.0")), Equal);
    }

    #[test]
    fn uptime_uses_the_two_largest_units() {
        let min = 60_000;
        assert_eq!(format_uptime(0), "0 min");
        assert_eq!(format_uptime(-5), "0 min");
        assert_eq!(format_uptime(7 * min), "7 min");
        assert_eq!(format_uptime((5 * 60 + 12) * min), "5 h 12 min");
        assert_eq!(format_uptime(((3 * 24 + 4) * 60 + 59) * min), "3 d 4 h");
    }

    #[test]
    fn fleet_findings_skip_revoked_nodes() {
        let mut nodes = crate::fixture::nodes();
        assert_eq!(version_drift(&nodes), Some(("0.3.0".to_string(), 3)));
        let low: Vec<u32> = low_memory_nodes(&nodes).iter().map(|n| n.id).collect();
        assert_eq!(low, vec![3]);
        // bibliothek revoked: no longer low on memory nor drifting.
        nodes[2].state = NodeState::Revoked;
        assert!(low_memory_nodes(&nodes).is_empty());
        assert_eq!(version_drift(&nodes), Some(("0.3.0".to_string(), 2)));
        // Everyone on the newest: no drift.
        for n in &mut nodes {
            if let Some(info) = n.telemetry.info.as_mut() {
                info.agent_version = "v0.3.0".into();
            }
        }
        assert_eq!(version_drift(&nodes), None);
    }

    #[test]
    fn uptime_of_an_offline_node_stops_at_its_last_report() {
        let mut node = crate::fixture::nodes().remove(0);
        node.telemetry.boot_time_ms = Some(1_000);
        node.telemetry.stats_at_ms = Some(61_000);
        assert_eq!(uptime_ms(&node, 121_000), Some(120_000));
        node.online = false;
        assert_eq!(uptime_ms(&node, 121_000), Some(60_000));
        node.telemetry.boot_time_ms = None;
        assert_eq!(uptime_ms(&node, 121_000), None);
    }

    #[test]
    fn low_memory_is_below_the_threshold() {
        let s = |total, available| Statistics {
            memory_total_kib: total,
            memory_available_kib: available,
            ..Statistics::default()
        };
        assert!(is_low_memory(&s(Some(1_000), Some(99))));
        assert!(!is_low_memory(&s(Some(1_000), Some(100))));
        assert!(!is_low_memory(&s(Some(0), Some(0))));
        assert!(!is_low_memory(&s(None, Some(1))));
        assert_eq!(memory_used_percent(&s(Some(1_000), Some(250))), Some(75));
        assert_eq!(memory_used_percent(&s(Some(1_000), Some(5_000))), Some(0));
        assert_eq!(memory_used_percent(&s(None, Some(1))), None);
        assert_eq!(format_load(142), "1.42");
        assert_eq!(format_load(5), "0.05");
    }
}
