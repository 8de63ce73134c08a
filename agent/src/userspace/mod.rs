//! The userspace backend: the node's own traffic ends in a smoltcp IP stack
//! inside the agent, so a node needs neither root nor a TUN device.
//!
//! The forwarding engine hands this module every IP packet addressed to the
//! node ([`StackHandle::deliver`]) and takes every packet the stack emits from
//! the `to_mesh` channel given to [`spawn`]; the two meet only through these
//! channels. On top of the stack sit two kinds of TCP port mapping:
//!
//! ```text
//!  host app ──▶ 127.0.0.1:9000 (TcpForward) ──▶ smoltcp TCP ──▶ to_mesh ──▶ 10.99.0.2:22
//!  mesh peer ──▶ deliver() ──▶ smoltcp :8080 (TcpExpose) ──▶ host TCP ──▶ 127.0.0.1:8000
//! ```
//!
//! One task (see `stack.rs`) owns the smoltcp `Interface` and `SocketSet`. It
//! sleeps until something happens: a packet from the mesh, a command from the
//! handle or a forward listener, a host connection moving bytes (a shared
//! `Notify`), room in `to_mesh`, or the deadline smoltcp asks for with
//! `poll_delay`. Each host TCP connection runs in its own small task (see
//! `host.rs`) joined to its smoltcp socket by two bounded channels, so a slow
//! host reader closes the TCP window towards the mesh and a slow mesh fills
//! the host's socket buffer: backpressure both ways, no busy loop.
//!
//! onetun has the same shape; unlike onetun there is no 1 ms polling timer
//! and no broadcast bus copying every packet to every connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), freimesh_agent::userspace::UserspaceError> {
//! use freimesh_agent::userspace::{self, TcpForward, UserspaceSettings};
//! let (to_mesh, mut from_stack) = tokio::sync::mpsc::channel(1024);
//! let settings = UserspaceSettings {
//!     addresses: vec!["10.99.0.1/32".parse().expect("literal")],
//!     mtu: 1420,
//!     tcp_forwards: vec![TcpForward {
//!         listen: "127.0.0.1:9000".parse().expect("literal"),
//!         target: "10.99.0.2:22".parse().expect("literal"),
//!     }],
//!     tcp_exposes: vec![],
//! };
//! let stack = userspace::spawn(settings, to_mesh)?;
//! // The engine: packets for this node go in, the stack's packets go out.
//! let inlet = stack.inlet();
//! # let packet_from_mesh = Vec::new();
//! inlet.deliver(packet_from_mesh);
//! let _outgoing = from_stack.recv().await;
//! stack.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod device;
#[cfg(test)]
mod fuzz;
mod host;
mod ping;
mod stack;
mod tcp;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::ping::{PingReply, PingReport};
use self::stack::{Command, Inputs, Shared, Stack};

/// Packets from the mesh waiting for the stack task. Enough for the receive
/// windows of a few dozen busy connections; beyond that `deliver` drops,
/// as a full NIC ring would, and TCP retransmits.
const INBOUND_QUEUE: usize = 1024;

/// Commands (new forwarded connections, pings) waiting for the stack task.
/// When full, forward listeners stop accepting: host-side backpressure.
const COMMAND_QUEUE: usize = 64;

/// The smallest MTU accepted: IPv6's minimum link MTU, so both families work.
const MIN_MTU: u16 = 1280;

/// What the userspace stack serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserspaceSettings {
    /// The node's overlay addresses, e.g. `10.99.0.1/32` and `fd99::1/128`.
    /// At most eight (smoltcp's `iface-max-addr-count-8`).
    pub addresses: Vec<IpNet>,
    /// IP MTU of the packets exchanged with the engine, e.g. 1420.
    pub mtu: u16,
    /// Host TCP listeners whose connections are carried to the mesh.
    pub tcp_forwards: Vec<TcpForward>,
    /// Overlay TCP ports whose connections are carried to the host.
    pub tcp_exposes: Vec<TcpExpose>,
}

/// Host → mesh: each connection accepted on `listen` (a host address such as
/// `127.0.0.1:9000`; port 0 picks a free port, see
/// [`StackHandle::forward_addrs`]) is carried to `target`, an overlay address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpForward {
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

/// Mesh → host: each connection to `port` on any overlay address of this node
/// is joined to a new host connection to `target` (e.g. `127.0.0.1:8000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpExpose {
    pub port: u16,
    pub target: SocketAddr,
}

/// Counters since [`spawn`]. Plain `u64`s behind a mutex, not atomics: the
/// agent must build for 32-bit MIPS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Packets from the mesh taken in by the stack.
    pub packets_in: u64,
    /// Packets the stack handed to `to_mesh`.
    pub packets_out: u64,
    /// Packets from the mesh dropped because the inbound queue was full or
    /// the stack had stopped.
    pub dropped_in: u64,
    /// Packets the stack produced but dropped: its outbound queue was full
    /// (immediate replies only) or `to_mesh` was closed.
    pub dropped_out: u64,
    /// TCP connections currently carried (forwards and exposes).
    pub open_connections: usize,
    /// Turns of the stack task's loop. Grows with traffic; an idle stack
    /// should hardly wake at all.
    pub wakeups: u64,
}

