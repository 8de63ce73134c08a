//! [`HubCore`]: the hub's decisions, sans-IO. It owns the store and the
//! decision core ([`Controller`]) and takes every decision in order:
//! enrolment outcomes are committed to the store before the agent is told
//! (a refusal writes nothing), admin actions write the store, update the
//! core and raise events in one step.
//!
//! No sockets, no tokio, no clock: the tokio task around it (`shell.rs`)
//! feeds it and carries its outputs; the whole-mesh simulator drives it
//! the same way on a virtual clock.
//!
//! # Contract
//!
//! * Time: every `handle_*` takes `now_ms`, Unix milliseconds (`i64`, the
//!   unit of the store's and the API's timestamps). Nothing inside reads a
//!   clock; a call's `now_ms` is used for everything that call records.
//! * Sessions: the shell numbers connections (`session: u64`, never
//!   reused). [`HubCore::handle_hello`] is the first call for a session,
//!   [`HubCore::handle_gone`] the last (also after the hub closed it).
//! * Inputs: [`HubCore::handle_hello`], [`HubCore::handle_agent_msg`],
//!   [`HubCore::handle_gone`], [`HubCore::handle_admin`] (answers at once),
//!   [`HubCore::handle_tick`] (every [`super::REGISTRY_POLL`]: picks up
//!   what the CLI wrote to the database).
//! * Outputs, drained after every input until `None`:
//!   [`HubCore::poll_output`] (frames to send and sessions to close, in
//!   order: a `Close` comes after the frames queued before it), then
//!   [`HubCore::poll_event`] (events, already stored, for live streams).
//! * Optionally [`HubCore::handle_step_time`] with how long the last input
//!   took (the shell's clock), for the route computation histogram.
//!
//! What agents can make the hub store is bounded ([`crate::core::quota`]):
//! every Hello's hostname is checked, approval mode caps the nodes waiting,
//! and each node's failover events have a quota and cannot be backdated.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::api::{self, EventKind};
use freimesh_proto::control::{AgentMsg, ControllerMsg, ErrorCode, Hello};

use super::ServerError;
use super::credentials::{Credentials, DEFAULT_CREDENTIAL_LIFETIME, unix_seconds};
use super::events::EventLog;
use super::exits::ControlExits;
use super::telemetry::Telemetry;
use crate::core::quota::{EventQuota, PendingGate};
use crate::core::{Controller, Outgoing, plan_hello};
use crate::export::meshviewer::DefaultGateway;
use crate::export::metrics::BoundedCounts;
use crate::hub_api::{AdminReply, AdminRequest, OpError, OperatorList};
use crate::store::Store;

/// The operator name events carry for what the command line changed.
pub const CLI_OPERATOR: &str = "cli";

/// How the hub is set up beyond what the database says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Nodes without a token wait for approval (also when `init` did not
    /// set `--approval`).
    pub require_approval: bool,
    /// How long a membership credential is valid
    /// ([`DEFAULT_CREDENTIAL_LIFETIME`]; at least
    /// [`super::credentials::MIN_CREDENTIAL_LIFETIME`]); it is renewed
    /// when half of it is left.
    pub credential_lifetime: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            require_approval: false,
            credential_lifetime: DEFAULT_CREDENTIAL_LIFETIME,
        }
    }
}

/// What the shell does next for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubOutput {
    /// Send `msg` on `session`.
    Transmit { session: u64, msg: ControllerMsg },
    /// Close `session` after what was sent before (its node, if any, is
    /// already disconnected in the hub).
    Close { session: u64 },
}

/// The hub's decisions; see the module docs for the calling contract.
pub struct HubCore {
    pub(super) store: Store,
    pub(super) core: Controller,
    pub(super) data_version: i64,
    /// session → node id, for welcomed sessions.
    sessions: BTreeMap<u64, u32>,
    /// node id → session of its current connection.
    pub(super) conns: BTreeMap<u32, u64>,
    outputs: VecDeque<HubOutput>,
    /// Events stored by the last step, for the shell's live streams.
    live: VecDeque<api::Event>,
    pub(super) events: EventLog,
    pub(super) telemetry: Telemetry,
    pub(super) started_at_ms: i64,
    /// The `now_ms` of the call being handled.
    pub(super) now_ms: i64,
    /// Whether the call being handled ran a route computation (timed by
    /// the shell, [`Self::handle_step_time`]).
    computed: bool,
    pub(super) operators: OperatorList,
    /// Join token ids the hub has seen, so tokens the CLI creates are
    /// announced (and audited) at the next registry poll.
    pub(super) known_tokens: BTreeSet<String>,
    pub(super) pending_gate: PendingGate,
    pub(super) event_quota: EventQuota,
    /// Hellos refused by the hostname rule and the pending gate, for
    /// `/metrics` (the event counts come from `event_quota`).
    pub(super) refused: BoundedCounts,
    /// Membership credentials and the revocation list (`credentials.rs`).
    pub(super) credentials: Credentials,
    /// Relayed sessions and the control exits (`exits.rs`).
    pub(super) exits: ControlExits,
    /// Each node's default route when it last disconnected, for the
    /// meshviewer export's offline nodes (`views.rs`). In memory only
    /// (offline nodes show none after a controller restart until they
    /// come back), at most one entry per node in the registry.
    pub(super) last_gateways: BTreeMap<u32, DefaultGateway>,
}

