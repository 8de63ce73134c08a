//! Synthetic city meshes for the routing benchmarks, the whole-mesh
//! simulator (`freimesh-testbed sim`) and scale tests: seeded random
//! geometric graphs in the unit square with average degree ≈ 4, made
//! connected by linking every stray component to its nearest main-component
//! node (what a city does with a backbone link).

use super::{LinkCost, Metric, NodeIdx, Router, metric_of};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Target average degree (a rooftop router typically sees 3–5 neighbours).
const AVG_DEGREE: f64 = 4.0;

#[derive(Debug, Clone)]
pub struct CityMesh {
    pub n: NodeIdx,
    /// (a, b, metric), a < b, sorted.
    pub links: Vec<(NodeIdx, NodeIdx, Metric)>,
    /// The measured cost behind each entry of `links` (same order).
    pub costs: Vec<LinkCost>,
}

impl CityMesh {
    pub fn router(&self) -> Router {
        let mut r = Router::new();
        for n in 0..self.n {
            r.add_node(n);
        }
        for &(a, b, m) in &self.links {
            r.set_link(a, b, m);
        }
        r
    }
}

#[allow(clippy::expect_used)]
fn idx(i: usize) -> NodeIdx {
    NodeIdx::try_from(i).expect("city meshes have < 2^32 nodes")
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// A connected random geometric graph of `n` nodes. Link cost: RTT grows
/// with distance (1 ms base + up to ~20 ms across a radio hop), a few links
/// are lossy.
#[allow(
    clippy::cast_possible_truncation,
    reason = "float → grid cell and µs conversions of values in [0, 1/radius] and [0, 40_000]"
)]
pub fn city(n: usize, seed: u64) -> CityMesh {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let pos: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
    // π r² n = AVG_DEGREE.
    let radius = (AVG_DEGREE / (std::f64::consts::PI * n as f64)).sqrt();
    let cells = ((1.0 / radius).floor() as usize).max(1);
    let cell_of = |p: (f64, f64)| {
        let c = |v: f64| ((v * cells as f64) as usize).min(cells - 1);
        (c(p.0), c(p.1))
    };
    let mut grid = vec![Vec::new(); cells * cells];
    for (i, &p) in pos.iter().enumerate() {
        let (cx, cy) = cell_of(p);
        grid[cy * cells + cx].push(i);
    }
    let dist = |a: usize, b: usize| {
        let (dx, dy) = (pos[a].0 - pos[b].0, pos[a].1 - pos[b].1);
        (dx * dx + dy * dy).sqrt()
    };
    let cost = |d: f64, rng: &mut Xoshiro256PlusPlus| {
        let lossy = rng.random_bool(0.1);
        LinkCost {
            rtt_us: 1_000 + (d / radius * 20_000.0) as u32 + rng.random_range(0..500),
            loss_ppm: if lossy {
                rng.random_range(0..50_000)
            } else {
                0
            },
            override_cost: None,
        }
    };
    let mut links = Vec::new();
    let mut parent: Vec<usize> = (0..n).collect();
    for (a, &pa) in pos.iter().enumerate() {
        let (cx, cy) = cell_of(pa);
        for gy in cy.saturating_sub(1)..=(cy + 1).min(cells - 1) {
            for gx in cx.saturating_sub(1)..=(cx + 1).min(cells - 1) {
                for &b in &grid[gy * cells + gx] {
                    if a < b && dist(a, b) <= radius {
                        let c = cost(dist(a, b), &mut rng);
                        links.push((idx(a), idx(b), c));
                        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                        parent[ra] = rb;
                    }
                }
            }
        }
    }
    // Join stray components to the largest one, nearest pair first.
    let mut size = vec![0usize; n];
    for i in 0..n {
        size[find(&mut parent, i)] += 1;
    }
    let main = (0..n)
        .max_by_key(|&i| (size[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    let mut in_main: Vec<bool> = (0..n).map(|i| find(&mut parent, i) == main).collect();
    for root in 0..n {
        if find(&mut parent, root) != root || root == main {
            continue;
        }
        let members: Vec<usize> = (0..n).filter(|&i| find(&mut parent, i) == root).collect();
        let best = members
            .iter()
            .flat_map(|&a| (0..n).filter(|&b| in_main[b]).map(move |b| (a, b)))
            .min_by(|x, y| dist(x.0, x.1).total_cmp(&dist(y.0, y.1)));
        if let Some((a, b)) = best {
            let c = cost(dist(a, b).max(radius), &mut rng);
            links.push((idx(a.min(b)), idx(a.max(b)), c));
            for &i in &members {
                in_main[i] = true;
            }
        }
    }
    links.sort_by_key(|l| (l.0, l.1));
    CityMesh {
        n: idx(n),
        costs: links.iter().map(|l| l.2).collect(),
        links: links
            .into_iter()
            .map(|(a, b, c)| (a, b, metric_of(&c)))
            .collect(),
    }
}