/// Errors of the userspace backend; each names the operation and the address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserspaceError {
    #[error("starting the userspace stack: not called from within a tokio runtime")]
    NoRuntime,
    #[error("starting the userspace stack: MTU {mtu} is below the minimum of {MIN_MTU}")]
    Mtu { mtu: u16 },
    #[error("configuring overlay address {address}: {reason}")]
    Address {
        address: IpNet,
        reason: &'static str,
    },
    #[error("exposing overlay TCP port {port} (to {target}): {reason}")]
    Expose {
        port: u16,
        target: SocketAddr,
        reason: &'static str,
    },
    #[error("binding TCP forward listener on {addr}: {cause}")]
    Bind { addr: SocketAddr, cause: io::Error },
    #[error("pinging {target}: this node has no overlay address of that family")]
    NoSourceAddress { target: IpAddr },
    #[error("pinging {target}: every ICMP echo identifier is in use")]
    PingBusy { target: IpAddr },
    #[error("pinging {target}: the userspace stack has stopped")]
    PingStopped { target: IpAddr },
}

/// Starts the stack task on the current tokio runtime and binds the forward
/// listeners. Nothing is spawned unless every listener could be bound.
pub fn spawn(
    settings: UserspaceSettings,
    to_mesh: mpsc::Sender<Vec<u8>>,
) -> Result<StackHandle, UserspaceError> {
    tokio::runtime::Handle::try_current().map_err(|_| UserspaceError::NoRuntime)?;
    let shared = Arc::new(Shared::default());
    let stack = Stack::new(&settings, to_mesh, Arc::clone(&shared))?;

    let mut bound = Vec::with_capacity(settings.tcp_forwards.len());
    for forward in &settings.tcp_forwards {
        let bind_error = |cause| UserspaceError::Bind {
            addr: forward.listen,
            cause,
        };
        let listener = std::net::TcpListener::bind(forward.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
        bound.push((listener, local, forward.target));
    }

    let (packets_tx, packets) = mpsc::channel(INBOUND_QUEUE);
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (shutdown_tx, shutdown) = oneshot::channel();
    let task = tokio::spawn(stack.run(Inputs {
        packets,
        commands,
        shutdown,
    }));
    let mut forward_addrs = Vec::with_capacity(bound.len());
    let mut listeners = Vec::with_capacity(bound.len());
    for (listener, local, target) in bound {
        tracing::info!(listen = %local, %target, "userspace TCP forward listening");
        forward_addrs.push(local);
        listeners.push(tokio::spawn(host::forward_listener(
            listener,
            local,
            target,
            commands_tx.clone(),
        )));
    }
    Ok(StackHandle {
        inlet: PacketInlet {
            packets: packets_tx,
            shared: Arc::clone(&shared),
        },
        commands: commands_tx,
        shared,
        shutdown: shutdown_tx,
        task,
        listeners,
        forward_addrs,
    })
}

/// The running stack. Dropping it stops the stack like [`shutdown`] does,
/// without waiting.
///
/// [`shutdown`]: StackHandle::shutdown
#[derive(Debug)]
pub struct StackHandle {
    inlet: PacketInlet,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    listeners: Vec<JoinHandle<()>>,
    forward_addrs: Vec<SocketAddr>,
}

impl StackHandle {
    /// Hands the stack a packet from the mesh addressed to this node. Never
    /// blocks: when the inbound queue is full the packet is dropped and
    /// counted in [`StackStats::dropped_in`].
    pub fn deliver(&self, packet: Vec<u8>) {
        self.inlet.deliver(packet);
    }

    /// A cheap, cloneable [`deliver`](Self::deliver) for the engine's tasks.
    pub fn inlet(&self) -> PacketInlet {
        self.inlet.clone()
    }

    /// A cloneable [`ping`](Self::ping) that holds nothing of the stack but
    /// its command queue: a ping in progress never delays
    /// [`shutdown`](Self::shutdown), it ends with
    /// [`UserspaceError::PingStopped`] instead.
    pub fn pinger(&self) -> Pinger {
        Pinger {
            commands: self.commands.clone(),
        }
    }

    /// Sends `count` ICMP (IPv4) or ICMPv6 echo requests to `target`,
    /// `interval` apart, and waits up to `timeout` after the last one for the
    /// replies. Replies later than `timeout` after their request are not
    /// counted.
    pub async fn ping(
        &self,
        target: IpAddr,
        count: u16,
        interval: Duration,
        timeout: Duration,
    ) -> Result<PingReport, UserspaceError> {
        ping::run(&self.commands, target, count, interval, timeout).await
    }

    /// Counters since the stack started.
    pub fn stats(&self) -> StackStats {
        self.shared.stats()
    }

    /// The bound host addresses of the TCP forwards, in settings order (useful
    /// when a forward listens on port 0).
    pub fn forward_addrs(&self) -> &[SocketAddr] {
        &self.forward_addrs
    }

    /// Stops the stack: forward listeners close, carried connections are
    /// reset on both sides, and the stack task is awaited.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "userspace stack task failed");
        }
        for listener in self.listeners {
            listener.abort();
            let _ = listener.await;
        }
    }
}

/// Pings from the stack; see [`StackHandle::pinger`].
#[derive(Clone, Debug)]
pub struct Pinger {
    commands: mpsc::Sender<Command>,
}

impl Pinger {
    /// Same as [`StackHandle::ping`].
    pub async fn ping(
        &self,
        target: IpAddr,
        count: u16,
        interval: Duration,
        timeout: Duration,
    ) -> Result<PingReport, UserspaceError> {
        ping::run(&self.commands, target, count, interval, timeout).await
    }
}

/// The sending end of the stack's inbound queue; see [`StackHandle::deliver`].
#[derive(Clone, Debug)]
pub struct PacketInlet {
    packets: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

impl PacketInlet {
    /// Same as [`StackHandle::deliver`].
    pub fn deliver(&self, packet: Vec<u8>) {
        if self.packets.try_send(packet).is_err() {
            let mut stats = self
                .shared
                .stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            stats.dropped_in += 1;
        }
    }
}

impl Shared {
    fn stats(&self) -> StackStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
