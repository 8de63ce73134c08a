//! What the hub remembers only in memory, for the admin API and metrics:
//! recent link measurements (sparklines), each node's last traffic report,
//! failover and route computation statistics, when nodes were last seen.
//!
//! None of it is in the registry: it is cheap to lose on a restart (the next
//! reports refill it), except `last_seen`, which is loaded back from the
//! event history.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use freimesh_proto::api;

use crate::export::metrics::{FailoverStats, Histogram};

/// Measurements kept per link: a minute of sparkline at one report per
/// second, what a terminal column fits.
pub const HISTORY_LEN: usize = 60;

/// Route computation buckets, in seconds: one link change at city scale is
/// well under a millisecond, a full recomputation of 1,000 nodes a few
/// hundred milliseconds.
const COMPUTATION_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct LinkHistory {
    rtt_us: VecDeque<u32>,
    loss_ppm: VecDeque<u32>,
}

#[derive(Debug)]
pub struct Telemetry {
    history: BTreeMap<(u32, u32), LinkHistory>,
    traffic: BTreeMap<u32, Vec<api::LinkTraffic>>,
    pub failovers: FailoverStats,
    pub failovers_total: u64,
    pub computation: Histogram,
    pub last_computation_us: u64,
    /// Node id → when it was last connected (epoch ms).
    pub last_seen: BTreeMap<u32, i64>,
    /// Public node id → clients holding a lease, as it last reported (a
    /// count only: nothing else about clients reaches the controller).
    pub clients: BTreeMap<u32, u32>,
    /// Node id → what it reported about itself (issue 15), loaded from
    /// the store at start and kept current by `node_reports.rs`.
    pub nodes: BTreeMap<u32, api::NodeTelemetry>,
    /// Node id → when its statistics were last written to the store.
    pub stats_saved_ms: BTreeMap<u32, i64>,
}

impl Telemetry {
    /// With the nodes' stored telemetry (`Store::node_telemetry`).
    pub fn with_nodes(mut self, nodes: BTreeMap<u32, api::NodeTelemetry>) -> Self {
        self.stats_saved_ms = nodes
            .iter()
            .filter_map(|(id, t)| Some((*id, t.stats_at_ms?)))
            .collect();
        self.nodes = nodes;
        self
    }

    pub fn new(last_seen: BTreeMap<u32, i64>) -> Self {
        Self {
            history: BTreeMap::new(),
            traffic: BTreeMap::new(),
            failovers: FailoverStats::default(),
            failovers_total: 0,
            computation: Histogram::new(COMPUTATION_BUCKETS),
            last_computation_us: 0,
            last_seen,
            clients: BTreeMap::new(),
            nodes: BTreeMap::new(),
            stats_saved_ms: BTreeMap::new(),
        }
    }

    /// A measurement of link `a – b` (`a < b`), from either end.
    pub fn sample(&mut self, a: u32, b: u32, rtt_us: u32, loss_ppm: u32) {
        let h = self.history.entry((a, b)).or_default();
        for (q, v) in [(&mut h.rtt_us, rtt_us), (&mut h.loss_ppm, loss_ppm)] {
            if q.len() == HISTORY_LEN {
                q.pop_front();
            }
            q.push_back(v);
        }
    }

    /// The link's samples, oldest first: `(rtt_us, loss_ppm)`.
    pub fn history(&self, a: u32, b: u32) -> (Vec<u32>, Vec<u32>) {
        self.history
            .get(&(a, b))
            .map(|h| {
                (
                    h.rtt_us.iter().copied().collect(),
                    h.loss_ppm.iter().copied().collect(),
                )
            })
            .unwrap_or_default()
    }

    /// Forgets the links of a node that left the mesh.
    pub fn forget_node(&mut self, id: u32) {
        self.history.retain(|(a, b), _| *a != id && *b != id);
        self.traffic.remove(&id);
        self.clients.remove(&id);
    }

    pub fn set_traffic(&mut self, id: u32, traffic: Vec<api::LinkTraffic>) {
        self.traffic.insert(id, traffic);
    }

    pub fn traffic(&self, id: u32) -> Vec<api::LinkTraffic> {
        self.traffic.get(&id).cloned().unwrap_or_default()
    }

    pub fn failover(&mut self, cause: api::DownCause, detection_ms: u32, switch_us: u32) {
        self.failovers.record(cause, detection_ms, switch_us);
        self.failovers_total += 1;
    }

    pub fn computed(&mut self, took: Duration) {
        self.computation.observe(took.as_secs_f64());
        self.last_computation_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_sixty_samples_oldest_first() {
        let mut t = Telemetry::new(BTreeMap::new());
        for i in 0..100u32 {
            t.sample(1, 2, i, i * 10);
        }
        let (rtt, loss) = t.history(1, 2);
        assert_eq!(rtt.len(), HISTORY_LEN);
        assert_eq!(rtt.first(), Some(&40));
        assert_eq!(rtt.last(), Some(&99));
        assert_eq!(loss.last(), Some(&990));
        assert_eq!(t.history(2, 3), (vec![], vec![]));
        t.forget_node(2);
        assert_eq!(t.history(1, 2), (vec![], vec![]));
    }

    #[test]
    fn computations_set_the_last_duration() {
        let mut t = Telemetry::new(BTreeMap::new());
        t.computed(Duration::from_micros(1_234));
        assert_eq!(t.last_computation_us, 1_234);
    }
}
