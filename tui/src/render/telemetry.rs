//! The node detail's telemetry pane (issue 15): what the router is (agent,
//! firmware, model, CPUs), how it is doing (uptime, load, memory, root fs),
//! when it enrolled and last reported, where it stands and whom to call.
//! Every missing value reads "–".
//!
//! ```text
//! ┌ Telemetry ────────────────────────────────────────────────┐
//! │ Agent      0.3.0              Root fs    41.2 %           │
//! │ Firmware   OpenWrt 23.05.3    First seen 2025-03-01 …     │
//! │ …                             …                           │
//! └───────────────────────────────────────────────────────────┘
//! ```

use freimesh_proto::api::Node;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{Theme, format};
use crate::app::App;
use crate::i18n::{self, Field};
use crate::telemetry;

/// Rows of the pane's content: two columns of this many fields.
pub const ROWS: u16 = 7;

const MISSING: &str = "–";

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, n: &Node, now_ms: i64) {
    let lang = app.lang;
    let tel = &n.telemetry;
    let info = tel.info.as_ref();
    let stats = telemetry::stats(n);
    let text = |v: Option<&String>| v.cloned().unwrap_or_else(|| MISSING.to_string());
    let ago =
        |ms: Option<i64>| ms.map_or_else(|| MISSING.to_string(), |ms| i18n::ago(lang, now_ms - ms));

    let firmware = match info.map(|i| (&i.firmware_base, &i.firmware_release)) {
        Some((Some(base), Some(release))) => format!("{base} {release}"),
        Some((Some(only), None) | (None, Some(only))) => only.clone(),
        _ => MISSING.to_string(),
    };
    let nproc = info.and_then(|i| i.nproc);
    let load = stats.and_then(|s| s.load_centi);
    // A load at or above the CPU count is what meshviewer warns about.
    let load_style = match (load, nproc) {
        (Some(l), Some(p)) if l >= u32::from(p) * 100 => theme.warn(),
        _ => Style::new(),
    };
    let memory = stats.and_then(|s| {
        let total = s.memory_total_kib?;
        let used = total.saturating_sub(s.memory_available_kib?);
        let percent = telemetry::memory_used_percent(s)?;
        Some(format!(
            "{} / {} ({percent} %)",
            format::bytes(used.saturating_mul(1_024)),
            format::bytes(total.saturating_mul(1_024))
        ))
    });
    let memory_style = if stats.is_some_and(telemetry::is_low_memory) {
        theme.bad()
    } else {
        Style::new()
    };
    let first_seen = tel.first_seen_ms.map_or_else(
        || MISSING.to_string(),
        |ms| {
            format!(
                "{} ({})",
                format::utc_date(ms),
                i18n::ago(lang, now_ms - ms)
            )
        },
    );
    let reported = tel.stats_at_ms.max(tel.info_at_ms);
    let location = info.and_then(|i| i.location).map_or_else(
        || MISSING.to_string(),
        |l| format!("{:.6}, {:.6}", l.latitude(), l.longitude()),
    );

    let plain = Style::new();
    let left = [
        (
            Field::Agent,
            telemetry::agent_version(n).unwrap_or(MISSING).to_string(),
            plain,
        ),
        (Field::Firmware, firmware, plain),
        (
            Field::Model,
            text(info.and_then(|i| i.model.as_ref())),
            plain,
        ),
        (
            Field::Cpus,
            nproc.map_or_else(|| MISSING.to_string(), |p| p.to_string()),
            plain,
        ),
        (
            Field::Uptime,
            telemetry::uptime_ms(n, now_ms)
                .map_or_else(|| MISSING.to_string(), telemetry::format_uptime),
            plain,
        ),
        (
            Field::Load,
            load.map_or_else(|| MISSING.to_string(), telemetry::format_load),
            load_style,
        ),
        (
            Field::Memory,
            memory.unwrap_or_else(|| MISSING.to_string()),
            memory_style,
        ),
    ];
    let right = [
        (
            Field::RootFs,
            format::loss(stats.and_then(|s| s.rootfs_used_ppm)),
            plain,
        ),
        (Field::FirstSeen, first_seen, plain),
        (Field::LastReport, ago(reported), plain),
        (Field::Location, location, plain),
        (
            Field::Contact,
            text(info.and_then(|i| i.contact.as_ref())),
            plain,
        ),
        (
            Field::Domain,
            text(info.and_then(|i| i.domain.as_ref())),
            plain,
        ),
        (
            Field::Autoupdater,
            text(info.and_then(|i| i.autoupdater_branch.as_ref())),
            plain,
        ),
    ];
    let lines = |fields: [(Field, String, Style); 7]| -> Vec<Line<'static>> {
        fields
            .into_iter()
            .map(|(field, value, style)| {
                Line::from(vec![
                    Span::styled(format!("{:<11}", field.label(lang)), theme.dim()),
                    Span::styled(value, style),
                ])
            })
            .collect()
    };
    let block = Block::bordered()
        .title(format!(" {} ", app.t(crate::i18n::Msg::Telemetry)))
        .border_style(theme.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [a, b] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(inner);
    frame.render_widget(Paragraph::new(lines(left)), a);
    frame.render_widget(Paragraph::new(lines(right)), b);
}
