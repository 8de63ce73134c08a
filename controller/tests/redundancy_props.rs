//! The redundancy analysis against a brute force: remove each node and each
//! link of the mesh in turn, search what is left, and compare.

use std::collections::{BTreeMap, BTreeSet};

use freimesh_controller::routing::redundancy::redundancy;
use freimesh_proto::api::{self, CutLink, CutNode, NodeState, Redundancy};
use ipnet::IpNet;
use proptest::prelude::*;

/// Components of `members` over `edges` (pairs of ids), each sorted, in
/// order of their smallest id.
fn components(members: &BTreeSet<u32>, edges: &[(u32, u32)]) -> Vec<BTreeSet<u32>> {
    let mut adj: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(a, b) in edges {
        if members.contains(&a) && members.contains(&b) {
            adj.entry(a).or_default().push(b);
            adj.entry(b).or_default().push(a);
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &start in members {
        if !seen.insert(start) {
            continue;
        }
        let mut comp = BTreeSet::from([start]);
        let mut queue = vec![start];
        while let Some(x) = queue.pop() {
            for &y in adj.get(&x).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(y) {
                    comp.insert(y);
                    queue.push(y);
                }
            }
        }
        out.push(comp);
    }
    out
}

/// The largest component; ties go to the smallest id (components come in
/// order of their smallest id, so the first of the largest wins).
fn largest(comps: &[BTreeSet<u32>]) -> Option<&BTreeSet<u32>> {
    comps.iter().rev().max_by_key(|c| c.len())
}

fn brute_force(nodes: &[api::Node], links: &[api::Link]) -> Redundancy {
    let by_id: BTreeMap<u32, &api::Node> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Active)
        .map(|n| (n.id, n))
        .collect();
    let active: BTreeSet<u32> = by_id.keys().copied().collect();
    let edges: Vec<(u32, u32)> = links
        .iter()
        .filter(|l| l.up && l.a != l.b && active.contains(&l.a) && active.contains(&l.b))
        .map(|l| (l.a, l.b))
        .collect();
    let comps = components(&active, &edges);
    let Some(mesh) = largest(&comps).cloned() else {
        return Redundancy {
            nodes: vec![],
            links: vec![],
        };
    };
    let prefixes = |cut: &BTreeSet<u32>| -> Vec<IpNet> {
        let set: BTreeSet<IpNet> = cut
            .iter()
            .flat_map(|id| by_id[id].prefixes.iter().copied())
            .collect();
        set.into_iter().collect()
    };

    let mut cut_nodes = Vec::new();
    for &v in &mesh {
        let mut rest = mesh.clone();
        rest.remove(&v);
        let pieces = components(&rest, &edges);
        if pieces.len() < 2 {
            continue;
        }
        let keep = largest(&pieces).expect("pieces");
        let cut: BTreeSet<u32> = rest.difference(keep).copied().collect();
        cut_nodes.push(CutNode {
            node: v,
            hostname: by_id[&v].hostname.clone(),
            cuts_off: cut.iter().copied().collect(),
            prefixes_cut: prefixes(&cut),
        });
    }

    let mut cut_links = Vec::new();
    for (i, &(a, b)) in edges.iter().enumerate() {
        if !mesh.contains(&a) {
            continue;
        }
        let without: Vec<(u32, u32)> = edges
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &e)| e)
            .collect();
        let pieces = components(&mesh, &without);
        if pieces.len() < 2 {
            continue;
        }
        assert_eq!(pieces.len(), 2, "one link splits into at most two");
        let keep = largest(&pieces).expect("pieces");
        let cut: BTreeSet<u32> = mesh.difference(keep).copied().collect();
        cut_links.push(CutLink {
            a,
            b,
            cuts_off: cut.iter().copied().collect(),
            prefixes_cut: prefixes(&cut),
        });
    }
    cut_links.sort_by_key(|l| (l.a, l.b));
    Redundancy {
        nodes: cut_nodes,
        links: cut_links,
    }
}

