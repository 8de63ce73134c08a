//! Read-only snapshots of the hub's state in the admin API's types.
//!
//! They run on the hub task, so they only copy: no SQL except for the event
//! history, no serialisation, no graph analysis (the API task does those
//! with the copies). 1,000 nodes cost well under a millisecond here.

use std::collections::BTreeMap;

use freimesh_proto::api;
use ipnet::IpNet;

use super::hub::HubCore;
use crate::core::{Controller, Hop};
use crate::hub_api::OpError;
use crate::store::{NodeRecord, NodeState};

/// Events a node detail shows.
const NODE_EVENTS: u32 = 50;
/// Failovers the overview shows.
const RECENT_FAILOVERS: u32 = 10;

fn state(s: NodeState) -> api::NodeState {
    match s {
        NodeState::Pending => api::NodeState::Pending,
        NodeState::Active => api::NodeState::Active,
        NodeState::Revoked => api::NodeState::Revoked,
    }
}

impl HubCore {
    /// `(links up, links total)` per node, counted once for a whole list.
    fn degrees(&self) -> BTreeMap<u32, (u32, u32)> {
        let mut out: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
        for l in self.core.links().values() {
            for end in [l.a, l.b] {
                let e = out.entry(end).or_default();
                e.1 += 1;
                if l.up {
                    e.0 += 1;
                }
            }
        }
        out
    }

    fn node_view(
        &self,
        n: &NodeRecord,
        degrees: &BTreeMap<u32, (u32, u32)>,
        now: i64,
    ) -> api::Node {
        let online = self.conns.contains_key(&n.id);
        let (links_up, links_total) = degrees.get(&n.id).copied().unwrap_or_default();
        api::Node {
            id: n.id,
            node_id: freimesh_proto::NodeId::of(&n.public_key).to_string(),
            public_key: n.public_key.to_base64(),
            hostname: n.hostname.clone(),
            state: state(n.state),
            online,
            drained: n.drained,
            gateway: n.gateway,
            addresses: n.addresses.clone(),
            prefixes: self.core.prefixes_of(n.id).to_vec(),
            endpoints: n.endpoints.clone(),
            links_up,
            links_total,
            last_seen_ms: if online {
                Some(now)
            } else {
                self.telemetry.last_seen.get(&n.id).copied()
            },
            public_wifi: n.public_wifi,
            client_prefixes: if n.public_wifi {
                n.client_prefixes.clone()
            } else {
                Vec::new()
            },
            clients: self.telemetry.clients.get(&n.id).copied(),
            roles_requested: api::Role::list(&n.requested_roles),
            roles_approved: api::Role::list(&n.approved_roles),
            telemetry: Box::new(self.telemetry.nodes.get(&n.id).cloned().unwrap_or_default()),
        }
    }

    pub(super) fn node(&self, id: u32) -> Result<api::Node, OpError> {
        let n = self.core.nodes().get(&id).ok_or(OpError::NoSuchNode(id))?;
        Ok(self.node_view(n, &self.degrees(), self.now_ms))
    }

    /// Every node, by id.
    pub(super) fn nodes(&self) -> Vec<api::Node> {
        let degrees = self.degrees();
        let now = self.now_ms;
        self.core
            .nodes()
            .values()
            .map(|n| self.node_view(n, &degrees, now))
            .collect()
    }

    fn hostname(&self, id: u32) -> String {
        self.core
            .nodes()
            .get(&id)
            .map(|n| n.hostname.clone())
            .unwrap_or_default()
    }

    /// What the meshviewer export needs: nodes, links and every node's
    /// default route (gateway and first hop): an online node's current
    /// one, an offline node's when it disconnected.
    pub(super) fn map(&self) -> crate::hub_api::MapSnapshot {
        let mut gateways = self.last_gateways.clone();
        for id in self.conns.keys() {
            match self.core.default_gateway(*id) {
                Some((gateway, nexthop)) => {
                    gateways.insert(
                        *id,
                        crate::export::meshviewer::DefaultGateway { gateway, nexthop },
                    );
                }
                None => {
                    gateways.remove(id);
                }
            }
        }
        crate::hub_api::MapSnapshot {
            nodes: self.nodes(),
            links: self.links(None),
            gateways,
        }
    }

