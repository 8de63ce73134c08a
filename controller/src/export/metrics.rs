//! Prometheus metrics: the fleet's state and the controller's own timings in
//! the text exposition format 0.0.4, for `GET /metrics`.
//!
//! [`render`] is a pure function of a [`MetricsInput`] snapshot the hub
//! assembles; the counters and histograms that accumulate between scrapes
//! ([`FailoverStats`], the route computation [`Histogram`]) live in the hub
//! and are passed in by reference. Every family has `# HELP` and `# TYPE`
//! lines, names carry their unit (`_seconds`, `_ratio`, `_total`), label
//! values are escaped (hostnames are operator input and may hold quotes,
//! backslashes or newlines), and families and samples come in a fixed order,
//! so two renders of the same input are byte-identical. A test feeds the
//! output through `promtool check metrics`.
//!
//! Families (labels in braces):
//!
//! | name | type | what |
//! |---|---|---|
//! | `freimesh_nodes{state}` | gauge | registered nodes by state |
//! | `freimesh_nodes_online` | gauge | nodes connected to the controller |
//! | `freimesh_nodes_drained` | gauge | nodes in maintenance |
//! | `freimesh_links`, `freimesh_links_up` | gauge | links known / up |
//! | `freimesh_link_up{a,b,a_hostname,b_hostname}` | gauge | 1 up, 0 down |
//! | `freimesh_link_rtt_seconds{…}` | gauge | smoothed RTT (measured links) |
//! | `freimesh_link_loss_ratio{…}` | gauge | probe loss 0–1 (measured links) |
//! | `freimesh_gateways`, `freimesh_gateways_up` | gauge | see [`gateway_is_up`] |
//! | `freimesh_public_clients` | gauge | public Wi-Fi clients with a lease, all nodes (a count only) |
//! | `freimesh_node_info{node,hostname,agent_version,firmware,firmware_release,model}` | gauge | 1 per node that reported its information ([`nodes`]) |
//! | `freimesh_node_uptime_seconds{node,hostname}` | gauge | seconds since boot |
//! | `freimesh_node_load1{…}` | gauge | 1-minute load average |
//! | `freimesh_node_memory_total_bytes{…}`, `…_available_bytes`, `freimesh_node_memory_used_ratio` | gauge | memory |
//! | `freimesh_node_rootfs_used_ratio{…}` | gauge | root file system usage 0–1 |
//! | `freimesh_failovers_total{cause}` | counter | agent failovers by cause |
//! | `freimesh_failover_detection_seconds` | histogram | last sign of life → decision |
//! | `freimesh_failover_switch_seconds` | histogram | forwarding table switch |
//! | `freimesh_route_computation_seconds` | histogram | controller route computations |
//! | `freimesh_control_sessions` | gauge | agents connected now |
//! | `freimesh_events_total` | counter | events recorded since start |
//! | `freimesh_agent_events_dropped_total` | counter | failover events over their node's quota |
//! | `freimesh_agent_events_clamped_total` | counter | failover events that claimed to be too old |
//! | `freimesh_hellos_refused_total` | counter | Hellos refused for a bad hostname or the pending cap, by `reason` |
//! | `freimesh_controller_start_time_seconds` | gauge | Unix time of start |

use std::fmt::Write as _;

use freimesh_proto::api;

/// Buckets for failure detection (seconds). Detection is probe interval ×
/// multiplier per link profile: tens of milliseconds on a fibre backbone,
/// around a second on a slow radio link; WireGuard's own timers (links
/// without probes) take tens of seconds.
pub const DETECTION_BUCKETS_SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

/// Buckets for the agent's forwarding switch (seconds): an in-memory table
/// swap takes microseconds, a kernel route change a millisecond or so.
pub const SWITCH_BUCKETS_SECONDS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.1,
];

