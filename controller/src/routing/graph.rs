//! The link graph, the snapshot of what changed since the last computation,
//! the full per-destination Dijkstra and the next-hop rule shared by both.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::{MAX_ALTERNATES, NextHops, NodeIdx};

/// "Unreachable" in a distance column.
pub(crate) const INF: u32 = u32::MAX;

/// `NodeIdx` → slice index; lossless on every target we build for (≥ 32 bit).
#[inline]
pub(crate) fn ix(n: NodeIdx) -> usize {
    n as usize
}

/// Undirected links, kept as sorted adjacency lists so that every scan is in
/// index order (determinism without a `HashMap` in sight).
#[derive(Debug, Default, Clone)]
pub(crate) struct Graph {
    /// Per node: (neighbour, metric), sorted by neighbour.
    pub adj: Vec<Vec<(NodeIdx, u32)>>,
    pub present: Vec<bool>,
    pub drained: Vec<bool>,
}

impl Graph {
    /// Number of index slots (largest index + 1).
    pub fn cap(&self) -> NodeIdx {
        NodeIdx::try_from(self.present.len()).unwrap_or(NodeIdx::MAX)
    }

    pub fn grow(&mut self, n: NodeIdx) {
        let want = ix(n) + 1;
        if self.present.len() < want {
            self.adj.resize_with(want, Vec::new);
            self.present.resize(want, false);
            self.drained.resize(want, false);
        }
    }

    pub fn is_present(&self, n: NodeIdx) -> bool {
        self.present.get(ix(n)).copied().unwrap_or(false)
    }

    pub fn metric(&self, a: NodeIdx, b: NodeIdx) -> Option<u32> {
        let list = self.adj.get(ix(a))?;
        list.binary_search_by_key(&b, |e| e.0)
            .ok()
            .map(|i| list[i].1)
    }

    /// Inserts or replaces the half-link a → b.
    pub fn set_half(&mut self, a: NodeIdx, b: NodeIdx, m: u32) {
        let list = &mut self.adj[ix(a)];
        match list.binary_search_by_key(&b, |e| e.0) {
            Ok(i) => list[i].1 = m,
            Err(i) => list.insert(i, (b, m)),
        }
    }

    pub fn remove_half(&mut self, a: NodeIdx, b: NodeIdx) {
        if let Some(list) = self.adj.get_mut(ix(a))
            && let Ok(i) = list.binary_search_by_key(&b, |e| e.0)
        {
            list.remove(i);
        }
    }
}

/// The graph as it was at the last computation, for the nodes that changed
/// since: enough to know which links got better or worse and to derive the
/// next hops the agents currently hold.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub adj: BTreeMap<NodeIdx, Vec<(NodeIdx, u32)>>,
    pub present: BTreeMap<NodeIdx, bool>,
    pub drained: BTreeMap<NodeIdx, bool>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.adj.is_empty() && self.present.is_empty() && self.drained.is_empty()
    }
}

/// The graph either as it is now (`old == None`) or as it was at the last
/// computation.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub g: &'a Graph,
    pub old: Option<&'a Snapshot>,
}

impl<'a> View<'a> {
    pub fn adj(&self, n: NodeIdx) -> &'a [(NodeIdx, u32)] {
        if let Some(list) = self.old.and_then(|s| s.adj.get(&n)) {
            return list;
        }
        self.g.adj.get(ix(n)).map_or(&[], Vec::as_slice)
    }

    pub fn present(&self, n: NodeIdx) -> bool {
        match self.old.and_then(|s| s.present.get(&n)) {
            Some(p) => *p,
            None => self.g.is_present(n),
        }
    }

    pub fn drained(&self, n: NodeIdx) -> bool {
        match self.old.and_then(|s| s.drained.get(&n)) {
            Some(d) => *d,
            None => self.g.drained.get(ix(n)).copied().unwrap_or(false),
        }
    }

    /// May `n` carry traffic toward `d`? Drained nodes carry no transit.
    pub fn eligible(&self, n: NodeIdx, d: NodeIdx) -> bool {
        n == d || (self.present(n) && !self.drained(n))
    }
}

