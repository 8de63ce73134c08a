//! [`Router::update`]: repair each distance column in place and diff the next
//! hops of the sources that can see a difference (see the module docs for
//! the algorithm and why skipped work cannot change a route).

use std::collections::BTreeMap;

use super::graph::{self, Graph, INF, Snapshot, View, ix, key, unkey};
use super::router::{Router, Scratch};
use super::{NodeIdx, RouteDelta};

/// One link whose metric differs from the last computation (`None`: absent).
#[derive(Debug, Clone, Copy)]
struct EdgeChange {
    a: NodeIdx,
    b: NodeIdx,
    old: Option<u32>,
    new: Option<u32>,
}

/// The batch of changes since the last computation, in index order.
#[derive(Debug, Default)]
struct Changes {
    edges: Vec<EdgeChange>,
    /// Nodes present before and after whose drain flag flipped, with the new flag.
    flips: Vec<(NodeIdx, bool)>,
    /// Nodes that existed at the last computation and no longer do.
    removed: Vec<NodeIdx>,
    /// Sources whose next hops may change for every destination even when no
    /// distance does: ends of changed links, neighbours of flipped nodes.
    always: Vec<NodeIdx>,
}

impl Changes {
    fn new(g: &Graph, snap: &Snapshot) -> Self {
        let old = View { g, old: Some(snap) };
        let mut ch = Changes::default();
        // Both ends of a changed link are always in the snapshot, so the
        // a < b half of each merge sees every change exactly once.
        for (&a, old_list) in &snap.adj {
            let new_list = g.adj.get(ix(a)).map_or(&[][..], Vec::as_slice);
            let (mut i, mut j) = (0, 0);
            while i < old_list.len() || j < new_list.len() {
                let o = old_list.get(i).copied();
                let n = new_list.get(j).copied();
                let (b, om, nm) = match (o, n) {
                    (Some(o), Some(n)) if o.0 == n.0 => {
                        i += 1;
                        j += 1;
                        (o.0, Some(o.1), Some(n.1))
                    }
                    (Some(o), Some(n)) if o.0 < n.0 => {
                        i += 1;
                        (o.0, Some(o.1), None)
                    }
                    (Some(o), None) => {
                        i += 1;
                        (o.0, Some(o.1), None)
                    }
                    (_, Some(n)) => {
                        j += 1;
                        (n.0, None, Some(n.1))
                    }
                    (None, None) => break,
                };
                if a < b && om != nm {
                    ch.edges.push(EdgeChange {
                        a,
                        b,
                        old: om,
                        new: nm,
                    });
                    ch.always.extend([a, b]);
                }
            }
        }
        for (&n, &was) in &snap.drained {
            let now = g.drained[ix(n)];
            if was != now && g.is_present(n) && old.present(n) {
                ch.flips.push((n, now));
                ch.always.extend(old.adj(n).iter().map(|e| e.0));
                ch.always.extend(g.adj[ix(n)].iter().map(|e| e.0));
            }
        }
        for (&n, &was) in &snap.present {
            if was && !g.is_present(n) {
                ch.removed.push(n);
            }
        }
        ch.always.sort_unstable();
        ch.always.dedup();
        ch
    }
}

