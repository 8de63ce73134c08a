//! Tests of the metrics page: escaping, histogram arithmetic, the rendered
//! families, and `promtool check metrics` on a sample.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;

fn node(id: u32, state: api::NodeState, online: bool, drained: bool) -> api::Node {
    api::Node {
        id,
        node_id: format!("n{id}"),
        public_key: String::new(),
        hostname: format!("host-{id}"),
        state,
        online,
        drained,
        gateway: false,
        addresses: vec![],
        prefixes: vec![],
        endpoints: vec![],
        links_up: 0,
        links_total: 0,
        last_seen_ms: None,
        public_wifi: false,
        client_prefixes: Vec::new(),
        clients: None,
        roles_requested: vec![],
        roles_approved: vec![],
        telemetry: Default::default(),
    }
}

fn link(
    a: u32,
    b: u32,
    a_hostname: &str,
    up: bool,
    rtt_us: Option<u32>,
    loss_ppm: Option<u32>,
) -> api::Link {
    api::Link {
        a,
        b,
        a_hostname: a_hostname.to_owned(),
        b_hostname: format!("host-{b}"),
        up,
        rtt_us,
        loss_ppm,
        metric: 1,
        override_cost: None,
        rtt_history_us: vec![],
        loss_history_ppm: vec![],
    }
}

/// A fleet with every kind of sample, including a hostile hostname.
/// Fleet telemetry for node 1 of the sample page (model with a quote, to
/// check escaping in the info metric's labels).
fn reported() -> api::NodeTelemetry {
    use freimesh_proto::telemetry::{NodeInfo, Statistics};
    api::NodeTelemetry {
        info: Some(NodeInfo {
            agent_version: "0.3.0".into(),
            firmware_base: Some("OpenWrt".into()),
            firmware_release: Some("23.05.3".into()),
            model: Some("Archer \"C7\" v5".into()),
            contact: Some("never-a-label@example.org".into()),
            ..NodeInfo::default()
        }),
        stats: Some(Statistics {
            uptime_s: Some(3_600),
            load_centi: Some(150),
            memory_total_kib: Some(1_024),
            memory_available_kib: Some(256),
            rootfs_used_ppm: Some(500_000),
        }),
        ..api::NodeTelemetry::default()
    }
}

fn sample_page() -> String {
    let mut nodes = vec![
        node(1, api::NodeState::Active, true, false),
        node(2, api::NodeState::Active, true, true),
        node(3, api::NodeState::Active, false, false),
        node(4, api::NodeState::Pending, false, false),
        node(5, api::NodeState::Revoked, false, false),
    ];
    *nodes[0].telemetry = reported();
    let links = vec![
        link(2, 3, "host-2", false, None, None),
        link(
            1,
            2,
            "rathaus \"nord\"\\\nturm",
            true,
            Some(1_500),
            Some(20_000),
        ),
    ];
    let gateways = vec![
        api::Gateway {
            node: 1,
            hostname: "host-1".into(),
            online: true,
            uplink_up: Some(true),
        },
        api::Gateway {
            node: 2,
            hostname: "host-2".into(),
            online: true,
            uplink_up: None,
        },
        api::Gateway {
            node: 3,
            hostname: "host-3".into(),
            online: false,
            uplink_up: Some(true),
        },
        api::Gateway {
            node: 4,
            hostname: "host-4".into(),
            online: true,
            uplink_up: Some(false),
        },
    ];
    let mut failovers = FailoverStats::default();
    failovers.record(api::DownCause::Silence, 150, 12);
    failovers.record(api::DownCause::Silence, 90, 40);
    failovers.record(api::DownCause::Carrier, 0, 2_000);
    let mut computation = Histogram::new(ROUTE_COMPUTATION_BUCKETS_SECONDS);
    computation.observe(0.004);
    computation.observe(1.2);
    render(&MetricsInput {
        nodes: &nodes,
        links: &links,
        gateways: &gateways,
        failovers: &failovers,
        route_computation_seconds: &computation,
        sessions: 2,
        events_total: 42,
        started_at_ms: 1_700_000_000_123,
        bounded: BoundedCounts {
            events_dropped: 7,
            events_clamped: 1,
            bad_hostnames: 3,
            pending_refused: 2,
        },
    })
}

fn line_of<'a>(page: &'a str, prefix: &str) -> &'a str {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{page}"))
}