/// The primary and alternates of one route as a fixed array (best first,
/// `len` used): compared without allocating while diffing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Top {
    hops: [NodeIdx; 1 + MAX_ALTERNATES],
    len: usize,
}

impl Top {
    /// The primary, then the alternates.
    pub fn hops(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.hops[..self.len].iter().copied()
    }

    pub fn to_next_hops(self) -> NextHops {
        NextHops {
            primary: self.hops[0],
            alternates: self.hops[1..self.len].to_vec(),
        }
    }
}

/// The next hops of `s` toward `d`, given `dist(x) = dist(x, d)`.
///
/// `scratch` is reused between calls to avoid an allocation per pair.
pub(crate) fn top_hops(
    view: View<'_>,
    s: NodeIdx,
    d: NodeIdx,
    dist: impl Fn(NodeIdx) -> u32,
    scratch: &mut Vec<(u32, NodeIdx)>,
) -> Option<Top> {
    if s == d || !view.present(s) || !view.present(d) {
        return None;
    }
    let own = dist(s);
    if own == INF {
        return None;
    }
    scratch.clear();
    for &(n, m) in view.adj(s) {
        let dn = dist(n);
        if dn < own && view.eligible(n, d) {
            // dn < own ≤ INF - 1 and the clamp on metrics keep this exact.
            scratch.push((dn.saturating_add(m), n));
        }
    }
    // The primary is downstream too (metric > 0), so the one candidate list
    // holds the primary and every alternate; (cost, index) makes ties stable.
    scratch.sort_unstable();
    let mut top = Top {
        hops: [0; 1 + MAX_ALTERNATES],
        len: 0,
    };
    for (slot, c) in top.hops.iter_mut().zip(scratch.iter()) {
        *slot = c.1;
        top.len += 1;
    }
    (top.len > 0).then_some(top)
}

/// [`top_hops`] as the public [`NextHops`].
pub(crate) fn next_hops(
    view: View<'_>,
    s: NodeIdx,
    d: NodeIdx,
    dist: impl Fn(NodeIdx) -> u32,
    scratch: &mut Vec<(u32, NodeIdx)>,
) -> Option<NextHops> {
    top_hops(view, s, d, dist, scratch).map(Top::to_next_hops)
}

/// Heap entry ordered by (distance, node): one `u64` compares fastest.
#[inline]
pub(crate) fn key(dist: u32, n: NodeIdx) -> Reverse<u64> {
    Reverse((u64::from(dist) << 32) | u64::from(n))
}

#[inline]
pub(crate) fn unkey(k: Reverse<u64>) -> (u32, NodeIdx) {
    let v = k.0;
    // Both halves fit by construction; the masks make that explicit.
    (
        u32::try_from(v >> 32).unwrap_or(INF),
        u32::try_from(v & u64::from(u32::MAX)).unwrap_or(0),
    )
}

/// Fills `col` with `dist(·, d)` by one Dijkstra from `d` (links are
/// symmetric, so the reversed graph is the graph). Drained nodes get their own
/// distance but are not expanded: nobody's path may cross them.
pub(crate) fn full_column(
    g: &Graph,
    d: NodeIdx,
    col: &mut Vec<u32>,
    heap: &mut BinaryHeap<Reverse<u64>>,
) {
    col.clear();
    col.resize(g.present.len(), INF);
    if !g.is_present(d) {
        return;
    }
    heap.clear();
    col[ix(d)] = 0;
    heap.push(key(0, d));
    while let Some(k) = heap.pop() {
        let (dv, v) = unkey(k);
        if dv != col[ix(v)] || (v != d && g.drained[ix(v)]) {
            continue;
        }
        for &(w, m) in &g.adj[ix(v)] {
            let cand = dv.saturating_add(m);
            if cand < col[ix(w)] {
                col[ix(w)] = cand;
                heap.push(key(cand, w));
            }
        }
    }
}
