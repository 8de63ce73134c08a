//! Single points of failure: the nodes (articulation points) and links
//! (bridges) whose failure alone would disconnect part of the mesh, and the
//! buildings (approved prefixes) that would lose their connection.
//!
//! ## What is analysed
//!
//! The graph has the **active** nodes as vertices and the links that are
//! **up** between two of them as edges (pending and revoked nodes, down links
//! and links to unknown nodes are ignored; parallel links count separately, so
//! two links between the same pair are not a bridge).
//!
//! **The mesh** is the largest connected component of that graph; when two
//! are equally large, the one holding the smallest node id. Nodes outside it
//! are already cut off: no new failure can disconnect them again, and their
//! islands' inner structure is not a single point of failure *of the mesh*,
//! so failures inside an island are not reported (the island itself shows up
//! as offline nodes and down links elsewhere). Every answer is relative to
//! the mesh as it is now:
//!
//! * a node `v` is reported when removing it splits the rest of the mesh;
//!   the largest remaining piece (ties: the piece holding the smallest id)
//!   stays "the mesh", and `cuts_off` lists every node of the other pieces;
//! * a link is reported when removing it splits the mesh in two; `cuts_off`
//!   is the smaller side (ties: the side without the smallest id).
//!
//! `prefixes_cut` is the union of the cut-off nodes' approved prefixes,
//! sorted and without duplicates. Output is sorted by node id and by
//! `(a, b)`; `cuts_off` is sorted by id.
//!
//! ## How
//!
//! One iterative depth-first search (Hopcroft–Tarjan low-points, no
//! recursion, so a 5,000-node chain cannot overflow the stack) from the
//! mesh's smallest node, recording for every vertex its preorder number,
//! low-point, subtree size and the smallest node index in its subtree. A
//! subtree is a contiguous range of the preorder, so each piece a failure
//! leaves behind is either a child's subtree or "everything else", and the
//! pieces are listed without another search. The analysis is `O(n + m)`;
//! writing the answer costs its size (`Σ |cuts_off|`, which a chain makes
//! quadratic: that is how much there is to say).

use std::collections::BTreeMap;

use freimesh_proto::api;
use ipnet::IpNet;

/// No parent edge (the root of the search).
const NO_EDGE: usize = usize::MAX;

/// Articulation points and bridges of the graph of active nodes joined by
/// links that are up (see the module docs for the exact rules).
pub fn redundancy(nodes: &[api::Node], links: &[api::Link]) -> api::Redundancy {
    let graph = Graph::new(nodes, links);
    let Some(mesh) = graph.mesh() else {
        return api::Redundancy {
            nodes: Vec::new(),
            links: Vec::new(),
        };
    };
    let dfs = Dfs::run(&graph, mesh.root);
    debug_assert_eq!(dfs.order.len(), mesh.size);

    let mut cut_nodes = Vec::new();
    for v in 0..graph.len() {
        if dfs.pre[v] == UNVISITED {
            continue;
        }
        if let Some(cuts_off) = dfs.cut_by_node(v) {
            let node = graph.nodes[v];
            cut_nodes.push(api::CutNode {
                node: node.id,
                hostname: node.hostname.clone(),
                prefixes_cut: graph.prefixes(&cuts_off),
                cuts_off: graph.ids(cuts_off),
            });
        }
    }

    let mut cut_links = Vec::new();
    for (child, &edge) in dfs.parent_edge.iter().enumerate() {
        if edge == NO_EDGE || dfs.low[child] <= dfs.pre[graph.edges[edge].other(child)] {
            continue;
        }
        let cuts_off = dfs.cut_by_bridge(child);
        let link = graph.links[edge];
        cut_links.push(api::CutLink {
            a: link.a,
            b: link.b,
            prefixes_cut: graph.prefixes(&cuts_off),
            cuts_off: graph.ids(cuts_off),
        });
    }
    cut_links.sort_by_key(|l| (l.a, l.b));

    api::Redundancy {
        nodes: cut_nodes,
        links: cut_links,
    }
}

