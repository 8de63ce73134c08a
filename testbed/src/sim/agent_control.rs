//! The agent side of the control channel in the simulation: frames from
//! the controller are decoded and folded into the agent's
//! [`ControllerState`], which [`reconcile`] applies to the engine (the code
//! `freimesh-agent` runs, `run/controller.rs`); link states go back as
//! Reports with the agent's rules (at once on an up/down change, otherwise
//! every [`REPORT_INTERVAL`] if a cost moved by more than a tenth).
//!
//! This adapter stands in for the agent's control path until it becomes a
//! sans-IO core (issue 11, item 2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use freimesh_agent::controlplane::{
    Candidate, ControllerEvent, ControllerState, LinkMeasurement, Report,
};
use freimesh_agent::core::{Engine, Hop, LinkReport};
use freimesh_agent::run::reconcile;
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::PROTOCOL_VERSION;
use freimesh_proto::control::{self, ControllerMsg, Hello, Roles};
use ipnet::IpNet;

/// How often link states are looked at (the agent's report task ticks at
/// this period).
pub const REPORT_TICK: Duration = Duration::from_millis(250);
/// Measurements go out at most this often unless a link changed state.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// What the agent reports as a link's RTT until it measured one.
const NOMINAL_RTT_US: u32 = 1_000;

/// What applying one frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The engine's routes were reconciled (full state or a delta).
    pub routes: bool,
    /// The frame did not decode (counted; the real agent drops the session).
    pub malformed: bool,
}

/// One agent's control-channel state; see the module docs.
#[derive(Debug)]
pub struct AgentControl {
    pub state: ControllerState,
    /// This node's own prefixes (its overlay addresses once welcomed).
    own: Vec<IpNet>,
    links_buf: Vec<control::LinkAssignment>,
    routes_buf: Vec<control::Route>,
    candidates: Vec<Candidate>,
    last_states: Option<Vec<(PublicKeyBytes, bool)>>,
    measured: Vec<LinkReport>,
    next_full: Option<Instant>,
    hostname: String,
    endpoint: SocketAddr,
    token: String,
}

impl AgentControl {
    pub fn new(hostname: String, endpoint: SocketAddr, token: String, neighbours: Vec<Candidate>) -> Self {
        Self {
            state: ControllerState::default(),
            own: Vec::new(),
            links_buf: Vec::new(),
            routes_buf: Vec::new(),
            candidates: neighbours,
            last_states: None,
            measured: Vec::new(),
            next_full: None,
            hostname,
            endpoint,
            token,
        }
    }

    /// The first frame of every connection. The token rides along on every
    /// Hello; the controller ignores it for an enrolled key.
    pub fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            join_token: Some(self.token.clone()),
            hostname: self.hostname.clone(),
            endpoints: vec![self.endpoint],
            prefixes: Vec::new(),
            want_addresses: Vec::new(),
            roles: Roles::default(),
        }
    }

    /// A new connection starts: partial full-state chunks of the old one
    /// are void, and the next report goes out at once.
    pub fn connected(&mut self) {
        self.links_buf.clear();
        self.routes_buf.clear();
        self.last_states = None;
        self.next_full = None;
    }

    /// One frame from the controller.
    pub fn handle_frame(&mut self, engine: &mut Engine, frame: &[u8], now: Instant) -> Applied {
        let msg: ControllerMsg = match control::decode(frame) {
            Ok(m) => m,
            Err(_) => {
                return Applied {
                    malformed: true,
                    ..Applied::default()
                };
            }
        };
        let event = match msg {
            ControllerMsg::Welcome(w) => {
                if self.own.is_empty() {
                    for a in &w.addresses {
                        let _ = engine.insert_route(*a, vec![Hop::Local]);
                    }
                    self.own = w.addresses.clone();
                }
                ControllerEvent::Welcome(w)
            }
            ControllerMsg::Links { links, last } => {
                self.links_buf.extend(links);
                if !last {
                    return Applied::default();
                }
                ControllerEvent::Links(std::mem::take(&mut self.links_buf))
            }
            ControllerMsg::Routes { routes, last } => {
                self.routes_buf.extend(routes);
                if !last {
                    return Applied::default();
                }
                ControllerEvent::Routes(std::mem::take(&mut self.routes_buf))
            }
            ControllerMsg::LinksDelta(d) => ControllerEvent::LinksDelta(d),
            ControllerMsg::RoutesDelta(d) => ControllerEvent::RoutesDelta(d),
            _ => return Applied::default(),
        };
        let routes = matches!(
            event,
            ControllerEvent::Routes(_) | ControllerEvent::RoutesDelta(_)
        );
        // Before the Welcome the engine has no addresses to reconcile for.
        if self.state.apply(&event) && self.state.welcome.is_some() {
            reconcile(engine, &self.state, &self.own, now);
            return Applied {
                routes,
                malformed: false,
            };
        }
        Applied::default()
    }

    /// The report task's tick: a Report if one is due.
    pub fn tick(&mut self, engine: &Engine, now: Instant) -> Option<Report> {
        let current = engine.link_states();
        let states: Vec<(PublicKeyBytes, bool)> = current.iter().map(|l| (l.peer, l.up)).collect();
        let changed = self.last_states.as_ref() != Some(&states);
        let due = self.next_full.is_none_or(|t| now >= t);
        if due {
            self.next_full = Some(now + REPORT_INTERVAL);
        }
        if !(changed || due && moved(&self.measured, &current)) {
            return None;
        }
        let links = current
            .iter()
            .map(|l| LinkMeasurement {
                peer: l.peer,
                rtt_us: l.rtt.map_or(NOMINAL_RTT_US, |r| {
                    u32::try_from(r.as_micros()).unwrap_or(u32::MAX).max(1)
                }),
                loss_ppm: l.loss_ppm,
                up: l.up,
            })
            .collect();
        self.last_states = Some(states);
        self.measured = current;
        Some(Report {
            links,
            candidates: self.candidates.clone(),
        })
    }
}

/// The agent's rule: a report for measurements only when a link's RTT or
/// loss moved by more than a tenth (or a link appeared).
fn moved(before: &[LinkReport], now: &[LinkReport]) -> bool {
    now.iter().any(|l| {
        let Some(old) = before.iter().find(|b| b.peer == l.peer) else {
            return true;
        };
        let rtt_moved = match (old.rtt, l.rtt) {
            (Some(a), Some(b)) => a.abs_diff(b) * 10 > a,
            (None, Some(_)) => true,
            _ => false,
        };
        rtt_moved || old.loss_ppm.abs_diff(l.loss_ppm) * 10 > old.loss_ppm.max(1000)
    })
}

impl AgentControl {
    /// The candidate neighbours this agent reports.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }
}
