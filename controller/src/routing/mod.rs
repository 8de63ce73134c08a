//! # Route computation: primaries and loop-free alternates, incrementally
//!
//! A sans-IO core: no sockets, no clock, no `HashMap` iteration; the same
//! inputs always give the same tables. The controller's store maps its rows to
//! dense [`NodeIdx`]es, feeds links and drain flags into a [`Router`], calls
//! [`Router::compute_all`] once (then pushes [`Router::routes`] as every
//! agent's full table) and afterwards [`Router::update`] after each batch of
//! changes, pushing only the returned [`RouteDelta`]s.
//!
//! ```
//! use freimesh_controller::routing::{Metric, NextHops, RouteDelta, Router};
//!
//! let mut r = Router::new();
//! r.set_link(0, 1, Metric(10));
//! r.set_link(1, 2, Metric(10));
//! r.set_link(0, 2, Metric(25));
//! r.compute_all();
//! // 0 → 2: via 1 (20) first, the direct link (25) as loop-free alternate.
//! let to_2 = NextHops { primary: 1, alternates: vec![2] };
//! assert_eq!(r.next_hops(0, 2), Some(to_2));
//!
//! r.remove_link(0, 1);
//! let deltas = r.update();
//! let direct = NextHops { primary: 2, alternates: vec![] };
//! assert_eq!(
//!     deltas[&0],
//!     vec![
//!         RouteDelta::Set { dst: 1, hops: direct.clone() },
//!         RouteDelta::Set { dst: 2, hops: direct },
//!     ]
//! );
//! ```
//!
//! ## What is computed
//!
//! Links are undirected with a symmetric [`Metric`] (> 0, see [`metric_of`]).
//! `dist(s, d)` is the cost of the cheapest path from `s` to `d` whose
//! *intermediate* nodes are not drained (a drained node may still be a source
//! or a destination). For every source `s` and reachable destination `d`:
//!
//! * **primary** = the neighbour `n` of `s` minimising `metric(s, n) + dist(n, d)`
//!   (ties: lower [`NodeIdx`]), among neighbours that may carry the packet
//!   (`n == d` or `n` not drained);
//! * **alternates** = the other such neighbours with `dist(n, d) < dist(s, d)`
//!   (the downstream condition, RFC 5286 inequality 2), ordered by
//!   `metric(s, n) + dist(n, d)` then index, at most [`MAX_ALTERNATES`].
//!
//! Every hop, primary or alternate, strictly lowers the remaining distance,
//! so any mix of primaries and alternates reaches `d` without a loop.
//!
//! ## How, and what it costs
//!
//! Because metrics are symmetric and the drain rule only looks at
//! intermediate nodes, `dist(s, d) == dist(d, s)`. The router keeps one
//! distance column per destination (`dist(·, d)`, `u32`), filled by one
//! Dijkstra from `d`: a full computation is `n` Dijkstras,
//! `O(n · m log n)` time, and the state is `4 · n²` bytes (1,000 nodes: 4 MB;
//! 5,000: 100 MB; 10,000: 400 MB). Next hops are *not stored*: they are a pure
//! function of the source's links and its neighbours' distances, derived on
//! demand in `O(deg · log deg)`. Storing them as `NextHops` would cost ~60
//! bytes per pair, 15× the distances; this is why [`Router::routes`] yields
//! owned [`NextHops`].
//!
//! [`Router::update`] repairs each column in place (a dynamic shortest-path
//! repair in the style of Ramalingam–Reps) instead of recomputing it:
//!
//! 1. *Invalidate.* A node whose old distance was achieved only through a link
//!    that got worse (dearer, removed, or its far end drained or removed) loses
//!    its distance, and so, transitively, does every node that was supported
//!    only by invalidated nodes. Untouched columns cost `O(changes)`.
//! 2. *Reseed.* Each invalidated node takes the best offer of its still-valid
//!    neighbours; each link that got better offers its new cost; an undrained
//!    node offers transit again.
//! 3. *Settle.* A Dijkstra from these seeds only visits nodes whose distance
//!    actually changes.
//!
//! For one link `a – b` going from `m0` to `m1` this is the classic test:
//! column `d` is touched only if the link was tight toward `d`
//! (`dist(a, d) == m0 + dist(b, d)`, or the mirror) and got worse, or
//! `m1 + dist(b, d) < dist(a, d)` (or the mirror); otherwise it costs a few
//! comparisons.
//!
//! Deltas: the next hops of `(s, d)` depend only on `s`'s links and on
//! `dist(s, d)` and `dist(n, d)` for `s`'s neighbours `n`. So only sources
//! that are a changed node, a neighbour of one that is downstream of it
//! before or after, an end of a changed link or a neighbour of a node whose
//! drain flag flipped can see different next hops for `d`; for those the old
//! and the new next hops are compared (allocation-free) and only differences
//! are emitted.
//!
//! **Why skipping is sound.** If step 1 finds nothing to invalidate and step 2
//! finds no offer strictly better than a current distance, then the column is
//! still the exact distance vector of the new graph: every old distance is
//! still achieved (its supporting path avoids every worsened link and every
//! newly drained node), and no shorter path exists (a shorter path would have
//! to use an improved link or undrained node whose offer would have been
//! strictly better at its near end, the first place the new path beats the
//! old distances). With the column unchanged, the only next hops that can
//! differ are those of sources whose own link set or neighbour eligibility
//! changed, and exactly those are rechecked. The property tests compare
//! `update` against a fresh [`Router::compute_all`] after random batches.
//!
//! Cost of one link change: proportional to the number of (source,
//! destination) pairs whose distance changes, plus `O(1)` per untouched
//! column. On the benchmark meshes (random geometric, degree ≈ 4; see
//! `controller/benches/routing.rs`) the median link change at 5,000 nodes
//! costs ~4 ms against ~1.0–1.4 s for a full computation. The tail is
//! bottlenecks: a link that (nearly) alone connects `k` nodes to the other
//! `n - k` changes up to `2 · k · (n - k)` distances, and its failure
//! withdraws as many routes; such an update costs about as much as
//! recomputing those columns (up to ~3 s at 5,000 nodes). A metric change on
//! a true bridge takes a fast path (all cross distances shift by the same
//! amount and no next hop changes), but near-bridges do not: feed metric
//! changes with hysteresis (the store should only pass on changes that
//! matter, e.g. > 10 %), and expect the deltas of a partition to be large:
//! they are the routes that disappear.
//!
//! Memory: `4 · n²` bytes of distances (the trade-off above: exact stored
//! distances make the incremental repair local; recomputing affected columns
//! instead would cost about half a full computation per link change, since a
//! random link is tight in about half of the shortest-path trees). Beyond
//! ~7,000 nodes the next step is to split at bridges / into areas, which
//! also removes the bridge tail, or to store the symmetric matrix once.

