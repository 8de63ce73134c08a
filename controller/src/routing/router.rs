//! [`Router`]: the graph, the distance columns, the mutation API and the full
//! computation. The incremental path lives in `incremental.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::graph::{self, Graph, INF, Snapshot, View, ix};
use super::{Metric, NextHops, NodeIdx, RouteTable, clamp_metric};

/// The route computation core.
///
/// Contract, in call order:
/// 1. describe the mesh with [`add_node`](Self::add_node),
///    [`set_link`](Self::set_link) and [`set_drained`](Self::set_drained);
/// 2. [`compute_all`](Self::compute_all), then push
///    [`routes`](Self::routes)`(n)` to every node `n` as its full table (also
///    on an agent's reconnect: `routes` is always the current state);
/// 3. on every later change call the same mutators, then
///    [`update`](Self::update) and push the deltas it returns. Mutations
///    between two `update`s form one batch.
///
/// Calling `update` before any `compute_all` computes everything and returns
/// every route as a `Set`. [`routes`](Self::routes) and the other readers
/// show the state of the last computation until `update` runs. An index
/// that is removed and re-added within one batch counts as the same node:
/// call `update` in between when the store reuses an index.
///
/// Single-threaded and deterministic; the caller may run it on a blocking
/// thread (a full computation at 5,000 nodes takes about a second).
#[derive(Debug, Default)]
pub struct Router {
    pub(crate) g: Graph,
    /// `cols[d][x] = dist(x, d)`; empty for absent `d` and before the first
    /// computation. By symmetry it is also `dist(d, x)`.
    pub(crate) cols: Vec<Vec<u32>>,
    /// What the graph looked like at the last computation, for the nodes
    /// touched since.
    pub(crate) snap: Snapshot,
    pub(crate) computed: bool,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node (no links yet). Idempotent.
    pub fn add_node(&mut self, n: NodeIdx) {
        self.g.grow(n);
        if !self.g.present[ix(n)] {
            self.remember_present(n);
            self.g.present[ix(n)] = true;
        }
    }

    /// Removes a node and all its links; routes to it are withdrawn.
    pub fn remove_node(&mut self, n: NodeIdx) {
        if !self.g.is_present(n) {
            return;
        }
        let neighbours: Vec<NodeIdx> = self.g.adj[ix(n)].iter().map(|e| e.0).collect();
        for b in neighbours {
            self.remove_link(n, b);
        }
        self.remember_present(n);
        self.remember_drained(n);
        self.g.present[ix(n)] = false;
        self.g.drained[ix(n)] = false;
    }

    /// Adds or replaces the undirected link a – b. Adds missing nodes; a
    /// self-link is ignored; the metric is clamped to `1..=MAX_LINK_METRIC`.
    pub fn set_link(&mut self, a: NodeIdx, b: NodeIdx, metric: Metric) {
        if a == b {
            return;
        }
        self.add_node(a);
        self.add_node(b);
        let m = clamp_metric(u64::from(metric.0));
        if self.g.metric(a, b) == Some(m) {
            return;
        }
        self.remember_adj(a);
        self.remember_adj(b);
        self.g.set_half(a, b, m);
        self.g.set_half(b, a, m);
    }

    /// Removes the link a – b if it exists.
    pub fn remove_link(&mut self, a: NodeIdx, b: NodeIdx) {
        if self.g.metric(a, b).is_none() {
            return;
        }
        self.remember_adj(a);
        self.remember_adj(b);
        self.g.remove_half(a, b);
        self.g.remove_half(b, a);
    }

    /// A drained node carries no transit; it stays reachable as a destination
    /// and keeps its own routes.
    pub fn set_drained(&mut self, n: NodeIdx, drained: bool) {
        if !self.g.is_present(n) || self.g.drained[ix(n)] == drained {
            return;
        }
        self.remember_drained(n);
        self.g.drained[ix(n)] = drained;
    }

    /// Recomputes every distance column from scratch (`n` Dijkstras) and
    /// forgets pending changes: afterwards [`routes`](Self::routes) is the
    /// state to push in full.
    pub fn compute_all(&mut self) {
        let cap = self.g.present.len();
        self.cols.resize_with(cap, Vec::new);
        let mut heap = BinaryHeap::new();
        for (d, col) in (0..self.g.cap()).zip(self.cols.iter_mut()) {
            if self.g.is_present(d) {
                graph::full_column(&self.g, d, col, &mut heap);
            } else {
                *col = Vec::new();
            }
        }
        self.snap = Snapshot::default();
        self.computed = true;
    }

