//! Control exits: the routers through which others reach the controller
//! over the mesh (`docs/protocol.md`, "Control through the mesh").
//!
//! A session is *relayed* when its connection began with a relay
//! preamble (`freimesh_proto::relay`), *direct* otherwise. The exits are
//! the direct sessions of active nodes with an overlay address, at most
//! [`MAX_CONTROL_EXITS`], lowest node id first: a stable choice (an exit
//! keeps its place while it stays connected, so agents' dial lists do not
//! churn). Every connected node gets the whole list after its Welcome and
//! whenever it changes; it is recomputed only in steps that connected,
//! disconnected or changed nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use freimesh_proto::control::{ControllerMsg, MAX_CONTROL_EXITS};
use freimesh_proto::discovery::CONTROL_RELAY_PORT;

use super::hub::{HubCore, HubOutput};
use crate::records::{NodeRecord, NodeState};

/// The hub's exit bookkeeping.
#[derive(Debug, Default)]
pub struct ControlExits {
    /// Sessions whose connection came through a relay.
    relayed: BTreeSet<u64>,
    /// The list last sent.
    sent: Vec<SocketAddr>,
    /// Nodes welcomed in this step: they get the list after the Welcome.
    welcomed: BTreeSet<u32>,
    /// Something that may change the list happened in this step.
    dirty: bool,
}

impl ControlExits {
    /// The list sent last.
    pub fn current(&self) -> &[SocketAddr] {
        &self.sent
    }

    /// Whether `session` came through a relay.
    pub fn is_relayed(&self, session: u64) -> bool {
        self.relayed.contains(&session)
    }
}

/// The exits among `conns` (node id → session): direct, active, with an
/// overlay address (IPv6 first: the relay listens on both).
pub fn choose_exits(
    conns: &BTreeMap<u32, u64>,
    relayed: &BTreeSet<u64>,
    nodes: &BTreeMap<u32, NodeRecord>,
) -> Vec<SocketAddr> {
    conns
        .iter()
        .filter(|(_, session)| !relayed.contains(session))
        .filter_map(|(id, _)| nodes.get(id))
        .filter(|node| node.state == NodeState::Active)
        .filter_map(|node| {
            let v6 = node.addresses.iter().find(|a| a.addr().is_ipv6());
            let ip: IpAddr = v6.or_else(|| node.addresses.first())?.addr();
            Some(SocketAddr::new(ip, CONTROL_RELAY_PORT))
        })
        .take(MAX_CONTROL_EXITS)
        .collect()
}

impl HubCore {
    /// `session`'s connection began with a relay preamble.
    pub(super) fn exits_session_relayed(&mut self, session: u64) {
        self.exits.relayed.insert(session);
    }

    /// `session` ended (or was replaced).
    pub(super) fn exits_session_gone(&mut self, session: u64) {
        self.exits.relayed.remove(&session);
        self.exits.dirty = true;
    }

    /// Node `id` was welcomed in this step.
    pub(super) fn exits_welcomed(&mut self, id: u32) {
        self.exits.welcomed.insert(id);
        self.exits.dirty = true;
    }

    /// Nodes may have changed (admin action, registry poll).
    pub(super) fn exits_may_have_changed(&mut self) {
        self.exits.dirty = true;
    }

    /// End of a step: the list to every node if it changed, else to the
    /// nodes welcomed in this step.
    pub(super) fn exits_step(&mut self) {
        let welcomed = std::mem::take(&mut self.exits.welcomed);
        if !std::mem::take(&mut self.exits.dirty) {
            return;
        }
        let exits = choose_exits(&self.conns, &self.exits.relayed, self.core.nodes());
        let to: Vec<u64> = if exits == self.exits.sent {
            welcomed
                .iter()
                .filter_map(|id| self.conns.get(id).copied())
                .collect()
        } else {
            tracing::info!(?exits, "control exits changed");
            self.exits.sent = exits;
            self.conns.values().copied().collect()
        };
        for session in to {
            let msg = ControllerMsg::ControlExits(self.exits.sent.clone());
            self.push_output(HubOutput::Transmit { session, msg });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freimesh_proto::PublicKeyBytes;
    use freimesh_proto::control::Roles;

    fn node(id: u32, state: NodeState, addresses: &[&str]) -> NodeRecord {
        NodeRecord {
            id,
            public_key: PublicKeyBytes([u8::try_from(id).expect("small"); 32]),
            hostname: format!("n{id}"),
            addresses: addresses.iter().map(|a| a.parse().expect("net")).collect(),
            state,
            drained: false,
            endpoints: Vec::new(),
            gateway: false,
            public_wifi: false,
            client_prefixes: Vec::new(),
            requested_roles: Roles::default(),
            approved_roles: Roles::default(),
        }
    }

    #[test]
    fn exits_are_direct_active_nodes_with_an_address_lowest_id_first_at_most_16() {
        let mut nodes = BTreeMap::new();
        let mut conns = BTreeMap::new();
        for id in 1..=40u32 {
            let addr = format!("fd00::{id:x}/128");
            nodes.insert(
                id,
                node(id, NodeState::Active, &["10.99.0.1/32", addr.as_str()]),
            );
            conns.insert(id, u64::from(id) + 100);
        }
        nodes.insert(2, node(2, NodeState::Pending, &["fd00::2/128"]));
        nodes.insert(3, node(3, NodeState::Active, &[]));
        let relayed = BTreeSet::from([101u64]);
        let exits = choose_exits(&conns, &relayed, &nodes);
        assert_eq!(exits.len(), MAX_CONTROL_EXITS);
        let first: SocketAddr = "[fd00::4]:51819".parse().expect("addr");
        assert_eq!(exits[0], first, "1 relayed, 2 pending, 3 without address");
        assert!(
            exits
                .iter()
                .all(|e| e.port() == CONTROL_RELAY_PORT && e.is_ipv6())
        );
        // Stable: a node connecting with a higher id changes nothing.
        conns.insert(41, 141);
        nodes.insert(41, node(41, NodeState::Active, &["fd00::41/128"]));
        assert_eq!(choose_exits(&conns, &relayed, &nodes), exits);
        // An IPv4-only node is an exit at its IPv4 address.
        let only_v4 = BTreeMap::from([(7u32, node(7, NodeState::Active, &["10.99.0.7/32"]))]);
        let conns = BTreeMap::from([(7u32, 1u64)]);
        assert_eq!(
            choose_exits(&conns, &BTreeSet::new(), &only_v4),
            vec!["10.99.0.7:51819".parse::<SocketAddr>().expect("addr")]
        );
    }
}
