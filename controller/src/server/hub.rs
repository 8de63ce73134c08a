//! The hub task: owns the store and the core, takes every decision in
//! order. Enrolment outcomes are committed to the store before the agent is
//! told; a refusal writes nothing.
//!
//! The admin API reaches the hub through the same queue as the connections
//! ([`ToHub::Admin`]): reads are snapshots of the hub's state, actions write
//! the store, update the core and raise events in one step, so there is one
//! writer and one order of events.
//!
//! What agents can make the hub store is bounded ([`super::quota`]): every
//! Hello's hostname is checked, approval mode caps the nodes waiting, and
//! each node's failover events have a quota and cannot be backdated.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use freimesh_proto::NodeId;
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::api::{self, EventKind};
use freimesh_proto::control::{
    AgentMsg, ControllerMsg, ErrorCode, ErrorMsg, Hello, LinkEvent, LinkTraffic, Roles,
};
use tokio::sync::mpsc;

use super::events::EventLog;
use super::quota::{Admission, EventQuota, PendingGate, check_hostname};
use super::telemetry::Telemetry;
use super::{REGISTRY_POLL, ServerError};
use crate::admin::{unix_now, unix_now_ms};
use crate::core::{Controller, KeyStatus, Outgoing};
use crate::export::metrics::BoundedCounts;
use crate::store::{Enrollment, LinkRecord, NodeState, OperatorCredential, Store, StoreError};

/// The operator name events carry for what the command line changed.
pub const CLI_OPERATOR: &str = "cli";

/// Sender of one connection's outgoing frames: bounded, never blocks the
/// hub; a full queue ends that session (see `server::queue`).
pub use super::queue::OutTx;

/// What connection tasks tell the hub.
#[derive(Debug)]
pub enum ToHub {
    /// A peer completed the handshake (its key is authenticated) and sent a
    /// Hello of our version.
    Hello {
        session: u64,
        /// The TCP peer: the source address approval mode budgets by.
        peer: SocketAddr,
        key: PublicKeyBytes,
        hello: Hello,
        out: OutTx,
    },
    /// A later frame (Report) from an established session.
    Frame { session: u64, msg: AgentMsg },
    /// The connection closed.
    Gone { session: u64 },
    /// An admin API request: runs on the hub with exclusive access.
    Admin(AdminJob),
}

/// A request from the admin API; it answers through a channel it owns.
pub struct AdminJob(pub Box<dyn FnOnce(&mut Hub) + Send>);

impl std::fmt::Debug for AdminJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminJob")
    }
}

/// The operators (token hash, scope, expiry) the API accepts, shared with
/// it and refreshed by the hub when the CLI changes them.
pub type OperatorList = Arc<RwLock<Vec<OperatorCredential>>>;

pub struct Hub {
    pub(super) store: Store,
    pub(super) core: Controller,
    data_version: i64,
    /// session → node id, for welcomed sessions.
    sessions: BTreeMap<u64, u32>,
    /// node id → (session, sender) of its current connection.
    pub(super) conns: BTreeMap<u32, (u64, OutTx)>,
    pub(super) events: EventLog,
    pub(super) telemetry: Telemetry,
    pub(super) started_at_ms: i64,
    operators: OperatorList,
    /// Join token ids the hub has seen, so tokens the CLI creates are
    /// announced (and audited) at the next registry poll.
    pub(super) known_tokens: BTreeSet<String>,
    pending_gate: PendingGate,
    pub(super) event_quota: EventQuota,
    /// Hellos refused by the hostname rule and the pending gate, for
    /// `/metrics` (the event counts come from `event_quota`).
    pub(super) refused: BoundedCounts,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("nodes", &self.core.nodes().len())
            .field("connected", &self.conns.len())
            .field("last_event", &self.events.last_seq())
            .finish_non_exhaustive()
    }
}

fn refuse(out: &OutTx, key: &PublicKeyBytes, code: ErrorCode, message: String) {
    tracing::warn!(%key, ?code, "refused: {message}");
    let _ = out.send(Outgoing::Frame(ControllerMsg::Error(ErrorMsg {
        code,
        message,
    })));
    let _ = out.send(Outgoing::Close);
}