/// Buckets for route computations (seconds): an incremental update takes
/// milliseconds, a full computation at 5,000 nodes about a second.
pub const ROUTE_COMPUTATION_BUCKETS_SECONDS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram: per-bucket counts (exposed cumulatively), the
/// sum and the count of observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, finite, strictly increasing; `+Inf` is implicit.
    bounds: Vec<f64>,
    /// Observations per bucket, not cumulative; one more than `bounds`
    /// (the last is the `+Inf` bucket's own share).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// A histogram with these upper bounds. They are sorted, and
    /// non-finite and repeated bounds dropped (`+Inf` is always there).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len() + 1];
        Self {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts `value` in the first bucket whose bound is `>= value`
    /// (Prometheus' `le`). NaN is ignored: it would poison the sum forever.
    pub fn observe(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|&b| b < value);
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(le, cumulative count)` for every bucket, `+Inf` last.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().scan(0u64, |acc, c| {
                *acc += c;
                Some(*acc)
            }))
    }
}

/// Every [`api::DownCause`], in the order the metrics list them.
const CAUSES: [api::DownCause; 5] = [
    api::DownCause::Silence,
    api::DownCause::Carrier,
    api::DownCause::Neighbour,
    api::DownCause::Wireguard,
    api::DownCause::Removed,
];

/// The label value of a cause: the same word as in the API's JSON.
fn cause_label(cause: api::DownCause) -> &'static str {
    match cause {
        api::DownCause::Silence => "silence",
        api::DownCause::Carrier => "carrier",
        api::DownCause::Neighbour => "neighbour",
        api::DownCause::Wireguard => "wireguard",
        api::DownCause::Removed => "removed",
    }
}

fn cause_index(cause: api::DownCause) -> usize {
    match cause {
        api::DownCause::Silence => 0,
        api::DownCause::Carrier => 1,
        api::DownCause::Neighbour => 2,
        api::DownCause::Wireguard => 3,
        api::DownCause::Removed => 4,
    }
}

/// Failovers the agents reported since the controller started.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverStats {
    by_cause: [u64; CAUSES.len()],
    detection_seconds: Histogram,
    switch_seconds: Histogram,
}

impl Default for FailoverStats {
    fn default() -> Self {
        Self {
            by_cause: [0; CAUSES.len()],
            detection_seconds: Histogram::new(DETECTION_BUCKETS_SECONDS),
            switch_seconds: Histogram::new(SWITCH_BUCKETS_SECONDS),
        }
    }
}

impl FailoverStats {
    /// Counts one failover event (`api::EventKind::Failover`).
    pub fn record(&mut self, cause: api::DownCause, detection_ms: u32, switch_us: u32) {
        self.by_cause[cause_index(cause)] += 1;
        self.detection_seconds
            .observe(f64::from(detection_ms) / 1e3);
        self.switch_seconds.observe(f64::from(switch_us) / 1e6);
    }

    /// Failovers of one cause.
    pub fn count(&self, cause: api::DownCause) -> u64 {
        self.by_cause[cause_index(cause)]
    }

    /// All failovers (`Overview::failovers_total`).
    pub fn total(&self) -> u64 {
        self.by_cause.iter().sum()
    }

    pub fn detection_seconds(&self) -> &Histogram {
        &self.detection_seconds
    }

    pub fn switch_seconds(&self) -> &Histogram {
        &self.switch_seconds
    }
}

/// A snapshot of everything `/metrics` shows.
#[derive(Debug, Clone, Copy)]
pub struct MetricsInput<'a> {
    pub nodes: &'a [api::Node],
    pub links: &'a [api::Link],
    pub gateways: &'a [api::Gateway],
    pub failovers: &'a FailoverStats,
    pub route_computation_seconds: &'a Histogram,
    /// Agents connected over the control channel now.
    pub sessions: u32,
    /// Events recorded since the controller started (the newest `seq`).
    pub events_total: u64,
    pub started_at_ms: i64,
    /// What the controller refused or bounded from agents since it started.
    pub bounded: BoundedCounts,
}

/// Counters of inputs the controller bounded (issue 12), since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundedCounts {
    /// Failover events dropped over their node's quota.
    pub events_dropped: u64,
    /// Failover events stored at their node's earliest allowed time.
    pub events_clamped: u64,
    /// Hellos refused for their hostname.
    pub bad_hostnames: u64,
    /// Hellos refused by the pending-node gate.
    pub pending_refused: u64,
}

/// A gateway counts as up when it is online and its uplink check has not
/// failed; an online gateway whose check has not reported yet gets the
/// benefit of the doubt (no evidence it is down).
pub fn gateway_is_up(gateway: &api::Gateway) -> bool {
    gateway.online && gateway.uplink_up != Some(false)
}

/// Renders `input` in the Prometheus text exposition format 0.0.4
/// (`Content-Type: text/plain; version=0.0.4; charset=utf-8`).
pub fn render(input: &MetricsInput<'_>) -> String {
    let mut out = Exposition::default();
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);

    out.family("freimesh_nodes", "gauge", "Registered nodes by state.");
    for (state, label) in [
        (api::NodeState::Active, "active"),
        (api::NodeState::Pending, "pending"),
        (api::NodeState::Revoked, "revoked"),
    ] {
        let n = input.nodes.iter().filter(|n| n.state == state).count();
        out.sample("freimesh_nodes", &[("state", label)], count(n));
    }
    out.gauge(
        "freimesh_nodes_online",
        "Nodes connected to the controller now.",
        count(input.nodes.iter().filter(|n| n.online).count()),
    );
    out.gauge(
        "freimesh_nodes_drained",
        "Nodes drained for maintenance (carry no transit traffic).",
        count(input.nodes.iter().filter(|n| n.drained).count()),
    );
    out.gauge(
        "freimesh_links",
        "Links between nodes.",
        count(input.links.len()),
    );
    out.gauge(
        "freimesh_links_up",
        "Links that are up.",
        count(input.links.iter().filter(|l| l.up).count()),
    );

    let mut links: Vec<&api::Link> = input.links.iter().collect();
    links.sort_by_key(|l| (l.a, l.b));
    let labelled: Vec<(&api::Link, [(&str, String); 4])> = links
        .into_iter()
        .map(|l| {
            let labels = [
                ("a", l.a.to_string()),
                ("b", l.b.to_string()),
                ("a_hostname", l.a_hostname.clone()),
                ("b_hostname", l.b_hostname.clone()),
            ];
            (l, labels)
        })
        .collect();
    out.family(
        "freimesh_link_up",
        "gauge",
        "Whether a link is up (1) or down (0).",
    );
    for (link, labels) in &labelled {
        out.sample("freimesh_link_up", &as_refs(labels), u64::from(link.up));
    }
    out.family(
        "freimesh_link_rtt_seconds",
        "gauge",
        "Smoothed round-trip time of a link, as its agents measured it.",
    );
    for (link, labels) in &labelled {
        if let Some(rtt) = link.rtt_us {
            out.sample(
                "freimesh_link_rtt_seconds",
                &as_refs(labels),
                f64::from(rtt) / 1e6,
            );
        }
    }
    out.family(
        "freimesh_link_loss_ratio",
        "gauge",
        "Probe loss on a link, 0 to 1.",
    );
    for (link, labels) in &labelled {
        if let Some(loss) = link.loss_ppm {
            out.sample(
                "freimesh_link_loss_ratio",
                &as_refs(labels),
                f64::from(loss) / 1e6,
            );
        }
    }

    out.gauge(
        "freimesh_gateways",
        "Nodes with an uplink to the internet.",
        count(input.gateways.len()),
    );
    out.gauge(
        "freimesh_gateways_up",
        "Gateways online whose uplink check has not failed.",
        count(input.gateways.iter().filter(|g| gateway_is_up(g)).count()),
    );
    out.gauge(
        "freimesh_public_clients",
        "Public Wi-Fi clients holding a lease, summed over the nodes' last reports.",
        input
            .nodes
            .iter()
            .filter_map(|n| n.clients)
            .map(u64::from)
            .sum::<u64>(),
    );

    nodes::render_nodes(&mut out, input.nodes);

    out.family(
        "freimesh_failovers_total",
        "counter",
        "Failovers agents performed on their own, by why the link went down.",
    );
    for cause in CAUSES {
        out.sample(
            "freimesh_failovers_total",
            &[("cause", cause_label(cause))],
            input.failovers.count(cause),
        );
    }
    out.histogram(
        "freimesh_failover_detection_seconds",
        "Time from a link's last sign of life to the agent's failover decision.",
        &input.failovers.detection_seconds,
    );
    out.histogram(
        "freimesh_failover_switch_seconds",
        "Time an agent took to switch its forwarding table in a failover.",
        &input.failovers.switch_seconds,
    );
    out.histogram(
        "freimesh_route_computation_seconds",
        "Time the controller spent computing routes (full or incremental).",
        input.route_computation_seconds,
    );

    out.gauge(
        "freimesh_control_sessions",
        "Agents connected over the control channel.",
        u64::from(input.sessions),
    );
    out.family(
        "freimesh_events_total",
        "counter",
        "Events recorded since the controller started.",
    );
    out.sample("freimesh_events_total", &[], input.events_total);
    let b = input.bounded;
    out.family(
        "freimesh_agent_events_dropped_total",
        "counter",
        "Failover events agents sent over their node's quota, dropped.",
    );
    out.sample("freimesh_agent_events_dropped_total", &[], b.events_dropped);
    out.family(
        "freimesh_agent_events_clamped_total",
        "counter",
        "Failover events that claimed to be older than their session allows, stored at the bound.",
    );
    out.sample("freimesh_agent_events_clamped_total", &[], b.events_clamped);
    out.family(
        "freimesh_hellos_refused_total",
        "counter",
        "Hellos refused: a bad hostname, or the cap on nodes waiting for approval.",
    );
    out.sample(
        "freimesh_hellos_refused_total",
        &[("reason", "hostname")],
        b.bad_hostnames,
    );
    out.sample(
        "freimesh_hellos_refused_total",
        &[("reason", "pending-cap")],
        b.pending_refused,
    );
    out.family(
        "freimesh_controller_start_time_seconds",
        "gauge",
        "When the controller started, in seconds since the Unix epoch.",
    );
    // Milliseconds since 1970 stay exact in an f64 (< 2^53) for 285,000 years.
    let started = input.started_at_ms as f64 / 1e3;
    out.sample("freimesh_controller_start_time_seconds", &[], started);
    out.text
}

fn as_refs<'a>(labels: &'a [(&'a str, String); 4]) -> [(&'a str, &'a str); 4] {
    labels.each_ref().map(|(k, v)| (*k, v.as_str()))
}

/// A sample value: counts print as integers, measurements as floats.
trait Value {
    fn write(&self, out: &mut String);
}

impl Value for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write(&self, out: &mut String) {
        write_float(out, *self);
    }
}

/// Go's `strconv.ParseFloat` reads Rust's `Display` of a finite float
/// (never an exponent, shortest round-trip digits); infinities and NaN
/// have their own spellings in the format.
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `# HELP` text: backslash and line feed (quotes stay).
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// The page under construction. Writing to a `String` cannot fail, so the
/// `fmt::Result`s are dropped.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label_value(val));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        value.write(&mut self.text);
        self.text.push('\n');
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (le, count) in h.cumulative() {
            let mut bound = String::new();
            write_float(&mut bound, le);
            self.sample(&bucket, &[("le", &bound)], count);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum());
        self.sample(&format!("{name}_count"), &[], h.count());
    }
}

mod nodes;
#[cfg(test)]
mod tests;
