//! The one state the UI renders ([`App`]), what changes it: data from the
//! worker threads ([`Update`]) and keys ([`App::handle_key`]), and what
//! keys ask the worker to do ([`Command`]).
//!
//! Nothing here does I/O or reads the clock: times arrive inside updates,
//! so tests drive the state machine with plain values.

use freimesh_proto::api::{
    CreatedToken, Event, Gateway, Link, Node, NodeDetail, NodeState, Overview, Redundancy,
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub use crate::i18n::NodeAction;
use crate::i18n::{Lang, Msg};
use crate::telemetry;

/// How many events the events screen keeps (newest first).
pub const EVENT_HISTORY: usize = 500;
/// Rows moved by PgUp/PgDn.
const PAGE: usize = 10;

/// The keys and what they do, as the help overlay lists them (the handler
/// is [`App::handle_key`]; keep the two in step).
pub const KEY_HELP: &[(&str, Msg)] = &[
    ("1–7", Msg::KeyTabs),
    ("Tab ⇧Tab", Msg::KeyNextTab),
    ("↑↓ j k", Msg::KeyMove),
    ("PgUp PgDn", Msg::KeyPage),
    ("Enter", Msg::KeyOpen),
    ("Esc", Msg::KeyBack),
    ("/", Msg::KeyFilter),
    ("s", Msg::KeySort),
    ("S", Msg::KeySortDir),
    ("d", Msg::KeyDrain),
    ("u", Msg::KeyUndrain),
    ("a", Msg::KeyApprove),
    ("r", Msg::KeyRevoke),
    ("o", Msg::KeyRoleApprove),
    ("O", Msg::KeyRoleRevoke),
    ("t", Msg::KeyToken),
    ("R F5", Msg::KeyRefresh),
    ("?", Msg::KeyHelp),
    ("q", Msg::KeyQuit),
];

/// The screens, in tab order (keys 1–7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Nodes,
    Detail,
    Links,
    Gateways,
    Events,
    Redundancy,
}

impl Screen {
    pub const ALL: [Screen; 7] = [
        Screen::Overview,
        Screen::Nodes,
        Screen::Detail,
        Screen::Links,
        Screen::Gateways,
        Screen::Events,
        Screen::Redundancy,
    ];

    pub fn title(self) -> Msg {
        match self {
            Screen::Overview => Msg::TabOverview,
            Screen::Nodes => Msg::TabNodes,
            Screen::Detail => Msg::TabDetail,
            Screen::Links => Msg::TabLinks,
            Screen::Gateways => Msg::TabGateways,
            Screen::Events => Msg::TabEvents,
            Screen::Redundancy => Msg::TabRedundancy,
        }
    }

    fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// The columns of the nodes table, in order; `s` steps through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Id,
    Hostname,
    State,
    Online,
    Links,
    Address,
    LastSeen,
    /// Telemetry (issue 15): shown as columns on wide terminals only.
    Agent,
    Uptime,
    Load,
    Memory,
}

impl SortColumn {
    pub const ALL: [SortColumn; 11] = [
        SortColumn::Id,
        SortColumn::Hostname,
        SortColumn::State,
        SortColumn::Online,
        SortColumn::Links,
        SortColumn::Address,
        SortColumn::LastSeen,
        SortColumn::Agent,
        SortColumn::Uptime,
        SortColumn::Load,
        SortColumn::Memory,
    ];

    pub fn title(self) -> Msg {
        match self {
            SortColumn::Id => Msg::ColId,
            SortColumn::Hostname => Msg::ColHostname,
            SortColumn::State => Msg::ColState,
            SortColumn::Online => Msg::ColOnline,
            SortColumn::Links => Msg::ColLinks,
            SortColumn::Address => Msg::ColAddress,
            SortColumn::LastSeen => Msg::ColLastSeen,
            SortColumn::Agent => Msg::ColAgent,
            SortColumn::Uptime => Msg::ColUptime,
            SortColumn::Load => Msg::ColLoad,
            SortColumn::Memory => Msg::ColMemory,
        }
    }

