//! Node detail: one node's identity, its telemetry (`telemetry.rs`), its
//! links with RTT and loss sparklines and traffic, its routes (primary and
//! alternates) and its recent events.
//!
//! ```text
//! ┌ rathaus (#1) · active · online ─────────────────────────┐
//! │ addresses, prefixes, endpoints                           │
//! └──────────────────────────────────────────────────────────┘
//! ┌ Telemetry: agent, firmware, uptime, load, memory, … ─────┐
//! └──────────────────────────────────────────────────────────┘
//! ┌ Links ───────────────────────────────────────────────────┐
//! │ peer  state  RTT ▁▂▅  loss ▁▁▇  sent  received           │
//! └──────────────────────────────────────────────────────────┘
//! ┌ Routes ─────────────────────┐┌ Recent events ───────────┐
//! └─────────────────────────────┘└──────────────────────────┘
//! ```
//! Below 120 columns routes and events stack instead; below [`SHORT`] rows
//! they are left out so the telemetry stays whole.

use freimesh_proto::api::{NodeDetail, NodeState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::{Theme, format};
use crate::app::App;
use crate::i18n::{self, Msg};

/// Below this pane height the detail leaves out routes and events.
pub const SHORT: u16 = 30;

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, now_ms: i64) {
    let t = |m| app.t(m);
    let detail = match (&app.detail_id, &app.detail) {
        (Some(id), Some(d)) if d.node.id == *id => d,
        (Some(id), _) => {
            let block = Block::bordered()
                .title(format!(" {} ", app.name(*id)))
                .border_style(theme.border());
            frame.render_widget(Paragraph::new(t(Msg::Loading)).block(block), area);
            return;
        }
        (None, _) => {
            let block = Block::bordered()
                .title(format!(" {} ", t(Msg::TabDetail)))
                .border_style(theme.border());
            let text = format!("{} (2 → ↑↓ → Enter)", t(Msg::SelectNodeFirst));
            frame.render_widget(Paragraph::new(text).block(block), area);
            return;
        }
    };
    let link_rows = u16::try_from(detail.links.len().clamp(1, 8)).unwrap_or(8);
    let telemetry_rows = super::telemetry::ROWS + 2;
    if area.height < SHORT {
        // Too short for all panes: identity, telemetry and as many links
        // as fit; routes and events need a taller terminal.
        let [info, telemetry, links] = Layout::vertical([
            Constraint::Length(5),
            Constraint::Length(telemetry_rows),
            Constraint::Min(0),
        ])
        .areas(area);
        draw_info(frame, info, app, theme, detail, now_ms);
        super::telemetry::draw(frame, telemetry, app, theme, &detail.node, now_ms);
        draw_links(frame, links, app, theme, detail);
        return;
    }
    let [info, telemetry, links, rest] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(telemetry_rows),
        Constraint::Length(link_rows + 3),
        Constraint::Min(3),
    ])
    .areas(area);
    draw_info(frame, info, app, theme, detail, now_ms);
    super::telemetry::draw(frame, telemetry, app, theme, &detail.node, now_ms);
    draw_links(frame, links, app, theme, detail);
    let (routes, events) = if area.width >= 120 {
        let [a, b] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(rest);
        (a, b)
    } else {
        let [a, b] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(rest);
        (a, b)
    };
    draw_routes(frame, routes, app, theme, detail);
    draw_events(frame, events, app, theme, detail);
}

