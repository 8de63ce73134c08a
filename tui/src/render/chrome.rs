//! The frame around the screens: the tab line and the status bar.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use crate::app::{App, Connection, Mode, Screen};
use crate::i18n::{self, Msg};

pub fn tabs(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let full = |i: usize, screen: &Screen| format!(" {} {} ", i + 1, app.t(screen.title()));
    let width: usize = 10
        + Screen::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| full(i, s).chars().count() + 1)
            .sum::<usize>();
    // Narrow terminals: only the active tab keeps its name.
    let compact = width > usize::from(area.width);
    let mut spans = vec![Span::styled(" freimesh ", theme.header())];
    for (i, screen) in Screen::ALL.iter().enumerate() {
        spans.push(Span::styled("│", theme.dim()));
        let label = if compact && *screen != app.screen {
            format!(" {} ", i + 1)
        } else {
            full(i, screen)
        };
        let style = if *screen == app.screen {
            theme.selected()
        } else {
            ratatui::style::Style::new()
        };
        spans.push(Span::styled(label, style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn status(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, now_ms: i64) {
    let (conn, conn_style) = match &app.connection {
        Connection::Connecting => (app.t(Msg::Connecting).to_string(), theme.warn()),
        Connection::Connected => (
            format!("{} · {}", app.t(Msg::Connected), app.api_url),
            theme.ok(),
        ),
        Connection::Unreachable {
            reason,
            retry_at_ms,
        } => {
            let secs = u64::try_from(retry_at_ms - now_ms)
                .unwrap_or(0)
                .div_ceil(1_000);
            (
                format!("{} · {reason}", i18n::unreachable(app.lang, secs)),
                theme.bad(),
            )
        }
        Connection::Refused { reason } => (
            format!("{} · {reason}", app.t(Msg::TokenRefused)),
            theme.bad(),
        ),
    };
    let hint = match app.mode {
        Mode::Filter => format!("{}: {}▏", app.t(Msg::Filter), app.filter),
        _ => app.t(Msg::HelpHint).to_string(),
    };
    let hint_width = u16::try_from(hint.chars().count() + 2).unwrap_or(u16::MAX);
    let [left, right] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(hint_width)]).areas(area);
    let mut spans = vec![Span::styled(format!(" {conn}"), conn_style)];
    if let Some(status) = &app.status {
        let style = if status.ok { theme.ok() } else { theme.bad() };
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(status.text.clone(), style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme.bar()), left);
    frame.render_widget(
        Paragraph::new(format!(" {hint} ")).style(theme.bar()),
        right,
    );
}
