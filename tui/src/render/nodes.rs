//! Nodes: the fleet as a table, sortable and filterable; Enter opens a node.

use freimesh_proto::api::{Node, NodeState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::{Theme, window};
use crate::app::{App, Mode, SortColumn};
use crate::i18n::{self, Lang, Msg};

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
    let header = Row::new(SortColumn::ALL.map(|c| {
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
        row(node, app.lang, theme, now_ms, selected)
    });
    let widths = [
        Constraint::Length(4),
        Constraint::Min(12),
        Constraint::Length(16),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Min(14),
        Constraint::Length(15),
    ];
    frame.render_widget(Table::new(body, widths).header(header).block(block), area);
}

fn row<'a>(node: &Node, lang: Lang, theme: &Theme, now_ms: i64, selected: bool) -> Row<'a> {
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
    Row::new(vec![
        node.id.to_string(),
        node.hostname.clone(),
        state,
        online,
        format!("{}/{}", node.links_up, node.links_total),
        address,
        last_seen,
    ])
    .style(style)
}
