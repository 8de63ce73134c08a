//! Events: the live stream, newest first, scrollable.

use freimesh_proto::api::EventKind;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{Theme, format, window};
use crate::app::App;
use crate::i18n::{self, Msg};

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, now_ms: i64) {
    let today = format::utc_date(now_ms);
    let block = Block::bordered()
        .title(format!(
            " {} ({}) ",
            app.t(Msg::TabEvents),
            app.events.len()
        ))
        .border_style(theme.border());
    if app.events.is_empty() {
        frame.render_widget(Paragraph::new(app.t(Msg::NoEvents)).block(block), area);
        return;
    }
    let height = usize::from(area.height.saturating_sub(2));
    let range = window(app.event_sel, app.events.len(), height);
    let name = |id: u32| app.name(id);
    let lines: Vec<Line<'_>> = app.events[range.clone()]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let style = if range.start + i == app.event_sel {
                theme.selected()
            } else {
                match e.kind {
                    EventKind::LinkDown { .. }
                    | EventKind::Disconnected { .. }
                    | EventKind::Revoked { .. } => theme.bad(),
                    EventKind::Failover { .. } | EventKind::Drained { .. } => theme.warn(),
                    EventKind::LinkUp { .. } | EventKind::Connected { .. } => theme.ok(),
                    _ => Style::new(),
                }
            };
            Line::from(vec![
                Span::styled(stamp(e.at_ms, &today), theme.dim()),
                Span::styled(format!("#{:<5} ", e.seq), theme.dim()),
                Span::raw(i18n::event(app.lang, &e.kind, &name)),
            ])
            .style(style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The time of day for today's events, with the date for older ones.
fn stamp(at_ms: i64, today: &str) -> String {
    let date = format::utc_date(at_ms);
    if date == today {
        format!("{} ", format::utc_time(at_ms))
    } else {
        format!("{date} {} ", format::utc_time(at_ms))
    }
}
