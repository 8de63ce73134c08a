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

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;
use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::socket::{icmp, tcp};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};

use super::device::QueueDevice;
use super::host::{HostLink, HostOrigin, spawn_host};
use super::ping::{Ping, PingReply};
use super::tcp::{Conn, Expose, MAX_CONNECTIONS, Verdict, new_socket};
use super::{MIN_MTU, StackStats, UserspaceError, UserspaceSettings};

/// Packets taken from the inbound queue per wake-up before the stack looks at
/// its other inputs again: bounds the work between two looks.
const INGEST_BATCH: usize = 64;

/// Sleep when smoltcp asks to be polled "now" right after a full drive that
/// moved nothing (it cannot make progress yet). A guard against spinning,
/// not a polling interval: it should never be hit in normal operation.
const STALL_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Local ports for connections the stack opens (IANA dynamic range).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

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
    pings: Vec<Ping>,
    ports_in_use: BTreeSet<u16>,
    next_port: u16,
    next_ident: u16,
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
            .field("pings", &self.pings.len())
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
        if settings.mtu < MIN_MTU {
            return Err(UserspaceError::Mtu { mtu: settings.mtu });
        }
        let mut device = QueueDevice::new(settings.mtu);
        let seed = random_seed();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, now());
        for &address in &settings.addresses {
            let bad = |reason| UserspaceError::Address { address, reason };
            let ip = IpAddress::from(address.addr());
            if !ip.is_unicast() {
                return Err(bad("not a unicast address"));
            }
            let mut full = false;
            iface.update_ip_addrs(|addrs| {
                full = addrs.push(IpCidr::new(ip, address.prefix_len())).is_err();
            });
            if full {
                return Err(bad("more addresses than the stack holds (8)"));
            }
        }
        // Everything not on an overlay prefix leaves through the mesh. With
        // `Medium::Ip` smoltcp only checks that a route exists (there is no
        // neighbour to resolve), so the gateway is just our own address.
        let route_error = |address: IpNet| UserspaceError::Address {
            address,
            reason: "no room for its default route",
        };
        if let Some(net) = settings.addresses.iter().find(|a| a.addr().is_ipv4()) {
            if let IpAddr::V4(gateway) = net.addr() {
                iface
                    .routes_mut()
                    .add_default_ipv4_route(gateway)
                    .map_err(|_| route_error(*net))?;
            }
        }
        if let Some(net) = settings.addresses.iter().find(|a| a.addr().is_ipv6()) {
            if let IpAddr::V6(gateway) = net.addr() {
                iface
                    .routes_mut()
                    .add_default_ipv6_route(gateway)
                    .map_err(|_| route_error(*net))?;
            }
        }

        let mut sockets = SocketSet::new(Vec::new());
        let mut exposes: Vec<Expose> = Vec::with_capacity(settings.tcp_exposes.len());
        for expose in &settings.tcp_exposes {
            let bad = |reason| UserspaceError::Expose {
                port: expose.port,
                target: expose.target,
                reason,
            };
            if exposes.iter().any(|e| e.port == expose.port) {
                return Err(bad("port exposed twice"));
            }
            let mut socket = new_socket();
            socket
                .listen(expose.port)
                .map_err(|_| bad("smoltcp cannot listen on it (port 0?)"))?;
            exposes.push(Expose {
                port: expose.port,
                target: expose.target,
                listener: sockets.add(socket),
            });
        }
        let span = u64::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        let offset = u16::try_from(seed % span).unwrap_or(0);
        Ok(Self {
            iface,
            device,
            sockets,
            exposes,
            conns: Vec::new(),
            pings: Vec::new(),
            ports_in_use: BTreeSet::new(),
            next_port: EPHEMERAL_PORTS.start().saturating_add(offset),
            next_ident: u16::try_from(seed >> 48).unwrap_or(1),
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
                Some(packet) = inputs.packets.recv() => Event::Packet(packet),
                Some(command) = inputs.commands.recv() => Event::Command(command),
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
            while self.iface.poll_egress(now, &mut self.device, &mut self.sockets)
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
            let listening = self.sockets.get::<tcp::Socket<'_>>(expose.listener).is_listening();
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
                tracing::warn!(port = expose.port, "userspace expose: too many connections, refusing");
                HostLink::refused()
            };
            self.conns.push(Conn::new(socket_handle, None, expose.target, link));
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
                        self.ports_in_use.remove(&port);
                    }
                    if !clean {
                        conn.abort_host();
                    }
                    progress = true;
                }
            }
        }
        for ping in &mut self.pings {
            progress |= ping.service(self.sockets.get_mut::<icmp::Socket<'_>>(ping.socket()));
        }
        let sockets = &mut self.sockets;
        self.pings.retain(|ping| {
            let keep = !ping.is_abandoned();
            if !keep {
                sockets.remove(ping.socket());
            }
            keep
        });
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
                if let Some(ping) = self.pings.iter_mut().find(|p| p.ident() == ident) {
                    let socket = self.sockets.get_mut::<icmp::Socket<'_>>(ping.socket());
                    ping.send(socket, seq);
                }
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
        let Some(port) = self.allocate_port() else {
            tracing::warn!(%target, "userspace forward: no free local port, refusing");
            return;
        };
        let mut socket = new_socket();
        let local = IpListenEndpoint { addr: None, port };
        if let Err(error) = socket.connect(self.iface.context(), target, local) {
            tracing::warn!(%target, %error, "userspace forward: cannot connect (no overlay address of that family?)");
            return;
        }
        self.ports_in_use.insert(port);
        let handle = self.sockets.add(socket);
        let link = spawn_host(HostOrigin::Accepted(stream), Arc::clone(&self.shared));
        self.conns.push(Conn::new(handle, Some(port), target, link));
    }

    fn allocate_port(&mut self) -> Option<u16> {
        for _ in EPHEMERAL_PORTS {
            let port = self.next_port;
            self.next_port = match port.checked_add(1) {
                Some(next) if EPHEMERAL_PORTS.contains(&next) => next,
                _ => *EPHEMERAL_PORTS.start(),
            };
            let exposed = self.exposes.iter().any(|e| e.port == port);
            if !exposed && !self.ports_in_use.contains(&port) {
                return Some(port);
            }
        }
        None
    }

    fn open_ping(
        &mut self,
        target: IpAddr,
        replies: mpsc::Sender<PingReply>,
    ) -> Result<u16, UserspaceError> {
        let same_family = |cidr: &IpCidr| IpAddr::from(cidr.address()).is_ipv4() == target.is_ipv4();
        if !self.iface.ip_addrs().iter().any(same_family) {
            return Err(UserspaceError::NoSourceAddress { target });
        }
        let mut ident = None;
        for _ in 0..=u16::MAX {
            let candidate = self.next_ident;
            self.next_ident = self.next_ident.wrapping_add(1);
            if !self.pings.iter().any(|p| p.ident() == candidate) {
                ident = Some(candidate);
                break;
            }
        }
        let ident = ident.ok_or(UserspaceError::PingBusy { target })?;
        let socket = self.sockets.add(Ping::new_socket(ident));
        self.pings.push(Ping::new(ident, target, socket, replies));
        Ok(ident)
    }

    /// On shutdown: reset every carried connection on both sides.
    fn reset_all(&mut self) {
        for conn in self.conns.drain(..) {
            self.sockets.get_mut::<tcp::Socket<'_>>(conn.socket()).abort();
            conn.abort_host();
        }
        let now = now();
        while self.iface.poll_egress(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {}
        self.flush();
    }

    fn publish(&self) {
        let mut stats = self.shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
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
