//! The route upstreams in the core: when they are recomputed and how their
//! changes reach the agents. The computation itself is
//! [`crate::routing::Upstreams`]; each route carries its upstreams
//! (`plan.rs`, `desired_routes`), so a change goes out like a next-hop
//! change.

use std::collections::{BTreeMap, BTreeSet};

use super::{Controller, INTERNET};
use crate::routing::Upstreams;

/// The route upstreams are recomputed at most this often while next hops
/// keep moving ([`Controller::handle_upstreams_tick`]).
pub const UPSTREAMS_REFRESH_MS: i64 = 5_000;
/// Above this many active nodes no route upstreams are computed (see
/// [`Controller::handle_upstreams_tick`]): a computation would block the
/// controller for over a second.
pub const MAX_UPSTREAM_NODES: usize = 2_000;

impl Controller {
    /// Recomputes the route upstreams if next hops moved since the last
    /// computation and that was at least [`UPSTREAMS_REFRESH_MS`] ago,
    /// and queues the routes whose upstreams changed. The shell calls it
    /// on its periodic tick. Returns whether it computed.
    ///
    /// Why not after every change: a full computation costs about 2.4 full
    /// route computations (0.14 s at 1,000 nodes, `docs/benchmarks.md`),
    /// and upstreams only matter for the *next* failure: a route change
    /// that adds a path to a source is feasible through its next hops at
    /// once, one that removes it leaves the old neighbours feasible for
    /// the agents' hold. Above [`MAX_UPSTREAM_NODES`] active nodes nothing
    /// is computed (the cost grows with the cube of the mesh) and routes
    /// carry no upstreams: repair paths are then accepted only through
    /// next hops, as before protocol 7.
    pub fn handle_upstreams_tick(&mut self, now_ms: i64) -> bool {
        let due = self
            .upstreams_at_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= UPSTREAMS_REFRESH_MS);
        if !self.upstreams_stale || !due {
            return false;
        }
        self.upstreams_at_ms = Some(now_ms);
        let changed = self.refresh_upstreams();
        // Upstreams of source s at node r are sent with r's routes to s.
        self.sync_moved(BTreeSet::new(), changed);
        true
    }

    /// Recomputes the upstreams from the router's last computation;
    /// returns, per node, the sources whose upstreams changed.
    pub(super) fn refresh_upstreams(&mut self) -> BTreeMap<u32, BTreeSet<u32>> {
        self.upstreams_stale = false;
        let fresh = if self.active_ids().count() > MAX_UPSTREAM_NODES {
            Upstreams::default()
        } else {
            let internet = self.router.contains(INTERNET).then_some(INTERNET);
            Upstreams::compute(&self.router, internet)
        };
        let changed = fresh.changed_since(&self.upstreams);
        self.upstreams = fresh;
        changed
    }
}
