//! The agent's controller-given state as a sans-IO core: folds what the
//! controller says into the [`EngineChange`]s it implies.
//!
//! # Contract (call order)
//!
//! 1. Build with [`ControlCore::default`]; before the first full state
//!    arrives, tell it this node's own host prefixes
//!    ([`ControlCore::set_own_prefixes`]: routes for them stay the node's)
//!    and, on the linux backend, the aggregates the kernel routes into the
//!    mesh ([`ControlCore::set_kernel_rule`]).
//! 2. Feed every [`ControllerEvent`] in the order the session produced it
//!    to [`ControlCore::handle_event`] (the [`super::Session`] core turns
//!    frames into events; `now` is only passed on to the engine).
//! 3. After each call drain [`ControlCore::poll_change`] until `None` and
//!    hand each change to [`crate::core::Engine::apply`] in order; then
//!    [`ControlCore::poll_kernel_routes`] for the kernel routes into the TUN
//!    device, when they changed.
//!
//! A delta becomes exactly the changes it implies: a one-route
//! `RoutesDelta` is one [`EngineChange::SetRoute`] or
//! [`EngineChange::RemoveRoute`], a new link is one
//! [`EngineChange::UpsertLink`] (plus a `SetRoute` for each route that
//! names it as a next hop, so routes that arrived before their link pick it
//! up). The full sets that follow a Welcome are staged until both are
//! complete, then diffed against what was applied before: stale links and
//! routes are removed, new and changed ones set, unchanged ones left alone
//! (except those naming a link the full state brings: the engine resolves
//! next hops to links only when a route is set, so they are set again; and
//! a route for a prefix that stopped being one of our client prefixes,
//! which the engine dropped with it).
//! That full reconcile happens on start-up and reconnect only. Nothing here
//! clones the whole state or walks the whole table on a delta.
//!
//! While the controller is away the last state stays (headless mode): a
//! disconnect only drops a half-received full state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use freimesh_proto::control::{LinkAssignment, LinkChange, LinkEvent, Route, RouteChange, Welcome};
use freimesh_proto::segment::Segment;
use freimesh_proto::{NodeId, PublicKeyBytes};
use ipnet::IpNet;

use super::ControllerEvent;
use crate::core::liveness::DownCause;
use crate::core::{EngineChange, Failover, LinkSpec};

/// Engine changes whose room the queue keeps once drained. A full table
/// after a Welcome queues a change per route (thousands in a city mesh);
/// keeping that room for good would cost every node memory in proportion
/// to the mesh, while deltas need a few dozen.
const RETAINED_CHANGES: usize = 64;

/// Which prefixes the kernel must send into the TUN device beyond the
/// mesh's aggregates: other buildings' LANs and standard WireGuard sites
/// (intranet routes). Overlay addresses and client subnets lie inside the
/// aggregates the Welcome named; default routes never go into the main
/// table (public clients reach them through their own policy table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelRouteRule {
    /// The aggregates (`Welcome.mesh_prefixes` or `linux.kernel_routes`).
    pub base: Vec<IpNet>,
    /// This node's own prefixes: its LANs stay on their interfaces.
    pub local: Vec<IpNet>,
}

impl KernelRouteRule {
    /// The kernel routes implied by the controller's intranet route
    /// prefixes (in order), base first.
    pub fn wanted<'a>(&self, intranet: impl IntoIterator<Item = &'a IpNet>) -> Vec<IpNet> {
        let covered = |p: &IpNet| {
            self.base
                .iter()
                .chain(&self.local)
                .any(|b| b.contains(p) || p.contains(b))
        };
        let mut routes = self.base.clone();
        routes.extend(intranet.into_iter().copied().filter(|p| !covered(p)));
        routes
    }
}

