//! What a failover run measured, as JSON (for scripts), a table per run
//! (for people) and a markdown comparison across systems and scenarios
//! (for `docs/testbed.md`).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::probe::WindowStats;

/// One system on one scenario.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub system: String,
    pub scenario: String,
    /// From lab start until every flow delivered.
    pub converged_ms: f64,
    /// Whether (for babeld/BIRD) the flows used freimesh's primary path
    /// before the scenario began.
    pub path_ok: bool,
    pub events: Vec<EventReport>,
    pub flows: Vec<FlowReport>,
    /// Why the run produced no figures (the system never converged, a
    /// daemon died…).
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventReport {
    pub action: String,
    pub at_ms: u64,
    /// When the runner began applying it, ms after the probes started.
    pub applied_ms: f64,
    /// How long applying it took (nft, ip, a daemon start).
    pub took_ms: f64,
}

#[derive(Debug, Clone)]
pub struct FlowReport {
    pub from: String,
    pub to: String,
    /// "start" (before the first event), then one per event but `end`.
    pub windows: Vec<WindowReport>,
    pub total: WindowStats,
}

#[derive(Debug, Clone)]
pub struct WindowReport {
    /// The event that opens the window (`cut-silent b—d`) or `start`.
    pub event: String,
    /// Whether that event breaks something.
    pub failure: bool,
    pub stats: WindowStats,
}

fn stats_json(s: &WindowStats) -> Value {
    json!({
        "sent": s.sent,
        "received": s.received,
        "lost": s.sent.saturating_sub(s.received),
        "longest_gap_ms": (s.longest_gap_ms * 10.0).round() / 10.0,
        "flowing_at_end": s.flowing_at_end,
    })
}

impl RunReport {
    /// A run that failed before it measured anything.
    pub fn failed(system: String, scenario: String, error: String) -> Self {
        Self {
            system,
            scenario,
            converged_ms: 0.0,
            path_ok: false,
            events: Vec::new(),
            flows: Vec::new(),
            error: Some(error),
        }
    }

    pub fn to_json(&self) -> Value {
        if let Some(error) = &self.error {
            return json!({
                "system": self.system,
                "scenario": self.scenario,
                "error": error,
            });
        }
        json!({
            "system": self.system,
            "scenario": self.scenario,
            "converged_ms": self.converged_ms.round(),
            "path_ok": self.path_ok,
            "events": self.events.iter().map(|e| json!({
                "action": e.action,
                "at_ms": e.at_ms,
                "applied_ms": (e.applied_ms * 10.0).round() / 10.0,
                "took_ms": (e.took_ms * 10.0).round() / 10.0,
            })).collect::<Vec<_>>(),
            "flows": self.flows.iter().map(|f| {
                let mut windows = Vec::new();
                for w in &f.windows {
                    let mut v = stats_json(&w.stats);
                    v["event"] = json!(w.event);
                    v["failure"] = json!(w.failure);
                    windows.push(v);
                }
                json!({
                    "from": f.from,
                    "to": f.to,
                    "events": windows,
                    "total": stats_json(&f.total),
                })
            }).collect::<Vec<_>>(),
        })
    }

    /// The worst failure window over all flows: the figure of the
    /// comparison table (`None` if the scenario breaks nothing).
    pub fn worst_failure(&self) -> Option<WindowStats> {
        self.flows
            .iter()
            .flat_map(|f| f.windows.iter().filter(|w| w.failure))
            .map(|w| w.stats)
            .max_by(|a, b| a.longest_gap_ms.total_cmp(&b.longest_gap_ms))
    }

