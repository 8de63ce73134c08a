//! The town's map: which radio cells each router hears and which routers
//! have an uplink to the controller. Pure data, checked by unit tests: the
//! mesh must be several hops deep (one router at least three cells from
//! any uplink) and every transit between two cells must have a twin, so
//! that one silent router always leaves an alternate.
//!
//! ```text
//! cell0  r0* r1* r2
//! cell1      r1* r2 r3 r4
//! cell2             r3 r4 r5 r6 r7
//! cell3                      r6 r7 r8 r9
//! cell4                            r8 r9 r10 r11      (* uplink)
//! ```
//! r10 and r11 hear cell 4 only: three cells from cell 1, four radio hops
//! from r1.

use std::collections::{BTreeSet, VecDeque};

/// One router of the town.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterPlan {
    pub name: String,
    /// The cells it hears, in the order of its mesh interfaces (`mesh0`,
    /// `mesh1`).
    pub cells: Vec<usize>,
    /// Whether it has an uplink segment with the controller behind it.
    pub uplink: bool,
}

/// The whole map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TownPlan {
    pub cells: usize,
    pub routers: Vec<RouterPlan>,
}

/// Which cells each router hears (see the module's sketch).
const CELLS_OF: [&[usize]; 12] = [
    &[0],
    &[0, 1],
    &[0, 1],
    &[1, 2],
    &[1, 2],
    &[2],
    &[2, 3],
    &[2, 3],
    &[3, 4],
    &[3, 4],
    &[4],
    &[4],
];
/// The routers with an uplink.
const UPLINKS: [usize; 2] = [0, 1];

/// The router revoked before the outage: in one cell only, among four
/// others, so losing it cuts nobody off.
pub const REVOKED: usize = 5;
/// The far end of the probe flows: in the farthest cell.
pub const FAR: usize = 10;
/// The near end of the probe flows: an uplink router.
pub const NEAR: usize = 0;

impl TownPlan {
    /// The town of the module's sketch. With `uplink_everywhere` every
    /// router has an uplink (for agents that cannot reach the controller
    /// through the mesh).
    pub fn standard(uplink_everywhere: bool) -> Self {
        let routers = CELLS_OF
            .iter()
            .enumerate()
            .map(|(i, cells)| RouterPlan {
                name: format!("r{i}"),
                cells: cells.to_vec(),
                uplink: uplink_everywhere || UPLINKS.contains(&i),
            })
            .collect();
        Self { cells: 5, routers }
    }

    /// Ordered pairs of distinct routers.
    pub fn pairs(&self) -> usize {
        self.routers.len() * self.routers.len().saturating_sub(1)
    }

    /// The routers in `cell`.
    pub fn members(&self, cell: usize) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|r| self.routers[*r].cells.contains(&cell))
            .collect()
    }

    /// For each router, how many cells lie between its nearest cell and
    /// the nearest cell of a router with an uplink (0: it shares a cell
    /// with one, or has one itself). `None` for a router cut off.
    pub fn cells_from_uplink(&self) -> Vec<Option<usize>> {
        // Cells are adjacent when some router hears both.
        let mut distance = vec![None; self.cells];
        let mut queue = VecDeque::new();
        for router in self.routers.iter().filter(|r| r.uplink) {
            for cell in &router.cells {
                if distance[*cell].is_none() {
                    distance[*cell] = Some(0);
                    queue.push_back(*cell);
                }
            }
        }
        while let Some(cell) = queue.pop_front() {
            let next = distance[cell].map(|d| d + 1);
            let neighbours: BTreeSet<usize> = self
                .routers
                .iter()
                .filter(|r| r.cells.contains(&cell))
                .flat_map(|r| r.cells.iter().copied())
                .collect();
            for other in neighbours {
                if distance[other].is_none() {
                    distance[other] = next;
                    queue.push_back(other);
                }
            }
        }
        self.routers
            .iter()
            .map(|r| {
                if r.uplink {
                    return Some(0);
                }
                r.cells.iter().filter_map(|c| distance[*c]).min()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_town_is_deep_and_every_router_is_reachable() {
        let plan = TownPlan::standard(false);
        assert!(plan.routers.len() >= 12);
        assert_eq!(plan.pairs(), 132);
        assert_eq!(plan.routers.iter().filter(|r| r.uplink).count(), 2);
        let depth = plan.cells_from_uplink();
        assert!(depth.iter().all(Option::is_some), "{depth:?}");
        assert_eq!(depth[FAR], Some(3), "{depth:?}");
        assert!(
            plan.routers
                .iter()
                .all(|r| (1..=2).contains(&r.cells.len()))
        );
    }

    #[test]
    fn every_cell_boundary_has_two_routers_so_one_cut_leaves_an_alternate() {
        let plan = TownPlan::standard(false);
        for cell in 0..plan.cells - 1 {
            let joining = plan
                .routers
                .iter()
                .filter(|r| r.cells.contains(&cell) && r.cells.contains(&(cell + 1)))
                .count();
            assert!(joining >= 2, "cells {cell} and {}", cell + 1);
        }
        // The revoked router joins no two cells: the town stays whole.
        assert_eq!(plan.routers[REVOKED].cells.len(), 1);
        assert!(plan.members(plan.routers[REVOKED].cells[0]).len() >= 4);
    }

    #[test]
    fn uplink_everywhere_puts_every_router_next_to_the_controller() {
        let plan = TownPlan::standard(true);
        assert!(plan.routers.iter().all(|r| r.uplink));
        assert!(plan.cells_from_uplink().iter().all(|d| *d == Some(0)));
    }
}
