//! The stack task: owns the smoltcp interface and sockets, and sleeps until
//! there is something to do.
//!
//! Each turn of [`Stack::run`] waits for one event — shutdown, room in
//! `to_mesh` for a queued packet, packets from the mesh, a command, a host
//! connection task's notification, or smoltcp's `poll_delay` deadline — and
//! then calls [`Stack::drive`], which services every socket and lets smoltcp
//! transmit until nothing moves any more. Incoming packets go through
//! `poll_ingress_single` one at a time so that an exposed port's listening
//! socket is replaced as soon as it accepts: concurrent SYNs each find one.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use smoltcp::iface::{Interface, PollResult, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpCidr, IpListenEndpoint};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};

use super::device::{QueueDevice, interface};
use super::host::{HostLink, HostOrigin, spawn_host};
use super::ping::{PingReply, Pings};
use super::tcp::{Conn, Expose, MAX_CONNECTIONS, Ports, Verdict, listen_exposes, new_socket};
use super::{StackStats, UserspaceError, UserspaceSettings};

/// Packets taken from the inbound queue per wake-up before the stack looks at
/// its other inputs again: bounds the work between two looks.
const INGEST_BATCH: usize = 64;

/// Sleep when smoltcp asks to be polled "now" right after a full drive that
/// moved nothing (it cannot make progress yet). A guard against spinning,
/// not a polling interval: it should never be hit in normal operation.
const STALL_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// State shared between the handle, the connection tasks and the stack task.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) stats: Mutex<StackStats>,
    /// Host connection tasks wake the stack task through this.
    pub(super) wake: Notify,
}

#[derive(Debug)]
pub(super) enum Command {
    Forward {
        stream: TcpStream,
        target: SocketAddr,
    },
    PingOpen {
        target: IpAddr,
        replies: mpsc::Sender<PingReply>,
        ack: oneshot::Sender<Result<u16, UserspaceError>>,
    },
    PingSend {
        ident: u16,
        seq: u16,
    },
}

/// The stack task's inputs, apart from the shared `Notify`.
#[derive(Debug)]
pub(super) struct Inputs {
    pub(super) packets: mpsc::Receiver<Vec<u8>>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) shutdown: oneshot::Receiver<()>,
}

enum Event {
    Shutdown,
    /// `to_mesh` has room (`true`) or is closed (`false`).
    MeshReady(bool),
    Packet(Vec<u8>),
    Command(Command),
    Wake,
}

pub(super) struct Stack {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    exposes: Vec<Expose>,
    conns: Vec<Conn>,
    pings: Pings,
    ports: Ports,
    to_mesh: mpsc::Sender<Vec<u8>>,
    mesh_closed: bool,
    packets_in: u64,
    packets_out: u64,
    dropped_out: u64,
    wakeups: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("addresses", &self.iface.ip_addrs())
            .field("connections", &self.conns.len())
            .field("pings", &self.pings)
            .finish_non_exhaustive()
    }
}

fn now() -> smoltcp::time::Instant {
    tokio::time::Instant::now().into_std().into()
}

fn random_seed() -> u64 {
    use rand_core::RngCore;
    let mut seed = [0; 8];
    match rand_core::OsRng.try_fill_bytes(&mut seed) {
        Ok(()) => u64::from_le_bytes(seed),
        // Only TCP initial sequence numbers and port choice depend on it.
        Err(_) => now().total_micros().unsigned_abs(),
    }
}

impl Stack {
    pub(super) fn new(
        settings: &UserspaceSettings,
        to_mesh: mpsc::Sender<Vec<u8>>,
        shared: Arc<Shared>,
    ) -> Result<Self, UserspaceError> {
        let mut device = QueueDevice::new(settings.mtu);
        let seed = random_seed();
        let iface = interface(settings, &mut device, seed, now())?;

        let mut sockets = SocketSet::new(Vec::new());
        let exposes = listen_exposes(settings, &mut sockets)?;
        Ok(Self {
            iface,
            device,
            sockets,
            exposes,
            conns: Vec::new(),
            pings: Pings::new(seed),
            ports: Ports::new(seed),
            to_mesh,
            mesh_closed: false,
            packets_in: 0,
            packets_out: 0,
            dropped_out: 0,
            wakeups: 0,
            shared,
        })
    }