impl Router {
    /// Applies the mutations since the last computation and returns, per
    /// source node, the deltas that turn its previous table into the new one
    /// (in destination order; sources with no change are absent; removed
    /// nodes get nothing).
    ///
    /// Cost: `O(changes)` per untouched destination column plus a Dijkstra
    /// restricted to the nodes whose distance changes in each touched one.
    pub fn update(&mut self) -> BTreeMap<NodeIdx, Vec<RouteDelta>> {
        if !self.computed {
            self.compute_all();
            return self.full_dump();
        }
        if self.snap.is_empty() {
            return BTreeMap::new();
        }
        let snap = std::mem::take(&mut self.snap);
        let ch = Changes::new(&self.g, &snap);
        if self.shift_across_bridge(&ch, &snap) {
            return BTreeMap::new();
        }
        let cap = self.g.present.len();
        self.cols.resize_with(cap, Vec::new);
        let mut sc = Scratch {
            stamp: vec![0; cap],
            old: vec![INF; cap],
            invalid: vec![0; cap],
            seen: vec![0; cap],
            ..Scratch::default()
        };
        // Indexed by source while building; a BTreeMap only at the end.
        let mut out: Vec<Vec<RouteDelta>> = vec![Vec::new(); cap];
        let Router { g, cols, .. } = self;
        let old = View {
            g,
            old: Some(&snap),
        };
        let new = View { g, old: None };
        for (d, col) in (0..g.cap()).zip(cols.iter_mut()) {
            match (old.present(d), g.is_present(d)) {
                (false, false) => {}
                (true, false) => {
                    for (s, &ds) in (0..).zip(col.iter()) {
                        if s != d && ds != INF && g.is_present(s) {
                            out[ix(s)].push(RouteDelta::Remove { dst: d });
                        }
                    }
                    *col = Vec::new();
                }
                (false, true) => {
                    graph::full_column(g, d, col, &mut sc.heap);
                    for s in 0..g.cap() {
                        let hops = graph::next_hops(new, s, d, |x| col[ix(x)], &mut sc.cands);
                        if let Some(hops) = hops {
                            out[ix(s)].push(RouteDelta::Set { dst: d, hops });
                        }
                    }
                }
                (true, true) => {
                    col.resize(cap, INF);
                    repair(g, old, &ch, d, col, &mut sc);
                    diff_column(old, new, &ch, d, col, &mut sc, &mut out);
                }
            }
        }
        (0..).zip(out).filter(|(_, ds)| !ds.is_empty()).collect()
    }

    /// Fast path for the most common expensive event: the metric of a
    /// bridge (a link whose removal splits the mesh) moved. Every path
    /// between the two sides crosses it, so all cross-side distances shift
    /// by the same amount and no next hop changes: the only candidate of `a`
    /// toward the far side is `b`, and every other node's candidates shift
    /// together. Without it, a change on a bridge in the middle of a
    /// 5,000-node mesh is a multi-second repair of 12 million distances; this
    /// is a few adds per pair. Returns false (nothing done) if the batch is
    /// anything else.
    fn shift_across_bridge(&mut self, ch: &Changes, snap: &Snapshot) -> bool {
        let [e] = ch.edges.as_slice() else {
            return false;
        };
        let (Some(m0), Some(m1)) = (e.old, e.new) else {
            return false;
        };
        if !ch.flips.is_empty() || !ch.removed.is_empty() || !snap.present.is_empty() {
            return false;
        }
        // The side of b, searching the plain graph without the link (drain
        // flags only remove paths, so a plain bridge is a bridge for all).
        let cap = self.g.present.len();
        let mut b_side = vec![false; cap];
        let mut stack = vec![e.b];
        b_side[ix(e.b)] = true;
        while let Some(v) = stack.pop() {
            for &(w, _) in &self.g.adj[ix(v)] {
                if v == e.b && w == e.a {
                    continue;
                }
                if !b_side[ix(w)] {
                    if w == e.a {
                        return false;
                    }
                    b_side[ix(w)] = true;
                    stack.push(w);
                }
            }
        }
        let (b_nodes, a_nodes): (Vec<NodeIdx>, Vec<NodeIdx>) = (0..self.g.cap())
            .filter(|&n| self.g.is_present(n))
            .partition(|&n| b_side[ix(n)]);
        let delta = i64::from(m1) - i64::from(m0);
        for (d, col) in (0..).zip(self.cols.iter_mut()) {
            let far = if b_side.get(ix(d)).copied().unwrap_or(false) {
                &a_nodes
            } else {
                &b_nodes
            };
            for &x in far {
                if let Some(v) = col.get_mut(ix(x))
                    && *v != INF
                {
                    // Cannot fail: the new distance is a real path length
                    // below the overflow bound of MAX_LINK_METRIC.
                    *v = u32::try_from(i64::from(*v) + delta).unwrap_or(INF - 1);
                }
            }
        }
        true
    }

