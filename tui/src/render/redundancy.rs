//! Redundancy: nodes and links whose single failure cuts others off, with
//! the buildings (approved prefixes) that would go dark.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};

use super::Theme;
use crate::app::App;
use crate::i18n::{self, Msg};

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let t = |m| app.t(m);
    let Some(r) = &app.redundancy else {
        let block = Block::bordered()
            .title(format!(" {} ", t(Msg::TabRedundancy)))
            .border_style(theme.border());
        frame.render_widget(Paragraph::new(t(Msg::Loading)).block(block), area);
        return;
    };
    if r.nodes.is_empty() && r.links.is_empty() {
        let block = Block::bordered()
            .title(format!(" {} ", t(Msg::TabRedundancy)))
            .border_style(theme.border());
        let text = vec![
            Line::styled(t(Msg::NoSpofTitle), theme.ok()),
            Line::raw(""),
            Line::raw(t(Msg::NoSpofHint)),
        ];
        frame.render_widget(
            Paragraph::new(text).block(block).wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let names = |ids: &[u32]| {
        ids.iter()
            .map(|id| app.name(*id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let prefixes = |p: &[ipnet::IpNet]| {
        if p.is_empty() {
            "–".to_string()
        } else {
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let cut = |ids: &[u32]| format!("{} ({})", i18n::node_count(app.lang, ids.len()), names(ids));

    let header = Row::new([t(Msg::ColNode), t(Msg::ColCutsOff), t(Msg::ColPrefixesCut)])
        .style(theme.header());
    let rows = r.nodes.iter().map(|n| {
        Row::new(vec![
            n.hostname.clone(),
            cut(&n.cuts_off),
            prefixes(&n.prefixes_cut),
        ])
        .style(theme.warn())
    });
    let widths = [
        Constraint::Min(14),
        Constraint::Min(20),
        Constraint::Min(20),
    ];
    let block = Block::bordered()
        .title(format!(" {} ({}) ", t(Msg::CutNodes), r.nodes.len()))
        .border_style(theme.border());
    frame.render_widget(Table::new(rows, widths).header(header).block(block), top);

    let header = Row::new([t(Msg::ColLink), t(Msg::ColCutsOff), t(Msg::ColPrefixesCut)])
        .style(theme.header());
    let rows = r.links.iter().map(|l| {
        Row::new(vec![
            format!("{} – {}", app.name(l.a), app.name(l.b)),
            cut(&l.cuts_off),
            prefixes(&l.prefixes_cut),
        ])
        .style(theme.warn())
    });
    let block = Block::bordered()
        .title(format!(" {} ({}) ", t(Msg::CutLinks), r.links.len()))
        .border_style(theme.border());
    frame.render_widget(Table::new(rows, widths).header(header).block(block), bottom);
}
