//! Segments, anti-spoofing and the gateway uplink inside the engine.
//!
//! * Every route carries its destination's segment, and the node's own
//!   prefixes carry theirs (overlay addresses: infrastructure; local
//!   prefixes: intranet; client prefixes: public). [`Engine::admit`] checks
//!   every packet, forwarded or delivered, against
//!   [`Segment::may_reach`] on every hop, so one misconfigured node cannot
//!   open the intranet to the public.
//! * A packet from the local backend must carry a source this node owns,
//!   or, on a gateway, a source outside every mesh prefix (internet
//!   answers coming back through the gateway's NAT). Packets from a link
//!   with `allowed_sources` (plain WireGuard sites) must use one of those.
//! * Packets from a mesh neighbour (no `allowed_sources`) must carry a
//!   *feasible* source: the neighbour is one of our next hops toward it
//!   (`Engine::source_feasible`), else they count as `source_not_feasible`.
//!   One node can therefore not claim intranet sources it does not lie on
//!   the way to, and the segment policy below sees true sources.
//! * A default route whose first hop is this node ([`Hop::Uplink`]) makes
//!   the node a gateway. [`Engine::set_uplink`] takes that hop out of
//!   service when the uplink checker loses the far side: the groups switch
//!   to their alternates in one step, default routes left without a live
//!   hop are withdrawn from the neighbours (the repair machinery), and a
//!   neighbour that is now our next hop for them hears them withdrawn too,
//!   so it does not send them back to us.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use freimesh_proto::segment::Segment;
use ipnet::IpNet;

use super::repair::Event;
use super::{DropReason, Engine, Ingress};
use crate::core::LinkId;
use crate::core::segments::Origin;
use crate::core::table::Hop;

/// The segment of a route nobody stated one for: a host route delivered
/// here is one of the node's overlay addresses, any other prefix delivered
/// here lies behind it (a building LAN), everything else is the
/// infrastructure a controller-less mesh routes.
pub(super) fn implied_segment(prefix: IpNet, hops: &[Hop]) -> Segment {
    let host = prefix.prefix_len() == prefix.max_prefix_len();
    match hops {
        [Hop::Local] if !host => Segment::Intranet,
        _ => Segment::Infrastructure,
    }
}

/// Hops as the table holds them: "deliver here" at the head of a default
/// route means "out through the uplink", which can fail.
pub(super) fn table_hops(prefix: IpNet, mut hops: Vec<Hop>) -> Vec<Hop> {
    if prefix.prefix_len() == 0 {
        for hop in &mut hops {
            if *hop == Hop::Local {
                *hop = Hop::Uplink;
            }
        }
    }
    hops
}

impl Engine {
    /// Recomputes what `prefix` is for classification, from the client
    /// prefixes and the configured route.
    pub(super) fn reclassify(&mut self, prefix: IpNet) {
        let prefix = prefix.trunc();
        let origin = if self.client_prefixes.contains(&prefix) {
            Some(Origin {
                segment: Segment::Public,
                owned: true,
            })
        } else {
            self.route_segments.get(&prefix).map(|segment| Origin {
                segment: *segment,
                owned: self.repair.configured.get(&prefix).map(Vec::as_slice)
                    == Some(&[Hop::Local]),
            })
        };
        self.segments.set(prefix, origin);
    }