impl std::fmt::Debug for HubCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCore")
            .field("nodes", &self.core.nodes().len())
            .field("connected", &self.conns.len())
            .field("last_event", &self.events.last_seq())
            .finish_non_exhaustive()
    }
}

impl HubCore {
    /// Loads the registry from `store` and computes every route (the first
    /// step: time it and pass the duration to [`Self::handle_step_time`]).
    pub fn new(mut store: Store, config: HubConfig, now_ms: i64) -> Result<Self, ServerError> {
        let mut settings = store.settings()?;
        settings.approval |= config.require_approval;
        let mut core = Controller::new(settings, store.nodes()?, store.prefixes()?, store.links()?);
        // Sites present at start are no news: no events for them.
        core.load_sites(store.sites()?);
        // Credentials kept from before count only if signed with the key
        // that exists now (a new key, e.g. after its row was deleted to
        // replace it, means every node needs a new credential).
        let key_existed = store.signing_key_public()?.is_some();
        let signing_key = store.signing_key(now_ms.div_euclid(crate::clock::MS_PER_S))?;
        let issued = if key_existed {
            store.credentials()?
        } else {
            Vec::new()
        };
        core.set_signing_key(freimesh_proto::credential::SigningKeyBytes::of(
            &signing_key,
        ));
        let credentials = Credentials::new(
            signing_key,
            config.credential_lifetime,
            issued,
            store.revocations()?,
            unix_seconds(now_ms),
        );
        Ok(Self {
            credentials,
            exits: ControlExits::default(),
            last_gateways: BTreeMap::new(),
            data_version: store.data_version()?,
            events: EventLog::new(&store)?,
            operators: Arc::new(RwLock::new(store.operator_credentials()?)),
            known_tokens: store.tokens()?.into_iter().map(|t| t.id).collect(),
            telemetry: Telemetry::new(store.last_seen()?).with_nodes(store.node_telemetry()?),
            pending_gate: PendingGate::default(),
            event_quota: EventQuota::default(),
            refused: BoundedCounts::default(),
            store,
            core,
            sessions: BTreeMap::new(),
            conns: BTreeMap::new(),
            outputs: VecDeque::new(),
            live: VecDeque::new(),
            started_at_ms: now_ms,
            now_ms,
            computed: true,
        })
    }

    /// The store back, as the process ends (the whole-mesh simulator
    /// restarts its controller from it).
    pub fn into_store(self) -> Store {
        self.store
    }

    /// The operator list the API checks tokens against (shared: the hub
    /// refreshes it when the CLI changes operators).
    pub fn operators(&self) -> OperatorList {
        self.operators.clone()
    }

    /// The decision core, read-only: its links, nodes and routes (the
    /// simulator compares them with [`Controller::recomputed_routes`]).
    pub fn controller(&self) -> &Controller {
        &self.core
    }

    /// The node welcomed on `session`, if any.
    pub fn node_of(&self, session: u64) -> Option<u32> {
        self.sessions.get(&session).copied()
    }

    /// The next frame to send or session to close.
    pub fn poll_output(&mut self) -> Option<HubOutput> {
        self.outputs.pop_front()
    }

    /// The next event for live streams (stored already).
    pub fn poll_event(&mut self) -> Option<api::Event> {
        self.live.pop_front()
    }

    /// How long the last input took, by the shell's clock: recorded in the
    /// computation histogram if that input computed routes.
    pub fn handle_step_time(&mut self, elapsed: Duration) {
        if std::mem::take(&mut self.computed) {
            self.telemetry.computed(elapsed);
        }
    }

    /// A peer completed the handshake (its `key` is authenticated) on
    /// `session` from `source` and sent a Hello of our version.
    pub fn handle_hello(
        &mut self,
        session: u64,
        source: SocketAddr,
        key: PublicKeyBytes,
        hello: Hello,
        now_ms: i64,
    ) {
        self.handle_hello_via(session, source, key, hello, None, now_ms);
    }