pub mod city;
mod graph;
mod incremental;
pub mod redundancy;
mod router;
#[cfg(test)]
mod tests;
mod upstreams;

use std::collections::BTreeMap;

pub use router::Router;
pub use upstreams::Upstreams;

/// A node as the route computation knows it: a dense index assigned by the
/// caller (store row → index). Keep indices dense and reuse freed ones; the
/// distance state is sized by the largest index.
pub type NodeIdx = u32;

/// The cost of a link, `1..=MAX_LINK_METRIC` once it is in a [`Router`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Metric(pub u32);

/// The largest metric one link may carry (262 ms): larger values are clamped.
///
/// It keeps every simple path in a mesh of up to 16,384 nodes below
/// `u32::MAX`, so distances never overflow (16,384 × 2¹⁸ = 2³²).
pub const MAX_LINK_METRIC: u32 = 1 << 18;

/// At most this many alternates per destination are kept: an agent needs the
/// first live one, and a cap bounds what one route costs on the wire.
pub const MAX_ALTERNATES: usize = 4;

/// What the agents measured on a link, plus the operator's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkCost {
    /// Smoothed round-trip time in microseconds.
    pub rtt_us: u32,
    /// Probe loss in parts per million.
    pub loss_ppm: u32,
    /// Operator policy (e.g. prefer the municipal backbone): used as is.
    pub override_cost: Option<u32>,
}