    fn next(self) -> SortColumn {
        let i = SortColumn::ALL.iter().position(|c| *c == self).unwrap_or(0);
        SortColumn::ALL[(i + 1) % SortColumn::ALL.len()]
    }
}

/// What the key handler is doing besides normal navigation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing into the nodes filter.
    Filter,
    Help,
    /// Waiting for y/n on a node action.
    Confirm(Pending),
    /// Typing the lifetime of a new join token.
    TokenTtl(String),
    /// The new token, shown once.
    TokenShown(CreatedToken),
}

/// A node action waiting for confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub action: NodeAction,
    pub node: u32,
    pub hostname: String,
}

/// What the UI asks the worker thread to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Node {
        action: NodeAction,
        node: u32,
        hostname: String,
    },
    CreateToken {
        ttl: String,
    },
    /// Keep this node's detail fresh (or none).
    Watch(Option<u32>),
    Refresh,
}

/// What the worker threads tell the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Overview(Overview),
    Nodes(Vec<Node>),
    Links(Vec<Link>),
    Gateways(Vec<Gateway>),
    Redundancy(Redundancy),
    Detail(NodeDetail),
    Event(Event),
    /// A refresh worked: the controller is reachable.
    Reachable,
    /// A refresh failed for a reason a retry may fix.
    Unreachable {
        reason: String,
        retry_at_ms: i64,
    },
    /// The controller answered but refused us (bad token).
    Refused {
        reason: String,
    },
    Status(Status),
    TokenCreated(CreatedToken),
}

/// The connection to the controller as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected,
    Unreachable { reason: String, retry_at_ms: i64 },
    Refused { reason: String },
}

/// The outcome line of the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub ok: bool,
}

/// Everything the UI shows.
#[derive(Debug, Clone)]
pub struct App {
    pub lang: Lang,
    /// False under `NO_COLOR`: styles use only modifiers.
    pub color: bool,
    pub api_url: String,
    pub screen: Screen,
    pub mode: Mode,
    pub connection: Connection,
    pub status: Option<Status>,
    pub overview: Option<Overview>,
    /// None until the first answer, so "loading" differs from "empty".
    pub nodes: Option<Vec<Node>>,
    pub links: Option<Vec<Link>>,
    pub gateways: Option<Vec<Gateway>>,
    pub redundancy: Option<Redundancy>,
    /// Newest first.
    pub events: Vec<Event>,
    pub detail_id: Option<u32>,
    pub detail: Option<NodeDetail>,
    pub filter: String,
    pub sort: SortColumn,
    pub sort_desc: bool,
    pub node_sel: usize,
    pub link_sel: usize,
    pub event_sel: usize,
    pub scroll: usize,
    pub quit: bool,
}

impl App {
    pub fn new(lang: Lang, color: bool, api_url: &str) -> App {
        App {
            lang,
            color,
            api_url: api_url.to_string(),
            screen: Screen::Overview,
            mode: Mode::Normal,
            connection: Connection::Connecting,
            status: None,
            overview: None,
            nodes: None,
            links: None,
            gateways: None,
            redundancy: None,
            events: Vec::new(),
            detail_id: None,
            detail: None,
            filter: String::new(),
            sort: SortColumn::Id,
            sort_desc: false,
            node_sel: 0,
            link_sel: 0,
            event_sel: 0,
            scroll: 0,
            quit: false,
        }
    }

