//! Dialogs drawn over the current screen: key help, the y/n confirmation
//! of a node action, the join token's lifetime prompt and the new token.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::Theme;
use crate::app::{App, KEY_HELP, Mode, NodeAction};
use crate::i18n::{self, Msg};

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    match &app.mode {
        Mode::Normal | Mode::Filter => {}
        Mode::Help => help(frame, area, app, theme),
        Mode::Confirm(p) => {
            let revoke = p.action == NodeAction::Revoke;
            let title = app.t(if revoke {
                Msg::RevokeTitle
            } else {
                Msg::ConfirmTitle
            });
            let style = if revoke { theme.bad() } else { theme.header() };
            let lines = vec![
                Line::styled(
                    i18n::confirm_question(app.lang, p.action, &p.hostname, p.node),
                    style,
                ),
                Line::raw(""),
                Line::styled(app.t(Msg::ConfirmHint), theme.dim()),
            ];
            dialog(frame, area, title, lines, 60, theme);
        }
        Mode::TokenTtl(ttl) => {
            let lines = vec![
                Line::raw(app.t(Msg::TokenTtlPrompt)),
                Line::from(vec![Span::styled(format!("> {ttl}▏"), theme.selected())]),
                Line::raw(""),
                Line::styled(app.t(Msg::TokenTtlHint), theme.dim()),
            ];
            dialog(frame, area, app.t(Msg::TokenTitle), lines, 50, theme);
        }
        Mode::TokenShown(token) => {
            let lines = vec![
                Line::styled(token.token.clone(), theme.header()),
                Line::raw(""),
                Line::styled(app.t(Msg::TokenShownNote), theme.warn()),
                Line::raw(""),
                Line::styled(app.t(Msg::TokenClose), theme.dim()),
            ];
            dialog(frame, area, app.t(Msg::TokenShownTitle), lines, 76, theme);
        }
    }
}

fn help(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let mut lines: Vec<Line<'_>> = KEY_HELP
        .iter()
        .map(|(keys, msg)| {
            Line::from(vec![
                Span::styled(format!("{keys:>10}  "), theme.header()),
                Span::raw(app.t(*msg)),
            ])
        })
        .collect();
    lines.push(Line::styled(app.t(Msg::HelpClose), theme.dim()));
    dialog(frame, area, app.t(Msg::HelpTitle), lines, 64, theme);
}

/// A centred, bordered box of at most `width` columns, as tall as its
/// wrapped text (clipped by `area`).
fn dialog(
    frame: &mut Frame<'_>,
    area: Rect,
    title: &str,
    lines: Vec<Line<'_>>,
    width: u16,
    theme: &Theme,
) {
    let width = width.min(area.width);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    // Wrapped height, estimated by characters: good enough for prose.
    let height: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let height = u16::try_from(height + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(Span::styled(format!(" {title} "), theme.header()))
        .border_style(theme.header());
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}
