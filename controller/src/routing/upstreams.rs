//! Feasible upstreams: through which neighbours each source's traffic may
//! reach a node, when every node forwards over its primary *or any* of its
//! loop-free alternates.
//!
//! Agents drop a packet from a mesh neighbour unless that neighbour may
//! carry the packet's source (the feasible-source rule, the agent's
//! `Engine::source_feasible`): that is what stops one enrolled node from
//! claiming other nodes' sources. Checking only "is the neighbour one of
//! my next hops toward the source" is right for traffic on primary paths
//! (the reverse of a shortest path is a shortest path), but not for a
//! local repair: when a router fails over to its alternate, the nodes
//! downstream of that alternate receive the source through neighbours
//! that are no next hop of theirs toward it, and drop it until the
//! controller's recomputation arrives (the town lab's silent cut).
//!
//! This module computes the exact set. For each destination `d` the
//! forwarding graph `G_d` has an edge `v → h` for the primary and every
//! alternate `h` of `v` toward `d`; every edge strictly lowers the distance
//! to `d`, so `G_d` is acyclic and any mix of primaries and alternates is
//! a path in it. A packet from source `s` toward `d` can arrive at `r`
//! from neighbour `n` exactly when `n → r` is an edge of `G_d` and `s`
//! reaches `n` in `G_d`. The union over all destinations is, per directed
//! link, the set of sources that may cross it: [`Upstreams`].
//!
//! Cost: per destination one pass over the nodes in falling distance,
//! OR-ing bitsets of all sources along each edge: `O(n · e · n / 64)` word
//! operations for a full computation (`e` edges of the forwarding graphs,
//! at most `1 + MAX_ALTERNATES` per node). At 1,000 nodes that is ~10⁸
//! word operations; the controller runs it after a batch of changes, not
//! per packet. The result holds one bitset of `n` bits per directed link.
//!
//! The internet (the drained node behind the gateways) is a source whose
//! traffic enters at every gateway, whichever the routes prefer: NAT'd
//! answers come back to the gateway that sent the request.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::graph::{INF, View, ix, top_hops};
use super::{NodeIdx, Router};

/// Per directed link `(receiver, sender)`, the sources whose traffic may
/// arrive over it (see the module docs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Upstreams {
    /// Bitset width in 64-bit words.
    words: usize,
    /// Every directed link of the computed graph, sorted.
    links: Vec<(NodeIdx, NodeIdx)>,
    /// `words` words per entry of `links`, in the same order.
    sets: Vec<u64>,
}

impl Upstreams {
    /// Computes the sets from the router's last computation. `external` is
    /// the node that stands for the internet: its traffic enters at each of
    /// its neighbours and it forwards nothing.
    pub fn compute(router: &Router, external: Option<NodeIdx>) -> Self {
        let view = View {
            g: &router.g,
            old: Some(&router.snap),
        };
        let cap = ix(router.g.cap());
        let words = cap.div_ceil(64);
        if !router.computed || cap == 0 {
            return Self::default();
        }
        let present: Vec<NodeIdx> = (0..router.g.cap()).filter(|n| view.present(*n)).collect();
        // Directed links in (receiver, sender) order; `first[r]` is where
        // receiver r's links start, so a link is found by a binary search
        // in r's (sorted) adjacency.
        let mut links = Vec::new();
        let mut first = vec![0usize; cap + 1];
        for r in 0..router.g.cap() {
            first[ix(r)] = links.len();
            if view.present(r) {
                links.extend(view.adj(r).iter().map(|&(n, _)| (r, n)));
            }
        }
        first[cap] = links.len();
        let mut sets = vec![0u64; links.len() * words];
        // Who reaches each node in the current destination's forwarding
        // graph, as bitsets of `words` words, node after node.
        let mut reach = vec![0u64; cap * words];
        let mut order: Vec<(u32, NodeIdx)> = Vec::with_capacity(present.len());
        let mut row = vec![0u64; words];
        let mut scratch = Vec::new();
        for &d in &present {
            // dist(x, d) from d's own column (distances are symmetric):
            // read in order, not one column per node.
            let col = router.cols.get(ix(d)).map_or(&[][..], Vec::as_slice);
            let dist = |x: NodeIdx| col.get(ix(x)).copied().unwrap_or(INF);
            order.clear();
            order.extend(
                present
                    .iter()
                    .filter(|x| Some(**x) != external)
                    .map(|x| (dist(*x), *x))
                    .filter(|(dx, _)| *dx != INF),
            );
            // Farthest first: every edge lowers the distance, so a node's
            // set is complete before it is passed on.
            order.sort_unstable_by(|a, b| b.cmp(a));
            for &(_, x) in &order {
                let set = &mut reach[ix(x) * words..(ix(x) + 1) * words];
                set.fill(0);
                set[ix(x) / 64] |= 1 << (ix(x) % 64);
            }
            if let Some(ext) = external {
                for &(gateway, _) in view.adj(ext) {
                    let set = &mut reach[ix(gateway) * words..(ix(gateway) + 1) * words];
                    set[ix(ext) / 64] |= 1 << (ix(ext) % 64);
                }
            }
            for &(_, v) in &order {
                let Some(top) = top_hops(view, v, d, dist, &mut scratch) else {
                    continue;
                };
                row.copy_from_slice(&reach[ix(v) * words..(ix(v) + 1) * words]);
                for h in top.hops() {
                    if Some(h) == external {
                        continue;
                    }
                    let Ok(k) = view.adj(h).binary_search_by_key(&v, |e| e.0) else {
                        continue;
                    };
                    let at = (first[ix(h)] + k) * words;
                    let into = &mut reach[ix(h) * words..(ix(h) + 1) * words];
                    for ((r, l), s) in into.iter_mut().zip(&mut sets[at..at + words]).zip(&row) {
                        *r |= s;
                        *l |= s;
                    }
                }
            }
        }
        Self { words, links, sets }
    }

