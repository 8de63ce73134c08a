//! The agent under a controller: applies what the controller assigns
//! (links, routes) to the engine, and reports link states and candidate
//! neighbours back.
//!
//! Controller state arrives as [`ControllerEvent`]s from the
//! [`crate::controlplane`] client; [`ControllerState`] folds them into the
//! current assignment, and [`reconcile`] turns that into engine changes by
//! diff, so the same code serves the first full state, every delta and
//! every resync after a reconnect. While the controller is unreachable the
//! engine keeps its last table and repairs locally (headless survival).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freimesh_proto::segment::Segment;
use freimesh_proto::{NodeId, PublicKeyBytes};
use ipnet::IpNet;
use tokio::sync::mpsc;

use super::Shared;
use crate::config::AgentConfig;
use crate::controlplane::{
    Candidate, ControllerEvent, ControllerState, LinkEvent, LinkMeasurement, LinkTraffic, Report,
    Upstream, Welcome,
};
use crate::core::liveness::DownCause;
use crate::core::{Engine, Failover, Hop, LinkReport, LinkSpec, RouteSpec};

/// How often link states and candidates go to the controller (and at once
/// when a link changes state).
const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// What the agent reports as a link's round-trip time until it has measured
/// one (the first `LinkState` exchange, within a state refresh).
const NOMINAL_RTT_US: u32 = 1_000;

/// A failover as the controller hears of it; `took` is how long the engine
/// step that made it lasted.
pub(super) fn link_event(failover: &Failover, took: Duration) -> LinkEvent {
    LinkEvent {
        peer: failover.peer,
        cause: match failover.cause {
            DownCause::Silence => freimesh_proto::api::DownCause::Silence,
            DownCause::PeerDoesNotHearUs => freimesh_proto::api::DownCause::Neighbour,
            DownCause::Carrier => freimesh_proto::api::DownCause::Carrier,
        },
        detection_ms: u32::try_from(failover.silent_for.as_millis()).unwrap_or(u32::MAX),
        switch_us: u32::try_from(took.as_micros()).unwrap_or(u32::MAX),
        rerouted: u32::try_from(failover.rerouted).unwrap_or(u32::MAX),
        lost: u32::try_from(failover.lost).unwrap_or(u32::MAX),
        age_ms: 0,
    }
}

