//! The simulator's asserts: every flow's path traced through the engines'
//! current choices (a forwarding loop is a node visited twice), which flows
//! have a path at all (over running nodes and uncut links), and whether the
//! tables the agents hold match routes computed from scratch.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use freimesh_agent::core::NextHop;
use freimesh_controller::store::NodeState;
use ipnet::IpNet;

use super::world::World;

/// What happened to a traced packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    /// Reached the destination over running nodes and uncut links.
    Delivered { hops: usize },
    /// A node on the path was visited twice: the path, in order.
    Loop(Vec<usize>),
    /// Dropped: no route, a dead next hop, a cut link or a crashed node.
    Lost,
}

/// Follows a packet from `src` toward `dst_addr` (owned by `dst`).
pub fn trace(world: &World, src: usize, dst: usize, dst_addr: IpAddr) -> Trace {
    let mut path = vec![src];
    let mut at = src;
    let mut seen = vec![false; world.nodes.len()];
    seen[src] = true;
    loop {
        let Some(engine) = world.nodes[at].engine.as_ref() else {
            return Trace::Lost;
        };
        match engine.next_hop(dst_addr) {
            NextHop::Local => {
                return if at == dst {
                    Trace::Delivered {
                        hops: path.len() - 1,
                    }
                } else {
                    Trace::Lost
                };
            }
            NextHop::Uplink | NextHop::Unreachable => return Trace::Lost,
            NextHop::Neighbour(key) => {
                let Some(&next) = world.by_key.get(&key) else {
                    return Trace::Lost;
                };
                path.push(next);
                if seen[next] {
                    return Trace::Loop(path);
                }
                seen[next] = true;
                let nb = &world.nodes[at].neighbours;
                let live = nb
                    .binary_search_by_key(&next, |(p, _)| *p)
                    .is_ok_and(|i| !world.links[nb[i].1].cut);
                if !live || world.nodes[next].engine.is_none() {
                    return Trace::Lost;
                }
                at = next;
            }
        }
    }
}

/// Which nodes `src` reaches over running nodes and uncut links.
pub fn reachable(world: &World, src: usize) -> Vec<bool> {
    let mut seen = vec![false; world.nodes.len()];
    if world.nodes[src].engine.is_none() {
        return seen;
    }
    seen[src] = true;
    let mut queue = VecDeque::from([src]);
    while let Some(n) = queue.pop_front() {
        for &(p, l) in &world.nodes[n].neighbours {
            if !seen[p] && !world.links[l].cut && world.nodes[p].engine.is_some() {
                seen[p] = true;
                queue.push_back(p);
            }
        }
    }
    seen
}

/// Whether global repair is complete: no control frame in flight, and
/// the controller holds exactly the links both ends' liveness holds up.
/// (Cheap enough to ask twice a second; [`convergence`] is the full check.)
pub fn settled(world: &World) -> bool {
    if world.frames_in_flight > 0 || !world.controller_up {
        return false;
    }
    let core = world.controller.core();
    let up_at = |node: usize, peer: usize| {
        world.nodes[node].engine.as_ref().is_some_and(|e| {
            e.link_states()
                .iter()
                .any(|l| l.peer == world.nodes[peer].key && l.up)
        })
    };
    let ids: BTreeMap<_, u32> = core
        .nodes()
        .values()
        .map(|n| (n.public_key, n.id))
        .collect();
    world.links.iter().all(|l| {
        let (Some(a), Some(b)) = (
            ids.get(&world.nodes[l.a].key),
            ids.get(&world.nodes[l.b].key),
        ) else {
            return true;
        };
        let held = core
            .links()
            .get(&((*a).min(*b), (*a).max(*b)))
            .is_some_and(|r| r.up);
        held == (up_at(l.a, l.b) && up_at(l.b, l.a))
    })
}

/// How the agents' tables differ from what a recomputation from scratch
/// says they should hold, and how the controller's link set differs from
/// the underlay's truth.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Convergence {
    /// Host routes (node, destination address) whose next hops differ.
    pub route_mismatches: u64,
    /// Links up in the controller but not in the underlay, or the reverse.
    pub link_mismatches: u64,
}

/// Whether the controller's links are exactly the underlay's working
/// links (uncut, both ends running): nothing left in hold-down.
pub fn matches_underlay(world: &World) -> bool {
    link_mismatches(world) == 0
}

fn link_mismatches(world: &World) -> u64 {
    let core = world.controller.core();
    let id_of: BTreeMap<usize, u32> = core
        .nodes()
        .values()
        .filter(|n| n.state == NodeState::Active)
        .filter_map(|n| world.by_key.get(&n.public_key).map(|i| (*i, n.id)))
        .collect();
    let mut mismatches = 0;
    for l in &world.links {
        let truth =
            !l.cut && world.nodes[l.a].engine.is_some() && world.nodes[l.b].engine.is_some();
        let (Some(a), Some(b)) = (id_of.get(&l.a), id_of.get(&l.b)) else {
            continue;
        };
        let held = core
            .links()
            .get(&((*a).min(*b), (*a).max(*b)))
            .is_some_and(|r| r.up);
        if truth != held {
            mismatches += 1;
        }
    }
    mismatches
}

/// Compares every running agent's installed routes to routes computed
/// from scratch over the controller's links, and those links to the
/// underlay's.
pub fn convergence(world: &World) -> Convergence {
    let core = world.controller.core();
    let mut out = Convergence {
        link_mismatches: link_mismatches(world),
        ..Convergence::default()
    };
    let id_of: BTreeMap<usize, u32> = core
        .nodes()
        .values()
        .filter(|n| n.state == NodeState::Active)
        .filter_map(|n| world.by_key.get(&n.public_key).map(|i| (*i, n.id)))
        .collect();
    let expected: BTreeMap<(u32, u32), Vec<u32>> = core
        .recomputed_routes()
        .into_iter()
        .flat_map(|(src, routes)| routes.into_iter().map(move |r| ((src, r.dst), r.via)))
        .collect();
    let key_of: BTreeMap<u32, _> = core
        .nodes()
        .values()
        .map(|n| (n.id, n.public_key))
        .collect();
    let owner: BTreeMap<IpNet, u32> = core
        .nodes()
        .values()
        .filter(|n| n.state == NodeState::Active)
        .flat_map(|n| n.addresses.iter().map(move |a| (a.trunc(), n.id)))
        .collect();
    for (node, id) in &id_of {
        let Some(engine) = world.nodes[*node].engine.as_ref() else {
            continue;
        };
        let installed: BTreeMap<IpNet, Vec<Option<freimesh_proto::PublicKeyBytes>>> =
            engine.installed_routes().into_iter().collect();
        for (prefix, dst) in &owner {
            if dst == id {
                continue;
            }
            let want: Option<Vec<_>> = expected
                .get(&(*id, *dst))
                .map(|via| via.iter().map(|v| key_of.get(v).copied()).collect());
            let have = installed.get(prefix).cloned();
            if want != have {
                out.route_mismatches += 1;
            }
        }
    }
    out
}
