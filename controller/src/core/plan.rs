//! What one node should hold, derived from the mirror and the router: its
//! links (neighbours and the standard WireGuard sites it terminates) and its
//! routes (node addresses, approved prefixes, public client prefixes, site
//! prefixes and the default routes), each with its segment.
//!
//! The internet is the router's node [`INTERNET`] (index 0: store ids start
//! at 1), linked to every gateway whose uplink is up and drained, so no path
//! between two nodes ever crosses it. A node's default route is then its
//! ordinary route toward [`INTERNET`]; only at a gateway is it special: its
//! own key first ("deliver here"), then alternates toward other gateways
//! that stay loop-free if its own uplink fails.

use std::collections::BTreeMap;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{LinkAssignment, MAX_ROUTE_UPSTREAMS};
use freimesh_proto::segment::Segment;
use ipnet::IpNet;

use super::{Controller, DEFAULT_PROFILE, RouteEntry};
use crate::records::NodeState;
use crate::routing::MAX_ALTERNATES;

/// The router index of the internet.
pub const INTERNET: u32 = 0;
/// The metric of a gateway's uplink edge: the smallest there is, so a
/// node's default route goes to the gateway nearest through the mesh.
pub const UPLINK_METRIC: u32 = 1;
/// The link profile of a standard WireGuard site.
pub const SITE_PROFILE: &str = "wireguard";

/// The default routes, one per address family.
pub fn default_routes() -> [IpNet; 2] {
    [
        IpNet::V4(ipnet::Ipv4Net::default()),
        IpNet::V6(ipnet::Ipv6Net::default()),
    ]
}

/// One next hop of a planned route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// A node (the planning node itself = deliver here).
    Node(u32),
    /// A standard WireGuard site this node terminates.
    Site(PublicKeyBytes),
}

/// A route as the controller plans it for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub prefix: IpNet,
    /// The node that owns the prefix: for a site its via node, for a
    /// default route the gateway the primary path ends at.
    pub destination: u32,
    /// The site's name when the prefix is a site's.
    pub site: Option<String>,
    pub via: Vec<Hop>,
    pub metric: Option<u32>,
    pub segment: Segment,
}

impl Controller {
    /// The routing domain of a prefix the controller routes (the shared
    /// design's table): node overlay addresses are infrastructure; public
    /// nodes' client prefixes public; the default routes internet; building
    /// and site prefixes and sites' overlay addresses intranet.
    pub fn segment_of(&self, prefix: &IpNet) -> Segment {
        if prefix.prefix_len() == 0 {
            return Segment::Internet;
        }
        if self.site_addresses.contains(prefix) {
            return Segment::Intranet;
        }
        match prefix {
            IpNet::V6(p) if self.settings.ula.contains(p) => {
                // Overlay hosts live in the ULA's first /64, client /64s
                // in the others (`store::clients`).
                let first = ipnet::Ipv6Net::new(self.settings.ula.network(), 64).ok();
                if first.is_some_and(|f| f.contains(p)) {
                    Segment::Infrastructure
                } else {
                    Segment::Public
                }
            }
            IpNet::V4(p) if self.settings.ipv4.contains(p) => Segment::Infrastructure,
            IpNet::V4(p) if self.settings.clients_ipv4.is_some_and(|c| c.contains(p)) => {
                Segment::Public
            }
            _ => Segment::Intranet,
        }
    }

