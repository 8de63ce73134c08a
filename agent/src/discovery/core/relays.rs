//! Neighbours' control relays heard on one interface: where a router
//! without an underlay route (or not enrolled yet) may dial the
//! controller through the mesh (`crate::relay`).

use std::collections::BTreeMap;
use std::net::SocketAddrV6;
use std::time::Instant;

use freimesh_proto::discovery::CONTROL_RELAY_PORT;

use super::{Discovery, NEIGHBOUR_TIMEOUT};

/// Relay addresses kept per interface: a router dials them one after the
/// other, and a few are plenty; a stranger replaying beacons from many
/// addresses fills these slots and no more (the oldest makes room).
pub const MAX_RELAYS_PER_INTERFACE: usize = 8;

/// The relays heard on one interface, with when each was last heard.
#[derive(Debug, Default)]
pub(super) struct HeardRelays {
    heard: BTreeMap<SocketAddrV6, Instant>,
}

impl HeardRelays {
    /// A beacon with a credential came from `src`: its sender is enrolled
    /// and so may have a control session to relay to (a router that is
    /// not enrolled has none, and its beacons are not taken).
    pub(super) fn handle_beacon(&mut self, src: SocketAddrV6, now: Instant) {
        let relay = SocketAddrV6::new(*src.ip(), CONTROL_RELAY_PORT, 0, src.scope_id());
        if !self.heard.contains_key(&relay) && self.heard.len() >= MAX_RELAYS_PER_INTERFACE {
            let oldest = self
                .heard
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(addr, _)| *addr);
            if let Some(oldest) = oldest {
                self.heard.remove(&oldest);
            }
        }
        self.heard.insert(relay, now);
    }

    /// Forgets relays not heard for [`NEIGHBOUR_TIMEOUT`].
    pub(super) fn expire(&mut self, now: Instant) {
        self.heard
            .retain(|_, at| now.saturating_duration_since(*at) < NEIGHBOUR_TIMEOUT);
    }

    pub(super) fn addresses(&self) -> impl Iterator<Item = SocketAddrV6> + '_ {
        self.heard.keys().copied()
    }
}

impl Discovery {
    /// Control relays of enrolled neighbours heard lately (link-local,
    /// scoped, port `CONTROL_RELAY_PORT`), linked neighbours first: the
    /// last paths the control client dials.
    pub fn relay_candidates(&self) -> Vec<SocketAddrV6> {
        let mut all: Vec<(bool, SocketAddrV6)> = self
            .interfaces
            .values()
            .flat_map(|i| {
                i.relays.addresses().map(|relay| {
                    let linked = i.neighbours.values().any(|n| {
                        n.linked_since.is_some()
                            && n.endpoint.ip() == relay.ip()
                            && n.endpoint.scope_id() == relay.scope_id()
                    });
                    (!linked, relay)
                })
            })
            .collect();
        all.sort_by_key(|(unlinked, relay)| (*unlinked, *relay.ip(), relay.scope_id()));
        all.into_iter().map(|(_, relay)| relay).collect()
    }
}
