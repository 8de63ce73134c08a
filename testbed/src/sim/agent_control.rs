//! The agent side of the control channel in the simulation: the agent's
//! own sans-IO control path ([`ControlPath`]: session, control core, link
//! reporter), wired as the agent's shell wires it. Frames from the
//! controller are decoded and handed to it; the [`EngineChange`]s it
//! produces are applied to the engine one by one; what it queues for the
//! controller is encoded and sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use freimesh_agent::controlplane::{
    Candidate, ClientConfig, ControlPath, EngineChange, SessionEnded,
};
use freimesh_agent::core::{Engine, Hop};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{self, AgentMsg, ControllerMsg, Roles};

pub use freimesh_agent::controlplane::REPORT_TICK;

/// What handling one controller frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Route changes reached the engine.
    pub routes: bool,
    /// The frame did not decode (the real agent drops the session).
    pub malformed: bool,
    /// The session ended (refused, idle, a full set too large).
    pub ended: bool,
    /// Engine changes the engine refused.
    pub refused: u32,
}

/// One agent's control path; see the module docs.
#[derive(Debug)]
pub struct AgentControl {
    pub path: ControlPath,
    /// Whether this node's overlay addresses are installed.
    addressed: bool,
}

impl AgentControl {
    pub fn new(
        hostname: String,
        endpoint: SocketAddr,
        token: String,
        neighbours: Vec<Candidate>,
        now: Instant,
    ) -> Self {
        let cfg = ClientConfig {
            // The simulator carries frames itself; no socket is opened.
            controller_endpoints: vec![SocketAddr::from(([192, 0, 2, 1], 7700))],
            controller_key: PublicKeyBytes([9; 32]),
            join_token: Some(token),
            hostname,
            endpoints: vec![endpoint],
            prefixes: Vec::new(),
            roles: Roles::default(),
            want_addresses: Vec::new(),
        };
        Self {
            path: ControlPath::new(cfg, neighbours, now),
            addressed: false,
        }
    }

    /// The join token this agent was given.
    pub fn token(&self) -> String {
        self.path
            .session
            .config()
            .join_token
            .clone()
            .unwrap_or_default()
    }

    /// The overlay addresses the controller gave this node, once welcomed.
    pub fn addresses(&self) -> Option<&[ipnet::IpNet]> {
        self.path.core.welcome().map(|w| w.addresses.as_slice())
    }

    /// A connection is up: the Hello is queued.
    pub fn handle_connected(&mut self, now: Instant) {
        self.path.handle_connected(now);
    }

    pub fn handle_disconnected(&mut self, retry_in: Duration, now: Instant) {
        self.path
            .handle_disconnected("connection lost".into(), retry_in, now);
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
        let ended = self.path.handle_message(msg, now).is_err();
        if !self.addressed
            && let Some(addresses) = self.addresses().map(<[_]>::to_vec)
        {
            for a in &addresses {
                let _ = engine.insert_route(*a, vec![Hop::Local]);
            }
            self.path.set_own_prefixes(addresses);
            self.addressed = true;
        }
        let (routes, refused) = self.apply_changes(engine, now);
        Applied {
            routes,
            malformed: false,
            ended,
            refused,
        }
    }

    /// The report tick: link states in, reports and pings out.
    pub fn handle_tick(&mut self, engine: &Engine, now: Instant) -> Result<(), SessionEnded> {
        self.path.handle_tick(&engine.link_states(), now)
    }

    /// Applies what the control core decided: whether a route changed,
    /// and how many changes the engine refused.
    fn apply_changes(&mut self, engine: &mut Engine, now: Instant) -> (bool, u32) {
        let (mut routes, mut refused) = (false, 0);
        while let Some(change) = self.path.poll_change() {
            routes |= matches!(
                change,
                EngineChange::SetRoute(_) | EngineChange::RemoveRoute(_)
            );
            if engine.apply(&change, now).is_err() {
                refused += 1;
            }
        }
        (routes, refused)
    }

    /// The next message for the controller.
    pub fn poll_report(&mut self) -> Option<AgentMsg> {
        self.path.poll_report()
    }
}