    /// [`HubCore::handle_hello`] for a connection that began with a relay
    /// preamble naming `relay` (`Some`): the session is relayed, so its
    /// node is no control exit.
    pub fn handle_hello_via(
        &mut self,
        session: u64,
        source: SocketAddr,
        key: PublicKeyBytes,
        hello: Hello,
        relay: Option<PublicKeyBytes>,
        now_ms: i64,
    ) {
        self.now_ms = now_ms;
        if let Some(relay) = relay {
            tracing::debug!(session, %key, %relay, "session relayed through the mesh");
            self.exits_session_relayed(session);
        }
        let plan = plan_hello(
            &self.core,
            &mut self.pending_gate,
            &key,
            &hello,
            source.ip(),
            now_ms,
        );
        if let Some(id) = self.commit_hello(session, &key, &hello, plan) {
            self.welcome(session, id, &key);
        }
        self.finish_step();
    }

    /// A later frame from `session` (ignored unless it was welcomed).
    pub fn handle_agent_msg(&mut self, session: u64, msg: AgentMsg, now_ms: i64) {
        self.now_ms = now_ms;
        if let Some(id) = self.sessions.get(&session).copied() {
            self.agent_msg(id, msg);
        }
        self.finish_step();
    }

    /// `session`'s connection closed.
    pub fn handle_gone(&mut self, session: u64, now_ms: i64) {
        self.now_ms = now_ms;
        self.exits_session_gone(session);
        if let Some(id) = self.sessions.remove(&session)
            && self.conns.get(&id) == Some(&session)
        {
            self.conns.remove(&id);
            self.core.handle_disconnect(id);
            self.disconnected(id);
            self.credential_gone(id);
            tracing::info!(node = id, "node disconnected");
        }
        self.finish_step();
    }

    /// Checks whether the CLI changed the database and applies what it did.
    pub fn handle_tick(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        self.poll_registry();
        self.exits_may_have_changed();
        // Renewals come due with time alone.
        self.credentials_due_check();
        if self.core.handle_upstreams_tick(now_ms) {
            // A route computation of its own: into the histogram.
            self.computed = true;
            tracing::debug!("route upstreams recomputed");
        }
        self.finish_step();
    }

    /// Answers an admin request (reads from this instant; actions commit
    /// before the reply).
    pub fn handle_admin(
        &mut self,
        request: AdminRequest,
        now_ms: i64,
    ) -> Result<AdminReply, OpError> {
        self.now_ms = now_ms;
        if request.changes_nodes() {
            self.credentials_may_have_changed();
            self.exits_may_have_changed();
        }
        let reply = self.admin(request);
        self.finish_step();
        reply
    }

    fn admin(&mut self, request: AdminRequest) -> Result<AdminReply, OpError> {
        let node = |n: api::Node| AdminReply::Node(Box::new(n));
        Ok(match request {
            AdminRequest::Overview => {
                let nodes = self.nodes();
                let links = self.links(None);
                let overview = self.overview(&nodes, &links)?;
                AdminReply::Overview(Box::new(crate::hub_api::OverviewSnapshot {
                    overview,
                    nodes,
                    links,
                }))
            }
            AdminRequest::Nodes => AdminReply::Nodes(self.nodes()),
            AdminRequest::NodeDetail(id) => AdminReply::NodeDetail(Box::new(self.node_detail(id)?)),
            AdminRequest::Routes(id) => AdminReply::Routes(self.routes(id)?),
            AdminRequest::Links => AdminReply::Links(self.links(None)),
            AdminRequest::Graph => AdminReply::Graph(self.nodes(), self.links(None)),
            AdminRequest::Map => AdminReply::Map(Box::new(self.map())),
            AdminRequest::Gateways => AdminReply::Gateways(self.gateways()),
            AdminRequest::Sites => AdminReply::Sites(self.sites()),
            AdminRequest::Tokens => AdminReply::Tokens(self.tokens()?),
            AdminRequest::EventsSince { since, limit } => {
                AdminReply::Events(self.events_since(since, limit)?)
            }
            AdminRequest::AuditSince { since, limit } => {
                AdminReply::Events(self.audit_since(since, limit)?)
            }
            AdminRequest::Metrics => AdminReply::Metrics(Box::new(self.metrics())),
            AdminRequest::LastEventSeq => AdminReply::LastEventSeq(self.events.last_seq()),
            AdminRequest::Drain { id, drained, by } => node(self.set_drained(id, drained, &by)?),
            AdminRequest::Approve { id, by } => node(self.approve(id, &by)?),
            AdminRequest::Revoke { id, by } => node(self.revoke(id, &by)?),
            AdminRequest::SetRoleApproval {
                id,
                role,
                approved,
                by,
            } => node(self.set_role_approval(id, role, approved, &by)?),
            AdminRequest::CreateToken { req, by } => {
                AdminReply::CreatedToken(self.create_token(&req, &by)?)
            }
        })
    }

