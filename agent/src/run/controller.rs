//! The agent under a controller: the shell around the control cores
//! ([`crate::controlplane`]). It feeds the [`ControlCore`] the events the
//! client hears, applies each [`EngineChange`] it asks for to the engine,
//! hands the kernel routes it asks for to the TUN backend, and samples
//! link states for the [`LinkReporter`]. No decision is made here.
//!
//! While the controller is unreachable the engine keeps its last table and
//! repairs locally (headless survival).

use std::sync::Arc;

use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use super::state::StateKeeper;
use super::{Outputs, Shared};
use crate::clock;
use crate::config::AgentConfig;
use crate::controlplane::{
    Candidate, ControlCore, ControllerEvent, ErrorCode, KernelRouteRule, LinkReporter,
    MembershipUpdate, REPORT_TICK, Upstream, Welcome, apply_to_membership,
};
use crate::core::EngineChange;

/// Brings a fresh `core` to the state the state file kept: the Welcome and
/// full sets it replays go through the same path as the controller's, so
/// the engine comes up exactly as after a Welcome, and the controller's
/// own Welcome later is an ordinary full reconcile.
pub(super) fn replay_saved(core: &mut ControlCore, replay: Vec<ControllerEvent>) {
    for event in &replay {
        core.handle_event(event, clock::now());
    }
}

/// Waits for the first `Welcome` (for a node whose addresses come from the
/// controller), folding every event before it into `core`.
pub(super) async fn first_welcome(
    events: &mut mpsc::Receiver<ControllerEvent>,
    core: &mut ControlCore,
) -> Option<Welcome> {
    tracing::info!("waiting for the controller to assign this node's addresses");
    while let Some(event) = events.recv().await {
        log_event(&event);
        core.handle_event(&event, clock::now());
        if let Some(welcome) = core.welcome() {
            return Some(welcome.clone());
        }
    }
    None
}

fn log_event(event: &ControllerEvent) {
    match event {
        ControllerEvent::Welcome(w) => {
            tracing::info!(node_id = %w.node_id, addresses = ?w.addresses, "enrolled with the controller")
        }
        ControllerEvent::Pending { node_id } => {
            tracing::warn!(%node_id, "the controller holds this node for operator approval")
        }
        ControllerEvent::Refused(err) => tracing::error!(?err, "the controller refused this node"),
        ControllerEvent::Disconnected { reason, retry_in } => {
            tracing::warn!(%reason, ?retry_in, "controller unreachable; forwarding on the last table")
        }
        ControllerEvent::Links(links) => {
            tracing::debug!(links = links.len(), "links from the controller")
        }
        ControllerEvent::Routes(routes) => {
            tracing::debug!(routes = routes.len(), "routes from the controller")
        }
        ControllerEvent::LinksDelta(d) => {
            tracing::debug!(changes = d.len(), "link changes from the controller")
        }
        ControllerEvent::RoutesDelta(d) => {
            tracing::debug!(changes = d.len(), "route changes from the controller")
        }
        ControllerEvent::Credential(_) => {
            tracing::debug!("membership credential from the controller")
        }
        ControllerEvent::Revocations(pages) => {
            tracing::debug!(pages = pages.len(), "revocation pages from the controller")
        }
        ControllerEvent::ControlExits(exits) => {
            tracing::info!(?exits, "control exits from the controller")
        }
        ControllerEvent::ExitGateway(gateway) => {
            let gateway = gateway.map(|g| g.to_base64());
            tracing::debug!(?gateway, "exit gateway from the controller")
        }
    }
}

/// Folds `event` into the shared membership (`crate::membership`) and
/// logs what it changed: what discovery checks neighbours against and
/// the state file keeps.
fn apply_membership(shared: &Shared, own_key: &PublicKeyBytes, event: &ControllerEvent) {
    let updates = match shared.membership.lock() {
        Ok(mut membership) => apply_to_membership(&mut membership, own_key, event),
        Err(_) => return tracing::error!("membership lock poisoned; controller update dropped"),
    };
    for update in updates {
        log_membership_update(&update);
    }
}