    /// The routes of `src` as of the last `compute_all`/`update`, in
    /// destination order (empty before the first computation).
    ///
    /// Next hops are derived on the fly from stored distances (see the module
    /// docs), hence owned values. Cost: `O(n · deg(src))`, reading `deg + 1`
    /// distance columns sequentially.
    pub fn routes(&self, src: NodeIdx) -> impl Iterator<Item = (NodeIdx, NextHops)> + '_ {
        // Pending mutations are not visible until `update`: read the graph as
        // it was at the last computation, matching the stored distances.
        let view = View {
            g: &self.g,
            old: Some(&self.snap),
        };
        let mut scratch = Vec::new();
        let end = if self.computed { self.g.cap() } else { 0 };
        // dist(x, d) == dist(d, x): the columns of src and of its neighbours
        // are the rows we need, read in order.
        (0..end).filter_map(move |d| {
            let hops = graph::next_hops(view, src, d, |x| self.dist_sym(x, d), &mut scratch)?;
            Some((d, hops))
        })
    }

    /// [`routes`](Self::routes) collected into a table.
    pub fn table(&self, src: NodeIdx) -> RouteTable {
        self.routes(src).collect()
    }

    /// The next hops of `src` toward `dst` as last computed.
    pub fn next_hops(&self, src: NodeIdx, dst: NodeIdx) -> Option<NextHops> {
        if !self.computed {
            return None;
        }
        let view = View {
            g: &self.g,
            old: Some(&self.snap),
        };
        graph::next_hops(view, src, dst, |x| self.dist_sym(x, dst), &mut Vec::new())
    }

    /// `dist(src, dst)` as last computed, `None` if unreachable.
    pub fn distance(&self, src: NodeIdx, dst: NodeIdx) -> Option<u32> {
        Some(self.dist_sym(src, dst)).filter(|&d| d != INF)
    }

    /// `n`'s links as `(neighbour, metric)`, as of the last computation
    /// (matching the stored distances).
    pub fn neighbours(&self, n: NodeIdx) -> &[(NodeIdx, u32)] {
        View {
            g: &self.g,
            old: Some(&self.snap),
        }
        .adj(n)
    }

    /// Is `n` drained, as of the last computation?
    pub fn is_drained(&self, n: NodeIdx) -> bool {
        View {
            g: &self.g,
            old: Some(&self.snap),
        }
        .drained(n)
    }

    /// Is `n` a node of the mesh?
    pub fn contains(&self, n: NodeIdx) -> bool {
        self.g.is_present(n)
    }

    /// Bytes held by the distance columns (the dominant state).
    pub fn state_bytes(&self) -> usize {
        self.cols.iter().map(|c| c.capacity() * 4).sum()
    }

    /// `dist(x, d)` read from `x`'s column (symmetry), so that a caller
    /// iterating `d` walks memory sequentially.
    fn dist_sym(&self, x: NodeIdx, d: NodeIdx) -> u32 {
        self.cols
            .get(ix(x))
            .and_then(|c| c.get(ix(d)))
            .copied()
            .unwrap_or(INF)
    }

    // The `remember_*` helpers record the pre-change state once per batch;
    // before the first computation there is nothing to diff against.

    fn remember_adj(&mut self, n: NodeIdx) {
        if self.computed && !self.snap.adj.contains_key(&n) {
            self.snap.adj.insert(n, self.g.adj[ix(n)].clone());
        }
    }

    fn remember_present(&mut self, n: NodeIdx) {
        if self.computed {
            let now = self.g.is_present(n);
            self.snap.present.entry(n).or_insert(now);
        }
    }

    fn remember_drained(&mut self, n: NodeIdx) {
        if self.computed {
            let now = self.g.drained[ix(n)];
            self.snap.drained.entry(n).or_insert(now);
        }
    }
}

/// Scratch state for one `update`, reused across destination columns so that
/// a column costs nothing when it is untouched.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub heap: BinaryHeap<Reverse<u64>>,
    /// `stamp[x] == epoch` ⇔ x's distance was changed in this column;
    /// `old[x]` then holds the distance before.
    pub stamp: Vec<u32>,
    pub old: Vec<u32>,
    /// `invalid[x] == epoch` ⇔ x lost its distance in phase 1.
    pub invalid: Vec<u32>,
    pub epoch: u32,
    pub changed: Vec<NodeIdx>,
    pub stack: Vec<NodeIdx>,
    pub seen: Vec<u32>,
    pub sources: Vec<NodeIdx>,
    pub cands: Vec<(u32, NodeIdx)>,
}