    /// Runs a core call that may compute routes, so that the step's time
    /// is recorded (the core never reads the clock).
    pub(super) fn timed<T>(&mut self, f: impl FnOnce(&mut Controller) -> T) -> T {
        self.computed = true;
        f(&mut self.core)
    }

    pub(super) fn emit(&mut self, kind: EventKind) {
        self.events.emit(self.now_ms, kind, None);
    }

    /// An event an operator caused (`cli` for the command line).
    pub(super) fn emit_by(&mut self, kind: EventKind, operator: &str) {
        self.events
            .emit(self.now_ms, kind, Some(operator.to_owned()));
    }

    /// Queues a refusal for a session that was not welcomed.
    pub(super) fn refuse(
        &mut self,
        session: u64,
        key: &PublicKeyBytes,
        code: ErrorCode,
        message: String,
    ) {
        tracing::warn!(%key, ?code, "refused: {message}");
        match code {
            ErrorCode::BadHostname => self.refused.bad_hostnames += 1,
            ErrorCode::TooManyPending => self.refused.pending_refused += 1,
            _ => {}
        }
        let msg = ControllerMsg::Error(freimesh_proto::control::ErrorMsg { code, message });
        self.outputs.push_back(HubOutput::Transmit { session, msg });
        self.outputs.push_back(HubOutput::Close { session });
    }

    /// Queues an output for the shell.
    pub(super) fn push_output(&mut self, output: HubOutput) {
        self.outputs.push_back(output);
    }

    /// Queues a frame for a session that was not welcomed, then its close.
    pub(super) fn send_and_close(&mut self, session: u64, msg: ControllerMsg) {
        self.outputs.push_back(HubOutput::Transmit { session, msg });
        self.outputs.push_back(HubOutput::Close { session });
    }

    /// Node `id` is welcomed on `session`.
    fn welcome(&mut self, session: u64, id: u32, key: &PublicKeyBytes) {
        if let Some(old) = self.conns.insert(id, session) {
            // The node reconnected before we noticed the old connection die.
            self.sessions.remove(&old);
            self.outputs.push_back(HubOutput::Close { session: old });
            self.core.handle_disconnect(id);
            self.exits_session_gone(old);
        }
        self.sessions.insert(session, id);
        tracing::info!(node = id, %key, "node connected");
        self.core.handle_connect(id);
        self.credential_welcomed(id);
        self.exits_welcomed(id);
        let now = self.now_ms;
        let earliest =
            EventQuota::earliest_for_session(self.telemetry.last_seen.get(&id).copied(), now);
        self.event_quota.handle_session(id, earliest, now);
        self.telemetry.last_seen.insert(id, now);
        self.emit(EventKind::Connected { node: id });
    }

    pub(super) fn disconnected(&mut self, id: u32) {
        self.telemetry.last_seen.insert(id, self.now_ms);
        match self.core.default_gateway(id) {
            Some((gateway, nexthop)) => {
                self.last_gateways
                    .insert(id, DefaultGateway { gateway, nexthop });
            }
            None => {
                self.last_gateways.remove(&id);
            }
        }
        let nodes = self.core.nodes();
        self.last_gateways.retain(|id, _| nodes.contains_key(id));
        self.emit(EventKind::Disconnected { node: id });
    }

    /// Ends a step: the core's frames go to their sessions, the step's
    /// events are stored (one transaction) and queued for live streams.
    fn finish_step(&mut self) {
        while let Some((id, out)) = self.core.poll_transmit() {
            let Some(session) = self.conns.get(&id).copied() else {
                continue;
            };
            match out {
                Outgoing::Frame(msg) => {
                    self.outputs.push_back(HubOutput::Transmit { session, msg })
                }
                Outgoing::Close => {
                    self.outputs.push_back(HubOutput::Close { session });
                    self.sessions.remove(&session);
                    self.conns.remove(&id);
                    self.core.handle_disconnect(id);
                    self.disconnected(id);
                    self.credential_gone(id);
                    self.exits_session_gone(session);
                }
            }
        }
        self.credentials_step();
        self.exits_step();
        self.live.extend(self.events.commit(&mut self.store));
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