    pub fn t(&self, msg: Msg) -> &'static str {
        msg.text(self.lang)
    }

    /// The hostname of node `id`, or `#id` if we do not know it.
    pub fn name(&self, id: u32) -> String {
        self.nodes
            .as_deref()
            .and_then(|nodes| {
                nodes
                    .binary_search_by_key(&id, |n| n.id)
                    .ok()
                    .map(|i| &nodes[i])
            })
            .map_or_else(|| format!("#{id}"), |n| n.hostname.clone())
    }

    /// The nodes table's rows: filtered by `filter`, sorted by `sort`.
    pub fn visible_nodes(&self) -> Vec<&Node> {
        let Some(nodes) = &self.nodes else {
            return Vec::new();
        };
        let query = self.filter.trim().to_lowercase();
        let mut rows: Vec<&Node> = nodes.iter().filter(|n| matches(n, &query)).collect();
        rows.sort_by(|a, b| {
            let order = compare(self.sort, a, b).then(a.id.cmp(&b.id));
            if self.sort_desc {
                order.reverse()
            } else {
                order
            }
        });
        rows
    }

    /// The node an action would apply to: the selected row on the nodes
    /// screen, the shown node on the detail screen.
    pub fn target(&self) -> Option<(u32, String)> {
        match self.screen {
            Screen::Nodes => self
                .visible_nodes()
                .get(self.node_sel)
                .map(|n| (n.id, n.hostname.clone())),
            Screen::Detail => self.detail_id.map(|id| {
                let host = match &self.detail {
                    Some(d) if d.node.id == id => d.node.hostname.clone(),
                    _ => self.name(id),
                };
                (id, host)
            }),
            _ => None,
        }
    }

    /// Takes in what a worker thread learned.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Overview(o) => self.overview = Some(o),
            Update::Nodes(mut nodes) => {
                // `name` binary-searches by id; the API sorts, but be sure.
                nodes.sort_by_key(|n| n.id);
                self.nodes = Some(nodes);
                self.clamp_selection();
            }
            Update::Links(links) => {
                self.links = Some(links);
                self.clamp_selection();
            }
            Update::Gateways(g) => self.gateways = Some(g),
            Update::Redundancy(r) => self.redundancy = Some(r),
            Update::Detail(d) => {
                if Some(d.node.id) == self.detail_id {
                    self.detail = Some(d);
                }
            }
            Update::Event(event) => self.push_event(event),
            Update::Reachable => self.connection = Connection::Connected,
            Update::Unreachable {
                reason,
                retry_at_ms,
            } => {
                self.connection = Connection::Unreachable {
                    reason,
                    retry_at_ms,
                }
            }
            Update::Refused { reason } => self.connection = Connection::Refused { reason },
            Update::Status(status) => self.status = Some(status),
            Update::TokenCreated(token) => self.mode = Mode::TokenShown(token),
        }
    }

    fn push_event(&mut self, event: Event) {
        if self.events.iter().any(|e| e.seq == event.seq) {
            return;
        }
        let at = self.events.partition_point(|e| e.seq > event.seq);
        self.events.insert(at, event);
        self.events.truncate(EVENT_HISTORY);
        // Keep the operator's place when they scrolled down.
        if self.event_sel > 0 && at <= self.event_sel {
            self.event_sel = (self.event_sel + 1).min(self.events.len().saturating_sub(1));
        }
    }

    fn clamp_selection(&mut self) {
        let nodes = self.visible_nodes().len();
        self.node_sel = self.node_sel.min(nodes.saturating_sub(1));
        let links = self.links.as_ref().map_or(0, Vec::len);
        self.link_sel = self.link_sel.min(links.saturating_sub(1));
    }

    /// Handles one key press; returns what the worker should do, if anything.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key),
            Mode::Help => None,
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => {}
                    KeyCode::Esc => self.filter.clear(),
                    KeyCode::Backspace => {
                        self.filter.pop();
                        self.mode = Mode::Filter;
                    }
                    KeyCode::Char(c) => {
                        self.filter.push(c);
                        self.mode = Mode::Filter;
                    }
                    _ => self.mode = Mode::Filter,
                }
                self.node_sel = 0;
                None
            }
            Mode::Confirm(pending) => match key.code {
                // `j` is German "ja".
                KeyCode::Char('y' | 'Y' | 'j' | 'J') => Some(Command::Node {
                    action: pending.action,
                    node: pending.node,
                    hostname: pending.hostname,
                }),
                KeyCode::Char('n' | 'N') | KeyCode::Esc | KeyCode::Char('q') => None,
                _ => {
                    self.mode = Mode::Confirm(pending);
                    None
                }
            },
            Mode::TokenTtl(mut ttl) => match key.code {
                KeyCode::Enter if !ttl.trim().is_empty() => Some(Command::CreateToken {
                    ttl: ttl.trim().to_string(),
                }),
                KeyCode::Esc => None,
                KeyCode::Backspace => {
                    ttl.pop();
                    self.mode = Mode::TokenTtl(ttl);
                    None
                }
                KeyCode::Char(c) if c.is_ascii_alphanumeric() && ttl.len() < 16 => {
                    ttl.push(c);
                    self.mode = Mode::TokenTtl(ttl);
                    None
                }
                _ => {
                    self.mode = Mode::TokenTtl(ttl);
                    None
                }
            },
            Mode::TokenShown(token) => match key.code {
                KeyCode::Enter | KeyCode::Esc => None,
                _ => {
                    self.mode = Mode::TokenShown(token);
                    None
                }
            },
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Command> {
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char(c @ '1'..='7') => {
                let i = usize::from(c as u8 - b'1');
                return self.switch(Screen::ALL[i]);
            }
            KeyCode::Tab => {
                let i = (self.screen.index() + 1) % Screen::ALL.len();
                return self.switch(Screen::ALL[i]);
            }
            KeyCode::BackTab => {
                let n = Screen::ALL.len();
                let i = (self.screen.index() + n - 1) % n;
                return self.switch(Screen::ALL[i]);
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-isize_from(PAGE)),
            KeyCode::PageDown => self.move_by(isize_from(PAGE)),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Char('/') if self.screen == Screen::Nodes => self.mode = Mode::Filter,
            KeyCode::Char('s') if self.screen == Screen::Nodes => self.sort = self.sort.next(),
            KeyCode::Char('S') if self.screen == Screen::Nodes => self.sort_desc = !self.sort_desc,
            KeyCode::Enter if self.screen == Screen::Nodes => {
                let id = self.visible_nodes().get(self.node_sel).map(|n| n.id)?;
                return self.open_detail(id);
            }
            KeyCode::Esc if self.screen == Screen::Detail => return self.switch(Screen::Nodes),
            KeyCode::Esc if self.screen == Screen::Nodes => self.filter.clear(),
            KeyCode::Char('d') => self.ask(NodeAction::Drain),
            KeyCode::Char('u') => self.ask(NodeAction::Undrain),
            KeyCode::Char('a') => self.ask(NodeAction::Approve),
            KeyCode::Char('r') => self.ask(NodeAction::Revoke),
            KeyCode::Char('o') => self.ask_role(true),
            KeyCode::Char('O') => self.ask_role(false),
            KeyCode::Char('t') => self.mode = Mode::TokenTtl("24h".to_string()),
            KeyCode::F(5) | KeyCode::Char('R') => return Some(Command::Refresh),
            _ => {}
        }
        None
    }

    fn switch(&mut self, screen: Screen) -> Option<Command> {
        self.screen = screen;
        self.scroll = 0;
        None
    }

    /// Shows node `id` on the detail screen and asks the worker to load it.
    pub fn open_detail(&mut self, id: u32) -> Option<Command> {
        if self.detail_id != Some(id) {
            self.detail = None;
        }
        self.detail_id = Some(id);
        self.screen = Screen::Detail;
        self.scroll = 0;
        Some(Command::Watch(Some(id)))
    }

    fn ask(&mut self, action: NodeAction) {
        match self.target() {
            Some((node, hostname)) => {
                self.mode = Mode::Confirm(Pending {
                    action,
                    node,
                    hostname,
                });
            }
            None => {
                self.status = Some(Status {
                    text: self.t(Msg::SelectNodeFirst).to_string(),
                    ok: false,
                });
            }
        }
    }

    /// The selected node's record (nodes screen) or the detail's node.
    fn target_node(&self) -> Option<&Node> {
        let (id, _) = self.target()?;
        match &self.detail {
            Some(d) if self.screen == Screen::Detail && d.node.id == id => Some(&d.node),
            _ => self.nodes.as_ref()?.iter().find(|n| n.id == id),
        }
    }

    /// Asks to approve the first role the selected node requests without
    /// approval (`approve`), or to withdraw its first approved role.
    fn ask_role(&mut self, approve: bool) {
        if self.target().is_none() {
            self.status = Some(Status {
                text: self.t(Msg::SelectNodeFirst).to_string(),
                ok: false,
            });
            return;
        }
        let role = self.target_node().and_then(|n| {
            n.roles_requested
                .iter()
                .chain(&n.roles_approved)
                .copied()
                .find(|r| {
                    let requested = n.roles_requested.contains(r);
                    let approved = n.roles_approved.contains(r);
                    if approve {
                        requested && !approved
                    } else {
                        approved
                    }
                })
        });
        match role {
            Some(role) if approve => self.ask(NodeAction::ApproveRole(role)),
            Some(role) => self.ask(NodeAction::RevokeRole(role)),
            None => {
                self.status = Some(Status {
                    text: self
                        .t(if approve {
                            Msg::NoRoleAwaits
                        } else {
                            Msg::NoRoleApproved
                        })
                        .to_string(),
                    ok: false,
                });
            }
        }
    }

    fn move_by(&mut self, delta: isize) {
        let step = |sel: usize, len: usize| -> usize {
            let max = len.saturating_sub(1);
            sel.saturating_add_signed(delta).min(max)
        };
        match self.screen {
            Screen::Nodes => self.node_sel = step(self.node_sel, self.visible_nodes().len()),
            Screen::Links => {
                self.link_sel = step(self.link_sel, self.links.as_ref().map_or(0, Vec::len));
            }
            Screen::Events => self.event_sel = step(self.event_sel, self.events.len()),
            // Free scrolling; the renderer clamps to what it has.
            _ => self.scroll = step(self.scroll, 10_000),
        }
    }
}