    fn set(&self, i: usize) -> &[u64] {
        &self.sets[i * self.words..(i + 1) * self.words]
    }

    /// Whether `source`'s traffic may reach `receiver` from `sender`.
    pub fn contains(&self, receiver: NodeIdx, sender: NodeIdx, source: NodeIdx) -> bool {
        self.links
            .binary_search(&(receiver, sender))
            .is_ok_and(|i| bit(self.set(i), source))
    }

    /// The neighbours through which `source`'s traffic may reach
    /// `receiver`, in index order.
    pub fn senders(
        &self,
        receiver: NodeIdx,
        source: NodeIdx,
    ) -> impl Iterator<Item = NodeIdx> + '_ {
        let start = self.links.partition_point(|l| l.0 < receiver);
        self.links[start..]
            .iter()
            .enumerate()
            .take_while(move |(_, l)| l.0 == receiver)
            .filter(move |(k, _)| bit(self.set(start + k), source))
            .map(|(_, l)| l.1)
    }

    /// Per receiver, the sources whose senders differ between `old` and
    /// `self`: the routes whose upstreams must be sent again.
    pub fn changed_since(&self, old: &Self) -> BTreeMap<NodeIdx, BTreeSet<NodeIdx>> {
        let mut out: BTreeMap<NodeIdx, BTreeSet<NodeIdx>> = BTreeMap::new();
        let empty: Vec<u64> = Vec::new();
        let (mut i, mut j) = (0, 0);
        loop {
            let side = match (self.links.get(i), old.links.get(j)) {
                (None, None) => break,
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
            };
            let (link, new, before) = match side {
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (self.links[i - 1], self.set(i - 1), old.set(j - 1))
                }
                Ordering::Less => {
                    i += 1;
                    (self.links[i - 1], self.set(i - 1), empty.as_slice())
                }
                Ordering::Greater => {
                    j += 1;
                    (old.links[j - 1], empty.as_slice(), old.set(j - 1))
                }
            };
            for w in 0..new.len().max(before.len()) {
                let mut diff =
                    new.get(w).copied().unwrap_or(0) ^ before.get(w).copied().unwrap_or(0);
                while diff != 0 {
                    let b = diff.trailing_zeros() as usize;
                    diff &= diff - 1;
                    if let Ok(source) = NodeIdx::try_from(w * 64 + b) {
                        out.entry(link.0).or_default().insert(source);
                    }
                }
            }
        }
        out
    }

    /// Bytes held by the bitsets.
    pub fn state_bytes(&self) -> usize {
        self.sets.len() * 8
    }
}