    /// Every route of every node as a `Set`: the first `update`.
    fn full_dump(&self) -> BTreeMap<NodeIdx, Vec<RouteDelta>> {
        let mut out = BTreeMap::new();
        for s in 0..self.g.cap() {
            let deltas: Vec<RouteDelta> = self
                .routes(s)
                .map(|(dst, hops)| RouteDelta::Set { dst, hops })
                .collect();
            if !deltas.is_empty() {
                out.insert(s, deltas);
            }
        }
        out
    }
}

/// Starts a new column in the scratch state (epoch stamps avoid clearing
/// `n`-sized arrays per column).
fn next_epoch(sc: &mut Scratch) {
    if sc.epoch == u32::MAX {
        sc.stamp.fill(0);
        sc.invalid.fill(0);
        sc.seen.fill(0);
        sc.epoch = 0;
    }
    sc.epoch += 1;
    sc.changed.clear();
    sc.stack.clear();
    sc.heap.clear();
}

/// Records x's distance before its first change in this column.
#[inline]
fn log(sc: &mut Scratch, col: &[u32], x: NodeIdx) {
    if sc.stamp[ix(x)] != sc.epoch {
        sc.stamp[ix(x)] = sc.epoch;
        sc.old[ix(x)] = col[ix(x)];
        sc.changed.push(x);
    }
}

/// Turns `col` (exact for the old graph) into `dist(·, d)` of the new graph.
fn repair(g: &Graph, old: View<'_>, ch: &Changes, d: NodeIdx, col: &mut [u32], sc: &mut Scratch) {
    next_epoch(sc);
    let new = View { g, old: None };
    let ep = sc.epoch;

    // Phase 1 seeds: nodes whose old distance was tight over something that
    // got worse. A link that got better cannot invalidate anything.
    for e in &ch.edges {
        let Some(m0) = e.old else { continue };
        for (v, u) in [(e.a, e.b), (e.b, e.a)] {
            let du = col[ix(u)];
            if v == d || du == INF || !old.eligible(u, d) || col[ix(v)] != du.saturating_add(m0) {
                continue;
            }
            let worse = e.new.is_none_or(|m1| m1 > m0) || !new.eligible(u, d);
            if worse {
                sc.stack.push(v);
            }
        }
    }
    for &(n, now) in &ch.flips {
        let dn = col[ix(n)];
        if now && n != d && dn != INF {
            for &(v, m) in old.adj(n) {
                if v != d && col[ix(v)] == dn.saturating_add(m) {
                    sc.stack.push(v);
                }
            }
        }
    }
    sc.stack
        .extend(ch.removed.iter().copied().filter(|&n| n != d));

    // Phase 1: a node keeps its distance iff a still-valid eligible neighbour
    // achieves it exactly. Tight parents are strictly closer (metric > 0), so
    // this support relation is acyclic and the fixpoint is unique.
    while let Some(v) = sc.stack.pop() {
        let dv = col[ix(v)];
        if v == d || dv == INF || sc.invalid[ix(v)] == ep {
            continue;
        }
        let supported = g.adj[ix(v)].iter().any(|&(u, m)| {
            let du = col[ix(u)];
            du != INF && du.saturating_add(m) == dv && new.eligible(u, d)
        });
        if supported && g.is_present(v) {
            continue;
        }
        sc.invalid[ix(v)] = ep;
        log(sc, col, v);
        col[ix(v)] = INF;
        // Recheck whoever leaned on v: over the old metric (their distance
        // came from the old graph) or the new one (a support found above).
        for &(w, m) in old.adj(v).iter().chain(&g.adj[ix(v)]) {
            if w != d && col[ix(w)] == dv.saturating_add(m) {
                sc.stack.push(w);
            }
        }
    }

    // Phase 2 seeds: invalidated nodes take their best valid offer…
    for i in 0..sc.changed.len() {
        let v = sc.changed[i];
        let best = g.adj[ix(v)]
            .iter()
            .filter(|&&(u, _)| col[ix(u)] != INF && new.eligible(u, d))
            .map(|&(u, m)| col[ix(u)].saturating_add(m))
            .min()
            .unwrap_or(INF);
        if best != INF {
            col[ix(v)] = best;
            sc.heap.push(key(best, v));
        }
    }
    // …links that got better make their offers…
    for e in &ch.edges {
        let Some(m1) = e.new else { continue };
        for (v, u) in [(e.a, e.b), (e.b, e.a)] {
            let du = col[ix(u)];
            if v == d || du == INF || !new.eligible(u, d) {
                continue;
            }
            let cand = du.saturating_add(m1);
            if cand < col[ix(v)] {
                log(sc, col, v);
                col[ix(v)] = cand;
                sc.heap.push(key(cand, v));
            }
        }
    }
    // …and undrained nodes carry transit again.
    for &(n, now) in &ch.flips {
        if !now && n != d && col[ix(n)] != INF {
            sc.heap.push(key(col[ix(n)], n));
        }
    }

    // Phase 3: Dijkstra from the seeds; it only reaches nodes that improve.
    while let Some(k) = sc.heap.pop() {
        let (dv, v) = unkey(k);
        if dv != col[ix(v)] || (v != d && g.drained[ix(v)]) {
            continue;
        }
        for &(w, m) in &g.adj[ix(v)] {
            let cand = dv.saturating_add(m);
            if cand < col[ix(w)] {
                log(sc, col, w);
                col[ix(w)] = cand;
                sc.heap.push(key(cand, w));
            }
        }
    }
}