impl Hub {
    /// `computed` is how long the core's first full computation took.
    pub fn new(store: Store, core: Controller, computed: Duration) -> Result<Self, ServerError> {
        let mut telemetry = Telemetry::new(store.last_seen()?);
        telemetry.computed(computed);
        Ok(Self {
            data_version: store.data_version()?,
            events: EventLog::new(&store)?,
            operators: Arc::new(RwLock::new(store.operator_credentials()?)),
            known_tokens: store.tokens()?.into_iter().map(|t| t.id).collect(),
            pending_gate: PendingGate::default(),
            event_quota: EventQuota::default(),
            refused: BoundedCounts::default(),
            store,
            core,
            sessions: BTreeMap::new(),
            conns: BTreeMap::new(),
            telemetry,
            started_at_ms: unix_now_ms(),
        })
    }

    pub fn operators(&self) -> OperatorList {
        self.operators.clone()
    }

    pub fn live_events(&self) -> tokio::sync::broadcast::Sender<api::Event> {
        self.events.live()
    }

    /// Runs a core call that may compute routes and records how long it took
    /// (the core never reads the clock).
    pub(super) fn timed<T>(&mut self, f: impl FnOnce(&mut Controller) -> T) -> T {
        let start = Instant::now();
        let out = f(&mut self.core);
        self.telemetry.computed(start.elapsed());
        out
    }

    pub(super) fn emit(&mut self, kind: EventKind) {
        self.events.emit(unix_now_ms(), kind, None);
    }