fn bit(set: &[u64], n: NodeIdx) -> bool {
    set.get(ix(n) / 64)
        .is_some_and(|w| w & (1 << (ix(n) % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::routing::Metric;

    /// The links `(receiver, sender)` that `s`'s traffic toward `d` may
    /// cross when each node picks any of its next hops: the edges reachable
    /// from `s` in the forwarding graph, by a plain search.
    fn crossed(router: &Router, s: NodeIdx, d: NodeIdx) -> BTreeSet<(NodeIdx, NodeIdx)> {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::from([s]);
        let mut stack = vec![s];
        while let Some(at) = stack.pop() {
            if at == d {
                continue;
            }
            let hops = router.next_hops(at, d).expect("reachable");
            for h in std::iter::once(hops.primary).chain(hops.alternates) {
                out.insert((h, at));
                if seen.insert(h) {
                    stack.push(h);
                }
            }
        }
        out
    }

    fn walk_all(router: &Router, up: &Upstreams, s: NodeIdx, d: NodeIdx) {
        for (at, prev) in crossed(router, s, d) {
            assert!(
                up.contains(at, prev, s),
                "{s} → {d}: {prev} → {at} not admitted"
            );
        }
    }

    #[test]
    fn the_repair_path_of_a_silent_cut_is_admitted() {
        // 10 – 9 – 6 – 4 and 10 – 8 – 7 – 4, 8 – 6: from 10 toward 4 the
        // primary is 9 and 8 an alternate; 7 is no next hop of 4 toward 10
        // (6 is, and 7 is no closer to 10 than 4 is: 7's link to 8 is slow).
        let mut r = Router::new();
        for (a, b, m) in [
            (10, 9, 1),
            (9, 6, 1),
            (6, 4, 1),
            (10, 8, 2),
            (8, 7, 5),
            (7, 4, 1),
            (8, 6, 1),
        ] {
            r.set_link(a, b, Metric(m));
        }
        r.compute_all();
        assert_eq!(r.next_hops(4, 10).map(|h| h.primary), Some(6));
        assert!(!r.next_hops(4, 10).expect("route").alternates.contains(&7));
        let up = Upstreams::compute(&r, None);
        // 10 → 8 (alternate) → 6 → 4 and 10 → 8 → 7 → 4 if 8 may use 7.
        walk_all(&r, &up, 10, 4);
        // A neighbour that no path from 10 crosses is not admitted: 4 never
        // forwards 10's traffic to 7 toward anyone but 7 and 8's side.
        assert!(!up.contains(9, 6, 10));
    }

    #[test]
    fn internet_traffic_enters_at_every_gateway() {
        // 0 is the internet behind gateways 1 and 2; 3 hangs off 2.
        let mut r = Router::new();
        r.add_node(0);
        r.set_drained(0, true);
        r.set_link(0, 1, Metric(1));
        r.set_link(0, 2, Metric(1));
        r.set_link(1, 2, Metric(1));
        r.set_link(2, 3, Metric(1));
        r.set_link(1, 3, Metric(5));
        r.compute_all();
        let up = Upstreams::compute(&r, Some(0));
        assert!(up.contains(3, 2, 0));
        assert!(up.contains(3, 1, 0));
        // The internet forwards nothing: no link into it is an upstream.
        assert_eq!(up.senders(0, 3).count(), 0);
    }

    fn arb_mesh() -> impl Strategy<Value = Vec<(u32, u32, u32)>> {
        prop::collection::vec((0u32..9, 0u32..9, 1u32..20), 8..30)
    }

    proptest! {
        /// Every path over primaries and alternates is admitted at each
        /// hop, and nothing else: a link admits `s` only if some such
        /// path from `s` crosses it.
        #[test]
        fn exactly_the_paths_over_primaries_and_alternates(links in arb_mesh()) {
            let mut r = Router::new();
            for (a, b, m) in &links {
                r.set_link(*a, *b, Metric(*m));
            }
            r.compute_all();
            let up = Upstreams::compute(&r, None);
            let nodes: Vec<u32> = (0..9).filter(|n| r.contains(*n)).collect();
            let mut crossed = BTreeSet::new();
            for &s in &nodes {
                for &d in &nodes {
                    if s != d && r.distance(s, d).is_some() {
                        walk_all(&r, &up, s, d);
                        crossed.extend(super::tests::crossed(&r, s, d).into_iter().map(|(at, prev)| (at, prev, s)));
                    }
                }
            }
            for &rcv in &nodes {
                for &s in &nodes {
                    for sender in up.senders(rcv, s) {
                        prop_assert!(crossed.contains(&(rcv, sender, s)), "{sender} → {rcv} admits {s} needlessly");
                    }
                }
            }
        }
    }

    #[test]
    fn changes_name_the_receiver_and_the_source() {
        let mut r = Router::new();
        r.set_link(1, 2, Metric(1));
        r.set_link(2, 3, Metric(1));
        r.compute_all();
        let before = Upstreams::compute(&r, None);
        r.set_link(1, 3, Metric(1));
        r.update();
        let after = Upstreams::compute(&r, None);
        let changed = after.changed_since(&before);
        // 3 now hears 1 directly; 1's traffic no longer crosses 2 → 3.
        assert!(changed.get(&3).is_some_and(|s| s.contains(&1)));
        assert!(after.changed_since(&after).is_empty());
    }
}
