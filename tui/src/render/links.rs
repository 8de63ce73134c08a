//! Links: every link with state, RTT, loss and metric, plus a sparkline of
//! recent RTTs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::{Theme, format, window};
use crate::app::App;
use crate::i18n::Msg;

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let t = |m| app.t(m);
    let links = app.links.as_deref().unwrap_or_default();
    let up = links.iter().filter(|l| l.up).count();
    let title = format!(
        " {} ({up}/{} {}) ",
        t(Msg::TabLinks),
        links.len(),
        t(Msg::Up)
    );
    let block = Block::bordered().title(title).border_style(theme.border());
    let empty = match &app.links {
        None => Some(Msg::Loading),
        Some(l) if l.is_empty() => Some(Msg::NoLinks),
        Some(_) => None,
    };
    if let Some(msg) = empty {
        frame.render_widget(Paragraph::new(t(msg)).block(block), area);
        return;
    }
    let header = Row::new([
        t(Msg::ColLink),
        t(Msg::ColState),
        t(Msg::ColRtt),
        t(Msg::ColLoss),
        t(Msg::ColMetric),
        t(Msg::ColOverride),
        t(Msg::Trend),
    ])
    .style(theme.header());
    // RTT history bars per link: more of the history when there is room.
    let spark = if area.width >= 120 { 30 } else { 10 };
    let height = usize::from(area.height.saturating_sub(3));
    let range = window(app.link_sel, links.len(), height);
    let rows = links[range.clone()].iter().enumerate().map(|(i, l)| {
        let style = if range.start + i == app.link_sel {
            theme.selected()
        } else if !l.up {
            theme.bad()
        } else {
            Style::new()
        };
        Row::new(vec![
            format!("{} – {}", l.a_hostname, l.b_hostname),
            t(if l.up { Msg::Up } else { Msg::Down }).to_string(),
            format::rtt(l.rtt_us),
            format::loss(l.loss_ppm),
            l.metric.to_string(),
            l.override_cost.map(|c| c.to_string()).unwrap_or_default(),
            format::sparkline(&l.rtt_history_us, spark),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Min(20),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(u16::try_from(spark).unwrap_or(10)),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}