    /// Links, by `(a, b)`; only those touching `only` if given.
    pub(super) fn links(&self, only: Option<u32>) -> Vec<api::Link> {
        self.core
            .links()
            .values()
            .filter(|l| only.is_none_or(|id| l.a == id || l.b == id))
            .map(|l| {
                let (rtt_history_us, loss_history_ppm) = self.telemetry.history(l.a, l.b);
                api::Link {
                    a: l.a,
                    b: l.b,
                    a_hostname: self.hostname(l.a),
                    b_hostname: self.hostname(l.b),
                    up: l.up,
                    rtt_us: l.rtt_us,
                    loss_ppm: l.loss_ppm,
                    metric: Controller::link_metric(l),
                    override_cost: l.override_cost,
                    rtt_history_us,
                    loss_history_ppm,
                }
            })
            .collect()
    }

    /// Node `id`'s routes: one per destination prefix, next hops primary first.
    pub(super) fn routes(&self, id: u32) -> Result<Vec<api::Route>, OpError> {
        if !self.core.nodes().contains_key(&id) {
            return Err(OpError::NoSuchNode(id));
        }
        let out = self
            .core
            .plan_routes(id)
            .into_iter()
            .map(|r| {
                let via = r
                    .via
                    .iter()
                    .map(|h| match (h, &r.site) {
                        (Hop::Node(n), _) => api::Hop {
                            node: *n,
                            hostname: self.hostname(*n),
                        },
                        // The site's tunnel ends on this node.
                        (Hop::Site(_), site) => api::Hop {
                            node: id,
                            hostname: format!("site {}", site.as_deref().unwrap_or("?")),
                        },
                    })
                    .collect();
                api::Route {
                    prefix: r.prefix,
                    destination: r.destination,
                    destination_hostname: match &r.site {
                        Some(name) => format!("site {name}"),
                        None => self.hostname(r.destination),
                    },
                    via,
                    metric: r.metric,
                    segment: r.segment,
                }
            })
            .collect();
        Ok(out)
    }

    /// Gateways, by node id.
    pub(super) fn gateways(&self) -> Vec<api::Gateway> {
        self.core
            .nodes()
            .values()
            .filter(|n| n.gateway && n.state == NodeState::Active)
            .map(|n| api::Gateway {
                node: n.id,
                hostname: n.hostname.clone(),
                online: self.conns.contains_key(&n.id),
                uplink_up: self.core.uplink(n.id),
            })
            .collect()
    }

    /// Standard WireGuard sites, by name.
    pub(super) fn sites(&self) -> Vec<api::Site> {
        self.core
            .sites()
            .values()
            .map(|s| api::Site {
                name: s.name.clone(),
                via: s.via,
                via_hostname: self.hostname(s.via),
                public_key: s.public_key.to_base64(),
                addresses: vec![s.address],
                prefixes: s.prefixes.clone(),
            })
            .collect()
    }

    pub(super) fn node_detail(&self, id: u32) -> Result<api::NodeDetail, OpError> {
        Ok(api::NodeDetail {
            node: self.node(id)?,
            links: self.links(Some(id)),
            routes: self.routes(id)?,
            traffic: self.telemetry.traffic(id),
            events: self.store.node_events(id, NODE_EVENTS)?,
        })
    }