    /// Whether a packet from `src` to `dst` that entered at `ingress` may
    /// go on; counts the drop if not. Logs name the link and the segments,
    /// never the addresses: a source or destination may be a public client.
    pub(super) fn admit(&mut self, src: IpAddr, dst: IpAddr, ingress: Ingress) -> bool {
        let from = self.segments.lookup(src);
        let spoofed = match ingress {
            Ingress::Link(id) if self.links[id.0].allowed_sources.is_empty() => {
                if !self.source_feasible(src, dst, id) {
                    tracing::trace!(link = %self.links[id.0].name, "source not feasible through this neighbour: dropped");
                    self.drop_packet(DropReason::SourceNotFeasible);
                    return false;
                }
                false
            }
            Ingress::Link(id) => !self.links[id.0].allows_source(src),
            // Only a gateway sees internet sources coming from its kernel:
            // the answers to its NAT'd clients.
            Ingress::Local => match from {
                Some(origin) => !origin.owned,
                None => !self.is_gateway(),
            },
        };
        if spoofed {
            tracing::trace!(ingress = %self.ingress_name(ingress), "spoofed source dropped");
            self.drop_packet(DropReason::SpoofedSource);
            return false;
        }
        let from = from.map_or(Segment::Internet, |o| o.segment);
        let to = self.segments.segment(dst);
        if !from.may_reach(to) {
            tracing::trace!(ingress = %self.ingress_name(ingress), ?from, ?to, "segment policy drop");
            self.drop_packet(DropReason::SegmentPolicy);
            return false;
        }
        true
    }

    /// The feasible-source (reverse path) rule for a mesh neighbour without
    /// `allowed_sources`: `src` may arrive through `link` only if `link` is
    /// one of our next hops (primary or loop-free alternate) toward `src`,
    /// or one of the route's upstreams. The controller's next hops are the
    /// neighbours strictly closer to `src` than we are, which every
    /// neighbour on a shortest path from `src` to us is (metrics are
    /// symmetric), so transit on primary paths passes with one longest-
    /// prefix match per packet. A packet on a repair path (a node upstream
    /// forwarded it over a loop-free alternate) can come through a
    /// neighbour that is no next hop of ours toward `src`: the controller
    /// names exactly those neighbours as the route's upstreams
    /// (`Route::upstreams`, computed over every mix of primaries and
    /// alternates), so the repair carries traffic at once and a neighbour
    /// still cannot inject sources that no forwarding path brings through
    /// it. A source covered only by the default route is feasible through
    /// the default route's next hops (the gateways' side) and upstreams.
    ///
    /// The route's hops count as the controller (or the configuration) set
    /// them, not as local repair left them: a neighbour that withdrew
    /// `src` (it cannot reach it any more) may be the very hop that
    /// carries `src`'s traffic to us on a repair path.
    ///
    /// A neighbour that stopped being a next hop toward the source less
    /// than `FEASIBLE_HOLD` (five minutes) ago still passes: route changes
    /// reach the nodes of a path at slightly different moments.
    ///
    /// A link-local source can only be the neighbour itself (no router
    /// forwards one, RFC 4291 §2.5.6): it may reach this node, never go on.
    fn source_feasible(&self, src: IpAddr, dst: IpAddr, link: LinkId) -> bool {
        if is_link_local(src) {
            return self.table.lookup(dst) == Some(Hop::Local);
        }
        let hop = Hop::Link(link);
        if self
            .table
            .lookup_group(src)
            .is_some_and(|group| group.hops().contains(&hop))
        {
            return true;
        }
        // Rare: a repair path, a route whose hops a neighbour's withdrawal
        // took out of the table (a neighbour that cannot reach `src` now
        // may still carry `src`'s traffic toward us), or a route that
        // changed within the hold.
        let Some(prefix) = self.table.lookup_prefix(src) else {
            return false;
        };
        self.repair
            .configured
            .get(&prefix)
            .is_some_and(|hops| hops.contains(&hop))
            || self.is_route_upstream(prefix, link)
            || (!self.former_hops.is_empty() && self.former_hops.contains(prefix, link))
    }

    /// How logs name where a packet came from: the link's name, or `local`.
    pub(super) fn ingress_name(&self, ingress: Ingress) -> &str {
        match ingress {
            Ingress::Local => "local",
            Ingress::Link(id) => &self.links[id.0].name,
        }
    }

    /// Whether this node is a gateway: one of its default routes leaves
    /// through its own uplink.
    pub fn is_gateway(&self) -> bool {
        self.repair
            .configured
            .iter()
            .any(|(prefix, hops)| prefix.prefix_len() == 0 && hops.contains(&Hop::Uplink))
    }