    pub(super) async fn run(mut self, mut inputs: Inputs) {
        let mut moved = true;
        loop {
            let now = now();
            let pause = match self.iface.poll_delay(now, &self.sockets) {
                // Waiting for `to_mesh` is enough: smoltcp cannot send anyway.
                _ if self.device.outbound_is_full() => None,
                Some(delay) if delay.total_micros() == 0 && !moved => Some(STALL_PAUSE),
                delay => delay.map(std::time::Duration::from),
            };
            let mesh_pending = self.device.has_outbound() && !self.mesh_closed;
            let event = tokio::select! {
                biased;
                _ = &mut inputs.shutdown => Event::Shutdown,
                permit = self.to_mesh.reserve(), if mesh_pending => Event::MeshReady(permit.is_ok()),
                // Before packets, which may keep coming for a long time.
                Some(command) = inputs.commands.recv() => Event::Command(command),
                Some(packet) = inputs.packets.recv() => Event::Packet(packet),
                () = self.shared.wake.notified() => Event::Wake,
                () = sleep_or_forever(pause) => Event::Wake,
            };
            self.wakeups += 1;
            match event {
                Event::Shutdown => break,
                // `drive` below flushes the queue.
                Event::MeshReady(true) => {}
                Event::MeshReady(false) => self.close_mesh(),
                Event::Packet(packet) => {
                    self.ingest(packet);
                    for _ in 1..INGEST_BATCH {
                        match inputs.packets.try_recv() {
                            Ok(packet) => self.ingest(packet),
                            Err(_) => break,
                        }
                    }
                }
                Event::Command(command) => self.command(command),
                Event::Wake => {}
            }
            moved = self.drive();
            self.publish();
        }
        self.reset_all();
        self.publish();
    }

    /// Takes one packet from the mesh.
    pub(super) fn ingest(&mut self, packet: Vec<u8>) {
        self.packets_in += 1;
        self.device.put_inbound(packet);
        self.iface
            .poll_ingress_single(now(), &mut self.device, &mut self.sockets);
        self.accept();
    }

    /// Services the sockets and lets smoltcp transmit until nothing moves.
    /// Returns whether anything did.
    pub(super) fn drive(&mut self) -> bool {
        let now = now();
        self.iface.poll_maintenance(now);
        let mut moved = false;
        loop {
            let mut progress = self.service();
            while self
                .iface
                .poll_egress(now, &mut self.device, &mut self.sockets)
                == PollResult::SocketStateChanged
            {
                progress = true;
            }
            progress |= self.flush();
            if !progress {
                return moved;
            }
            moved = true;
        }
    }

    /// Replaces each exposed port's listener that has left LISTEN by a fresh
    /// one, turning the old one into a connection.
    fn accept(&mut self) -> bool {
        let mut accepted = false;
        for expose in &mut self.exposes {
            let listening = self
                .sockets
                .get::<tcp::Socket<'_>>(expose.listener)
                .is_listening();
            if listening {
                continue;
            }
            let mut socket = new_socket();
            if socket.listen(expose.port).is_err() {
                continue; // unreachable: the port was accepted at start-up
            }
            let socket_handle = std::mem::replace(&mut expose.listener, self.sockets.add(socket));
            let link = if self.conns.len() < MAX_CONNECTIONS {
                spawn_host(HostOrigin::Connect(expose.target), Arc::clone(&self.shared))
            } else {
                tracing::warn!(
                    port = expose.port,
                    "userspace expose: too many connections, refusing"
                );
                HostLink::refused()
            };
            self.conns
                .push(Conn::new(socket_handle, None, expose.target, link));
            accepted = true;
        }
        accepted
    }