#[test]
fn label_values_escape_backslash_quote_and_newline() {
    assert_eq!(escape_label_value("plain-host"), "plain-host");
    assert_eq!(escape_label_value(r#"a"b"#), r#"a\"b"#);
    assert_eq!(escape_label_value(r"a\b"), r"a\\b");
    assert_eq!(escape_label_value("a\nb"), r"a\nb");
    assert_eq!(escape_label_value("\\\"\n"), r#"\\\"\n"#);
    // Other characters, including non-ASCII, pass through.
    assert_eq!(escape_label_value("Bürgeramt\t1"), "Bürgeramt\t1");
    assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
}

#[test]
fn histogram_buckets_are_cumulative_with_le_semantics() {
    let mut h = Histogram::new(&[1.0, 0.5, 2.0, 1.0, f64::INFINITY, f64::NAN]);
    for v in [0.1, 0.5, 0.7, 1.0, 3.0, 100.0, f64::NAN] {
        h.observe(v);
    }
    let buckets: Vec<(f64, u64)> = h.cumulative().collect();
    assert_eq!(
        buckets,
        vec![(0.5, 2), (1.0, 4), (2.0, 4), (f64::INFINITY, 6)],
        "bounds sorted and deduplicated; a value equal to a bound lands in it; NaN ignored"
    );
    assert_eq!(h.count(), 6);
    assert!((h.sum() - 105.3).abs() < 1e-9, "{}", h.sum());

    let empty = Histogram::new(&[]);
    assert_eq!(
        empty.cumulative().collect::<Vec<_>>(),
        vec![(f64::INFINITY, 0)]
    );
}

#[test]
fn failover_stats_count_by_cause_and_convert_units() {
    let mut f = FailoverStats::default();
    f.record(api::DownCause::Neighbour, 250, 1_000);
    f.record(api::DownCause::Neighbour, 2_000, 50);
    f.record(api::DownCause::Removed, 0, 5);
    assert_eq!(f.count(api::DownCause::Neighbour), 2);
    assert_eq!(f.count(api::DownCause::Silence), 0);
    assert_eq!(f.total(), 3);
    assert!((f.detection_seconds().sum() - 2.25).abs() < 1e-9);
    assert!((f.switch_seconds().sum() - 0.001_055).abs() < 1e-12);
    let le_250ms = f
        .detection_seconds()
        .cumulative()
        .find(|&(le, _)| le == 0.25)
        .map(|(_, c)| c);
    assert_eq!(le_250ms, Some(2), "0 s and 0.25 s are ≤ 0.25, 2 s is not");
}

#[test]
fn cause_labels_match_the_api_json() {
    for cause in CAUSES {
        let json = serde_json::to_string(&cause).expect("serialises");
        assert_eq!(json, format!("\"{}\"", cause_label(cause)));
    }
}

#[test]
fn page_has_every_family_with_values() {
    let page = sample_page();
    for family in [
        "freimesh_nodes",
        "freimesh_nodes_online",
        "freimesh_nodes_drained",
        "freimesh_links",
        "freimesh_links_up",
        "freimesh_link_up",
        "freimesh_link_rtt_seconds",
        "freimesh_link_loss_ratio",
        "freimesh_gateways",
        "freimesh_gateways_up",
        "freimesh_failovers_total",
        "freimesh_failover_detection_seconds",
        "freimesh_failover_switch_seconds",
        "freimesh_route_computation_seconds",
        "freimesh_control_sessions",
        "freimesh_events_total",
        "freimesh_agent_events_dropped_total",
        "freimesh_agent_events_clamped_total",
        "freimesh_hellos_refused_total",
        "freimesh_controller_start_time_seconds",
    ] {
        assert!(page.contains(&format!("# HELP {family} ")), "HELP {family}");
        assert!(page.contains(&format!("# TYPE {family} ")), "TYPE {family}");
    }
    assert_eq!(
        line_of(&page, "freimesh_nodes{state=\"active\"}"),
        "freimesh_nodes{state=\"active\"} 3"
    );
    assert_eq!(
        line_of(&page, "freimesh_nodes{state=\"pending\"}"),
        "freimesh_nodes{state=\"pending\"} 1"
    );
    assert_eq!(
        line_of(&page, "freimesh_nodes_online "),
        "freimesh_nodes_online 2"
    );
    assert_eq!(
        line_of(&page, "freimesh_nodes_drained "),
        "freimesh_nodes_drained 1"
    );
    assert_eq!(line_of(&page, "freimesh_links "), "freimesh_links 2");
    assert_eq!(line_of(&page, "freimesh_links_up "), "freimesh_links_up 1");
    assert_eq!(line_of(&page, "freimesh_gateways "), "freimesh_gateways 4");
    assert_eq!(
        line_of(&page, "freimesh_gateways_up "),
        "freimesh_gateways_up 2"
    );
    assert_eq!(
        line_of(&page, "freimesh_link_rtt_seconds{"),
        r#"freimesh_link_rtt_seconds{a="1",b="2",a_hostname="rathaus \"nord\"\\\nturm",b_hostname="host-2"} 0.0015"#
    );
    assert_eq!(
        line_of(&page, "freimesh_link_loss_ratio{"),
        r#"freimesh_link_loss_ratio{a="1",b="2",a_hostname="rathaus \"nord\"\\\nturm",b_hostname="host-2"} 0.02"#
    );
    // Links sorted by (a, b); unmeasured links have no RTT sample.
    let link_up: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("freimesh_link_up{"))
        .collect();
    assert_eq!(link_up.len(), 2);
    assert!(link_up[0].starts_with("freimesh_link_up{a=\"1\"") && link_up[0].ends_with(" 1"));
    assert!(link_up[1].starts_with("freimesh_link_up{a=\"2\"") && link_up[1].ends_with(" 0"));
    assert_eq!(page.matches("freimesh_link_rtt_seconds{").count(), 1);
    assert_eq!(
        line_of(&page, "freimesh_failovers_total{cause=\"silence\"}"),
        "freimesh_failovers_total{cause=\"silence\"} 2"
    );
    assert_eq!(
        line_of(&page, "freimesh_failovers_total{cause=\"removed\"}"),
        "freimesh_failovers_total{cause=\"removed\"} 0"
    );
    assert_eq!(
        line_of(
            &page,
            "freimesh_failover_detection_seconds_bucket{le=\"0.1\"}"
        ),
        "freimesh_failover_detection_seconds_bucket{le=\"0.1\"} 2"
    );
    assert_eq!(
        line_of(
            &page,
            "freimesh_failover_detection_seconds_bucket{le=\"+Inf\"}"
        ),
        "freimesh_failover_detection_seconds_bucket{le=\"+Inf\"} 3"
    );
    assert_eq!(
        line_of(&page, "freimesh_failover_detection_seconds_sum "),
        "freimesh_failover_detection_seconds_sum 0.24"
    );
    assert_eq!(
        line_of(&page, "freimesh_route_computation_seconds_count "),
        "freimesh_route_computation_seconds_count 2"
    );
    assert_eq!(
        line_of(&page, "freimesh_control_sessions "),
        "freimesh_control_sessions 2"
    );
    assert_eq!(
        line_of(&page, "freimesh_events_total "),
        "freimesh_events_total 42"
    );
    assert_eq!(
        line_of(&page, "freimesh_agent_events_dropped_total "),
        "freimesh_agent_events_dropped_total 7"
    );
    assert_eq!(
        line_of(
            &page,
            "freimesh_hellos_refused_total{reason=\"pending-cap\"} "
        ),
        "freimesh_hellos_refused_total{reason=\"pending-cap\"} 2"
    );
    assert_eq!(
        line_of(&page, "freimesh_controller_start_time_seconds "),
        "freimesh_controller_start_time_seconds 1700000000.123"
    );
    assert_eq!(page, sample_page(), "rendering is deterministic");
}

/// `promtool check metrics` (Debian's `prometheus` package) accepts the
/// page. Without promtool the test is skipped with a note, unless `CI`
/// is set: there it must be installed.
#[test]
fn node_telemetry_gauges_and_info_metric() {
    let page = sample_page();
    assert_eq!(
        line_of(&page, "freimesh_node_info{"),
        "freimesh_node_info{node=\"1\",hostname=\"host-1\",agent_version=\"0.3.0\",firmware=\"OpenWrt\",firmware_release=\"23.05.3\",model=\"Archer \\\"C7\\\" v5\"} 1"
    );
    let labels = "{node=\"1\",hostname=\"host-1\"}";
    for (name, value) in [
        ("freimesh_node_uptime_seconds", "3600"),
        ("freimesh_node_load1", "1.5"),
        ("freimesh_node_memory_total_bytes", "1048576"),
        ("freimesh_node_memory_available_bytes", "262144"),
        ("freimesh_node_memory_used_ratio", "0.75"),
        ("freimesh_node_rootfs_used_ratio", "0.5"),
    ] {
        assert_eq!(
            line_of(&page, &format!("{name}{{")),
            format!("{name}{labels} {value}")
        );
    }
    assert_eq!(
        page.matches("freimesh_node_info{").count(),
        1,
        "only nodes that reported"
    );
    assert!(!page.contains("never-a-label"), "the contact is no label");
}

#[test]
fn promtool_accepts_the_page() {
    let page = sample_page();
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not on PATH but CI is set: install it (apt-get install prometheus)"
            );
            eprintln!("note: promtool not on PATH; skipping `promtool check metrics`");
            return;
        }
        Err(e) => panic!("starting promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(page.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool check metrics: {}\n{stdout}{stderr}\n--- page ---\n{page}",
        out.status
    );
}

/// The check above must be able to fail: promtool rejects a counter
/// without `_total` and a broken label.
#[test]
fn promtool_rejects_a_bad_page() {
    let bad =
        "# HELP freimesh_bad A counter.\n# TYPE freimesh_bad counter\nfreimesh_bad{x=\"a\"b\"} 1\n";
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("note: promtool not on PATH; skipping");
        return;
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(bad.as_bytes())
        .expect("writing to promtool");
    assert!(!child.wait().expect("promtool runs").success());
}