const PREFIX_POOL: [&str; 4] = ["10.0.1.0/24", "10.0.2.0/24", "fd00:1::/64", "10.0.3.0/24"];

fn node(id: u32, state: NodeState, prefixes: &[usize]) -> api::Node {
    api::Node {
        id,
        node_id: format!("n{id}"),
        public_key: String::new(),
        hostname: format!("host-{id}"),
        state,
        online: true,
        drained: false,
        gateway: false,
        addresses: vec![],
        prefixes: prefixes
            .iter()
            .map(|&p| PREFIX_POOL[p].parse().expect("pool prefix"))
            .collect(),
        endpoints: vec![],
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

fn link(a: u32, b: u32, up: bool) -> api::Link {
    api::Link {
        a: a.min(b),
        b: a.max(b),
        a_hostname: String::new(),
        b_hostname: String::new(),
        up,
        rtt_us: None,
        loss_ppm: None,
        metric: 1,
        override_cost: None,
        rtt_history_us: vec![],
        loss_history_ppm: vec![],
    }
}

fn state(code: u8) -> NodeState {
    match code {
        0 => NodeState::Pending,
        1 => NodeState::Revoked,
        _ => NodeState::Active,
    }
}

prop_compose! {
    /// Up to 16 nodes with sparse ids, mostly active, and up to 28 links
    /// (some down, some parallel, some to nodes that do not exist).
    fn mesh()(n in 0usize..16)(
        id_gaps in proptest::collection::vec(1u32..4, n),
        states in proptest::collection::vec(0u8..12, n),
        prefixes in proptest::collection::vec(proptest::collection::vec(0usize..4, 0..3), n),
        raw_links in proptest::collection::vec((0usize..17, 0usize..17, 0u8..10), 0..28),
    ) -> (Vec<api::Node>, Vec<api::Link>) {
        let ids: Vec<u32> = id_gaps.iter().scan(0, |acc, g| { *acc += g; Some(*acc) }).collect();
        let nodes: Vec<api::Node> = ids
            .iter()
            .zip(&states)
            .zip(&prefixes)
            .map(|((&id, &s), p)| node(id, state(s), p))
            .collect();
        // Index n (or more) is a node that does not exist.
        let id_of = |i: usize| ids.get(i).copied().unwrap_or(1_000);
        let links = raw_links
            .iter()
            .filter(|&&(a, b, _)| a != b)
            .map(|&(a, b, up)| link(id_of(a), id_of(b), up > 1))
            .collect();
        (nodes, links)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn matches_brute_force((nodes, links) in mesh()) {
        prop_assert_eq!(redundancy(&nodes, &links), brute_force(&nodes, &links));
    }
}

/// Denser graphs (fewer bridges, more cycles through cut nodes).
#[test]
fn matches_brute_force_on_dense_meshes() {
    use proptest::test_runner::{Config, TestRunner};
    let strategy = (4usize..24).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec((0..n, 0..n, 0u8..10), n..3 * n),
        )
    });
    let mut runner = TestRunner::new(Config::with_cases(500));
    runner
        .run(&strategy, |(n, raw)| {
            let ids: Vec<u32> = (0..n)
                .map(|i| u32::try_from(i * 2 + 1).expect("small"))
                .collect();
            let nodes: Vec<api::Node> = ids
                .iter()
                .map(|&id| node(id, NodeState::Active, &[id as usize % 4]))
                .collect();
            let links: Vec<api::Link> = raw
                .iter()
                .filter(|&&(a, b, _)| a != b)
                .map(|&(a, b, up)| link(ids[a], ids[b], up > 0))
                .collect();
            prop_assert_eq!(redundancy(&nodes, &links), brute_force(&nodes, &links));
            Ok(())
        })
        .expect("redundancy matches the brute force");
}