/// The metric of a link: `rtt_us + loss_ppm + loss_ppm² / 100_000`, or the
/// operator's override; clamped to `1..=MAX_LINK_METRIC`.
///
/// The unit is a microsecond of round-trip time. Loss costs 1 µs per ppm
/// (1 % loss ≈ 10 ms) plus a quadratic term that makes lossy links steeply
/// worse (1 %: +11 ms, 5 %: +75 ms, 10 %: +200 ms, ≥ 13 %: the maximum):
/// a retransmitting transport suffers far more from 10 % loss than from a few
/// extra milliseconds.
pub fn metric_of(cost: &LinkCost) -> Metric {
    let raw = match cost.override_cost {
        Some(c) => u64::from(c),
        None => {
            let loss = u64::from(cost.loss_ppm);
            u64::from(cost.rtt_us) + loss + loss * loss / 100_000
        }
    };
    Metric(clamp_metric(raw))
}

pub(crate) fn clamp_metric(raw: u64) -> u32 {
    u32::try_from(raw.clamp(1, u64::from(MAX_LINK_METRIC))).unwrap_or(MAX_LINK_METRIC)
}

/// Where a source sends traffic for one destination: the primary next hop and
/// loop-free alternates, best first (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHops {
    pub primary: NodeIdx,
    pub alternates: Vec<NodeIdx>,
}

/// One change to a source's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDelta {
    /// Install or replace the route to `dst`.
    Set { dst: NodeIdx, hops: NextHops },
    /// `dst` is no longer reachable (or no longer exists).
    Remove { dst: NodeIdx },
}

impl RouteDelta {
    /// A compact wire size: 1 tag byte, 4 bytes per node index
    /// (destination, primary, each alternate) and 1 byte alternate count.
    /// postcard's varints are never larger than this for indices < 2²⁸.
    pub fn encoded_len(&self) -> usize {
        match self {
            RouteDelta::Set { hops, .. } => 1 + 4 + 4 + 1 + 4 * hops.alternates.len(),
            RouteDelta::Remove { .. } => 1 + 4,
        }
    }

    /// The destination this delta is about.
    pub fn dst(&self) -> NodeIdx {
        match self {
            RouteDelta::Set { dst, .. } | RouteDelta::Remove { dst } => *dst,
        }
    }
}

/// One source's table (destination → next hops): what an agent holds.
/// Built from [`Router::table`] or by applying deltas to an earlier copy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    routes: BTreeMap<NodeIdx, NextHops>,
}

impl RouteTable {
    /// Applies deltas in order, as an agent would.
    pub fn apply(&mut self, deltas: &[RouteDelta]) {
        for delta in deltas {
            match delta {
                RouteDelta::Set { dst, hops } => {
                    self.routes.insert(*dst, hops.clone());
                }
                RouteDelta::Remove { dst } => {
                    self.routes.remove(dst);
                }
            }
        }
    }

    /// The next hops toward `dst`, if it is reachable.
    pub fn get(&self, dst: NodeIdx) -> Option<&NextHops> {
        self.routes.get(&dst)
    }

    /// Routes in destination order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeIdx, &NextHops)> {
        self.routes.iter().map(|(d, h)| (*d, h))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl FromIterator<(NodeIdx, NextHops)> for RouteTable {
    fn from_iter<I: IntoIterator<Item = (NodeIdx, NextHops)>>(iter: I) -> Self {
        Self {
            routes: iter.into_iter().collect(),
        }
    }
}