/// The analysed graph: vertex `i` is the `i`-th active node by id, so
/// comparing indices compares ids.
struct Graph<'a> {
    nodes: Vec<&'a api::Node>,
    /// The link behind each edge.
    links: Vec<&'a api::Link>,
    edges: Vec<Edge>,
    /// Compressed adjacency: `adj[start[v]..start[v + 1]]` are `v`'s edge ids.
    start: Vec<usize>,
    adj: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Edge {
    u: usize,
    v: usize,
}

impl Edge {
    fn other(self, x: usize) -> usize {
        if self.u == x { self.v } else { self.u }
    }
}

struct Mesh {
    root: usize,
    size: usize,
}

impl<'a> Graph<'a> {
    fn new(nodes: &'a [api::Node], links: &'a [api::Link]) -> Self {
        let mut by_id: BTreeMap<u32, &'a api::Node> = BTreeMap::new();
        for node in nodes.iter().filter(|n| n.state == api::NodeState::Active) {
            by_id.entry(node.id).or_insert(node);
        }
        let index: BTreeMap<u32, usize> =
            by_id.keys().enumerate().map(|(i, &id)| (id, i)).collect();
        let nodes: Vec<&api::Node> = by_id.into_values().collect();

        let mut kept = Vec::new();
        let mut edges = Vec::new();
        let mut degree = vec![0usize; nodes.len()];
        for link in links.iter().filter(|l| l.up && l.a != l.b) {
            if let (Some(&u), Some(&v)) = (index.get(&link.a), index.get(&link.b)) {
                kept.push(link);
                edges.push(Edge { u, v });
                degree[u] += 1;
                degree[v] += 1;
            }
        }
        let mut start = Vec::with_capacity(nodes.len() + 1);
        start.push(0);
        for d in &degree {
            let last = start[start.len() - 1];
            start.push(last + d);
        }
        let mut fill = start.clone();
        let mut adj = vec![0; 2 * edges.len()];
        for (e, edge) in edges.iter().enumerate() {
            for end in [edge.u, edge.v] {
                adj[fill[end]] = e;
                fill[end] += 1;
            }
        }
        Self {
            nodes,
            links: kept,
            edges,
            start,
            adj,
        }
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn edges_of(&self, v: usize) -> &[usize] {
        &self.adj[self.start[v]..self.start[v + 1]]
    }

    /// The largest component (ties: smallest id), by one linear sweep.
    fn mesh(&self) -> Option<Mesh> {
        let mut seen = vec![false; self.len()];
        let mut best: Option<Mesh> = None;
        let mut stack = Vec::new();
        for root in 0..self.len() {
            if seen[root] {
                continue;
            }
            seen[root] = true;
            stack.push(root);
            let mut size = 0;
            while let Some(x) = stack.pop() {
                size += 1;
                for &e in self.edges_of(x) {
                    let y = self.edges[e].other(x);
                    if !seen[y] {
                        seen[y] = true;
                        stack.push(y);
                    }
                }
            }
            // Roots come in index (= id) order, so a later equal-sized
            // component never replaces an earlier one.
            if best.as_ref().is_none_or(|b| size > b.size) {
                best = Some(Mesh { root, size });
            }
        }
        best
    }

    fn ids(&self, mut members: Vec<usize>) -> Vec<u32> {
        members.sort_unstable();
        members.into_iter().map(|v| self.nodes[v].id).collect()
    }

    fn prefixes(&self, members: &[usize]) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = members
            .iter()
            .flat_map(|&v| self.nodes[v].prefixes.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

const UNVISITED: usize = usize::MAX;

/// The depth-first search tree of the mesh with low-points.
struct Dfs {
    /// Preorder number, `UNVISITED` outside the mesh.
    pre: Vec<usize>,
    low: Vec<usize>,
    /// Subtree size.
    size: Vec<usize>,
    /// Smallest vertex index in the subtree.
    min: Vec<usize>,
    parent_edge: Vec<usize>,
    /// Vertices in preorder: a subtree of `v` is `order[pre[v]..pre[v] + size[v]]`.
    order: Vec<usize>,
    /// Tree children of each vertex, in the order they were discovered.
    children: Vec<Vec<usize>>,
}

impl Dfs {
    fn run(graph: &Graph<'_>, root: usize) -> Self {
        let n = graph.len();
        let mut dfs = Self {
            pre: vec![UNVISITED; n],
            low: vec![0; n],
            size: vec![1; n],
            min: (0..n).collect(),
            parent_edge: vec![NO_EDGE; n],
            order: Vec::new(),
            children: vec![Vec::new(); n],
        };
        // (vertex, next position in its adjacency list)
        let mut stack: Vec<(usize, usize)> = Vec::new();
        dfs.visit(root, NO_EDGE);
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (v, next) = *top;
            let incident = graph.edges_of(v);
            if let Some(&e) = incident.get(next) {
                top.1 += 1;
                if e == dfs.parent_edge[v] {
                    continue;
                }
                let w = graph.edges[e].other(v);
                if dfs.pre[w] == UNVISITED {
                    dfs.visit(w, e);
                    dfs.children[v].push(w);
                    stack.push((w, 0));
                } else {
                    dfs.low[v] = dfs.low[v].min(dfs.pre[w]);
                }
            } else {
                stack.pop();
                if let Some(&(parent, _)) = stack.last() {
                    dfs.low[parent] = dfs.low[parent].min(dfs.low[v]);
                    dfs.size[parent] += dfs.size[v];
                    dfs.min[parent] = dfs.min[parent].min(dfs.min[v]);
                }
            }
        }
        dfs
    }

    fn visit(&mut self, v: usize, via: usize) {
        self.pre[v] = self.order.len();
        self.low[v] = self.pre[v];
        self.parent_edge[v] = via;
        self.order.push(v);
    }

    fn subtree(&self, v: usize) -> &[usize] {
        &self.order[self.pre[v]..self.pre[v] + self.size[v]]
    }

    /// The nodes that removing `v` cuts off from the mesh, or `None` if
    /// the rest of the mesh stays in one piece.
    fn cut_by_node(&self, v: usize) -> Option<Vec<usize>> {
        let is_root = self.parent_edge[v] == NO_EDGE;
        // Children whose subtree has no back edge above `v` become pieces
        // of their own; everything else stays with the parent's side.
        let split: Vec<usize> = self.children[v]
            .iter()
            .copied()
            .filter(|&c| is_root || self.low[c] >= self.pre[v])
            .collect();
        let pieces_without_rest = split.len();
        if pieces_without_rest + usize::from(!is_root) < 2 {
            return None;
        }
        let mut cut = Vec::new();
        if is_root {
            // The root is the smallest id, so the pieces are only its
            // children's subtrees: keep the largest (ties: smallest index).
            let keep = split.iter().copied().max_by(|&x, &y| {
                self.size[x]
                    .cmp(&self.size[y])
                    .then(self.min[y].cmp(&self.min[x]))
            })?;
            for &c in split.iter().filter(|&&c| c != keep) {
                cut.extend_from_slice(self.subtree(c));
            }
        } else {
            // The rest holds the root, the mesh's smallest id: it wins ties.
            let mesh_size = self.order.len();
            let split_size: usize = split.iter().map(|&c| self.size[c]).sum();
            let rest = mesh_size - 1 - split_size;
            let biggest = split.iter().copied().max_by(|&x, &y| {
                self.size[x]
                    .cmp(&self.size[y])
                    .then(self.min[y].cmp(&self.min[x]))
            })?;
            if self.size[biggest] > rest {
                for &c in split.iter().filter(|&&c| c != biggest) {
                    cut.extend_from_slice(self.subtree(c));
                }
                // The rest: everything outside v's subtree, plus the
                // children of v that stay attached above v.
                let (lo, hi) = (self.pre[v], self.pre[v] + self.size[v]);
                cut.extend_from_slice(&self.order[..lo]);
                cut.extend_from_slice(&self.order[hi..]);
                for &c in self.children[v]
                    .iter()
                    .filter(|&&c| self.low[c] < self.pre[v])
                {
                    cut.extend_from_slice(self.subtree(c));
                }
            } else {
                for &c in &split {
                    cut.extend_from_slice(self.subtree(c));
                }
            }
        }
        Some(cut)
    }

    /// The smaller side when the tree edge above `child` (a bridge) fails.
    fn cut_by_bridge(&self, child: usize) -> Vec<usize> {
        let inside = self.size[child];
        let outside = self.order.len() - inside;
        // The outside holds the root (smallest id) and so wins ties.
        if inside <= outside {
            self.subtree(child).to_vec()
        } else {
            let (lo, hi) = (self.pre[child], self.pre[child] + inside);
            let mut cut = self.order[..lo].to_vec();
            cut.extend_from_slice(&self.order[hi..]);
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, state: api::NodeState, prefixes: &[&str]) -> api::Node {
        api::Node {
            id,
            node_id: format!("n{id}"),
            public_key: String::new(),
            hostname: format!("host-{id}"),
            state,
            online: true,
            drained: false,
            gateway: false,
            addresses: Vec::new(),
            prefixes: prefixes
                .iter()
                .map(|p| p.parse().expect("test prefix"))
                .collect(),
            endpoints: Vec::new(),
            links_up: 0,
            links_total: 0,
            last_seen_ms: None,
            public_wifi: false,
            client_prefixes: Vec::new(),
            clients: None,
            roles_requested: vec![],
            roles_approved: vec![],
            telemetry: Default::default(),
        }
    }

    fn active(ids: impl IntoIterator<Item = u32>) -> Vec<api::Node> {
        ids.into_iter()
            .map(|id| node(id, api::NodeState::Active, &[]))
            .collect()
    }

    fn link(a: u32, b: u32, up: bool) -> api::Link {
        api::Link {
            a,
            b,
            a_hostname: format!("host-{a}"),
            b_hostname: format!("host-{b}"),
            up,
            rtt_us: None,
            loss_ppm: None,
            metric: 1,
            override_cost: None,
            rtt_history_us: Vec::new(),
            loss_history_ppm: Vec::new(),
        }
    }

    fn up(pairs: &[(u32, u32)]) -> Vec<api::Link> {
        pairs.iter().map(|&(a, b)| link(a, b, true)).collect()
    }

    fn ring(ids: &[u32]) -> Vec<(u32, u32)> {
        (0..ids.len())
            .map(|i| {
                let (x, y) = (ids[i], ids[(i + 1) % ids.len()]);
                (x.min(y), x.max(y))
            })
            .collect()
    }

    /// `(node, cuts_off)` pairs.
    fn cut_nodes(r: &api::Redundancy) -> Vec<(u32, Vec<u32>)> {
        r.nodes
            .iter()
            .map(|c| (c.node, c.cuts_off.clone()))
            .collect()
    }

    /// `(a, b, cuts_off)` triples.
    fn cut_links(r: &api::Redundancy) -> Vec<(u32, u32, Vec<u32>)> {
        r.links
            .iter()
            .map(|c| (c.a, c.b, c.cuts_off.clone()))
            .collect()
    }

    #[test]
    fn empty_input_has_no_cuts() {
        let r = redundancy(&[], &[]);
        assert!(r.nodes.is_empty() && r.links.is_empty());
    }

    #[test]
    fn line_cuts_at_every_inner_node_and_every_link() {
        let r = redundancy(&active(1..=4), &up(&[(1, 2), (2, 3), (3, 4)]));
        assert_eq!(cut_nodes(&r), vec![(2, vec![1]), (3, vec![4])]);
        assert_eq!(
            cut_links(&r),
            vec![
                (1, 2, vec![1]),
                // 2 against 2: the side with the smallest id stays the mesh.
                (2, 3, vec![3, 4]),
                (3, 4, vec![4]),
            ]
        );
        assert_eq!(r.nodes[0].hostname, "host-2");
    }

    #[test]
    fn ring_has_no_single_point_of_failure() {
        let r = redundancy(&active(1..=5), &up(&ring(&[1, 2, 3, 4, 5])));
        assert_eq!(
            r,
            api::Redundancy {
                nodes: vec![],
                links: vec![]
            }
        );
    }

    #[test]
    fn star_centre_cuts_all_but_one_leaf() {
        // Centre is the smallest id: it is the search root.
        let r = redundancy(&active(1..=5), &up(&[(1, 2), (1, 3), (1, 4), (1, 5)]));
        assert_eq!(cut_nodes(&r), vec![(1, vec![3, 4, 5])]);
        assert_eq!(
            cut_links(&r),
            vec![
                (1, 2, vec![2]),
                (1, 3, vec![3]),
                (1, 4, vec![4]),
                (1, 5, vec![5])
            ]
        );

        // Centre in the middle of the ids: leaf 1 is "the mesh" after it fails.
        let r = redundancy(&active(1..=5), &up(&[(1, 3), (2, 3), (3, 4), (3, 5)]));
        assert_eq!(cut_nodes(&r), vec![(3, vec![2, 4, 5])]);
    }

    #[test]
    fn two_rings_joined_by_a_node_cut_the_smaller_ring() {
        let mut pairs = ring(&[1, 2, 3, 4]);
        pairs.extend(ring(&[4, 5, 6, 7, 8]));
        let r = redundancy(&active(1..=8), &up(&pairs));
        assert_eq!(cut_nodes(&r), vec![(4, vec![1, 2, 3])]);
        assert!(r.links.is_empty());

        // The larger ring holding the smaller ids changes nothing.
        let mut pairs = ring(&[1, 2, 3, 4, 5]);
        pairs.extend(ring(&[5, 6, 7, 8]));
        let r = redundancy(&active(1..=8), &up(&pairs));
        assert_eq!(cut_nodes(&r), vec![(5, vec![6, 7, 8])]);
    }

    #[test]
    fn two_rings_joined_by_a_link_have_a_bridge_and_two_cut_nodes() {
        let mut pairs = ring(&[1, 2, 3]);
        pairs.extend(ring(&[4, 5, 6]));
        pairs.push((3, 4));
        let r = redundancy(&active(1..=6), &up(&pairs));
        assert_eq!(cut_nodes(&r), vec![(3, vec![1, 2]), (4, vec![5, 6])]);
        assert_eq!(cut_links(&r), vec![(3, 4, vec![4, 5, 6])]);
    }

    #[test]
    fn isolated_nodes_and_islands_are_not_cut_again() {
        // 1 and 2 alone, 10–11–12 a line island, 3..=7 a ring with a tail 8.
        let mut pairs = up(&ring(&[3, 4, 5, 6, 7]));
        pairs.extend(up(&[(7, 8), (10, 11), (11, 12)]));
        let mut nodes = active([1, 2, 10, 11, 12]);
        nodes.extend(active(3..=8));
        let r = redundancy(&nodes, &pairs);
        assert_eq!(cut_nodes(&r), vec![(7, vec![8])]);
        assert_eq!(cut_links(&r), vec![(7, 8, vec![8])]);
    }

    #[test]
    fn equal_components_the_one_with_the_smallest_id_is_the_mesh() {
        let r = redundancy(
            &active([1, 2, 3, 4, 5, 6]),
            &up(&[(4, 5), (5, 6), (1, 2), (2, 3)]),
        );
        assert_eq!(cut_nodes(&r), vec![(2, vec![3])]);
    }

    #[test]
    fn pending_and_revoked_nodes_are_ignored() {
        // Ring 1..=4; a pending node hangs off 1 and a revoked one off 2:
        // neither makes 1 or 2 a cut node.
        let mut nodes = active(1..=4);
        nodes.push(node(5, api::NodeState::Pending, &["10.5.0.0/24"]));
        nodes.push(node(6, api::NodeState::Revoked, &[]));
        let mut links = up(&ring(&[1, 2, 3, 4]));
        links.extend(up(&[(1, 5), (2, 6)]));
        assert_eq!(
            redundancy(&nodes, &links),
            api::Redundancy {
                nodes: vec![],
                links: vec![]
            }
        );

        // A revoked node in the middle of a line is already gone.
        let mut nodes = active([1, 3]);
        nodes.push(node(2, api::NodeState::Revoked, &[]));
        let r = redundancy(&nodes, &up(&[(1, 2), (2, 3)]));
        assert!(r.nodes.is_empty() && r.links.is_empty());
    }

    #[test]
    fn down_links_and_links_to_unknown_nodes_are_ignored() {
        let mut links = up(&[(1, 2), (2, 3), (3, 4), (4, 99)]);
        links.push(link(1, 4, false));
        let r = redundancy(&active(1..=4), &links);
        assert_eq!(cut_nodes(&r), vec![(2, vec![1]), (3, vec![4])]);
        assert_eq!(r.links.len(), 3);
    }

    #[test]
    fn parallel_links_are_not_a_bridge() {
        let r = redundancy(&active(1..=3), &up(&[(1, 2), (1, 2), (2, 3)]));
        assert_eq!(cut_links(&r), vec![(2, 3, vec![3])]);
        assert_eq!(cut_nodes(&r), vec![(2, vec![3])]);
    }

    #[test]
    fn prefixes_cut_are_the_buildings_behind_the_failure() {
        let nodes = vec![
            node(1, api::NodeState::Active, &["10.1.0.0/24"]),
            node(2, api::NodeState::Active, &[]),
            node(3, api::NodeState::Active, &["10.3.1.0/24", "10.3.0.0/24"]),
            node(4, api::NodeState::Active, &["10.3.0.0/24"]),
        ];
        // 1 hangs off the triangle 2–3–4: node 2 and link 1–2 cut it off.
        let r = redundancy(&nodes, &up(&[(1, 2), (2, 3), (3, 4), (2, 4)]));
        let building_1: Vec<IpNet> = vec!["10.1.0.0/24".parse().expect("net")];
        assert_eq!(cut_nodes(&r), vec![(2, vec![1])]);
        assert_eq!(r.nodes[0].prefixes_cut, building_1);
        assert_eq!(cut_links(&r), vec![(1, 2, vec![1])]);
        assert_eq!(r.links[0].prefixes_cut, building_1);
        // Deduplicated and sorted across nodes.
        let r = redundancy(&nodes, &up(&[(1, 2), (2, 3), (2, 4)]));
        let two = r
            .nodes
            .iter()
            .find(|c| c.node == 2)
            .expect("2 is a cut node");
        assert_eq!(two.cuts_off, vec![3, 4]);
        let expected: Vec<IpNet> = ["10.3.0.0/24", "10.3.1.0/24"]
            .iter()
            .map(|p| p.parse().expect("net"))
            .collect();
        assert_eq!(two.prefixes_cut, expected);
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        const N: u32 = 5_000;
        let pairs: Vec<(u32, u32)> = (1..N).map(|i| (i, i + 1)).collect();
        let r = redundancy(&active(1..=N), &up(&pairs));
        assert_eq!(r.nodes.len(), usize::try_from(N - 2).expect("fits"));
        assert_eq!(r.links.len(), usize::try_from(N - 1).expect("fits"));
        // Node 1000 fails: 1..=999 are the smaller part.
        let c = r
            .nodes
            .iter()
            .find(|c| c.node == 1_000)
            .expect("inner node");
        assert_eq!(c.cuts_off, (1..1_000).collect::<Vec<u32>>());
    }
}