/// A failover as the controller hears of it; `took` is how long the engine
/// step that made it lasted.
pub fn link_event(failover: &Failover, took: Duration) -> LinkEvent {
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

/// The link the engine should hold for a controller assignment.
fn link_spec(assignment: &LinkAssignment) -> LinkSpec {
    LinkSpec {
        name: NodeId::of(&assignment.peer).to_string(),
        peer: assignment.peer,
        endpoint: assignment.endpoint,
        keepalive: None,
        allowed_sources: assignment.allowed_sources.clone(),
        profile: assignment.profile.clone(),
    }
}

/// The full sets after a Welcome, as far as they have arrived.
#[derive(Debug, Default)]
struct Resync {
    links: Option<BTreeMap<PublicKeyBytes, LinkAssignment>>,
    routes: Option<BTreeMap<IpNet, Route>>,
}

/// The controller-given state and the changes it still has to hand out;
/// see the module docs for the contract.
#[derive(Debug, Default)]
pub struct ControlCore {
    own: Vec<IpNet>,
    kernel_rule: Option<KernelRouteRule>,
    welcome: Option<Welcome>,
    /// Links as applied to the engine.
    links: BTreeMap<PublicKeyBytes, LinkAssignment>,
    /// Routes as the controller gave them (those for our own prefixes are
    /// kept here but never applied).
    routes: BTreeMap<IpNet, Route>,
    /// For each neighbour, the routes naming it as a next hop.
    routes_via: BTreeMap<PublicKeyBytes, BTreeSet<IpNet>>,
    /// Intranet route prefixes: what the kernel routes follow.
    intranet: BTreeSet<IpNet>,
    /// Client prefixes as applied to the engine.
    client_prefixes: Vec<IpNet>,
    resync: Option<Resync>,
    changes: VecDeque<EngineChange>,
    kernel_routes: Option<Vec<IpNet>>,
    kernel_routes_dirty: bool,
    /// The control exits the controller named last (v6): overlay relays
    /// to dial when the underlay has no route to the controller.
    control_exits: Vec<std::net::SocketAddr>,
    /// The exit gateway the controller named last (v7), for respondd.
    /// Not in the state file: it only labels the node on maps, and after
    /// a restart the controller names it again right after the Welcome
    /// (until then respondd leaves `statistics.gateway` out rather than
    /// show a gateway that may have changed while the agent was down).
    exit_gateway: Option<PublicKeyBytes>,
}

impl ControlCore {
    /// This node's own host prefixes: controller routes for them are never
    /// applied (the engine delivers them here).
    pub fn set_own_prefixes(&mut self, own: Vec<IpNet>) {
        self.own = own;
    }

    /// Makes the core compute the kernel routes into the TUN device.
    pub fn set_kernel_rule(&mut self, rule: KernelRouteRule) {
        self.kernel_rule = Some(rule);
        self.kernel_routes_dirty = true;
    }

    /// The last Welcome, if any.
    pub fn welcome(&self) -> Option<&Welcome> {
        self.welcome.as_ref()
    }

    /// The control exits the controller named last (kept across
    /// disconnects: they are how a router without an underlay route gets
    /// back to the controller).
    pub fn control_exits(&self) -> &[std::net::SocketAddr] {
        &self.control_exits
    }

    /// The exit gateway the controller named last (kept across
    /// disconnects, like the routes it describes).
    pub fn exit_gateway(&self) -> Option<PublicKeyBytes> {
        self.exit_gateway
    }

    /// The links as applied, by neighbour key.
    pub fn links(&self) -> &BTreeMap<PublicKeyBytes, LinkAssignment> {
        &self.links
    }

    /// The routes as the controller gave them, by prefix.
    pub fn routes(&self) -> &BTreeMap<IpNet, Route> {
        &self.routes
    }

    /// Whether a full state is being received (after a Welcome).
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// Folds one event in; queues the engine changes it implies.
    pub fn handle_event(&mut self, event: &ControllerEvent, _now: Instant) {
        match event {
            ControllerEvent::Welcome(welcome) => {
                self.welcome = Some(welcome.clone());
                self.resync = Some(Resync::default());
            }
            ControllerEvent::Links(links) => {
                let links = links.iter().map(|l| (l.peer, l.clone())).collect();
                match &mut self.resync {
                    Some(resync) => {
                        resync.links = Some(links);
                        self.finish_resync();
                    }
                    None => self.reconcile_links(links),
                }
            }
            ControllerEvent::Routes(routes) => {
                let routes = routes
                    .iter()
                    .map(|r| (r.prefix.trunc(), r.clone()))
                    .collect();
                match &mut self.resync {
                    Some(resync) => {
                        resync.routes = Some(routes);
                        self.finish_resync();
                    }
                    None => self.reconcile_routes(routes, &BTreeSet::new()),
                }
            }
            ControllerEvent::LinksDelta(changes) => {
                if let Some(Resync {
                    links: Some(staged),
                    ..
                }) = &mut self.resync
                {
                    for change in changes {
                        match change {
                            LinkChange::Add(l) => staged.insert(l.peer, l.clone()),
                            LinkChange::Remove(peer) => staged.remove(peer),
                        };
                    }
                    return;
                }
                for change in changes {
                    match change {
                        LinkChange::Add(l) => self.upsert_link(l),
                        LinkChange::Remove(peer) => self.retire_link(peer),
                    }
                }
            }
            ControllerEvent::RoutesDelta(changes) => {
                if let Some(Resync {
                    routes: Some(staged),
                    ..
                }) = &mut self.resync
                {
                    for change in changes {
                        match change {
                            RouteChange::Set(r) => staged.insert(r.prefix.trunc(), r.clone()),
                            RouteChange::Remove(prefix) => staged.remove(&prefix.trunc()),
                        };
                    }
                    return;
                }
                for change in changes {
                    match change {
                        RouteChange::Set(r) => self.set_route(r.clone()),
                        RouteChange::Remove(prefix) => self.remove_route(prefix.trunc()),
                    }
                }
            }
            // A half-received full state is useless: the next Welcome
            // brings a new one. What was applied stays (headless mode).
            ControllerEvent::Disconnected { .. } => self.resync = None,
            ControllerEvent::ControlExits(exits) => self.control_exits.clone_from(exits),
            ControllerEvent::ExitGateway(gateway) => self.exit_gateway = *gateway,
            // Membership is folded beside this core (`apply_to_membership`).
            ControllerEvent::Pending { .. }
            | ControllerEvent::Refused(_)
            | ControllerEvent::Credential(_)
            | ControllerEvent::Revocations(_) => {}
        }
    }

    /// The next engine change, oldest first.
    pub fn poll_change(&mut self) -> Option<EngineChange> {
        let change = self.changes.pop_front();
        if change.is_none() && self.changes.capacity() > RETAINED_CHANGES {
            self.changes = VecDeque::new();
        }
        change
    }

    /// The kernel routes into the TUN device, when they changed since the
    /// last call (only with a [`KernelRouteRule`]).
    pub fn poll_kernel_routes(&mut self) -> Option<Vec<IpNet>> {
        if !std::mem::take(&mut self.kernel_routes_dirty) {
            return None;
        }
        let rule = self.kernel_rule.as_ref()?;
        let wanted = rule.wanted(&self.intranet);
        if self.kernel_routes.as_ref() == Some(&wanted) {
            return None;
        }
        self.kernel_routes = Some(wanted.clone());
        Some(wanted)
    }

    fn push(&mut self, change: EngineChange) {
        tracing::debug!(%change, "engine change from the controller");
        self.changes.push_back(change);
    }

    /// Whether `prefix` is this node's own (an overlay address or a client
    /// prefix): the engine delivers it here, whatever the controller says.
    fn ours(&self, prefix: &IpNet) -> bool {
        let same = |o: &IpNet| o.trunc() == *prefix;
        self.own.iter().any(same) || self.client_prefixes.iter().any(same)
    }

    fn finish_resync(&mut self) {
        let complete = self
            .resync
            .as_ref()
            .is_some_and(|r| r.links.is_some() && r.routes.is_some());
        if !complete {
            return;
        }
        let Some(Resync {
            links: Some(links),
            routes: Some(routes),
        }) = self.resync.take()
        else {
            return;
        };
        let clients = self
            .welcome
            .as_ref()
            .map(|w| w.client_prefixes.clone())
            .unwrap_or_default();
        if clients != self.client_prefixes {
            self.set_client_prefixes(clients);
        }
        // New links before the routes that use them; retired links last,
        // after the routes through them have moved.
        let added: BTreeSet<PublicKeyBytes> = links
            .keys()
            .filter(|peer| !self.links.contains_key(*peer))
            .copied()
            .collect();
        let stale: Vec<PublicKeyBytes> = self
            .links
            .keys()
            .filter(|peer| !links.contains_key(*peer))
            .copied()
            .collect();
        for (peer, assignment) in &links {
            if self.links.get(peer) != Some(assignment) {
                self.push(EngineChange::UpsertLink(link_spec(assignment)));
            }
        }
        self.links.extend(links);
        self.reconcile_routes(routes, &added);
        for peer in stale {
            self.retire_link(&peer);
        }
    }

    /// Replaces the links with `links` (a full set outside a resync).
    fn reconcile_links(&mut self, links: BTreeMap<PublicKeyBytes, LinkAssignment>) {
        let stale: Vec<PublicKeyBytes> = self
            .links
            .keys()
            .filter(|peer| !links.contains_key(*peer))
            .copied()
            .collect();
        for assignment in links.values() {
            self.upsert_link(assignment);
        }
        for peer in stale {
            self.retire_link(&peer);
        }
    }

    /// Replaces the routes with `routes`, applying only what differs, plus
    /// the unchanged routes through a link that just came (`added`).
    fn reconcile_routes(
        &mut self,
        routes: BTreeMap<IpNet, Route>,
        added: &BTreeSet<PublicKeyBytes>,
    ) {
        let stale: Vec<IpNet> = self
            .routes
            .keys()
            .filter(|p| !routes.contains_key(*p))
            .copied()
            .collect();
        for prefix in stale {
            self.remove_route(prefix);
        }
        for (prefix, route) in routes {
            if self.routes.get(&prefix) != Some(&route) {
                self.set_route(route);
            } else if route.via.iter().any(|v| added.contains(v)) && !self.ours(&prefix) {
                // Unchanged, but the engine resolved its next hops to links
                // when it was set, before this link existed.
                self.push(EngineChange::SetRoute(route));
            }
        }
    }

    /// Takes the Welcome's client prefixes and re-examines the routes for
    /// the prefixes that stopped or started being ours: the engine replaces
    /// the route for a prefix that is now ours with its own delivery route
    /// and drops it for one that no longer is, so the controller's route
    /// for the latter goes in again. Only those prefixes are looked at,
    /// not the whole table.
    fn set_client_prefixes(&mut self, clients: Vec<IpNet>) {
        let old: BTreeSet<IpNet> = self.client_prefixes.iter().map(IpNet::trunc).collect();
        let new: BTreeSet<IpNet> = clients.iter().map(IpNet::trunc).collect();
        let was_ours: Vec<(IpNet, bool)> = old
            .symmetric_difference(&new)
            .map(|prefix| (*prefix, self.ours(prefix)))
            .collect();
        self.client_prefixes = clients.clone();
        self.push(EngineChange::SetClientPrefixes(clients));
        for (prefix, was_ours) in was_ours {
            let Some(route) = self.routes.get(&prefix).cloned() else {
                continue;
            };
            // A prefix that became ours needs nothing more: the engine's
            // own delivery route replaced the controller's when it took the
            // client prefixes (removing it now would remove that).
            if was_ours && !self.ours(&prefix) {
                self.push(EngineChange::SetRoute(route));
            }
        }
    }

    fn upsert_link(&mut self, assignment: &LinkAssignment) {
        let previous = self.links.insert(assignment.peer, assignment.clone());
        if previous.as_ref() == Some(assignment) {
            return;
        }
        self.push(EngineChange::UpsertLink(link_spec(assignment)));
        if previous.is_none() {
            // Routes that named this neighbour before its link existed
            // were applied without it.
            let waiting: Vec<Route> = self
                .routes_via
                .get(&assignment.peer)
                .into_iter()
                .flatten()
                .filter_map(|p| self.routes.get(p))
                .filter(|r| !self.ours(&r.prefix.trunc()))
                .cloned()
                .collect();
            for route in waiting {
                self.push(EngineChange::SetRoute(route));
            }
        }
    }

    fn retire_link(&mut self, peer: &PublicKeyBytes) {
        if self.links.remove(peer).is_some() {
            self.push(EngineChange::RetireLink(*peer));
        }
    }

    fn set_route(&mut self, route: Route) {
        let prefix = route.prefix.trunc();
        if let Some(old) = self.routes.get(&prefix) {
            if *old == route {
                return;
            }
            self.unindex(prefix);
        }
        for peer in &route.via {
            self.routes_via.entry(*peer).or_default().insert(prefix);
        }
        self.track_intranet(prefix, route.segment == Segment::Intranet);
        if !self.ours(&prefix) {
            self.push(EngineChange::SetRoute(route.clone()));
        }
        self.routes.insert(prefix, route);
    }

    fn remove_route(&mut self, prefix: IpNet) {
        if !self.routes.contains_key(&prefix) {
            return;
        }
        self.unindex(prefix);
        self.routes.remove(&prefix);
        self.track_intranet(prefix, false);
        if !self.ours(&prefix) {
            self.push(EngineChange::RemoveRoute(prefix));
        }
    }

    fn unindex(&mut self, prefix: IpNet) {
        let Some(old) = self.routes.get(&prefix) else {
            return;
        };
        for peer in &old.via {
            if let Some(set) = self.routes_via.get_mut(peer) {
                set.remove(&prefix);
                if set.is_empty() {
                    self.routes_via.remove(peer);
                }
            }
        }
    }

    fn track_intranet(&mut self, prefix: IpNet, intranet: bool) {
        let changed = if intranet {
            self.intranet.insert(prefix)
        } else {
            self.intranet.remove(&prefix)
        };
        self.kernel_routes_dirty |= changed;
    }
}

#[cfg(test)]
mod tests;