    /// Whether the uplink is in service (always true on a node that is no
    /// gateway).
    pub fn uplink_up(&self) -> bool {
        self.table.is_uplink_up()
    }

    /// The segment the engine puts `addr` in (no covering prefix: internet).
    pub fn segment_of(&self, addr: IpAddr) -> Segment {
        self.segments.segment(addr)
    }

    /// The public Wi-Fi client prefixes the controller assigned to this
    /// node: delivered here, owned (clients' packets may use them as
    /// sources) and public. Replaces the previous set.
    pub fn set_client_prefixes(&mut self, prefixes: Vec<IpNet>) {
        let wanted: BTreeSet<IpNet> = prefixes.into_iter().map(|p| p.trunc()).collect();
        let old: BTreeSet<IpNet> = std::mem::take(&mut self.client_prefixes);
        for gone in old.difference(&wanted) {
            self.remove_route(*gone);
            self.reclassify(*gone);
        }
        self.client_prefixes = wanted.clone();
        for prefix in wanted {
            if self.repair.configured.get(&prefix).map(Vec::as_slice) != Some(&[Hop::Local]) {
                self.repair.configured.insert(prefix, vec![Hop::Local]);
                self.route_segments.insert(prefix, Segment::Public);
                self.reapply(prefix);
            }
            self.reclassify(prefix);
        }
    }

    /// The client prefixes last set with [`Engine::set_client_prefixes`].
    pub fn client_prefixes(&self) -> Vec<IpNet> {
        self.client_prefixes.iter().copied().collect()
    }

    /// The uplink checker's verdict. Down: every group whose first live hop
    /// was the uplink switches to its next hop in one step; default routes
    /// left without a live hop are withdrawn from every neighbour, and the
    /// neighbour that is now our next hop for one hears it withdrawn too
    /// (else it could send it straight back). Up: the reverse, with
    /// restores. Repeating the current state does nothing.
    pub fn set_uplink(&mut self, up: bool, now: Instant) {
        if self.table.is_uplink_up() == up {
            return;
        }
        let changes = self.table.set_uplink_up(up);
        let rerouted: usize = changes
            .iter()
            .filter(|c| c.after.is_some())
            .map(|c| c.prefixes)
            .sum();
        let mut moved: Vec<(Option<Hop>, Vec<IpNet>)> = Vec::new();
        for change in &changes {
            if let Some(group) = self.table.group(change.group) {
                moved.push((change.after, group.prefixes().iter().copied().collect()));
            }
        }
        let mut newly = Vec::new();
        for (after, prefixes) in &moved {
            for prefix in prefixes {
                let changed = if up {
                    self.repair.lost.remove(prefix)
                } else {
                    after.is_none() && self.repair.lost.insert(*prefix)
                };
                if changed {
                    newly.push(*prefix);
                }
            }
        }
        // Poison reverse toward the neighbour we now send default traffic
        // to; cleared (and restored) when the uplink returns.
        let poisoned = std::mem::take(&mut self.repair.poisoned);
        if up {
            for (link, prefixes) in poisoned {
                let prefixes: Vec<IpNet> = prefixes.into_iter().collect();
                self.send_prefixes(link, &prefixes, false, now);
            }
        } else {
            self.repair.poisoned = poisoned;
            for (after, prefixes) in moved {
                if let Some(Hop::Link(link)) = after {
                    self.repair
                        .poisoned
                        .entry(link)
                        .or_default()
                        .extend(prefixes.iter().copied());
                    self.send_prefixes(link, &prefixes, true, now);
                }
            }
        }
        tracing::info!(
            up,
            groups = changes.len(),
            rerouted,
            changed = newly.len(),
            "uplink {}",
            if up {
                "up: default routes back"
            } else {
                "down: default routes moved to alternates"
            }
        );
        self.record(
            now,
            Event::Uplink {
                up,
                groups: changes.len(),
                rerouted,
                prefixes: newly.len(),
            },
        );
        self.announce(&newly, !up, now);
    }
}

/// Whether `addr` is link-local (`169.254.0.0/16`, `fe80::/10`).
fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}