fn draw_info(
    frame: &mut Frame<'_>,
    area: Rect,
    app: &App,
    theme: &Theme,
    d: &NodeDetail,
    now_ms: i64,
) {
    let t = |m| app.t(m);
    let n = &d.node;
    let state = match n.state {
        NodeState::Pending => t(Msg::StatePending),
        NodeState::Active => t(Msg::StateActive),
        NodeState::Revoked => t(Msg::StateRevoked),
    };
    let mut flags = vec![state.to_string()];
    if n.drained {
        flags.push(t(Msg::FlagDrained).to_string());
    }
    if n.gateway {
        flags.push(t(Msg::FlagGateway).to_string());
    }
    for role in n
        .roles_requested
        .iter()
        .filter(|r| !n.roles_approved.contains(r))
    {
        flags.push(format!(
            "{}: {}",
            i18n::role_name(app.lang, *role),
            t(Msg::FlagAwaitsApproval)
        ));
    }
    let seen = match n.last_seen_ms {
        _ if n.online => t(Msg::Online).to_string(),
        Some(ms) => format!(
            "{}: {}",
            t(Msg::ColLastSeen),
            i18n::ago(app.lang, now_ms - ms)
        ),
        None => format!("{}: {}", t(Msg::ColLastSeen), t(Msg::Never)),
    };
    flags.push(seen);
    let title = format!(
        " {} (#{}) · {} · {} ",
        n.hostname,
        n.id,
        n.node_id,
        flags.join(" · ")
    );
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "–".to_string()
        } else {
            v.join(", ")
        }
    };
    let field = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:<11}"), theme.dim()),
            Span::raw(value),
        ])
    };
    let lines = vec![
        field(
            t(Msg::Addresses),
            list(n.addresses.iter().map(ToString::to_string).collect()),
        ),
        field(
            t(Msg::Prefixes),
            list(n.prefixes.iter().map(ToString::to_string).collect()),
        ),
        field(
            t(Msg::Endpoints),
            list(n.endpoints.iter().map(ToString::to_string).collect()),
        ),
    ];
    let style = if n.online {
        theme.header()
    } else {
        theme.bad()
    };
    let block = Block::bordered()
        .title(Span::styled(title, style))
        .border_style(theme.border());
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_links(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, d: &NodeDetail) {
    let t = |m| app.t(m);
    let spark = if area.width >= 120 { 30 } else { 10 };
    let header = Row::new([
        t(Msg::ColPeer),
        t(Msg::ColState),
        t(Msg::ColRtt),
        t(Msg::Trend),
        t(Msg::ColLoss),
        t(Msg::Trend),
        t(Msg::ColTx),
        t(Msg::ColRx),
    ])
    .style(theme.header());
    let me = d.node.id;
    let rows = d.links.iter().map(|l| {
        let (peer, peer_name) = if l.a == me {
            (l.b, &l.b_hostname)
        } else {
            (l.a, &l.a_hostname)
        };
        let traffic = d.traffic.iter().find(|tr| tr.peer == peer);
        let bytes = |f: fn(&freimesh_proto::api::LinkTraffic) -> u64| {
            traffic
                .map(|tr| format::bytes(f(tr)))
                .unwrap_or_else(|| "–".to_string())
        };
        Row::new(vec![
            peer_name.clone(),
            t(if l.up { Msg::Up } else { Msg::Down }).to_string(),
            format::rtt(l.rtt_us),
            format::sparkline(&l.rtt_history_us, spark),
            format::loss(l.loss_ppm),
            format::sparkline(&l.loss_history_ppm, spark),
            bytes(|tr| tr.tx_bytes),
            bytes(|tr| tr.rx_bytes),
        ])
        .style(if l.up { Style::new() } else { theme.bad() })
    });
    let spark = u16::try_from(spark).unwrap_or(10);
    let widths = [
        Constraint::Min(10),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(spark),
        Constraint::Length(7),
        Constraint::Length(spark),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    let block = Block::bordered()
        .title(format!(" {} · {} ", t(Msg::LinksOfNode), t(Msg::Traffic)))
        .border_style(theme.border());
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn draw_routes(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, d: &NodeDetail) {
    let t = |m| app.t(m);
    let block = Block::bordered()
        .title(format!(" {} ({}) ", t(Msg::Routes), d.routes.len()))
        .border_style(theme.border());
    if d.routes.is_empty() {
        frame.render_widget(Paragraph::new(t(Msg::NoRoutes)).block(block), area);
        return;
    }
    let header = Row::new([
        t(Msg::ColPrefix),
        t(Msg::ColDestination),
        t(Msg::ColPrimary),
        t(Msg::ColAlternates),
        t(Msg::ColMetric),
    ])
    .style(theme.header());
    let skip = app.scroll.min(d.routes.len().saturating_sub(1));
    let rows = d.routes.iter().skip(skip).map(|r| {
        let primary = r
            .via
            .first()
            .map(|h| h.hostname.clone())
            .unwrap_or_else(|| "–".into());
        let alternates: Vec<&str> = r.via.iter().skip(1).map(|h| h.hostname.as_str()).collect();
        let row = Row::new(vec![
            r.prefix.to_string(),
            r.destination_hostname.clone(),
            primary,
            if alternates.is_empty() {
                "–".to_string()
            } else {
                alternates.join(", ")
            },
            r.metric
                .map(|m| m.to_string())
                .unwrap_or_else(|| "–".into()),
        ]);
        // A route without alternates dies with its primary link.
        if r.via.len() < 2 {
            row.style(theme.warn())
        } else {
            row
        }
    });
    let widths = [
        Constraint::Min(14),
        Constraint::Min(10),
        Constraint::Min(10),
        Constraint::Min(10),
        Constraint::Length(6),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn draw_events(frame: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme, d: &NodeDetail) {
    let block = Block::bordered()
        .title(format!(" {} ", app.t(Msg::RecentEvents)))
        .border_style(theme.border());
    if d.events.is_empty() {
        frame.render_widget(Paragraph::new(app.t(Msg::NoEvents)).block(block), area);
        return;
    }
    let name = |id: u32| app.name(id);
    let lines: Vec<Line<'_>> = d
        .events
        .iter()
        .map(|e| {
            Line::from(vec![
                Span::styled(format!("{} ", format::utc_time(e.at_ms)), theme.dim()),
                Span::raw(i18n::event(app.lang, &e.kind, &name)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
