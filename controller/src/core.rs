//! The controller's decision core: sans-IO, no sockets, no SQLite, no clock.
//!
//! It mirrors the registry (nodes, approved prefixes, links) and the
//! [`Router`], remembers what each connected node was last sent, and turns
//! changes into frames for exactly the nodes they concern.
//!
//! Contract, in the order the I/O shell calls it:
//!
//! 1. [`Controller::new`] with the registry as the store loaded it.
//! 2. For a new connection: [`plan_hello`] decides what the Hello leads to
//!    ([`HelloPlan`]); the shell commits the plan's store writes, then
//!    [`Controller::upsert_node`] with the stored record and, for a welcome,
//!    [`Controller::handle_connect`], which queues Welcome and the full
//!    links and routes.
//! 3. For a Report: [`Controller::plan_report`] says which link rows change;
//!    the shell commits them, then [`Controller::apply_links`] queues deltas.
//! 4. After the CLI changed the database: [`Controller::handle_registry`]
//!    with a fresh snapshot; revoked nodes get an Error and a close. After
//!    the admin API committed a drain or a revocation:
//!    [`Controller::set_drained`] / [`Controller::revoke`], which touch only
//!    the nodes concerned.
//! 5. A gateway's uplink report: [`Controller::handle_uplink`]. Sites
//!    from the store: [`Controller::load_sites`] (at start and whenever
//!    the registry changed).
//! 6. On the shell's periodic tick: [`Controller::handle_upstreams_tick`]
//!    with the shell's clock (route upstreams, batched).
//! 7. After each step, drain [`Controller::poll_transmit`] until `None`.
//!
//! [`Controller::recomputed_routes`] recomputes every route from scratch,
//! for checks that the incremental result is right.
//!
//! Node ids from the store are used as router indices directly: they are
//! dense (SQLite's rowids count up from 1) and never reused; index 0 is
//! the internet (`plan.rs`).

mod claims;
mod enrol;
mod plan;
pub mod quota;
mod sent;
mod sync;
mod upstreams;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use freimesh_proto::control::{Candidate, ControllerMsg, ErrorCode, ErrorMsg, Report, Welcome};
use freimesh_proto::credential::SigningKeyBytes;
use freimesh_proto::{NodeId, PublicKeyBytes};
use ipnet::IpNet;

use crate::records::{LinkRecord, MeshSettings, NodeRecord, NodeState, SiteRecord};
use crate::routing::{LinkCost, Router, Upstreams, metric_of};

pub use claims::{DISPUTE_RTT_MIN_DIFF_US, DISPUTE_RTT_RATIO, Dispute};
pub use enrol::{HelloPlan, NewPending, RefreshNode, RolesRequest, plan_hello};
pub use plan::{Hop, INTERNET, Planned, SITE_PROFILE, UPLINK_METRIC, default_routes};
pub use upstreams::{MAX_UPSTREAM_NODES, UPSTREAMS_REFRESH_MS};

/// The metric of a link nobody has measured yet: a 10 ms round trip, so a
/// measured fast link wins over it but it still carries traffic.
pub const UNMEASURED_RTT_US: u32 = 10_000;
/// The link profile assigned until operators can choose per link.
pub const DEFAULT_PROFILE: &str = "default";

/// What the shell should do for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Frame(ControllerMsg),
    /// Close the connection after the frames queued before this.
    Close,
}

/// What the registry says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Unknown,
    Pending(u32),
    Active(u32),
    Revoked(u32),
}

use sent::{RouteEntry, Sent};

/// The decision core; see the module docs for the calling contract.
#[derive(Debug)]
pub struct Controller {
    settings: MeshSettings,
    nodes: BTreeMap<u32, NodeRecord>,
    by_key: BTreeMap<PublicKeyBytes, u32>,
    prefixes: BTreeMap<u32, Vec<IpNet>>,
    links: BTreeMap<(u32, u32), LinkRecord>,
    /// Where `from` reported it reaches `to`: `(from, to) -> endpoint`.
    seen: BTreeMap<(u32, u32), SocketAddr>,
    /// What each node claimed about each neighbour (`claims.rs`).
    claims: claims::Claims,
    /// Measurement disputes that started, for the shell to log and raise.
    disputes: VecDeque<Dispute>,
    router: Router,
    /// Per directed link, the sources whose traffic may cross it over
    /// primaries and alternates: sent with each route as its upstreams,
    /// for the agents' feasible-source rule. Recomputed by
    /// [`Controller::handle_upstreams_tick`] once next hops moved.
    upstreams: Upstreams,
    /// Next hops moved since the upstreams were computed.
    upstreams_stale: bool,
    /// When the upstreams were last computed (the shell's clock).
    upstreams_at_ms: Option<i64>,
    /// Standard WireGuard sites by name, and their overlay addresses.
    sites: BTreeMap<String, SiteRecord>,
    site_addresses: BTreeSet<IpNet>,
    /// Gateways' last uplink reports (absent = not reported = up).
    uplinks: BTreeMap<u32, bool>,
    sessions: BTreeMap<u32, Sent>,
    outbox: VecDeque<(u32, Outgoing)>,
    /// The public half of the controller's signing key, named in every
    /// Welcome (the hub sets it from the store before the first one).
    signing_key: SigningKeyBytes,
}