fn log_membership_update(update: &MembershipUpdate) {
    match update {
        MembershipUpdate::SigningKey {
            key,
            replaced: true,
        } => {
            tracing::warn!(signing_key = %key.to_base64(), "the controller's signing key changed; the old credential and revocation list are dropped")
        }
        MembershipUpdate::SigningKey {
            key,
            replaced: false,
        } => {
            tracing::debug!(signing_key = %key.to_base64(), "controller signing key")
        }
        MembershipUpdate::Credential { expires_unix_s } => {
            tracing::info!(expires_unix_s, "membership credential from the controller")
        }
        MembershipUpdate::CredentialRefused(err) => {
            tracing::warn!(%err, "membership credential from the controller refused; keeping the previous one")
        }
        MembershipUpdate::Revocations {
            serial,
            revoked,
            newly_revoked,
        } => {
            tracing::info!(serial, revoked, newly_revoked = ?newly_revoked, "revocation list from the controller")
        }
        MembershipUpdate::PageRefused(err) => {
            tracing::warn!(%err, "revocation page from the controller refused")
        }
    }
}

/// The kernel routes into the TUN device follow what the core asks for.
#[derive(Debug)]
pub(super) struct KernelRoutes {
    /// The aggregates (`Welcome.mesh_prefixes` or `linux.kernel_routes`).
    pub base: Vec<IpNet>,
    /// This node's own prefixes: its LANs stay on their interfaces.
    pub local: Vec<IpNet>,
    pub tx: tokio::sync::watch::Sender<Vec<IpNet>>,
}

/// Applies every change `core` has queued to the engine, in order, in one
/// engine step; then hands on the kernel routes, if they changed.
async fn apply_changes(
    shared: &Shared,
    core: &mut ControlCore,
    kernel: Option<&KernelRoutes>,
    outputs: &mut Outputs,
) {
    let changes: Vec<EngineChange> = {
        let discovered = shared.discovered();
        std::iter::from_fn(|| core.poll_change())
            .filter_map(|change| {
                super::discovery::controller_change_next_to_discovery(change, &discovered)
            })
            .collect()
    };
    if !changes.is_empty() {
        let exit = shared.mesh_control.session_exit();
        let mut exit_lost = false;
        shared
            .with_engine(outputs, |engine| {
                let now = clock::now();
                for change in &changes {
                    if let Err(err) = engine.apply(change, now) {
                        tracing::warn!(%change, %err, "change from the controller not applied");
                    }
                }
                // The session runs through an exit on the overlay: with
                // no route to it left, nothing more reaches this node.
                exit_lost = exit.is_some_and(|exit| {
                    !matches!(
                        engine.table().lookup(exit.ip()),
                        Some(crate::core::Hop::Link(_))
                    )
                });
            })
            .await;
        if exit_lost {
            shared.mesh_control.report_path_lost();
        }
    }
    if core.welcome().is_some() {
        // Discovery's dense-cell policy defers to these.
        let assigned: std::collections::BTreeSet<_> = core.links().keys().copied().collect();
        shared.controller_links.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&assigned);
            if changed {
                *current = Some(assigned);
            }
            changed
        });
    }
    if let (Some(kernel), Some(wanted)) = (kernel, core.poll_kernel_routes()) {
        kernel.tx.send_if_modified(|current| {
            if *current == wanted {
                false
            } else {
                *current = wanted;
                true
            }
        });
    }
}

