//! Nodes: the fleet as a table, sortable and filterable; Enter opens a node.
//! From 120 columns on it also shows agent version, uptime, load and
//! memory use (issue 15); `s` sorts by those at any width.

use freimesh_proto::api::{Node, NodeState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{Theme, window};
use crate::app::{App, Mode, SortColumn};
use crate::i18n::{self, Lang, Msg};
use crate::telemetry;

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, now_ms: i64) {
    let rows = app.visible_nodes();
    let total = app.nodes.as_ref().map_or(0, Vec::len);
    let direction = app.t(if app.sort_desc {
        Msg::Descending
    } else {
        Msg::Ascending
    });
    let mut title = format!(
        " {} ({total}) · {} {} {direction} ",
        app.t(Msg::TabNodes),
        app.t(Msg::SortedBy),
        app.t(app.sort.title()),
    );
    if !app.filter.is_empty() || app.mode == Mode::Filter {
        title.push_str(&format!(
            "· {}: {} ({}) ",
            app.t(Msg::Filter),
            app.filter,
            i18n::filtered(app.lang, rows.len(), total)
        ));
    }
    let block = Block::bordered().title(title).border_style(theme.border());
    let empty = match &app.nodes {
        None => Some(Msg::Loading),
        Some(all) if all.is_empty() => Some(Msg::NoNodes),
        Some(_) if rows.is_empty() => Some(Msg::NoMatch),
        Some(_) => None,
    };
    if let Some(msg) = empty {
        frame.render_widget(Paragraph::new(app.t(msg)).block(block), area);
        return;
    }
    // Telemetry columns need room; narrow terminals still sort by them.
    let columns = if area.width >= WIDE {
        SortColumn::ALL.len()
    } else {
        BASE_COLUMNS
    };
    let header = Row::new(SortColumn::ALL[..columns].iter().map(|&c| {
        let arrow = match (c == app.sort, app.sort_desc) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        };
        format!("{}{arrow}", app.t(c.title()))
    }))
    .style(theme.header());
    // Only the rows in view are built: 1,000 nodes cost no more than 20.
    let height = usize::from(area.height.saturating_sub(3));
    let range = window(app.node_sel, rows.len(), height);
    let body = rows[range.clone()].iter().enumerate().map(|(i, node)| {
        let selected = range.start + i == app.node_sel;
        row(node, app.lang, theme, now_ms, selected, columns)
    });
    let widths = [
        Constraint::Length(4),
        Constraint::Min(12),
        Constraint::Length(16),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Min(14),
        Constraint::Length(15),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(8),
    ];
    frame.render_widget(
        Table::new(body, &widths[..columns])
            .header(header)
            .block(block),
        area,
    );
}

/// From this width on the table shows the telemetry columns.
const WIDE: u16 = 120;
/// The columns before the telemetry ones.
const BASE_COLUMNS: usize = 7;

fn row<'a>(
    node: &Node,
    lang: Lang,
    theme: &Theme,
    now_ms: i64,
    selected: bool,
    columns: usize,
) -> Row<'a> {
    let mut state = match node.state {
        NodeState::Pending => Msg::StatePending.text(lang).to_string(),
        NodeState::Active => Msg::StateActive.text(lang).to_string(),
        NodeState::Revoked => Msg::StateRevoked.text(lang).to_string(),
    };
    if node.drained {
        state = format!("{state}, {}", Msg::FlagDrained.text(lang));
    }
    if node.gateway {
        state = format!("{state}, {}", Msg::FlagGateway.text(lang));
    }
    // A role the node requests without approval: `Gateway?` (the column
    // is narrow; the detail screen says "awaits approval" in full).
    for role in node
        .roles_requested
        .iter()
        .filter(|r| !node.roles_approved.contains(r))
    {
        state = format!("{state}, {}?", i18n::role_name(lang, *role));
    }
    let online = if node.online { Msg::Yes } else { Msg::No }
        .text(lang)
        .to_string();
    let last_seen = match node.last_seen_ms {
        _ if node.online => Msg::Online.text(lang).to_string(),
        Some(ms) => i18n::ago(lang, now_ms - ms),
        None => Msg::Never.text(lang).to_string(),
    };
    let address = node
        .addresses
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let style = if selected {
        theme.selected()
    } else {
        match node.state {
            NodeState::Revoked => theme.dim(),
            NodeState::Pending => theme.warn(),
            NodeState::Active if !node.online => theme.bad(),
            NodeState::Active if node.drained => theme.warn(),
            NodeState::Active => Style::new(),
        }
    };
    let stats = telemetry::stats(node);
    let missing = || "–".to_string();
    let low_memory = stats.is_some_and(telemetry::is_low_memory) && !selected;
    let memory = stats
        .and_then(telemetry::memory_used_percent)
        .map_or_else(missing, |p| format!("{p} %"));
    let mut cells: Vec<Cell<'a>> = vec![
        node.id.to_string().into(),
        node.hostname.clone().into(),
        state.into(),
        online.into(),
        format!("{}/{}", node.links_up, node.links_total).into(),
        address.into(),
        last_seen.into(),
        telemetry::agent_version(node)
            .map_or_else(missing, str::to_string)
            .into(),
        telemetry::uptime_ms(node, now_ms)
            .map_or_else(missing, telemetry::format_uptime)
            .into(),
        stats
            .and_then(|s| s.load_centi)
            .map_or_else(missing, telemetry::format_load)
            .into(),
        Cell::from(memory).style(if low_memory {
            theme.bad()
        } else {
            Style::new()
        }),
    ];
    cells.truncate(columns);
    Row::new(cells).style(style)
}
