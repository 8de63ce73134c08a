//! Gateways: nodes with an internet uplink, or why there are none.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};

use super::Theme;
use crate::app::App;
use crate::i18n::Msg;

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let t = |m| app.t(m);
    let block = Block::bordered()
        .title(format!(" {} ", t(Msg::TabGateways)))
        .border_style(theme.border());
    let gateways = match &app.gateways {
        None => {
            frame.render_widget(Paragraph::new(t(Msg::Loading)).block(block), area);
            return;
        }
        Some(g) if g.is_empty() => {
            let text = vec![
                Line::styled(t(Msg::NoGatewaysTitle), theme.header()),
                Line::raw(""),
                Line::raw(t(Msg::NoGatewaysHint)),
            ];
            frame.render_widget(
                Paragraph::new(text).block(block).wrap(Wrap { trim: true }),
                area,
            );
            return;
        }
        Some(g) => g,
    };
    let header = Row::new([
        t(Msg::ColId),
        t(Msg::ColHostname),
        t(Msg::ColOnline),
        t(Msg::ColUplink),
    ])
    .style(theme.header());
    let rows = gateways.iter().map(|g| {
        let uplink = match g.uplink_up {
            Some(true) => t(Msg::Up),
            Some(false) => t(Msg::Down),
            None => t(Msg::Unknown),
        };
        let style = if !g.online || g.uplink_up == Some(false) {
            theme.bad()
        } else {
            Style::new()
        };
        Row::new(vec![
            g.node.to_string(),
            g.hostname.clone(),
            t(if g.online { Msg::Yes } else { Msg::No }).to_string(),
            uplink.to_string(),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(5),
        Constraint::Min(16),
        Constraint::Length(8),
        Constraint::Length(12),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}
