//! The agent's whole control path in one sans-IO value, for a caller that
//! owns the engine and carries the frames itself (the whole-mesh simulator):
//! [`Session`] + [`ControlCore`] + [`LinkReporter`], wired as the agent's
//! shell wires them.
//!
//! # Contract (call order)
//!
//! 1. [`ControlPath::new`] once per agent, then
//!    [`ControlPath::set_own_prefixes`] (and the kernel rule on linux).
//! 2. Connection up: [`ControlPath::handle_connected`].
//! 3. Every `ControllerMsg` decoded from a frame:
//!    [`ControlPath::handle_message`]. Every engine step: its failovers to
//!    [`ControlPath::handle_failover`]. Every [`super::REPORT_TICK`] or
//!    when [`ControlPath::poll_timeout`] has passed:
//!    [`ControlPath::handle_tick`] with the engine's link states.
//! 4. After each call: [`ControlPath::poll_change`] until `None` into
//!    [`crate::core::Engine::apply`], and [`ControlPath::poll_report`] until
//!    `None` to the controller (encode, seal, send).
//! 5. Connection gone, or a handler returned [`SessionEnded`]:
//!    [`ControlPath::handle_disconnected`]; reconnect later at 2.

use std::time::{Duration, Instant};

use freimesh_proto::control::{AgentMsg, Candidate, ControllerMsg};
use ipnet::IpNet;

use super::{
    ClientConfig, ControlCore, KernelRouteRule, LinkReporter, Session, SessionEnded, Upstream,
    link_event,
};
use crate::core::{EngineChange, Failover, LinkReport};

/// Session, state and reporting cores of one agent; see the module docs.
#[derive(Debug)]
pub struct ControlPath {
    pub session: Session,
    pub core: ControlCore,
    pub reporter: LinkReporter,
}

impl ControlPath {
    pub fn new(cfg: ClientConfig, candidates: Vec<Candidate>, now: Instant) -> Self {
        Self {
            session: Session::new(cfg),
            core: ControlCore::default(),
            reporter: LinkReporter::new(candidates, now),
        }
    }

    pub fn set_own_prefixes(&mut self, own: Vec<IpNet>) {
        self.core.set_own_prefixes(own);
    }

    pub fn set_kernel_rule(&mut self, rule: KernelRouteRule) {
        self.core.set_kernel_rule(rule);
    }

    pub fn handle_connected(&mut self, now: Instant) {
        self.session.handle_connected(now);
    }

    pub fn handle_message(&mut self, msg: ControllerMsg, now: Instant) -> Result<(), SessionEnded> {
        let result = self.session.handle_message(msg, now);
        self.fold_events(now);
        result
    }

    /// A failover the engine made; `took` is how long its step lasted.
    pub fn handle_failover(&mut self, failover: &Failover, took: Duration, now: Instant) {
        let event = link_event(failover, took);
        self.session
            .handle_upstream(Upstream::Failovers(vec![(event, failover.at)]), now);
    }

    /// Anything else for the controller (uplink state, client count).
    pub fn handle_upstream(&mut self, item: Upstream, now: Instant) {
        self.session.handle_upstream(item, now);
    }

    pub fn handle_tick(&mut self, links: &[LinkReport], now: Instant) -> Result<(), SessionEnded> {
        self.reporter.handle_link_states(links, now);
        while let Some(item) = self.reporter.poll_upstream() {
            self.session.handle_upstream(item, now);
        }
        self.session.handle_tick(now)
    }

    pub fn handle_disconnected(&mut self, reason: String, retry_in: Duration, now: Instant) {
        self.session.handle_disconnected(reason, retry_in);
        self.fold_events(now);
    }

    /// When the session next needs [`ControlPath::handle_tick`] (pings,
    /// idle timeout); link sampling is on the caller's own tick.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    pub fn poll_change(&mut self) -> Option<EngineChange> {
        self.core.poll_change()
    }

    pub fn poll_report(&mut self) -> Option<AgentMsg> {
        self.session.poll_report()
    }

    fn fold_events(&mut self, now: Instant) {
        while let Some(event) = self.session.poll_event() {
            self.core.handle_event(&event, now);
        }
    }
}