/// Waits for the first `Welcome` (for a node whose addresses come from the
/// controller), folding every event before it into `state`.
pub(super) async fn first_welcome(
    events: &mut mpsc::Receiver<ControllerEvent>,
    state: &mut ControllerState,
) -> Option<Welcome> {
    tracing::info!("waiting for the controller to assign this node's addresses");
    while let Some(event) = events.recv().await {
        log_event(&event);
        state.apply(&event);
        if let Some(welcome) = &state.welcome {
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
    }
}

/// Makes the engine hold exactly the links, routes and client prefixes of
/// `state`. A route's own key among its next hops means "deliver here"
/// (a gateway's default route: out through its uplink).
pub fn reconcile(engine: &mut Engine, state: &ControllerState, own: &[IpNet], now: Instant) {
    let clients = state.client_prefixes();
    if engine.client_prefixes() != sorted(clients) {
        engine.set_client_prefixes(clients.to_vec());
    }
    let me = engine.public_key();
    let wanted: BTreeSet<PublicKeyBytes> = state.links.keys().copied().collect();
    for (peer, assignment) in &state.links {
        let spec = LinkSpec {
            name: NodeId::of(peer).to_string(),
            peer: *peer,
            endpoint: assignment.endpoint,
            keepalive: None,
            allowed_sources: assignment.allowed_sources.clone(),
            profile: assignment.profile.clone(),
        };
        if let Err(err) = engine.upsert_link(spec, now) {
            tracing::warn!(%peer, %err, "link from the controller not applied");
        }
    }
    let mut routes: BTreeMap<IpNet, RouteSpec> = BTreeMap::new();
    for (prefix, route) in &state.routes {
        let mine = |o: &IpNet| o.trunc() == prefix.trunc();
        if own.iter().any(mine) || clients.iter().any(mine) {
            continue;
        }
        let hops: Vec<Hop> = route
            .via
            .iter()
            .filter_map(|peer| {
                if *peer == me {
                    Some(Hop::Local)
                } else {
                    engine.link_by_peer(peer).map(Hop::Link)
                }
            })
            .collect();
        if !hops.is_empty() {
            routes.insert(
                *prefix,
                RouteSpec {
                    hops,
                    segment: route.segment,
                },
            );
        }
    }
    if let Err(err) = engine.set_routes(&routes) {
        tracing::warn!(%err, "routes from the controller not applied");
    }
    let retired: Vec<_> = engine
        .link_states()
        .into_iter()
        .filter(|l| !wanted.contains(&l.peer))
        .filter_map(|l| engine.link_by_peer(&l.peer))
        .collect();
    for link in retired {
        engine.retire_link(link);
    }
}

fn sorted(prefixes: &[IpNet]) -> Vec<IpNet> {
    let set: BTreeSet<IpNet> = prefixes.iter().map(IpNet::trunc).collect();
    set.into_iter().collect()
}

/// Applies controller events to the engine as they arrive.
pub(super) async fn apply_events(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<ControllerEvent>,
    mut state: ControllerState,
    own: Vec<IpNet>,
    kernel: Option<KernelRoutes>,
) {
    let mut outputs = Vec::new();
    {
        let state = &state;
        let own = &own;
        shared
            .with_engine(&mut outputs, |engine| {
                reconcile(engine, state, own, Instant::now())
            })
            .await;
    }
    if let Some(kernel) = &kernel {
        kernel.follow(&state);
    }
    while let Some(event) = events.recv().await {
        log_event(&event);
        if let ControllerEvent::Welcome(w) = &event
            && !w.addresses.iter().all(|a| own.contains(a))
        {
            tracing::warn!(assigned = ?w.addresses, current = ?own, "the controller assigned new addresses; restart the agent to use them");
        }
        if state.apply(&event) {
            {
                let state = &state;
                let own = &own;
                shared
                    .with_engine(&mut outputs, |engine| {
                        reconcile(engine, state, own, Instant::now())
                    })
                    .await;
            }
            if let Some(kernel) = &kernel {
                kernel.follow(&state);
            }
        }
    }
}

/// Which prefixes the kernel must send into the TUN device beyond the
/// mesh's aggregates: other buildings' LANs and standard WireGuard sites
/// (intranet routes). Overlay addresses and client subnets lie inside the
/// aggregates the Welcome named; default routes never go into the main
/// table (public clients reach them through their own policy table).
#[derive(Debug)]
pub(super) struct KernelRoutes {
    /// The aggregates (`Welcome.mesh_prefixes` or `linux.kernel_routes`).
    pub base: Vec<IpNet>,
    /// This node's own prefixes: its LANs stay on their interfaces.
    pub local: Vec<IpNet>,
    pub tx: tokio::sync::watch::Sender<Vec<IpNet>>,
}

impl KernelRoutes {
    /// The kernel routes `state` implies, base first.
    pub fn wanted(&self, state: &ControllerState) -> Vec<IpNet> {
        let covered = |p: &IpNet| {
            self.base
                .iter()
                .chain(&self.local)
                .any(|b| b.contains(p) || p.contains(b))
        };
        let mut routes = self.base.clone();
        routes.extend(
            state
                .routes
                .values()
                .filter(|r| r.segment == Segment::Intranet)
                .map(|r| r.prefix)
                .filter(|p| !covered(p)),
        );
        routes
    }

    fn follow(&self, state: &ControllerState) {
        let wanted = self.wanted(state);
        self.tx.send_if_modified(|current| {
            if *current == wanted {
                false
            } else {
                *current = wanted;
                true
            }
        });
    }
}

/// Whether any link's RTT or loss moved by more than a tenth (or appeared)
/// since the last report.
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

/// Sends link states, measurements and configured candidate neighbours to
/// the controller.
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
    let mut last: Option<Vec<(PublicKeyBytes, bool)>> = None;
    let mut measured: Vec<LinkReport> = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    let mut next_full = tokio::time::Instant::now();
    let traffic_every = Duration::from_secs(freimesh_proto::control::TRAFFIC_INTERVAL_S);
    let mut next_traffic = tokio::time::Instant::now() + traffic_every;
    loop {
        ticks.tick().await;
        let current = shared.engine().link_states();
        if tokio::time::Instant::now() >= next_traffic {
            next_traffic += traffic_every;
            let counters = current
                .iter()
                .map(|l| LinkTraffic {
                    peer: l.peer,
                    tx_bytes: l.tx_bytes,
                    rx_bytes: l.rx_bytes,
                })
                .collect();
            if reports.send(Upstream::Traffic(counters)).await.is_err() {
                return;
            }
        }
        let states: Vec<(PublicKeyBytes, bool)> = current.iter().map(|l| (l.peer, l.up)).collect();
        // Up/down changes go out at once; measurements with the periodic
        // report, and only when the cost moved by more than a tenth, so RTT
        // jitter does not make the controller recompute routes.
        let changed = last.as_ref() != Some(&states);
        let due = tokio::time::Instant::now() >= next_full;
        if due {
            next_full = tokio::time::Instant::now() + REPORT_INTERVAL;
        }
        let report_due = changed || (due && moved(&measured, &current));
        if !report_due {
            continue;
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
        last = Some(states);
        measured = current;
        if reports
            .send(Upstream::Report(Report {
                links,
                candidates: candidates.clone(),
            }))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use freimesh_proto::control::Route;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("prefix")
    }

    fn route(prefix: &str, segment: Segment) -> (IpNet, Route) {
        (
            net(prefix),
            Route {
                prefix: net(prefix),
                via: vec![PublicKeyBytes([2; 32])],
                segment,
            },
        )
    }

    #[test]
    fn the_kernel_routes_other_buildings_and_sites_into_the_mesh_and_nothing_else() {
        let (tx, rx) = tokio::sync::watch::channel(Vec::new());
        let kernel = KernelRoutes {
            base: vec![net("10.99.0.0/16"), net("fd99::/48"), net("10.100.0.0/16")],
            local: vec![net("10.20.1.0/24")],
            tx,
        };
        let state = ControllerState {
            routes: [
                route("10.99.0.2/32", Segment::Infrastructure),
                route("10.100.1.0/24", Segment::Public),
                route("0.0.0.0/0", Segment::Internet),
                route("::/0", Segment::Internet),
                route("10.20.2.0/24", Segment::Intranet),
                route("172.16.5.0/24", Segment::Intranet),
                // Our own LAN must stay on its interface.
                route("10.20.1.0/24", Segment::Intranet),
            ]
            .into_iter()
            .collect(),
            ..ControllerState::default()
        };
        let wanted = kernel.wanted(&state);
        assert_eq!(
            wanted,
            vec![
                net("10.99.0.0/16"),
                net("fd99::/48"),
                net("10.100.0.0/16"),
                net("10.20.2.0/24"),
                net("172.16.5.0/24"),
            ]
        );
        kernel.follow(&state);
        assert_eq!(*rx.borrow(), wanted);
        assert!(rx.has_changed().expect("open"));
    }
}