    /// Is `id`'s uplink edge in the router: an active gateway whose uplink
    /// is up or not reported yet?
    pub(super) fn uplink_wanted(&self, id: u32) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.state == NodeState::Active && n.gateway)
            && self.uplinks.get(&id) != Some(&false)
    }

    /// Puts `id`'s uplink edge into the router or takes it out.
    pub(super) fn sync_uplink(&mut self, id: u32) {
        if self.uplink_wanted(id) {
            if !self.router.contains(INTERNET) {
                self.router.add_node(INTERNET);
                self.router.set_drained(INTERNET, true);
            }
            self.router
                .set_link(id, INTERNET, crate::routing::Metric(UPLINK_METRIC));
        } else {
            self.router.remove_link(id, INTERNET);
        }
    }

    /// At gateway `g`: neighbours that reach the internet without coming
    /// back through `g`, best first. `dist(n, inet) < dist(n, g) + uplink`
    /// means no shortest path of `n` uses `g`'s uplink, and then none uses
    /// `g` at all (RFC 5286's loop-free condition with `g`'s uplink as the
    /// protected link).
    fn gateway_alternates(&self, g: u32) -> Vec<u32> {
        let mut cands: Vec<(u32, u32)> = self
            .router
            .neighbours(g)
            .iter()
            .filter(|(n, _)| *n != INTERNET && !self.router.is_drained(*n))
            .filter_map(|&(n, m)| {
                let dn = self.router.distance(n, INTERNET)?;
                let dg = self.router.distance(n, g)?;
                (u64::from(dn) < u64::from(dg) + u64::from(UPLINK_METRIC))
                    .then_some((dn.saturating_add(m), n))
            })
            .collect();
        cands.sort_unstable();
        cands
            .into_iter()
            .take(MAX_ALTERNATES)
            .map(|c| c.1)
            .collect()
    }

    /// The gateway where `src`'s primary path to the internet ends.
    /// Node `id`'s current default route: the gateway it leaves the mesh
    /// through and its first hop there (itself on a gateway); `None`
    /// without one.
    pub fn default_gateway(&self, id: u32) -> Option<(u32, u32)> {
        if self
            .nodes
            .get(&id)
            .is_none_or(|n| n.state != NodeState::Active)
        {
            return None;
        }
        let hops = self.router.next_hops(id, INTERNET)?;
        let nexthop = if hops.primary == INTERNET {
            id
        } else {
            hops.primary
        };
        Some((self.exit_gateway(id)?, nexthop))
    }

    fn exit_gateway(&self, src: u32) -> Option<u32> {
        let mut at = src;
        for _ in 0..=self.nodes.len() {
            let hops = self.router.next_hops(at, INTERNET)?;
            if hops.primary == INTERNET {
                return Some(at);
            }
            at = hops.primary;
        }
        None
    }

    /// The routes toward node `dst`'s prefixes (and the sites behind it)
    /// over `via`.
    fn plan_to_node(&self, dst: u32, via: Vec<Hop>, metric: Option<u32>, out: &mut Vec<Planned>) {
        let Some(node) = self.nodes.get(&dst) else {
            return;
        };
        let clients = if node.public_wifi {
            node.client_prefixes.as_slice()
        } else {
            &[]
        };
        for prefix in node
            .addresses
            .iter()
            .chain(self.prefixes_of(dst))
            .chain(clients)
        {
            out.push(Planned {
                prefix: *prefix,
                destination: dst,
                site: None,
                via: via.clone(),
                metric,
                segment: self.segment_of(prefix),
            });
        }
        for site in self.sites.values().filter(|s| s.via == dst) {
            for prefix in std::iter::once(&site.address).chain(&site.prefixes) {
                out.push(Planned {
                    prefix: *prefix,
                    destination: dst,
                    site: Some(site.name.clone()),
                    via: via.clone(),
                    metric,
                    segment: Segment::Intranet,
                });
            }
        }
    }

    /// What node `id` should hold for the prefixes of node `dst` (and the
    /// sites behind it): an entry per prefix, `None` where it has no route.
    /// For an update that moved only `id`'s routes toward `dst`.
    pub(super) fn desired_routes_to(&self, id: u32, dst: u32) -> Vec<(IpNet, Option<RouteEntry>)> {
        // Every prefix toward `dst` (its sites' too) goes over the same
        // next hops: turn them into keys once, not once per prefix.
        // Unreachable: no keys, so every prefix maps to None.
        let hops: Vec<u32> = self
            .router
            .next_hops(id, dst)
            .map(|hops| {
                std::iter::once(hops.primary)
                    .chain(hops.alternates.iter().copied())
                    .collect()
            })
            .unwrap_or_default();
        let keys: Vec<PublicKeyBytes> = hops.iter().filter_map(|n| self.key_of(*n)).collect();
        let upstreams = self.upstream_keys(id, dst, &hops);
        let mut all = Vec::new();
        self.plan_to_node(dst, Vec::new(), self.router.distance(id, dst), &mut all);
        all.into_iter()
            .map(|r| {
                let entry = RouteEntry {
                    via: keys.clone(),
                    upstreams: upstreams.clone(),
                    segment: r.segment,
                };
                (r.prefix, (!keys.is_empty()).then_some(entry))
            })
            .collect()
    }

    /// The neighbours of node `id`, other than its next hops `via`,
    /// through which traffic from node `source` may arrive (repair paths,
    /// [`crate::routing::Upstreams`]), as keys in node order.
    fn upstream_keys(&self, id: u32, source: u32, via: &[u32]) -> Vec<PublicKeyBytes> {
        self.upstreams
            .senders(id, source)
            .filter(|n| !via.contains(n))
            .filter_map(|n| self.key_of(n))
            .take(MAX_ROUTE_UPSTREAMS)
            .collect()
    }

    /// Every route node `id` should hold, by prefix.
    pub fn plan_routes(&self, id: u32) -> Vec<Planned> {
        let mut out = Vec::new();
        if self
            .nodes
            .get(&id)
            .is_none_or(|n| n.state != NodeState::Active)
        {
            return out;
        }
        let nodes_of = |hops: &crate::routing::NextHops| -> Vec<Hop> {
            std::iter::once(hops.primary)
                .chain(hops.alternates.iter().copied())
                .map(Hop::Node)
                .collect()
        };
        for (dst, hops) in self.router.routes(id) {
            let metric = self.router.distance(id, dst);
            if dst == INTERNET {
                let via = if hops.primary == INTERNET {
                    std::iter::once(Hop::Node(id))
                        .chain(self.gateway_alternates(id).into_iter().map(Hop::Node))
                        .collect()
                } else {
                    nodes_of(&hops)
                };
                let destination = self.exit_gateway(id).unwrap_or(id);
                for prefix in default_routes() {
                    out.push(Planned {
                        prefix,
                        destination,
                        site: None,
                        via: via.clone(),
                        metric,
                        segment: Segment::Internet,
                    });
                }
                continue;
            }
            self.plan_to_node(dst, nodes_of(&hops), metric, &mut out);
        }
        for site in self.sites.values().filter(|s| s.via == id) {
            for prefix in std::iter::once(&site.address).chain(&site.prefixes) {
                out.push(Planned {
                    prefix: *prefix,
                    destination: id,
                    site: Some(site.name.clone()),
                    via: vec![Hop::Site(site.public_key)],
                    metric: Some(0),
                    segment: Segment::Intranet,
                });
            }
        }
        out
    }

    /// [`Self::plan_routes`] as the agent gets it: next hops as keys, and
    /// the upstreams of each route's sources (the internet's for the
    /// default routes; none for a site's own routes at the node it joins
    /// through: its link names its sources).
    pub(super) fn desired_routes(&self, id: u32) -> BTreeMap<IpNet, RouteEntry> {
        let mut out = BTreeMap::new();
        // A destination's prefixes come one after the other with the same
        // hops: look their keys up once.
        // (hops, source) → (next-hop keys, upstream keys)
        type Resolved = ((Vec<Hop>, u32), (Vec<PublicKeyBytes>, Vec<PublicKeyBytes>));
        let mut last: Option<Resolved> = None;
        for r in self.plan_routes(id) {
            let source = if r.prefix.prefix_len() == 0 {
                INTERNET
            } else {
                r.destination
            };
            let (via, upstreams) = match &last {
                Some(((hops, src), (keys, ups))) if *hops == r.via && *src == source => {
                    (keys.clone(), ups.clone())
                }
                _ => {
                    let keys: Vec<PublicKeyBytes> = r
                        .via
                        .iter()
                        .filter_map(|h| match h {
                            Hop::Node(n) => self.key_of(*n),
                            Hop::Site(k) => Some(*k),
                        })
                        .collect();
                    let nodes: Vec<u32> = r
                        .via
                        .iter()
                        .filter_map(|h| match h {
                            Hop::Node(n) => Some(*n),
                            Hop::Site(_) => None,
                        })
                        .collect();
                    let ups = if nodes.is_empty() {
                        Vec::new()
                    } else {
                        self.upstream_keys(id, source, &nodes)
                    };
                    last = Some(((r.via, source), (keys.clone(), ups.clone())));
                    (keys, ups)
                }
            };
            if !via.is_empty() {
                let entry = RouteEntry {
                    via,
                    upstreams,
                    segment: r.segment,
                };
                out.insert(r.prefix, entry);
            }
        }
        out
    }

    pub(super) fn desired_links(&self, id: u32) -> BTreeMap<PublicKeyBytes, LinkAssignment> {
        let mut out = BTreeMap::new();
        for (a, b) in self.links.keys() {
            let peer = match (*a == id, *b == id) {
                (true, _) => *b,
                (_, true) => *a,
                _ => continue,
            };
            let Some(node) = self.nodes.get(&peer) else {
                continue;
            };
            let endpoint = self
                .seen
                .get(&(id, peer))
                .or_else(|| node.endpoints.first())
                .copied();
            out.insert(
                node.public_key,
                LinkAssignment {
                    peer: node.public_key,
                    endpoint,
                    profile: DEFAULT_PROFILE.to_owned(),
                    allowed_sources: Vec::new(),
                },
            );
        }
        let active = self
            .nodes
            .get(&id)
            .is_some_and(|n| n.state == NodeState::Active);
        for site in self.sites.values().filter(|s| active && s.via == id) {
            out.insert(
                site.public_key,
                LinkAssignment {
                    peer: site.public_key,
                    // The site connects to us; we learn its endpoint from
                    // its handshake.
                    endpoint: None,
                    profile: SITE_PROFILE.to_owned(),
                    allowed_sources: std::iter::once(site.address)
                        .chain(site.prefixes.iter().copied())
                        .collect(),
                },
            );
        }
        out
    }
}
