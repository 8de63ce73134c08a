//! Small static topologies for labs and the demo, and the static routes an
//! operator would write for them: for each destination the shortest-path
//! next hop first, then every other neighbour that is strictly closer to the
//! destination (the downstream condition, so no alternate can loop).

use std::collections::{BTreeMap, VecDeque};

/// Nodes by index, undirected links between them.
#[derive(Debug, Clone)]
pub struct Topology {
    pub names: Vec<String>,
    pub links: Vec<(usize, usize)>,
}

impl Topology {
    /// `a — b — c — …` with `count` nodes.
    pub fn line(count: usize) -> Self {
        Self {
            names: (0..count).map(node_name).collect(),
            links: (1..count).map(|i| (i - 1, i)).collect(),
        }
    }

    /// `a` on top, `b` and `c` in the middle, `d` below.
    pub fn diamond() -> Self {
        Self {
            names: (0..4).map(node_name).collect(),
            links: vec![(0, 1), (0, 2), (1, 3), (2, 3)],
        }
    }

    /// Two rows of `columns` nodes (`a b c` over `d e f` for 3): a ladder,
    /// so every node has an alternate path.
    pub fn ladder(columns: usize) -> Self {
        let mut links: Vec<(usize, usize)> = Vec::new();
        for row in 0..2 {
            for c in 1..columns {
                links.push((row * columns + c - 1, row * columns + c));
            }
        }
        for c in 0..columns {
            links.push((c, columns + c));
        }
        Self {
            names: (0..2 * columns).map(node_name).collect(),
            links,
        }
    }

    /// Node `a` in the middle, joined to `leaves` others.
    pub fn star(leaves: usize) -> Self {
        Self {
            names: (0..=leaves).map(node_name).collect(),
            links: (1..=leaves).map(|i| (0, i)).collect(),
        }
    }

    pub fn neighbours(&self, node: usize) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .links
            .iter()
            .filter_map(|&(a, b)| match (a == node, b == node) {
                (true, _) => Some(b),
                (_, true) => Some(a),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Hop counts from every node to `dst`.
    pub fn distances_to(&self, dst: usize) -> Vec<Option<usize>> {
        let mut dist = vec![None; self.names.len()];
        dist[dst] = Some(0);
        let mut queue = VecDeque::from([dst]);
        while let Some(n) = queue.pop_front() {
            let d = dist[n].unwrap_or(0);
            for m in self.neighbours(n) {
                if dist[m].is_none() {
                    dist[m] = Some(d + 1);
                    queue.push_back(m);
                }
            }
        }
        dist
    }

    /// For `node`: destination → ordered next hops (primary, then
    /// loop-free alternates), ties broken by node index so runs repeat.
    pub fn routes_from(&self, node: usize) -> BTreeMap<usize, Vec<usize>> {
        let mut routes = BTreeMap::new();
        for dst in (0..self.names.len()).filter(|d| *d != node) {
            let dist = self.distances_to(dst);
            let Some(own) = dist[node] else { continue };
            let mut hops: Vec<(usize, usize)> = self
                .neighbours(node)
                .into_iter()
                .filter_map(|n| dist[n].filter(|d| *d < own).map(|d| (d, n)))
                .collect();
            hops.sort_unstable();
            routes.insert(dst, hops.into_iter().map(|(_, n)| n).collect());
        }
        routes
    }
}

/// `a`, `b`, …, `z`, then `n26`, ….
pub fn node_name(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => char::from(b'a' + i).to_string(),
        _ => format!("n{index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_routes_point_along_the_line() {
        let t = Topology::line(4);
        let routes = t.routes_from(1);
        assert_eq!(routes[&0], vec![0]);
        assert_eq!(routes[&3], vec![2]);
    }

    #[test]
    fn diamond_has_loop_free_alternates_only_where_they_exist() {
        let t = Topology::diamond();
        assert_eq!(
            t.routes_from(0)[&3],
            vec![1, 2],
            "both middle nodes are closer to d"
        );
        assert_eq!(
            t.routes_from(1)[&2],
            vec![0, 3],
            "b reaches c via a or d, both at distance 1"
        );
        assert_eq!(
            t.routes_from(1)[&3],
            vec![3],
            "a is farther from d than b: no alternate"
        );
    }
}