fn isize_from(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// The filter keyword for nodes short of memory (see [`telemetry::is_low_memory`]).
pub const FILTER_LOW_MEMORY: &str = "lowmem";
/// The filter prefix for an agent version prefix: `v:0.2` shows 0.2.x.
pub const FILTER_VERSION: &str = "v:";

fn matches(node: &Node, query: &str) -> bool {
    if query == FILTER_LOW_MEMORY {
        return telemetry::stats(node).is_some_and(telemetry::is_low_memory);
    }
    if let Some(prefix) = query.strip_prefix(FILTER_VERSION) {
        return telemetry::agent_version(node).is_some_and(|v| v.starts_with(prefix.trim()));
    }
    query.is_empty()
        || node.hostname.to_lowercase().contains(query)
        || node.node_id.to_lowercase().contains(query)
        || node.id.to_string() == query
        || query
            .strip_prefix('#')
            .is_some_and(|q| node.id.to_string() == q)
        || node
            .addresses
            .iter()
            .any(|a| a.to_string().to_lowercase().contains(query))
}

fn compare(column: SortColumn, a: &Node, b: &Node) -> std::cmp::Ordering {
    match column {
        SortColumn::Id => a.id.cmp(&b.id),
        SortColumn::Hostname => a.hostname.to_lowercase().cmp(&b.hostname.to_lowercase()),
        SortColumn::State => state_rank(a).cmp(&state_rank(b)),
        // Offline first: that is what an operator looks for.
        SortColumn::Online => a.online.cmp(&b.online),
        SortColumn::Links => (a.links_up, a.links_total).cmp(&(b.links_up, b.links_total)),
        SortColumn::Address => a.addresses.first().cmp(&b.addresses.first()),
        SortColumn::LastSeen => a.last_seen_ms.cmp(&b.last_seen_ms),
        SortColumn::Agent => {
            telemetry::compare_versions(telemetry::agent_version(a), telemetry::agent_version(b))
        }
        // Ascending uptime = latest boot first; unknown first.
        SortColumn::Uptime => {
            let up = |n: &Node| n.telemetry.boot_time_ms.map(std::cmp::Reverse);
            up(a).cmp(&up(b))
        }
        SortColumn::Load => {
            let load = |n: &Node| telemetry::stats(n).and_then(|s| s.load_centi);
            load(a).cmp(&load(b))
        }
        SortColumn::Memory => {
            let used = |n: &Node| telemetry::stats(n).and_then(telemetry::memory_used_percent);
            used(a).cmp(&used(b))
        }
    }
}

fn state_rank(node: &Node) -> (NodeState, bool) {
    (node.state, node.drained)
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