/// This node as the control path sees it.
#[derive(Debug)]
pub(super) struct OwnNode {
    /// Its public key: its credential must name it.
    pub key: PublicKeyBytes,
    /// Its own host addresses: routes for them are never applied.
    pub prefixes: Vec<IpNet>,
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Hands the control exits to the client, without this node's own relay
/// (dialling itself would only cost an attempt).
fn publish_exits(shared: &Shared, core: &ControlCore, own: &OwnNode) {
    let exits: Vec<std::net::SocketAddr> = core
        .control_exits()
        .iter()
        .filter(|exit| !own.prefixes.iter().any(|p| p.contains(&exit.ip())))
        .copied()
        .collect();
    shared.mesh_control.publish_exits(&exits);
}

/// Applies controller events to the engine and the membership as they
/// arrive, and keeps the state file in step; writes it a last time when
/// `stop` fires.
pub(super) async fn apply_events(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<ControllerEvent>,
    mut core: ControlCore,
    own: OwnNode,
    kernel: Option<KernelRoutes>,
    mut keeper: StateKeeper,
    mut stop: oneshot::Receiver<()>,
) {
    // A Welcome awaited at start-up (`first_welcome`) went to the core
    // before the membership existed: its signing key is taken now.
    if let Some(welcome) = core.welcome() {
        apply_membership(
            &shared,
            &own.key,
            &ControllerEvent::Welcome(welcome.clone()),
        );
    }
    core.set_own_prefixes(own.prefixes.clone());
    if let Some(kernel) = &kernel {
        core.set_kernel_rule(KernelRouteRule {
            base: kernel.base.clone(),
            local: kernel.local.clone(),
        });
    }
    let mut outputs = Outputs::default();
    apply_changes(&shared, &mut core, kernel.as_ref(), &mut outputs).await;
    publish_exits(&shared, &core, &own);
    shared.set_exit_gateway(core.exit_gateway());
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = shared.state_changed.notified() => {
                keeper.handle_change(clock::now());
                continue;
            }
            () = sleep_until(keeper.poll_timeout()) => {
                keeper.save(&shared, &core).await;
                continue;
            }
            _ = &mut stop => break,
        };
        let Some(event) = event else { break };
        log_event(&event);
        if let ControllerEvent::Welcome(w) = &event
            && !w.addresses.iter().all(|a| own.prefixes.contains(a))
        {
            tracing::warn!(assigned = ?w.addresses, current = ?own.prefixes, "the controller assigned new addresses; restart the agent to use them");
        }
        apply_membership(&shared, &own.key, &event);
        core.handle_event(&event, clock::now());
        apply_changes(&shared, &mut core, kernel.as_ref(), &mut outputs).await;
        publish_exits(&shared, &core, &own);
        shared.set_exit_gateway(core.exit_gateway());
        if let ControllerEvent::Refused(err) = &event
            && err.code == ErrorCode::Revoked
        {
            keeper.forget().await;
        }
        keeper.handle_change(clock::now());
    }
    keeper.save_at_shutdown(&shared, &core).await;
}

/// Samples link states for the [`LinkReporter`] and sends what it reports
/// (measurements with the configured candidate neighbours, traffic).
pub(super) async fn report(
    shared: Arc<Shared>,
    config: Arc<AgentConfig>,
    reports: mpsc::Sender<Upstream>,
) {
    let candidates: Vec<Candidate> = config
        .links
        .iter()
        .map(|l| Candidate {
            peer: l.public_key,
            endpoint: l.endpoint,
        })
        .collect();
    let mut reporter = LinkReporter::new(candidates.clone(), clock::now());
    let mut ticks = tokio::time::interval(REPORT_TICK);
    let mut discovered_before = Vec::new();
    loop {
        ticks.tick().await;
        // Discovered neighbours are candidates too, with the endpoint
        // they were found at.
        let discovered: Vec<Candidate> = shared
            .discovered()
            .iter()
            .map(|(peer, link)| Candidate {
                peer: *peer,
                endpoint: Some(std::net::SocketAddr::V6(link.endpoint)),
            })
            .collect();
        if discovered != discovered_before {
            let mut all = candidates.clone();
            all.extend(discovered.iter().cloned());
            reporter.set_candidates(all);
            discovered_before = discovered;
        }
        let current = shared.engine().link_states();
        reporter.handle_link_states(&current, clock::now());
        if reporter.take_rejoined() && shared.mesh_control.session_exit().is_some() {
            tracing::info!("links up again after this node was cut off: a new control session");
            shared.mesh_control.report_path_lost();
        }
        while let Some(item) = reporter.poll_upstream() {
            if reports.send(item).await.is_err() {
                return;
            }
        }
    }
}
