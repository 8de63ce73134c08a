//! The engine's switch to the simulator's sessions (cargo feature `sim`,
//! see `core/sim_tunnel.rs`): everything else about the engine stays the
//! production code.

use super::{Engine, INDEX_MASK, MessageKind, TunnelKind};
use crate::core::LinkId;
use crate::core::sim_tunnel::{SimMessage, SimTunnel};
use crate::core::tunnel::Tunnel;

impl Engine {
    /// Gives every link, and every link added later, a simulated session
    /// instead of boringtun's. Call right after [`Engine::new`], before
    /// [`Engine::start`]. Simulated sessions send no persistent keepalives.
    pub fn use_simulated_tunnels(&mut self) {
        self.tunnels = TunnelKind::Simulated;
        let own = self.public_key();
        for link in &mut self.links {
            let slot = u32::try_from(link.id.0).unwrap_or(0);
            let index = self.index_base.wrapping_add(slot) & INDEX_MASK;
            link.tunn = Tunnel::Simulated(SimTunnel::new(own, index, None));
        }
    }

    /// [`Engine::classify`] for simulated datagrams: an initiation names
    /// its sender's key, everything else a receiver index.
    pub(super) fn classify_simulated(&mut self, datagram: &[u8]) -> Option<(LinkId, MessageKind)> {
        match SimMessage::parse(datagram) {
            None => {
                self.drop_packet(super::DropReason::MalformedDatagram);
                None
            }
            Some(SimMessage::Init { key, .. }) => {
                match self.links.iter().find(|l| l.peer == key && !l.retired) {
                    Some(link) => Some((link.id, MessageKind::HandshakeInit)),
                    None => {
                        self.drop_packet(super::DropReason::UnknownPeer);
                        None
                    }
                }
            }
            Some(SimMessage::Response { receiver, .. }) => self
                .link_at_index(receiver)
                .map(|l| (l, MessageKind::HandshakeResponse)),
            Some(SimMessage::Data { receiver }) => {
                self.link_at_index(receiver).map(|l| (l, MessageKind::Data))
            }
        }
    }
}
