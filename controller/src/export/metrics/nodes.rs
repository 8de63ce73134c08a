//! Per-node gauges from fleet telemetry (issue 15): uptime, load, memory,
//! root file system, and `freimesh_node_info` whose labels carry the agent
//! version, firmware and model.
//!
//! Label cardinality stays at one series per node and family: the info
//! metric has value 1 and changes its label set only when the node's
//! version, firmware or model changes (the old series then disappears
//! from the next scrape); every label value is bounded by the protocol
//! (model 64 bytes, the others 128), so no node can blow up the series
//! size. Only nodes that sent the value appear.

use freimesh_proto::api;
use freimesh_proto::telemetry::PPM;

use super::Exposition;

/// KiB in bytes.
const KIB: u64 = 1_024;

/// Writes the per-node families for `nodes`, in id order.
pub(super) fn render_nodes(out: &mut Exposition, nodes: &[api::Node]) {
    let mut nodes: Vec<&api::Node> = nodes.iter().collect();
    nodes.sort_by_key(|n| n.id);
    let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
    let labels = |i: usize| {
        [
            ("node", ids[i].as_str()),
            ("hostname", nodes[i].hostname.as_str()),
        ]
    };

    out.family(
        "freimesh_node_info",
        "gauge",
        "Always 1; the labels say which agent, firmware and hardware model a node reported.",
    );
    for (i, n) in nodes.iter().enumerate() {
        let Some(info) = &n.telemetry.info else {
            continue;
        };
        let [node, hostname] = labels(i);
        out.sample(
            "freimesh_node_info",
            &[
                node,
                hostname,
                ("agent_version", info.agent_version.as_str()),
                ("firmware", info.firmware_base.as_deref().unwrap_or("")),
                (
                    "firmware_release",
                    info.firmware_release.as_deref().unwrap_or(""),
                ),
                ("model", info.model.as_deref().unwrap_or("")),
            ],
            1_u64,
        );
    }

    type Pick = fn(&freimesh_proto::telemetry::Statistics) -> Option<f64>;
    #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
    let families: [(&str, &str, Pick); 6] = [
        (
            "freimesh_node_uptime_seconds",
            "Seconds since the node booted, as it last reported.",
            |s| s.uptime_s.map(|u| u as f64),
        ),
        (
            "freimesh_node_load1",
            "The node's 1-minute load average.",
            |s| s.load_centi.map(|l| f64::from(l) / 100.0),
        ),
        (
            "freimesh_node_memory_total_bytes",
            "The node's memory (MemTotal).",
            |s| s.memory_total_kib.map(|m| (m.saturating_mul(KIB)) as f64),
        ),
        (
            "freimesh_node_memory_available_bytes",
            "The node's memory available for new work (MemAvailable).",
            |s| {
                s.memory_available_kib
                    .map(|m| (m.saturating_mul(KIB)) as f64)
            },
        ),
        (
            "freimesh_node_memory_used_ratio",
            "Used share of the node's memory, 0 to 1.",
            freimesh_proto::telemetry::Statistics::memory_usage,
        ),
        (
            "freimesh_node_rootfs_used_ratio",
            "Used share of the node's root file system, 0 to 1.",
            |s| s.rootfs_used_ppm.map(|r| f64::from(r) / f64::from(PPM)),
        ),
    ];
    for (name, help, pick) in families {
        out.family(name, "gauge", help);
        for (i, n) in nodes.iter().enumerate() {
            if let Some(value) = n.telemetry.stats.as_ref().and_then(pick) {
                out.sample(name, &labels(i), value);
            }
        }
    }
}