    /// A table for people, one row per flow and window.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if let Some(error) = &self.error {
            let _ = writeln!(
                out,
                "== {} — {}: FAILED: {error}",
                self.system, self.scenario
            );
            return out;
        }
        let _ = writeln!(
            out,
            "== {} — {} (converged after {:.1} s{})",
            self.system,
            self.scenario,
            self.converged_ms / 1e3,
            if self.path_ok {
                ""
            } else {
                "; NOT on the expected path"
            }
        );
        let _ = writeln!(
            out,
            "{:<8} {:<24} {:>7} {:>7} {:>6} {:>12}  flowing at end",
            "flow", "window", "sent", "recv", "lost", "longest gap"
        );
        for f in &self.flows {
            let name = format!("{}→{}", f.from, f.to);
            let rows = f
                .windows
                .iter()
                .map(|w| (w.event.as_str(), &w.stats))
                .chain([("total", &f.total)]);
            for (label, s) in rows {
                let _ = writeln!(
                    out,
                    "{name:<8} {label:<24} {:>7} {:>7} {:>6} {:>9.1} ms  {}",
                    s.sent,
                    s.received,
                    s.sent.saturating_sub(s.received),
                    s.longest_gap_ms,
                    if s.flowing_at_end { "yes" } else { "NO" }
                );
            }
        }
        out
    }
}

/// `123 ms` / `1.23 s`, with a note when probes were not arriving when the
/// next event came (the outage outlasted the window, or traffic stopped
/// again after resuming).
pub fn gap_cell(stats: &WindowStats) -> String {
    let ms = stats.longest_gap_ms;
    let value = if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    };
    if stats.flowing_at_end {
        value
    } else {
        format!("{value}, not flowing at the next event")
    }
}

/// Markdown: one row per system, one column per scenario, each cell the
/// longest gap of the worst flow in the scenario's failure window.
pub fn markdown(reports: &[RunReport]) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    let mut systems: Vec<&str> = Vec::new();
    for r in reports {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    let mut out = format!("| system | {} |\n", scenarios.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(scenarios.len()));
    for system in systems {
        let cells: Vec<String> = scenarios
            .iter()
            .map(|scenario| {
                let runs: Vec<String> = reports
                    .iter()
                    .filter(|r| r.system == system && r.scenario == *scenario)
                    .map(|r| match r.worst_failure() {
                        _ if r.error.is_some() => "run failed".into(),
                        Some(s) if r.path_ok => gap_cell(&s),
                        Some(s) => format!("{} (off path)", gap_cell(&s)),
                        None => "no failure".into(),
                    })
                    .collect();
                if runs.is_empty() {
                    "–".into()
                } else {
                    runs.join(", ")
                }
            })
            .collect();
        let _ = writeln!(out, "| {system} | {} |", cells.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(gap: f64, flowing: bool) -> WindowStats {
        WindowStats {
            sent: 100,
            received: 90,
            longest_gap_ms: gap,
            flowing_at_end: flowing,
        }
    }

    fn report(system: &str, scenario: &str, gaps: &[f64]) -> RunReport {
        RunReport {
            system: system.into(),
            scenario: scenario.into(),
            converged_ms: 1000.0,
            path_ok: true,
            events: Vec::new(),
            error: None,
            flows: gaps
                .iter()
                .map(|g| FlowReport {
                    from: "a".into(),
                    to: "d".into(),
                    windows: vec![
                        WindowReport {
                            event: "start".into(),
                            failure: false,
                            stats: stats(5000.0, true),
                        },
                        WindowReport {
                            event: "cut-silent b—d".into(),
                            failure: true,
                            stats: stats(*g, true),
                        },
                    ],
                    total: stats(*g, true),
                })
                .collect(),
        }
    }

    #[test]
    fn markdown_takes_the_worst_flow_of_the_failure_window() {
        let table = markdown(&[
            report("babeld", "silent-cut", &[120.0, 150.4]),
            report("babeld", "node-crash", &[1500.0]),
            report("bird", "silent-cut", &[700.0]),
            RunReport::failed(
                "freimesh".into(),
                "silent-cut".into(),
                "never converged".into(),
            ),
        ]);
        assert!(
            table.contains("| system | silent-cut | node-crash |"),
            "{table}"
        );
        assert!(table.contains("| babeld | 150 ms | 1.50 s |"), "{table}");
        assert!(table.contains("| bird | 700 ms | – |"), "{table}");
        assert!(table.contains("| freimesh | run failed | – |"), "{table}");
    }

    #[test]
    fn gap_cell_marks_outages_that_outlast_the_window() {
        assert_eq!(
            gap_cell(&stats(4000.0, false)),
            "4.00 s, not flowing at the next event"
        );
        assert_eq!(gap_cell(&stats(12.4, true)), "12 ms");
    }
}