    /// Services every connection and ping; removes the finished ones.
    fn service(&mut self) -> bool {
        let mut progress = self.accept();
        let mut i = 0;
        while let Some(conn) = self.conns.get_mut(i) {
            let socket = self.sockets.get_mut::<tcp::Socket<'_>>(conn.socket());
            let (moved, verdict) = conn.service(socket);
            progress |= moved;
            match verdict {
                Verdict::Keep => i += 1,
                Verdict::Remove { clean } => {
                    let conn = self.conns.swap_remove(i);
                    self.sockets.remove(conn.socket());
                    if let Some(port) = conn.local_port() {
                        self.ports.release(port);
                    }
                    if !clean {
                        conn.abort_host();
                    }
                    progress = true;
                }
            }
        }
        progress |= self.pings.service(&mut self.sockets);
        progress
    }

    /// Moves queued packets to `to_mesh` while it has room.
    fn flush(&mut self) -> bool {
        let mut progress = false;
        let mut closed = false;
        while self.device.has_outbound() && !self.mesh_closed {
            match self.to_mesh.try_reserve() {
                Ok(permit) => {
                    if let Some(packet) = self.device.pop_outbound() {
                        permit.send(packet);
                        self.packets_out += 1;
                        progress = true;
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => break,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            self.close_mesh();
        }
        if self.mesh_closed {
            while self.device.pop_outbound().is_some() {
                self.dropped_out += 1;
            }
        }
        progress
    }

    fn close_mesh(&mut self) {
        if !self.mesh_closed {
            tracing::warn!("userspace stack: the mesh channel closed, dropping outgoing packets");
        }
        self.mesh_closed = true;
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Forward { stream, target } => self.open_forward(stream, target),
            Command::PingOpen {
                target,
                replies,
                ack,
            } => {
                let _ = ack.send(self.open_ping(target, replies));
            }
            Command::PingSend { ident, seq } => {
                self.pings.send(&mut self.sockets, ident, seq);
            }
        }
    }

    /// Carries a host connection accepted by a forward listener to `target`.
    /// Refusing means dropping the host connection.
    fn open_forward(&mut self, stream: TcpStream, target: SocketAddr) {
        if self.conns.len() >= MAX_CONNECTIONS {
            tracing::warn!(%target, "userspace forward: too many connections, refusing");
            return;
        }
        let Some(port) = self.ports.allocate(&self.exposes) else {
            tracing::warn!(%target, "userspace forward: no free local port, refusing");
            return;
        };
        let mut socket = new_socket();
        let local = IpListenEndpoint { addr: None, port };
        if let Err(error) = socket.connect(self.iface.context(), target, local) {
            tracing::warn!(%target, %error, "userspace forward: cannot connect (no overlay address of that family?)");
            return;
        }
        self.ports.take(port);
        let handle = self.sockets.add(socket);
        let link = spawn_host(HostOrigin::Accepted(stream), Arc::clone(&self.shared));
        self.conns.push(Conn::new(handle, Some(port), target, link));
    }

    fn open_ping(
        &mut self,
        target: IpAddr,
        replies: mpsc::Sender<PingReply>,
    ) -> Result<u16, UserspaceError> {
        let same_family =
            |cidr: &IpCidr| IpAddr::from(cidr.address()).is_ipv4() == target.is_ipv4();
        if !self.iface.ip_addrs().iter().any(same_family) {
            return Err(UserspaceError::NoSourceAddress { target });
        }
        self.pings.open(&mut self.sockets, target, replies)
    }

    /// On shutdown: reset every carried connection on both sides.
    fn reset_all(&mut self) {
        for conn in self.conns.drain(..) {
            self.sockets
                .get_mut::<tcp::Socket<'_>>(conn.socket())
                .abort();
            conn.abort_host();
        }
        let now = now();
        while self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {}
        self.flush();
    }

    fn publish(&self) {
        let mut stats = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        stats.packets_in = self.packets_in;
        stats.packets_out = self.packets_out;
        stats.dropped_out = self.dropped_out + self.device.dropped();
        stats.open_connections = self.conns.len();
        stats.wakeups = self.wakeups;
    }
}

async fn sleep_or_forever(pause: Option<std::time::Duration>) {
    match pause {
        Some(pause) => tokio::time::sleep(pause).await,
        None => std::future::pending().await,
    }
}
