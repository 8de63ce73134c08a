//! Drawing: one function per pane, all of them pure functions of
//! [`App`] and the current time (passed in, never read here).
//!
//! ```text
//!  freimesh │ 1 Overview │ 2 Nodes │ 3 Node │ 4 Links │ …      <- tabs
//! ┌ pane ───────────────────────────────────────────────────┐
//! │ the current screen (overview, nodes, …)                 │
//! └─────────────────────────────────────────────────────────┘
//!  connected · http://127.0.0.1:7780 · last action    ? help  <- status
//! ```
//! Dialogs (help, confirmation, join token) are drawn over the pane.

mod chrome;
mod detail;
mod events;
mod format;
mod gateways;
mod links;
mod nodes;
mod overlay;
mod overview;
mod redundancy;
mod telemetry;
mod theme;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::widgets::Paragraph;

pub use format::{sparkline, utc_time};
pub use theme::Theme;

use crate::app::{App, Screen};
use crate::i18n::Msg;

/// Below this the screens cannot show a useful table; say so instead.
pub const MIN_WIDTH: u16 = 50;
pub const MIN_HEIGHT: u16 = 10;

/// Draws the whole UI for `app` at `now_ms`.
pub fn draw(frame: &mut Frame<'_>, app: &App, now_ms: i64) {
    let area = frame.area();
    let theme = Theme::new(app.color);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "{} ({}×{} < {MIN_WIDTH}×{MIN_HEIGHT})",
            app.t(Msg::TooSmall),
            area.width,
            area.height
        );
        let para = Paragraph::new(text)
            .style(theme.bad())
            .alignment(Alignment::Center)
            .wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(para, area);
        return;
    }
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::tabs(frame, tabs, app, &theme);
    draw_screen(frame, body, app, &theme, now_ms);
    chrome::status(frame, status, app, &theme, now_ms);
    overlay::draw(frame, body, app, &theme);
}

fn draw_screen(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, now_ms: i64) {
    match app.screen {
        Screen::Overview => overview::draw(frame, area, app, theme, now_ms),
        Screen::Nodes => nodes::draw(frame, area, app, theme, now_ms),
        Screen::Detail => detail::draw(frame, area, app, theme, now_ms),
        Screen::Links => links::draw(frame, area, app, theme),
        Screen::Gateways => gateways::draw(frame, area, app, theme),
        Screen::Events => events::draw(frame, area, app, theme, now_ms),
        Screen::Redundancy => redundancy::draw(frame, area, app, theme),
    }
}

/// The first row to show so that row `selected` of `len` is visible in a
/// window of `height` rows (keeps the selection in view while scrolling).
pub fn window(selected: usize, len: usize, height: usize) -> std::ops::Range<usize> {
    if height == 0 || len == 0 {
        return 0..0;
    }
    let start = selected
        .saturating_sub(height - 1)
        .min(len.saturating_sub(height));
    start..(start + height).min(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_the_selection_visible() {
        assert_eq!(window(0, 100, 10), 0..10);
        assert_eq!(window(9, 100, 10), 0..10);
        assert_eq!(window(10, 100, 10), 1..11);
        assert_eq!(window(99, 100, 10), 90..100);
        assert_eq!(window(3, 5, 10), 0..5);
        assert_eq!(window(0, 0, 10), 0..0);
    }
}