    /// The overview without the alerts that need graph analysis (single
    /// points of failure): the API task adds those.
    pub(super) fn overview(
        &self,
        nodes: &[api::Node],
        links: &[api::Link],
    ) -> Result<api::Overview, OpError> {
        let settings = self.core.settings();
        let count = |f: &dyn Fn(&api::Node) -> bool| {
            u32::try_from(nodes.iter().filter(|n| f(n)).count()).unwrap_or(u32::MAX)
        };
        let mut alerts = Vec::new();
        for n in nodes {
            match n.state {
                api::NodeState::Active if !n.online => alerts.push(api::Alert {
                    severity: api::Severity::Warning,
                    kind: "node-offline".into(),
                    node: Some(n.id),
                    peer: None,
                    message: format!("node {} ({}) is not connected", n.id, n.hostname),
                }),
                api::NodeState::Pending => alerts.push(api::Alert {
                    severity: api::Severity::Info,
                    kind: "node-pending".into(),
                    node: Some(n.id),
                    peer: None,
                    message: format!("node {} ({}) waits for approval", n.id, n.hostname),
                }),
                _ => {}
            }
            let awaiting = n
                .roles_requested
                .iter()
                .filter(|r| !n.roles_approved.contains(r));
            for role in awaiting.filter(|_| n.state != api::NodeState::Revoked) {
                alerts.push(api::Alert {
                    severity: api::Severity::Info,
                    kind: "role-awaits-approval".into(),
                    node: Some(n.id),
                    peer: None,
                    message: format!(
                        "node {} ({}) requests the {role} role; it takes effect once approved (freimesh-controller role approve {} {role})",
                        n.id, n.hostname, n.id
                    ),
                });
            }
        }
        let gateways = self.gateways();
        for g in gateways.iter().filter(|g| g.uplink_up == Some(false)) {
            alerts.push(api::Alert {
                severity: api::Severity::Critical,
                kind: "gateway-down".into(),
                node: Some(g.node),
                peer: None,
                message: format!(
                    "the uplink of gateway {} ({}) is down: its traffic goes through other gateways",
                    g.node, g.hostname
                ),
            });
        }
        for l in links.iter().filter(|l| !l.up) {
            alerts.push(api::Alert {
                severity: api::Severity::Warning,
                kind: "link-down".into(),
                node: Some(l.a),
                peer: Some(l.b),
                message: format!(
                    "link {} ({}) – {} ({}) is down",
                    l.a, l.a_hostname, l.b, l.b_hostname
                ),
            });
        }
        Ok(api::Overview {
            mesh: api::MeshInfo {
                ula: IpNet::V6(settings.ula),
                ipv4: IpNet::V4(settings.ipv4),
                approval: settings.approval,
            },
            nodes_total: count(&|_| true),
            nodes_online: count(&|n| n.online),
            nodes_pending: count(&|n| n.state == api::NodeState::Pending),
            nodes_drained: count(&|n| n.drained),
            links_total: u32::try_from(links.len()).unwrap_or(u32::MAX),
            links_up: u32::try_from(links.iter().filter(|l| l.up).count()).unwrap_or(u32::MAX),
            gateways_total: u32::try_from(gateways.len()).unwrap_or(u32::MAX),
            gateways_up: u32::try_from(
                gateways
                    .iter()
                    .filter(|g| crate::export::metrics::gateway_is_up(g))
                    .count(),
            )
            .unwrap_or(u32::MAX),
            failovers_total: self.telemetry.failovers_total,
            alerts,
            recent_failovers: self.store.events_of_kind("failover", RECENT_FAILOVERS)?,
            controller: api::ControllerInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at_ms: self.started_at_ms,
                sessions: u32::try_from(self.conns.len()).unwrap_or(u32::MAX),
                last_computation_us: self.telemetry.last_computation_us,
            },
        })
    }

    pub(super) fn tokens(&self) -> Result<Vec<api::Token>, OpError> {
        Ok(self.store.tokens()?)
    }

    pub(super) fn events_since(&self, since: u64, limit: u32) -> Result<Vec<api::Event>, OpError> {
        Ok(self.store.events_since(since, limit)?)
    }

    pub(super) fn audit_since(&self, since: u64, limit: u32) -> Result<Vec<api::Event>, OpError> {
        Ok(self.store.audit_since(since, limit)?)
    }

    /// What `/metrics` renders, copied out of the hub.
    pub(super) fn metrics(&self) -> crate::hub_api::MetricsSnapshot {
        crate::hub_api::MetricsSnapshot {
            nodes: self.nodes(),
            links: self.links(None),
            gateways: self.gateways(),
            failovers: self.telemetry.failovers.clone(),
            computation: self.telemetry.computation.clone(),
            sessions: u32::try_from(self.conns.len()).unwrap_or(u32::MAX),
            events_total: self.events.last_seq(),
            started_at_ms: self.started_at_ms,
            bounded: crate::export::metrics::BoundedCounts {
                events_dropped: self.event_quota.dropped_total(),
                events_clamped: self.event_quota.clamped_total(),
                ..self.refused
            },
        }
    }
}
