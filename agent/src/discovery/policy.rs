//! The dense-cell policy: which of the neighbours heard on one interface
//! get a link, when a rooftop hears thirty routers.
//!
//! A link needs both ends (the engine drops a handshake from a key it
//! holds no link for), so the rule must give both ends the same answer
//! without talking, and the links it gives must connect the cell. The
//! rule: sort the keys heard on the interface, with our own, into a ring;
//! link to the `cap / 2` keys before and the `cap - cap / 2` after ours
//! ([`wanted`]). In a cell where everyone hears everyone, every router
//! computes the same ring, so "B is within my window" holds exactly when
//! "I am within B's": links are mutual, every router has `cap` of them,
//! and the ring connects the cell. (Picking the closest keys by XOR
//! distance, tried first, gives mutual links too rarely: in a 30-router
//! cell half the routers were cut off.) The rule is stable: a router that
//! joins changes the windows of its few ring neighbours only. A wanted
//! neighbour displaces a linked, no longer wanted one only after it has
//! been heard for [`DISPLACE_AFTER`] (hysteresis: a router that is only
//! passing by, or booting, does not churn the cell). Once the controller
//! is reachable, its assignments win: a link it assigns is never displaced
//! or timed out by discovery, and a discovered link it has not assigned
//! within [`CONTROLLER_GRACE`] gives way when the interface is over its cap.
//!
//! Measured quality (RTT and loss from the engine) is left to the
//! controller: it already computes paths from it, and within one radio
//! cell the link-local links differ little.

use std::time::Duration;

use std::collections::BTreeSet;

use freimesh_proto::PublicKeyBytes;

/// Discovered links per interface unless configured
/// (`max_discovered_links_per_interface`): enough for alternates in every
/// direction, few enough that a dense cell stays cheap (each link costs a
/// handshake every two minutes and a heartbeat per second).
pub const DEFAULT_MAX_DISCOVERED_LINKS: usize = 8;
/// How long a closer neighbour must have been heard before it displaces
/// a linked one: three beacon intervals.
pub const DISPLACE_AFTER: Duration = Duration::from_secs(15);
/// How long the controller has to assign a discovered link (both ends
/// report it; the controller answers within a report interval or two)
/// before the link gives way on an interface over its cap.
pub const CONTROLLER_GRACE: Duration = Duration::from_secs(30);

/// The neighbours our ring window on one interface holds: of `heard`
/// (without our own key), the `cap / 2` keys before ours and the
/// `cap - cap / 2` after it in key order, wrapping around.
pub fn wanted(
    own: &PublicKeyBytes,
    heard: impl IntoIterator<Item = PublicKeyBytes>,
    cap: usize,
) -> BTreeSet<PublicKeyBytes> {
    let mut ring: Vec<PublicKeyBytes> = heard.into_iter().filter(|k| k != own).collect();
    ring.sort_unstable();
    ring.dedup();
    if ring.len() <= cap {
        return ring.into_iter().collect();
    }
    // Keys after ours first, then (wrapping) the ones before.
    let split = ring.partition_point(|k| k < own);
    ring.rotate_left(split);
    let after = cap - cap / 2;
    let before = cap / 2;
    ring.iter()
        .take(after)
        .chain(ring.iter().rev().take(before))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKeyBytes {
        PublicKeyBytes([n; 32])
    }

    #[test]
    fn the_window_wraps_and_is_mutual_in_a_full_cell() {
        let cell: Vec<PublicKeyBytes> = (1..=10).map(key).collect();
        let windows: Vec<BTreeSet<PublicKeyBytes>> = cell
            .iter()
            .map(|own| wanted(own, cell.iter().copied(), 4))
            .collect();
        assert_eq!(
            windows[0],
            BTreeSet::from([key(2), key(3), key(9), key(10)]),
            "wraps"
        );
        for (i, a) in cell.iter().enumerate() {
            for (j, b) in cell.iter().enumerate() {
                assert_eq!(windows[i].contains(b), windows[j].contains(a), "{i} {j}");
            }
        }
        // Fewer neighbours than the cap: all of them.
        assert_eq!(
            wanted(&key(1), [key(2), key(1)], 4),
            BTreeSet::from([key(2)])
        );
    }
}