/// One route of a node toward another node, as the router computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoute {
    pub dst: u32,
    /// Next hops, primary first, then the loop-free alternates.
    pub via: Vec<u32>,
    /// The distance along the primary path.
    pub distance: Option<u32>,
}

/// Node `id`'s routes in `router`: per destination node, next hops
/// (primary first) and the distance along the primary path.
fn routes_in(router: &Router, id: u32) -> Vec<NodeRoute> {
    router
        .routes(id)
        .filter(|(dst, _)| *dst != INTERNET)
        .map(|(dst, hops)| {
            let via = std::iter::once(hops.primary)
                .chain(hops.alternates.iter().copied())
                .collect();
            NodeRoute {
                dst,
                via,
                distance: router.distance(id, dst),
            }
        })
        .collect()
}

fn cost(l: &LinkRecord) -> LinkCost {
    LinkCost {
        rtt_us: l.rtt_us.unwrap_or(UNMEASURED_RTT_US),
        loss_ppm: l.loss_ppm.unwrap_or(0),
        override_cost: l.override_cost,
    }
}

impl Controller {
    pub fn new(
        settings: MeshSettings,
        nodes: Vec<NodeRecord>,
        prefixes: Vec<(u32, IpNet)>,
        links: Vec<LinkRecord>,
    ) -> Self {
        let mut core = Self {
            settings,
            nodes: BTreeMap::new(),
            by_key: BTreeMap::new(),
            prefixes: BTreeMap::new(),
            links: BTreeMap::new(),
            seen: BTreeMap::new(),
            claims: claims::Claims::default(),
            disputes: VecDeque::new(),
            router: Router::new(),
            upstreams: Upstreams::default(),
            upstreams_stale: false,
            upstreams_at_ms: None,
            sites: BTreeMap::new(),
            site_addresses: BTreeSet::new(),
            uplinks: BTreeMap::new(),
            sessions: BTreeMap::new(),
            outbox: VecDeque::new(),
            signing_key: SigningKeyBytes([0; 32]),
        };
        core.load(nodes, prefixes, links);
        core.router.compute_all();
        core.refresh_upstreams();
        core
    }

    /// Applies a registry snapshot to the mirror and the router (no frames).
    fn load(
        &mut self,
        nodes: Vec<NodeRecord>,
        prefixes: Vec<(u32, IpNet)>,
        links: Vec<LinkRecord>,
    ) {
        let old_active: BTreeSet<u32> = self.active_ids().collect();
        self.by_key = nodes.iter().map(|n| (n.public_key, n.id)).collect();
        self.nodes = nodes.into_iter().map(|n| (n.id, n)).collect();
        let new_active: BTreeSet<u32> = self.active_ids().collect();
        for gone in old_active.difference(&new_active) {
            self.router.remove_node(*gone);
        }
        for id in &new_active {
            if !old_active.contains(id) {
                self.router.add_node(*id);
            }
            self.router.set_drained(*id, self.nodes[id].drained);
        }
        self.prefixes.clear();
        for (id, p) in prefixes {
            self.prefixes.entry(id).or_default().push(p);
        }
        let new_links: BTreeMap<(u32, u32), LinkRecord> = links
            .into_iter()
            .filter(|l| new_active.contains(&l.a) && new_active.contains(&l.b))
            .map(|l| ((l.a, l.b), l))
            .collect();
        for (a, b) in self.links.keys() {
            if !new_links.contains_key(&(*a, *b))
                && new_active.contains(a)
                && new_active.contains(b)
            {
                self.router.remove_link(*a, *b);
            }
        }
        for l in new_links.values() {
            if self.links.get(&(l.a, l.b)) != Some(l) {
                self.set_router_link(l);
            }
        }
        self.links = new_links;
        self.claims.retain_nodes(|id| new_active.contains(&id));
        self.take_up_waiting_claims();
        let ids: Vec<u32> = self.nodes.keys().copied().collect();
        for id in ids {
            self.sync_uplink(id);
        }
    }

