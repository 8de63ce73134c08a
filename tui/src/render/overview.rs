//! Overview: counts, alerts (the controller's, then low memory and version
//! drift from the nodes' telemetry), recent failovers with their timings.
//!
//! ```text
//! ┌ Mesh ───────────┐┌ Alerts ─────────────────────┐
//! │ Nodes  4/7 …    ││ CRITICAL jugendzentrum …    │
//! └─────────────────┘└─────────────────────────────┘
//! ┌ Recent failovers ───────────────────────────────┐
//! │ Time  Node  Peer  Cause  Detection  Switch …    │
//! └─────────────────────────────────────────────────┘
//! ```

use freimesh_proto::api::{EventKind, Severity};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};

use super::{Theme, format};
use crate::app::App;
use crate::i18n::{self, Msg};
use crate::telemetry;

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, _now_ms: i64) {
    let Some(o) = &app.overview else {
        let block = Block::bordered()
            .title(app.t(Msg::TabOverview))
            .border_style(theme.border());
        frame.render_widget(Paragraph::new(app.t(Msg::Loading)).block(block), area);
        return;
    };
    let [top, bottom] = Layout::vertical([Constraint::Length(11), Constraint::Min(3)]).areas(area);
    let [counts, alerts] =
        Layout::horizontal([Constraint::Length(42), Constraint::Min(10)]).areas(top);

    let t = |m| app.t(m);
    let pair = |label: &str, value: String, style| {
        Line::from(vec![
            Span::styled(format!("{label:<18}"), theme.dim()),
            Span::styled(value, style),
        ])
    };
    let plain = ratatui::style::Style::new();
    let offline = o.nodes_total.saturating_sub(o.nodes_online);
    let lines = vec![
        pair(t(Msg::Mesh), format!("{}", o.mesh.ula), plain),
        pair("", format!("{}", o.mesh.ipv4), plain),
        pair(
            t(Msg::Nodes),
            format!("{}/{} {}", o.nodes_online, o.nodes_total, t(Msg::Online)),
            if offline > 0 {
                theme.warn()
            } else {
                theme.ok()
            },
        ),
        pair(
            "",
            format!(
                "{} {}, {} {}",
                o.nodes_pending,
                t(Msg::Pending),
                o.nodes_drained,
                t(Msg::Drained)
            ),
            plain,
        ),
        pair(
            t(Msg::Links),
            format!("{}/{} {}", o.links_up, o.links_total, t(Msg::Up)),
            if o.links_up < o.links_total {
                theme.warn()
            } else {
                theme.ok()
            },
        ),
        pair(
            t(Msg::Gateways),
            format!("{}/{} {}", o.gateways_up, o.gateways_total, t(Msg::Up)),
            plain,
        ),
        pair(t(Msg::Failovers), o.failovers_total.to_string(), plain),
        pair(t(Msg::Sessions), o.controller.sessions.to_string(), plain),
        pair(
            t(Msg::Computation),
            format!("{} µs", o.controller.last_computation_us),
            plain,
        ),
    ];
    let block = Block::bordered()
        .title(format!(" {} ", t(Msg::Mesh)))
        .border_style(theme.border());
    frame.render_widget(Paragraph::new(lines).block(block), counts);

    let fleet = fleet_alerts(app);
    let alert_count = o.alerts.len() + fleet.len();
    let alert_lines: Vec<Line<'_>> = if o.alerts.is_empty() && fleet.is_empty() {
        vec![Line::styled(t(Msg::NoAlerts), theme.ok())]
    } else {
        let warning = i18n::severity(app.lang, Severity::Warning);
        let fleet_lines = fleet.into_iter().map(|text| {
            (
                Severity::Warning,
                Line::from(vec![
                    Span::styled(format!("{warning:<9}"), theme.warn()),
                    Span::raw(text),
                ]),
            )
        });
        let mut lines: Vec<(Severity, Line<'_>)> = o
            .alerts
            .iter()
            .map(|a| {
                let style = match a.severity {
                    Severity::Critical => theme.bad(),
                    Severity::Warning => theme.warn(),
                    Severity::Info => theme.dim(),
                };
                let name = |id: Option<u32>| id.map(|id| app.name(id)).unwrap_or_default();
                let line = Line::from(vec![
                    Span::styled(
                        format!("{:<9}", i18n::severity(app.lang, a.severity)),
                        style,
                    ),
                    Span::raw(i18n::alert(
                        app.lang,
                        &a.kind,
                        &name(a.node),
                        &name(a.peer),
                        &a.message,
                    )),
                ]);
                (a.severity, line)
            })
            .chain(fleet_lines)
            .collect();
        // Most severe first (stable: the controller's order within), so a
        // short pane cuts off the least important.
        lines.sort_by_key(|(severity, _)| severity_rank(*severity));
        lines.into_iter().map(|(_, line)| line).collect()
    };
    let block = Block::bordered()
        .title(format!(" {} ({}) ", t(Msg::Alerts), alert_count))
        .border_style(theme.border());
    frame.render_widget(
        Paragraph::new(alert_lines)
            .block(block)
            .wrap(Wrap { trim: true }),
        alerts,
    );

    let block = Block::bordered()
        .title(format!(" {} ", t(Msg::RecentFailovers)))
        .border_style(theme.border());
    if o.recent_failovers.is_empty() {
        frame.render_widget(Paragraph::new(t(Msg::NoFailovers)).block(block), bottom);
        return;
    }
    // Narrow terminals drop the prefix counts to keep the names readable.
    let wide = bottom.width >= 100;
    let mut titles = vec![
        t(Msg::ColTime),
        t(Msg::ColNode),
        t(Msg::ColPeer),
        t(Msg::ColCause),
        t(Msg::ColDetection),
        t(Msg::ColSwitch),
    ];
    if wide {
        titles.extend([t(Msg::ColRerouted), t(Msg::ColLost)]);
    }
    let header = Row::new(titles).style(theme.header());
    let rows = o.recent_failovers.iter().filter_map(|e| {
        let EventKind::Failover {
            node,
            peer,
            cause,
            detection_ms,
            switch_us,
            rerouted,
            lost,
        } = &e.kind
        else {
            return None;
        };
        let mut cells = vec![
            format::utc_time(e.at_ms),
            app.name(*node),
            app.name(*peer),
            i18n::cause(app.lang, *cause).to_string(),
            format!("{detection_ms} ms"),
            format!("{switch_us} µs"),
        ];
        if wide {
            cells.extend([rerouted.to_string(), lost.to_string()]);
        }
        let row = Row::new(cells);
        Some(if *lost > 0 {
            row.style(theme.warn())
        } else {
            row
        })
    });
    let mut widths = vec![
        Constraint::Length(10),
        Constraint::Min(8),
        Constraint::Min(8),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(10),
    ];
    if wide {
        widths.extend([Constraint::Length(10), Constraint::Length(8)]);
    }
    frame.render_widget(Table::new(rows, widths).header(header).block(block), bottom);
}

/// Alerts the TUI derives from the nodes' telemetry (issue 15), shown as
/// warnings after the controller's: low memory (named, or counted when
/// many) and version drift (nodes older than the newest agent in the fleet).
fn fleet_alerts(app: &App) -> Vec<String> {
    let Some(nodes) = app.nodes.as_deref() else {
        return Vec::new();
    };
    let mut alerts = Vec::new();
    let low: Vec<String> = telemetry::low_memory_nodes(nodes)
        .into_iter()
        .map(|n| n.hostname.clone())
        .collect();
    if !low.is_empty() {
        alerts.push(i18n::low_memory_alert(
            app.lang,
            &low,
            telemetry::LOW_MEMORY_PERCENT,
        ));
    }
    if let Some((newest, older)) = telemetry::version_drift(nodes) {
        alerts.push(i18n::version_drift_alert(app.lang, older, &newest));
    }
    alerts
}

fn severity_rank(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 0,
        Severity::Warning => 1,
        Severity::Info => 2,
    }
}
