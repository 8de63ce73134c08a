//! Control through the mesh, the agent's wiring: the watches that carry
//! the control exits (controller → state file → client), the neighbours'
//! relays (discovery → client) and the path of this node's own session
//! (client → relay), and the relay listener. The decisions are the
//! [`crate::controlplane::Dialer`]'s and the [`crate::relay::RelayCore`]'s.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use freimesh_proto::discovery::CONTROL_RELAY_PORT;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::controlplane::RelayPaths;
use crate::relay::shell::RelaySite;
use crate::relay::{RelayCore, RelayLimits, Upstream};

/// Pending connections the relay's listener queues: its caps are a few
/// dozen; the kernel need not hold more for it.
const RELAY_BACKLOG: u32 = 64;

/// The watches; clones share them.
#[derive(Debug, Clone)]
pub(super) struct MeshControl {
    exits: watch::Sender<Vec<SocketAddr>>,
    neighbour_relays: watch::Sender<Vec<SocketAddr>>,
    session_path: watch::Sender<Option<Upstream>>,
    path_lost: watch::Sender<u64>,
}

impl Default for MeshControl {
    fn default() -> Self {
        Self {
            exits: watch::Sender::new(Vec::new()),
            neighbour_relays: watch::Sender::new(Vec::new()),
            session_path: watch::Sender::new(None),
            path_lost: watch::Sender::new(0),
        }
    }
}

fn replace<T: PartialEq + Clone>(tx: &watch::Sender<T>, value: &T) {
    tx.send_if_modified(|current| {
        let changed = current != value;
        if changed {
            current.clone_from(value);
        }
        changed
    });
}

impl MeshControl {
    /// What the controller client reads and writes.
    pub(super) fn client_paths(&self) -> RelayPaths {
        RelayPaths {
            exits: self.exits.subscribe(),
            neighbours: self.neighbour_relays.subscribe(),
            session_path: self.session_path.clone(),
            path_lost: self.path_lost.subscribe(),
        }
    }

    /// The relay this node's own session runs through, if it is one on
    /// the overlay (an exit): the engine's routes must reach it.
    pub(super) fn session_exit(&self) -> Option<SocketAddr> {
        match *self.session_path.borrow() {
            Some(Upstream::Relay(addr)) if !is_link_local(addr.ip()) => Some(addr),
            _ => None,
        }
    }

    /// The engine has no route to [`Self::session_exit`] any more.
    pub(super) fn report_path_lost(&self) {
        self.path_lost.send_modify(|n| *n += 1);
    }

    /// The control exits the controller (or the state file) named.
    pub(super) fn publish_exits(&self, exits: &[SocketAddr]) {
        replace(&self.exits, &exits.to_vec());
    }

    /// The relays discovery hears.
    pub(super) fn publish_neighbour_relays(&self, relays: &[SocketAddrV6]) {
        let relays: Vec<SocketAddr> = relays.iter().copied().map(SocketAddr::V6).collect();
        replace(&self.neighbour_relays, &relays);
    }

    /// Starts the relay on `listener` for `site`.
    pub(super) fn spawn_relay(
        &self,
        listener: TcpListener,
        site: RelaySite,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let upstream = self.session_path.subscribe();
        tasks.spawn(crate::relay::shell::serve(
            listener,
            site,
            RelayCore::new(RelayLimits::default()),
            upstream,
        ));
    }
}

fn is_link_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
    }
}

/// Binds the relay's listener on every address ([`CONTROL_RELAY_PORT`],
/// IPv6 and mapped IPv4): the core refuses what is not addressed to a
/// mesh interface's link-local address or an overlay address. `None`
/// (logged) if the port is taken: the agent runs on without a relay.
pub(super) fn bind_relay() -> Option<TcpListener> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        let addr = SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            CONTROL_RELAY_PORT,
            0,
            0,
        ));
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(RELAY_BACKLOG).unwrap_or(64))?;
        TcpListener::from_std(socket.into())
    };
    match bind() {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(port = CONTROL_RELAY_PORT, %err, "the control relay could not listen; neighbours cannot reach the controller through this node");
            None
        }
    }
}