    fn set_router_link(&mut self, l: &LinkRecord) {
        if l.up {
            self.router.set_link(l.a, l.b, metric_of(&cost(l)));
        } else {
            self.router.remove_link(l.a, l.b);
        }
    }

    fn active_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| n.id)
    }

    pub fn settings(&self) -> &MeshSettings {
        &self.settings
    }

    /// The signing key every Welcome names from now on.
    pub fn set_signing_key(&mut self, key: SigningKeyBytes) {
        self.signing_key = key;
    }

    pub fn lookup(&self, key: &PublicKeyBytes) -> KeyStatus {
        match self.by_key.get(key).and_then(|id| self.nodes.get(id)) {
            None => KeyStatus::Unknown,
            Some(n) => match n.state {
                NodeState::Pending => KeyStatus::Pending(n.id),
                NodeState::Active => KeyStatus::Active(n.id),
                NodeState::Revoked => KeyStatus::Revoked(n.id),
            },
        }
    }

    /// The first of `announced` not approved for node `id`, if any.
    pub fn unapproved_prefix(&self, id: u32, announced: &[IpNet]) -> Option<IpNet> {
        let approved = self.prefixes.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        announced
            .iter()
            .find(|p| !approved.contains(&p.trunc()))
            .copied()
    }

    /// Records a node the shell just enrolled, approved or updated.
    pub fn upsert_node(&mut self, rec: NodeRecord, prefixes: Vec<IpNet>) {
        let id = rec.id;
        let was_active = self
            .nodes
            .get(&id)
            .is_some_and(|n| n.state == NodeState::Active);
        let became_active = rec.state == NodeState::Active && !was_active;
        if became_active {
            self.router.add_node(id);
        }
        // A new node's overlay addresses reach the others through the
        // router's deltas once it has links; only client prefixes go to
        // every node at once.
        let changed_routes = match self.nodes.get(&id) {
            None => rec.public_wifi || !rec.client_prefixes.is_empty(),
            Some(old) => {
                old.public_wifi != rec.public_wifi || old.client_prefixes != rec.client_prefixes
            }
        };
        self.by_key.insert(rec.public_key, id);
        self.nodes.insert(id, rec);
        if !prefixes.is_empty() {
            self.prefixes.insert(id, prefixes);
        }
        if became_active {
            self.take_up_waiting_claims();
        }
        self.sync_uplink(id);
        // Its neighbours hold its endpoint in their link assignments.
        let mut touched: BTreeSet<u32> = self.neighbours(id).collect();
        if changed_routes {
            // Its client prefixes appear or go on every node.
            touched.extend(self.sessions.keys().copied());
        }
        self.update_and_sync(touched);
    }

    /// Runs the router's update and syncs `touched` in full, plus every
    /// node whose routes it changed: those only for the destinations that
    /// moved (a link change in a meshed city moves some routes of most
    /// nodes; rebuilding their whole tables would cost nodes ×
    /// destinations). A node whose route to the internet moved is synced
    /// in full, and so is every gateway after every change: a gateway's
    /// default-route alternates depend on its neighbours' distances and
    /// drains, and a link's new cost or a drain changes those without
    /// moving any next hop, so the router reports no delta for them (only
    /// differences go out).
    fn update_and_sync(&mut self, mut touched: BTreeSet<u32>) {
        let moved = self.route_moves();
        touched.extend(self.gateways());
        self.sync_moved(touched, moved);
        self.sync_exit_gateways();
    }

    /// Syncs `touched` in full and every other node only for the
    /// destinations in `moved` (a node whose route to the internet moved
    /// in full too).
    fn sync_moved(&mut self, mut touched: BTreeSet<u32>, moved: BTreeMap<u32, BTreeSet<u32>>) {
        let mut partial = Vec::new();
        for (id, dsts) in moved {
            if id == INTERNET || touched.contains(&id) {
                continue;
            }
            if dsts.contains(&INTERNET) {
                touched.insert(id);
            } else {
                partial.push((id, dsts));
            }
        }
        self.sync(&touched);
        for (id, dsts) in partial {
            self.sync_destinations(id, &dsts);
        }
    }

    /// Runs the incremental route update; returns the nodes whose routes
    /// changed, and the gateways (see [`Self::update_and_sync`]).
    fn update_routes(&mut self) -> BTreeSet<u32> {
        let mut touched: BTreeSet<u32> = self.route_moves().into_keys().collect();
        touched.extend(self.gateways());
        touched.remove(&INTERNET);
        touched
    }

    /// Runs the incremental route update: per source node, the
    /// destinations whose next hops changed. The upstreams follow at the
    /// next [`Self::handle_upstreams_tick`].
    fn route_moves(&mut self) -> BTreeMap<u32, BTreeSet<u32>> {
        let moved: BTreeMap<u32, BTreeSet<u32>> = self
            .router
            .update()
            .into_iter()
            .map(|(id, deltas)| (id, deltas.iter().map(|d| d.dst()).collect()))
            .collect();
        self.upstreams_stale |= !moved.is_empty();
        moved
    }

    /// Nodes whose uplink edge is in the router.
    fn gateways(&self) -> Vec<u32> {
        self.nodes
            .keys()
            .copied()
            .filter(|id| self.uplink_wanted(*id))
            .collect()
    }

    /// Gateway `id` reported its uplink (checked against the far side).
    /// Returns whether that changed what the controller believed (unknown
    /// counts as up); default routes move at once if it did.
    pub fn handle_uplink(&mut self, id: u32, up: bool) -> bool {
        let before = self.uplinks.get(&id).copied().unwrap_or(true);
        self.uplinks.insert(id, up);
        if before == up {
            return false;
        }
        self.sync_uplink(id);
        self.update_and_sync(BTreeSet::from([id]));
        true
    }

    /// The gateway's last uplink report, `None` until it sent one.
    pub fn uplink(&self, id: u32) -> Option<bool> {
        self.uplinks.get(&id).copied()
    }

    /// Replaces the sites (from the store); the nodes they concern get
    /// their links and everyone the routes.
    pub fn load_sites(&mut self, sites: Vec<SiteRecord>) {
        let sites: BTreeMap<String, SiteRecord> =
            sites.into_iter().map(|s| (s.name.clone(), s)).collect();
        if sites == self.sites {
            return;
        }
        self.site_addresses = sites.values().map(|s| s.address).collect();
        self.sites = sites;
        let all = self.sessions.keys().copied().collect();
        self.sync(&all);
    }

    /// The sites, by name.
    pub fn sites(&self) -> &BTreeMap<String, SiteRecord> {
        &self.sites
    }

    fn neighbours(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        self.links
            .keys()
            .filter_map(move |(a, b)| match (*a == id, *b == id) {
                (true, _) => Some(*b),
                (_, true) => Some(*a),
                _ => None,
            })
    }

    /// A welcomed node connected: queue Welcome, then full links and routes.
    pub fn handle_connect(&mut self, id: u32) {
        let Some(node) = self.nodes.get(&id) else {
            return;
        };
        let welcome = ControllerMsg::Welcome(Welcome {
            node_id: NodeId::of(&node.public_key),
            addresses: node.addresses.clone(),
            mesh_prefixes: self.settings.mesh_prefixes(),
            client_prefixes: if node.public_wifi {
                node.client_prefixes.clone()
            } else {
                Vec::new()
            },
            signing_key: self.signing_key,
        });
        let routes = self.desired_routes(id);
        let sent = Sent {
            links: self.desired_links(id),
            routes: sent::digests(&routes),
            exit_gateway: self.exit_gateway_key(id),
        };
        self.push(id, Outgoing::Frame(welcome));
        let links = sent.links.values().cloned().collect();
        self.push(
            id,
            Outgoing::Frame(ControllerMsg::Links { links, last: true }),
        );
        let routes = routes
            .into_iter()
            .map(|(prefix, entry)| entry.into_route(prefix))
            .collect();
        self.push(
            id,
            Outgoing::Frame(ControllerMsg::Routes { routes, last: true }),
        );
        self.push(
            id,
            Outgoing::Frame(ControllerMsg::ExitGateway(sent.exit_gateway)),
        );
        self.sessions.insert(id, sent);
    }

    pub fn handle_disconnect(&mut self, id: u32) {
        self.sessions.remove(&id);
    }

    /// The link rows a report from node `id` creates or changes
    /// (`claims.rs`): a link appears only once both ends have reported each
    /// other, its RTT and loss are the larger of both ends' latest
    /// measurements, and it is down if either end says so. A one-sided
    /// claim returns nothing.
    pub fn plan_report(&mut self, id: u32, report: &Report) -> Vec<LinkRecord> {
        let peer_of = |key: &PublicKeyBytes| {
            self.by_key.get(key).copied().filter(|p| {
                *p != id
                    && self
                        .nodes
                        .get(p)
                        .is_some_and(|n| n.state == NodeState::Active)
            })
        };
        let own_key = self.nodes.get(&id).map(|n| n.public_key);
        let mut peers = BTreeSet::new();
        let mut measured = Vec::new();
        let mut waiting = BTreeSet::new();
        let mut endpoint_moved = false;
        for key in report
            .candidates
            .iter()
            .map(|c| &c.peer)
            .chain(report.links.iter().map(|m| &m.peer))
        {
            if peer_of(key).is_none() && Some(*key) != own_key {
                waiting.insert(*key);
            }
        }
        self.claims.wait_for(id, waiting);
        for Candidate { peer, endpoint } in &report.candidates {
            let Some(p) = peer_of(peer) else { continue };
            if let Some(ep) = endpoint {
                endpoint_moved |= self.seen.insert((id, p), *ep) != Some(*ep);
            }
            peers.insert(p);
        }
        for m in &report.links {
            let Some(p) = peer_of(&m.peer) else { continue };
            measured.push((p, claims::Measured::from(m)));
            peers.insert(p);
        }
        for p in &peers {
            self.claims.claim(id, *p);
        }
        for (p, m) in measured {
            self.claims.measure(id, p, m);
        }
        let mut out = Vec::new();
        for p in peers {
            let pair = (id.min(p), id.max(p));
            let stored = self.links.get(&pair);
            let Some(row) = self.claims.desired(id, p, stored) else {
                continue;
            };
            if stored != Some(&row) {
                out.push(row);
            }
            if let Some(d) = self.claims.check_dispute(id, p) {
                self.disputes.push_back(d);
            }
        }
        if endpoint_moved {
            // Where this node reaches a neighbour changed, but no link row
            // may change with it: send the node its links again now (only
            // differences go out).
            self.sync(&BTreeSet::from([id]));
        }
        out
    }

    /// Claims nodes made on keys that were no active node then and are now
    /// (a neighbour that enrolled or was approved after the report): they
    /// count from now on, so the link appears as soon as the new node
    /// reports its side.
    fn take_up_waiting_claims(&mut self) {
        let (by_key, nodes) = (&self.by_key, &self.nodes);
        self.claims.take_up_waiting(|key| {
            by_key
                .get(key)
                .copied()
                .filter(|p| nodes.get(p).is_some_and(|n| n.state == NodeState::Active))
        });
    }

    /// The next measurement dispute that started (two ends' RTTs of one
    /// link disagree beyond noise; the larger is used anyway).
    pub fn poll_dispute(&mut self) -> Option<Dispute> {
        self.disputes.pop_front()
    }

    /// Links whose two ends' RTTs disagree now.
    pub fn disputed_links(&self) -> &BTreeSet<(u32, u32)> {
        self.claims.disputed_links()
    }

    /// Applies link rows the shell has committed; queues deltas.
    pub fn apply_links(&mut self, links: &[LinkRecord]) {
        let mut touched = BTreeSet::new();
        for l in links {
            self.set_router_link(l);
            self.links.insert((l.a, l.b), *l);
            touched.insert(l.a);
            touched.insert(l.b);
        }
        self.update_and_sync(touched);
    }

    /// The registry changed under us (CLI: revoke, approve, prefixes, drain).
    pub fn handle_registry(
        &mut self,
        nodes: Vec<NodeRecord>,
        prefixes: Vec<(u32, IpNet)>,
        links: Vec<LinkRecord>,
    ) {
        self.load(nodes, prefixes, links);
        self.upstreams_stale |= !self.router.update().is_empty();
        let connected: Vec<u32> = self.sessions.keys().copied().collect();
        for id in connected {
            let state = self.nodes.get(&id).map(|n| n.state);
            if state != Some(NodeState::Active) {
                self.sessions.remove(&id);
                self.push_error(
                    id,
                    ErrorCode::Revoked,
                    "this node was revoked by the operator",
                );
            }
        }
        let all = self.sessions.keys().copied().collect();
        self.sync(&all);
    }

    /// The operator drained or undrained node `id` (the shell committed it):
    /// routes through it move at once.
    pub fn set_drained(&mut self, id: u32, drained: bool) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.drained = drained;
        if node.state == NodeState::Active {
            self.router.set_drained(id, drained);
        }
        // Gateways next to it offer it as a default-route alternate only
        // while it is not drained; every gateway is rechecked anyway.
        self.update_and_sync(BTreeSet::new());
    }

    /// The operator revoked node `id` (the shell committed it and deleted
    /// its links): it leaves the router, its neighbours drop their links to
    /// it, and its own connection gets an Error and a close.
    pub fn revoke(&mut self, id: u32) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let was_active = node.state == NodeState::Active;
        node.state = NodeState::Revoked;
        let mut touched: BTreeSet<u32> = self.neighbours(id).collect();
        self.links.retain(|(a, b), _| *a != id && *b != id);
        self.seen.retain(|(a, b), _| *a != id && *b != id);
        self.claims.forget(id);
        if was_active {
            self.router.remove_node(id);
        }
        touched.extend(self.update_routes());
        touched.remove(&id);
        if self.sessions.remove(&id).is_some() {
            self.push_error(
                id,
                ErrorCode::Revoked,
                "this node was revoked by the operator",
            );
        }
        self.sync(&touched);
    }

    /// Every node in the registry mirror, by id.
    pub fn nodes(&self) -> &BTreeMap<u32, NodeRecord> {
        &self.nodes
    }

    /// Every link, keyed by `(a, b)` with `a < b`.
    pub fn links(&self) -> &BTreeMap<(u32, u32), LinkRecord> {
        &self.links
    }

    /// The routing metric of a link (measured or the operator's override).
    pub fn link_metric(l: &LinkRecord) -> u32 {
        metric_of(&cost(l)).0
    }

    /// Approved extra prefixes of node `id`.
    pub fn prefixes_of(&self, id: u32) -> &[IpNet] {
        self.prefixes.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Node `id`'s routes as computed now: per destination node, next hops
    /// (primary first) and the distance along the primary path.
    pub fn routes_of(&self, id: u32) -> Vec<NodeRoute> {
        if self
            .nodes
            .get(&id)
            .is_none_or(|n| n.state != NodeState::Active)
        {
            return Vec::new();
        }
        routes_in(&self.router, id)
    }

    /// Every active node's routes computed from scratch (a fresh router
    /// over the links as the core has them, `n` Dijkstras), in the shape of
    /// [`Self::routes_of`]: what the incremental result must equal once
    /// the mesh has converged. For checks (tests, the simulator); costly.
    pub fn recomputed_routes(&self) -> BTreeMap<u32, Vec<NodeRoute>> {
        let mut router = Router::new();
        for id in self.active_ids() {
            router.add_node(id);
            router.set_drained(id, self.nodes[&id].drained);
        }
        for l in self.links.values().filter(|l| l.up) {
            router.set_link(l.a, l.b, metric_of(&cost(l)));
        }
        for id in self.active_ids().filter(|id| self.uplink_wanted(*id)) {
            if !router.contains(INTERNET) {
                router.add_node(INTERNET);
                router.set_drained(INTERNET, true);
            }
            router.set_link(id, INTERNET, crate::routing::Metric(UPLINK_METRIC));
        }
        router.compute_all();
        self.active_ids()
            .map(|id| (id, routes_in(&router, id)))
            .collect()
    }

    /// Connected nodes whose last sent routes differ from what a full
    /// planning gives now: empty when every delta arrived as it should.
    /// For checks (tests, the simulator); costly.
    pub fn stale_sessions(&self) -> Vec<u32> {
        self.sessions
            .iter()
            .filter(|(id, sent)| sent.routes != sent::digests(&self.desired_routes(**id)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Nodes with a welcomed session.
    pub fn connected(&self) -> impl Iterator<Item = u32> + '_ {
        self.sessions.keys().copied()
    }

    /// Queues an Error frame and a close for node `id`.
    pub fn push_error(&mut self, id: u32, code: ErrorCode, message: &str) {
        self.push(
            id,
            Outgoing::Frame(ControllerMsg::Error(ErrorMsg {
                code,
                message: message.to_owned(),
            })),
        );
        self.push(id, Outgoing::Close);
    }

    pub fn poll_transmit(&mut self) -> Option<(u32, Outgoing)> {
        self.outbox.pop_front()
    }

    fn push(&mut self, id: u32, out: Outgoing) {
        self.outbox.push_back((id, out));
    }

    fn key_of(&self, id: u32) -> Option<PublicKeyBytes> {
        self.nodes.get(&id).map(|n| n.public_key)
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
mod gateway_tests;

#[cfg(test)]
mod claims_tests;

#[cfg(test)]
mod delta_tests;