    /// An event an operator caused (`cli` for the command line).
    pub(super) fn emit_by(&mut self, kind: EventKind, operator: &str) {
        self.events
            .emit(unix_now_ms(), kind, Some(operator.to_owned()));
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<ToHub>) {
        let mut poll = tokio::time::interval(REGISTRY_POLL);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = poll.tick() => self.poll_registry(),
            }
            self.flush();
            self.events.commit(&mut self.store);
        }
    }

    fn handle(&mut self, msg: ToHub) {
        match msg {
            ToHub::Hello {
                session,
                peer,
                key,
                hello,
                out,
            } => self.hello(session, peer, key, hello, out),
            ToHub::Frame { session, msg } => {
                let Some(id) = self.sessions.get(&session).copied() else {
                    return;
                };
                match msg {
                    AgentMsg::Report(report) => {
                        let rows = self.core.plan_report(id, &report);
                        self.disputes();
                        if rows.is_empty() {
                            return;
                        }
                        match self.store.save_links(&rows, unix_now()) {
                            Ok(()) => {
                                self.link_events(&rows);
                                self.timed(|core| core.apply_links(&rows));
                            }
                            Err(e) => {
                                tracing::error!(node = id, error = %e, "saving links failed; report ignored")
                            }
                        }
                    }
                    AgentMsg::Hello(_) => {
                        tracing::warn!(node = id, "second Hello on one session");
                        self.core.push_error(
                            id,
                            ErrorCode::Malformed,
                            "Hello is only valid as the first frame",
                        );
                    }
                    AgentMsg::Ping(_) | AgentMsg::Pong(_) => {}
                    AgentMsg::Events(events) => self.failovers(id, &events),
                    AgentMsg::Traffic(traffic) => self.traffic(id, &traffic),
                    AgentMsg::Uplink { up } => self.uplink(id, up),
                    AgentMsg::Clients { count } => {
                        self.telemetry.clients.insert(id, count);
                    }
                }
            }
            ToHub::Gone { session } => {
                if let Some(id) = self.sessions.remove(&session)
                    && self.conns.get(&id).is_some_and(|(s, _)| *s == session)
                {
                    self.conns.remove(&id);
                    self.core.handle_disconnect(id);
                    self.disconnected(id);
                    tracing::info!(node = id, "node disconnected");
                }
            }
            ToHub::Admin(AdminJob(job)) => job(self),
        }
    }

    fn disconnected(&mut self, id: u32) {
        self.telemetry.last_seen.insert(id, unix_now_ms());
        self.emit(EventKind::Disconnected { node: id });
    }

    /// Link up/down events for rows about to replace the core's links.
    fn link_events(&mut self, rows: &[LinkRecord]) {
        for row in rows {
            if let (Some(rtt), Some(loss)) = (row.rtt_us, row.loss_ppm) {
                self.telemetry.sample(row.a, row.b, rtt, loss);
            }
            let was_up = self.core.links().get(&(row.a, row.b)).map(|l| l.up);
            let (a, b) = (row.a, row.b);
            match (was_up, row.up) {
                (None | Some(false), true) => self.emit(EventKind::LinkUp { a, b }),
                (Some(true), false) => self.emit(EventKind::LinkDown { a, b }),
                _ => {}
            }
        }
    }

    /// Measurement disputes the last report started: logged once per
    /// dispute and raised as an event; the link keeps the larger RTT.
    fn disputes(&mut self) {
        while let Some(d) = self.core.poll_dispute() {
            tracing::warn!(
                a = d.a,
                b = d.b,
                node = d.node,
                rtt_us = d.rtt_us,
                other_rtt_us = d.other_rtt_us,
                "the two ends of a link disagree about its RTT; the larger is used"
            );
            self.emit(EventKind::LinkDisputed {
                a: d.a,
                b: d.b,
                node: d.node,
                rtt_us: d.rtt_us,
                other_rtt_us: d.other_rtt_us,
            });
        }
    }

    /// Failovers node `id` made on its own, within its quota and no older
    /// than its session allows ([`EventQuota`]).
    fn failovers(&mut self, id: u32, events: &[LinkEvent]) {
        let now = unix_now_ms();
        for e in events {
            let at_ms = match self.event_quota.handle_event(id, e.age_ms, now) {
                Admission::Accept { at_ms, clamped } => {
                    if clamped {
                        tracing::debug!(
                            node = id,
                            age_ms = e.age_ms,
                            clamped_total = self.event_quota.clamped_total(),
                            "failover claimed to be older than the node's session allows; stored at the bound"
                        );
                    }
                    at_ms
                }
                Admission::Drop => continue,
            };
            let peer = match self.core.lookup(&e.peer) {
                KeyStatus::Active(p) | KeyStatus::Pending(p) | KeyStatus::Revoked(p) => p,
                KeyStatus::Unknown => {
                    tracing::warn!(node = id, peer = %e.peer, "failover over a link to an unknown key; ignored");
                    continue;
                }
            };
            tracing::info!(node = id, peer, cause = ?e.cause, detection_ms = e.detection_ms, switch_us = e.switch_us, "failover");
            self.telemetry
                .failover(e.cause, e.detection_ms, e.switch_us);
            self.events.emit(
                at_ms,
                EventKind::Failover {
                    node: id,
                    peer,
                    cause: e.cause,
                    detection_ms: e.detection_ms,
                    switch_us: e.switch_us,
                    rerouted: e.rerouted,
                    lost: e.lost,
                },
                None,
            );
        }
        while let Some(w) = self.event_quota.poll_warning() {
            tracing::warn!(
                node = w.node,
                dropped = w.dropped,
                dropped_total = self.event_quota.dropped_total(),
                "failover events over the node's quota dropped"
            );
        }
    }

    /// A gateway's uplink check changed (or was repeated after a Welcome).
    fn uplink(&mut self, id: u32, up: bool) {
        if !self.core.nodes().get(&id).is_some_and(|n| n.gateway) {
            tracing::warn!(
                node = id,
                up,
                "uplink report from a node that is no gateway; ignored"
            );
            return;
        }
        let changed = self.timed(|core| core.handle_uplink(id, up));
        if changed {
            tracing::info!(
                node = id,
                up,
                "gateway uplink changed; default routes recomputed"
            );
            self.emit(if up {
                EventKind::UplinkUp { node: id }
            } else {
                EventKind::UplinkDown { node: id }
            });
        }
    }

    fn traffic(&mut self, id: u32, traffic: &[LinkTraffic]) {
        let now = unix_now_ms();
        let rows = traffic
            .iter()
            .filter_map(|t| {
                let peer = match self.core.lookup(&t.peer) {
                    KeyStatus::Active(p) | KeyStatus::Pending(p) | KeyStatus::Revoked(p) => p,
                    KeyStatus::Unknown => return None,
                };
                Some(api::LinkTraffic {
                    peer,
                    tx_bytes: t.tx_bytes,
                    rx_bytes: t.rx_bytes,
                    reported_at_ms: now,
                })
            })
            .collect();
        self.telemetry.set_traffic(id, rows);
    }

    fn hello(
        &mut self,
        session: u64,
        peer: SocketAddr,
        key: PublicKeyBytes,
        hello: Hello,
        out: OutTx,
    ) {
        let status = self.core.lookup(&key);
        // Checked on every Hello (a revoked key hears that it is revoked
        // instead): nothing unchecked reaches the store, and an old
        // database's bad hostname is noticed when its node returns.
        if !matches!(status, KeyStatus::Revoked(_))
            && let Err(e) = check_hostname(&hello.hostname)
        {
            self.refused.bad_hostnames += 1;
            return refuse(&out, &key, ErrorCode::BadHostname, e.to_string());
        }
        let id = match status {
            KeyStatus::Revoked(_) => {
                return refuse(
                    &out,
                    &key,
                    ErrorCode::Revoked,
                    format!("key {key} was revoked"),
                );
            }
            KeyStatus::Active(id) => {
                // Enrolled: the key alone authenticates; a token is ignored.
                if let Some(p) = self.core.unapproved_prefix(id, &hello.prefixes) {
                    return refuse(
                        &out,
                        &key,
                        ErrorCode::PrefixNotApproved,
                        format!(
                            "prefix {p} is not approved for this node (freimesh-controller prefix approve {id} {p})"
                        ),
                    );
                }
                if let Err(e) = self.refresh_endpoints(id, &hello) {
                    return refuse(&out, &key, ErrorCode::Internal, e.to_string());
                }
                if let Err(e) = self.refresh_roles(id, &hello) {
                    return refuse(&out, &key, e.code(), e.to_string());
                }
                id
            }
            status @ (KeyStatus::Unknown | KeyStatus::Pending(_)) => match &hello.join_token {
                Some(token) => {
                    let enrol = Enrollment {
                        key,
                        hostname: &hello.hostname,
                        endpoints: &hello.endpoints,
                        token,
                        want_addresses: &hello.want_addresses,
                        prefixes: &hello.prefixes,
                        roles: hello.roles,
                    };
                    match self.store.enroll(&enrol, unix_now()) {
                        Ok(rec) => {
                            tracing::info!(node = rec.id, %key, hostname = %rec.hostname, addresses = ?rec.addresses, "node enrolled");
                            let id = rec.id;
                            self.emit(EventKind::Enrolled {
                                node: id,
                                hostname: rec.hostname.clone(),
                            });
                            self.roles_awaiting(&rec, Roles::default());
                            let prefixes = match self.store.prefixes() {
                                Ok(p) => p
                                    .into_iter()
                                    .filter(|(n, _)| *n == id)
                                    .map(|(_, p)| p)
                                    .collect(),
                                Err(e) => {
                                    return refuse(&out, &key, ErrorCode::Internal, e.to_string());
                                }
                            };
                            self.timed(|core| core.upsert_node(rec, prefixes));
                            id
                        }
                        Err(e) => return refuse(&out, &key, e.code(), e.to_string()),
                    }
                }
                None if self.core.settings().approval => {
                    if let KeyStatus::Unknown = status {
                        let pending = self
                            .core
                            .nodes()
                            .values()
                            .filter(|n| n.state == NodeState::Pending)
                            .count();
                        if let Err(e) =
                            self.pending_gate
                                .handle_new_pending(peer.ip(), pending, unix_now_ms())
                        {
                            self.refused.pending_refused += 1;
                            return refuse(&out, &key, ErrorCode::TooManyPending, e.to_string());
                        }
                        match self.store.add_pending(
                            key,
                            &hello.hostname,
                            &hello.endpoints,
                            hello.roles,
                            unix_now(),
                        ) {
                            Ok(rec) => {
                                tracing::info!(node = rec.id, %key, "node waits for approval");
                                self.emit(EventKind::Enrolled {
                                    node: rec.id,
                                    hostname: rec.hostname.clone(),
                                });
                                self.roles_awaiting(&rec, Roles::default());
                                self.timed(|core| core.upsert_node(rec, Vec::new()));
                            }
                            Err(e) => {
                                return refuse(&out, &key, ErrorCode::Internal, e.to_string());
                            }
                        }
                    }
                    let _ = out.send(Outgoing::Frame(ControllerMsg::Pending {
                        node_id: NodeId::of(&key),
                    }));
                    let _ = out.send(Outgoing::Close);
                    return;
                }
                None => {
                    return refuse(
                        &out,
                        &key,
                        ErrorCode::UnknownKey,
                        format!("unknown key {key}: not enrolled and no join token given"),
                    );
                }
            },
        };
        if let Some((old, old_out)) = self.conns.insert(id, (session, out)) {
            // The node reconnected before we noticed the old connection die.
            self.sessions.remove(&old);
            let _ = old_out.send(Outgoing::Close);
            self.core.handle_disconnect(id);
        }
        self.sessions.insert(session, id);
        tracing::info!(node = id, %key, "node connected");
        self.core.handle_connect(id);
        let now = unix_now_ms();
        let earliest =
            EventQuota::earliest_for_session(self.telemetry.last_seen.get(&id).copied(), now);
        self.event_quota.handle_session(id, earliest, now);
        self.telemetry.last_seen.insert(id, now);
        self.emit(EventKind::Connected { node: id });
    }

    fn refresh_endpoints(&mut self, id: u32, hello: &Hello) -> Result<(), StoreError> {
        let rec = self.store.node(id)?;
        if rec.endpoints != hello.endpoints {
            self.store.set_endpoints(id, &hello.endpoints)?;
            let rec = crate::store::NodeRecord {
                endpoints: hello.endpoints.clone(),
                ..rec
            };
            self.timed(|core| core.upsert_node(rec, Vec::new()));
        }
        Ok(())
    }

    /// The roles in a Hello are a request: it is persisted from every
    /// Hello, but a role takes effect only if an operator approved it for
    /// this node. A node whose public Wi-Fi role is in effect gets its
    /// client subnets here (or is refused without a client pool, with
    /// nothing written); a requested role nobody approved raises an event.
    fn refresh_roles(&mut self, id: u32, hello: &Hello) -> Result<(), StoreError> {
        let Some(rec) = self.core.nodes().get(&id) else {
            return Ok(());
        };
        let before = rec.requested_roles;
        let needs_subnets = hello.roles.public_wifi
            && rec.approved_roles.public_wifi
            && rec.client_prefixes.is_empty();
        if before != hello.roles || needs_subnets {
            let rec = self.store.set_roles(id, hello.roles)?;
            tracing::info!(node = id, requested = ?hello.roles, in_effect = ?rec.roles(), client_prefixes = ?rec.client_prefixes, "node roles changed");
            self.roles_awaiting(&rec, before);
            self.timed(|core| core.upsert_node(rec, Vec::new()));
        }
        Ok(())
    }

    /// An event for each role `rec` requests without approval that it did
    /// not request `before` (so a reconnecting node raises none).
    fn roles_awaiting(&mut self, rec: &crate::store::NodeRecord, before: Roles) {
        for role in api::Role::list(&rec.roles_awaiting()) {
            if role.is_in(&before) {
                continue;
            }
            tracing::warn!(node = rec.id, %role, "node requests a role no operator approved; it stays an ordinary node (freimesh-controller role approve {} {role})", rec.id);
            self.emit(EventKind::RoleAwaitsApproval { node: rec.id, role });
        }
    }

    /// Sites from the store into the core, with events for what changed.
    pub(super) fn reload_sites(&mut self) -> Result<(), StoreError> {
        let sites = self.store.sites()?;
        let before = self.core.sites().clone();
        let mut kinds = Vec::new();
        for s in &sites {
            if !before.contains_key(&s.name) {
                kinds.push(EventKind::SiteAdded {
                    name: s.name.clone(),
                    via: s.via,
                });
            }
        }
        for name in before.keys() {
            if !sites.iter().any(|s| &s.name == name) {
                kinds.push(EventKind::SiteRemoved { name: name.clone() });
            }
        }
        self.timed(|core| core.load_sites(sites));
        for kind in kinds {
            self.emit(kind);
        }
        Ok(())
    }

    fn poll_registry(&mut self) {
        let version = match self.store.data_version() {
            Ok(v) => v,
            Err(e) => return tracing::error!(error = %e, "checking the database failed"),
        };
        if version == self.data_version {
            return;
        }
        self.data_version = version;
        let snapshot = (|| {
            Ok::<_, StoreError>((
                self.store.nodes()?,
                self.store.prefixes()?,
                self.store.links()?,
            ))
        })();
        match snapshot {
            Ok((nodes, prefixes, links)) => {
                tracing::info!("registry changed; resynchronising nodes");
                let before: BTreeMap<u32, (NodeState, bool)> = self
                    .core
                    .nodes()
                    .values()
                    .map(|n| (n.id, (n.state, n.drained)))
                    .collect();
                let roles_before = self.approved_roles();
                self.timed(|core| core.handle_registry(nodes, prefixes, links));
                self.registry_events(&before);
                self.role_events(&roles_before);
                if let Err(e) = self.reload_sites() {
                    tracing::error!(error = %e, "reloading the sites failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "reloading the registry failed"),
        }
        self.reload_operators();
        self.announce_cli_tokens();
    }

    /// Operators from the store into the list the API checks, with audit
    /// events for the ones the CLI added or removed.
    fn reload_operators(&mut self) {
        let fresh = match self.store.operator_credentials() {
            Ok(list) => list,
            Err(e) => return tracing::error!(error = %e, "reloading operator tokens failed"),
        };
        let before = match self.operators.write() {
            Ok(mut shared) => std::mem::replace(&mut *shared, fresh.clone()),
            Err(_) => return tracing::error!("operator token list poisoned"),
        };
        let names = |list: &[OperatorCredential]| -> BTreeSet<String> {
            list.iter().map(|c| c.name.clone()).collect()
        };
        let old = names(&before);
        for c in fresh.iter().filter(|c| !old.contains(&c.name)) {
            tracing::info!(operator = %c.name, scope = c.scope.as_str(), "operator added");
            self.emit_by(
                EventKind::OperatorAdded {
                    name: c.name.clone(),
                    scope: c.scope.as_str().to_owned(),
                    expires_at_ms: c.expires_at.map(|s| s.saturating_mul(1000)),
                },
                CLI_OPERATOR,
            );
        }
        let new = names(&fresh);
        for name in old.difference(&new) {
            tracing::info!(operator = %name, "operator removed; its token and streams end");
            self.emit_by(
                EventKind::OperatorRemoved { name: name.clone() },
                CLI_OPERATOR,
            );
        }
    }

    /// Join tokens the CLI created since the last poll, as audit events.
    fn announce_cli_tokens(&mut self) {
        let tokens = match self.store.tokens() {
            Ok(t) => t,
            Err(e) => return tracing::error!(error = %e, "reading the join tokens failed"),
        };
        for t in tokens {
            if self.known_tokens.insert(t.id.clone()) {
                self.emit_by(EventKind::TokenCreated { id: t.id }, CLI_OPERATOR);
            }
        }
    }

    /// Every node's approved roles.
    fn approved_roles(&self) -> BTreeMap<u32, Roles> {
        self.core
            .nodes()
            .values()
            .map(|n| (n.id, n.approved_roles))
            .collect()
    }

    /// Events for role approvals the CLI changed (`role approve|revoke`).
    fn role_events(&mut self, before: &BTreeMap<u32, Roles>) {
        let mut kinds = Vec::new();
        for n in self.core.nodes().values() {
            let was = before.get(&n.id).copied().unwrap_or_default();
            for role in api::Role::ALL {
                match (role.is_in(&was), role.is_in(&n.approved_roles)) {
                    (false, true) => kinds.push(EventKind::RoleApproved { node: n.id, role }),
                    (true, false) => kinds.push(EventKind::RoleRevoked { node: n.id, role }),
                    _ => {}
                }
            }
        }
        for kind in kinds {
            self.emit_by(kind, CLI_OPERATOR);
        }
    }

    /// Events for what the CLI changed: approvals, revocations, drains.
    fn registry_events(&mut self, before: &BTreeMap<u32, (NodeState, bool)>) {
        let mut kinds = Vec::new();
        for n in self.core.nodes().values() {
            let node = n.id;
            let (state, drained) = before
                .get(&node)
                .copied()
                .unwrap_or((NodeState::Pending, false));
            match (state, n.state) {
                (NodeState::Pending, NodeState::Active) => kinds.push(EventKind::Approved { node }),
                (NodeState::Pending | NodeState::Active, NodeState::Revoked) => {
                    kinds.push(EventKind::Revoked { node });
                }
                _ => {}
            }
            match (drained, n.drained) {
                (false, true) => kinds.push(EventKind::Drained { node }),
                (true, false) => kinds.push(EventKind::Undrained { node }),
                _ => {}
            }
        }
        for kind in kinds {
            if let EventKind::Revoked { node } = kind {
                self.telemetry.forget_node(node);
                self.event_quota.forget(node);
            }
            self.emit_by(kind, CLI_OPERATOR);
        }
    }

    fn flush(&mut self) {
        while let Some((id, out)) = self.core.poll_transmit() {
            let Some((session, tx)) = self.conns.get(&id) else {
                continue;
            };
            let close = out == Outgoing::Close;
            let _ = tx.send(out);
            if close {
                let session = *session;
                self.sessions.remove(&session);
                self.conns.remove(&id);
                self.core.handle_disconnect(id);
                self.disconnected(id);
            }
        }
    }
}