/// Emits the deltas of column `d`: compares old and new next hops for every
/// source that can see a difference (see the module docs).
fn diff_column(
    old: View<'_>,
    new: View<'_>,
    ch: &Changes,
    d: NodeIdx,
    col: &[u32],
    sc: &mut Scratch,
    out: &mut [Vec<RouteDelta>],
) {
    let ep = sc.epoch;
    sc.sources.clear();
    let add = |s: NodeIdx, seen: &mut Vec<u32>, sources: &mut Vec<NodeIdx>| {
        if seen[ix(s)] != ep {
            seen[ix(s)] = ep;
            sources.push(s);
        }
    };
    for &x in &sc.changed {
        let (was, now) = (sc.old[ix(x)], col[ix(x)]);
        if was == now {
            continue;
        }
        add(x, &mut sc.seen, &mut sc.sources);
        // A neighbour whose own distance did not change only cares about x
        // if x is downstream of it before or after (otherwise x is in none
        // of its candidate lists); changed neighbours are added on their own.
        for &(s, _) in new.adj(x) {
            let ds = col[ix(s)];
            if was < ds || now < ds {
                add(s, &mut sc.seen, &mut sc.sources);
            }
        }
    }
    for &s in &ch.always {
        add(s, &mut sc.seen, &mut sc.sources);
    }
    let (stamp, old_dist) = (&sc.stamp, &sc.old);
    let old_of = |x: NodeIdx| {
        if stamp[ix(x)] == ep {
            old_dist[ix(x)]
        } else {
            col[ix(x)]
        }
    };
    for &s in &sc.sources {
        if s == d || !new.present(s) {
            continue;
        }
        let before = graph::top_hops(old, s, d, old_of, &mut sc.cands);
        let after = graph::top_hops(new, s, d, |x| col[ix(x)], &mut sc.cands);
        if before != after {
            let delta = match after {
                Some(top) => RouteDelta::Set {
                    dst: d,
                    hops: top.to_next_hops(),
                },
                None => RouteDelta::Remove { dst: d },
            };
            out[ix(s)].push(delta);
        }
    }
}
