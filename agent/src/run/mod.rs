//! The I/O shell: drives the sans-IO [`Engine`] over a UDP socket and one of
//! the two local backends, and serves the control socket.
//!
//! Tasks, all on one tokio runtime:
//!
//! ```text
//!  UDP socket ──recv──▶ underlay task ─┐             ┌─▶ UDP send_to
//!                                       ├─▶ Engine ──┤
//!  TUN / smoltcp ─────▶ local task ────┘  (mutex)    └─▶ TUN write / smoltcp
//!  interval(TICK) ────▶ timer task ──────▶ handle_timeout
//!  control socket ────▶ status / ping
//! ```
//!
//! The engine sits behind a plain mutex held only while it decides; sends
//! happen after the lock is released, so the two directions overlap.

mod controller;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rand_core::{OsRng, RngCore as _};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{AgentConfig, Backend, NextHop};
use crate::control::{AgentStatus, ControlError, ControlServer, PingSummary, Request, Response};
use crate::controlplane::{Client, ClientConfig, ControlCore, Upstream};
use crate::core::{Engine, EngineError, Hop, LinkSpec, Output};
use crate::gateway::{CheckerSettings, GatewayError, Nat, UplinkProbe, UplinkSettings};
use crate::identity::{IdentityError, PrivateKey};
use crate::linux::{LinuxBackend, LinuxError, LinuxSettings};
use crate::publicwifi::{
    self, DhcpMode, DhcpService, PublicWifi, PublicWifiError, PublicWifiSettings,
};
use crate::userspace::{
    self, StackHandle, TcpExpose, TcpForward, UserspaceError, UserspaceSettings,
};

/// Largest datagram or packet we read; larger than any MTU we configure.
const MAX_PACKET: usize = 65_536;
/// How long a send may wait for room in a full socket buffer.
const SEND_WAIT: Duration = Duration::from_millis(2);
/// Datagrams the timer takes in before a liveness check, at most.
const MAX_DRAIN: usize = 256;
/// Packets waiting between the smoltcp stack and the engine.
const STACK_QUEUE: usize = 1024;
/// Reports, failovers and counters waiting for the controller client (it
/// keeps taking them while disconnected, so this only absorbs bursts).
const UPSTREAM_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("binding the underlay UDP socket {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Linux(#[from] LinuxError),
    #[error(transparent)]
    Userspace(#[from] UserspaceError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("the controller client stopped before this node was enrolled")]
    ControllerGone,
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    PublicWifi(#[from] PublicWifiError),
    #[error("[{section}] needs backend = \"linux\"")]
    NeedsLinux { section: &'static str },
    #[error("[public_wifi] needs a [controller]: it assigns the client prefixes")]
    PublicWifiNeedsController,
}

/// Where packets for this node go.
enum LocalSink {
    Tun(Arc<tun_rs::AsyncDevice>),
    Stack(StackHandle),
}

struct Shared {
    engine: Mutex<Engine>,
    udp: UdpSocket,
    local: LocalSink,
    /// To the controller client, when there is a controller: failovers
    /// go up as they happen.
    upstream: Option<mpsc::Sender<Upstream>>,
}

impl Shared {
    /// Sends one datagram to the underlay. A full socket buffer gets a
    /// moment to drain (a burst clears in microseconds); past that the
    /// datagram is dropped, as a router drops at a full queue, rather than
    /// holding up every other link behind one that cannot send.
    async fn transmit(&self, to: SocketAddr, datagram: &[u8]) {
        match self.udp.try_send_to(datagram, to) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(SEND_WAIT, self.udp.send_to(datagram, to)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::debug!(%to, %err, "underlay send failed"),
                    Err(_) => tracing::debug!(%to, "underlay socket full: datagram dropped"),
                }
            }
            Err(err) => tracing::debug!(%to, %err, "underlay send failed"),
        }
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        // A panic while holding the lock would be a bug in the engine; the
        // engine's state is still the best we have, so keep forwarding.
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the engine, then carries out everything it asked for.
    async fn with_engine(&self, outputs: &mut Vec<Output>, f: impl FnOnce(&mut Engine)) {
        let failovers = {
            let mut engine = self.engine();
            let started = Instant::now();
            f(&mut engine);
            // The engine step that took a link down also switched the
            // table: its duration bounds the switch time the controller
            // shows operators.
            let took = started.elapsed();
            while let Some(output) = engine.poll_output() {
                outputs.push(output);
            }
            let failovers = engine.take_failovers();
            (!failovers.is_empty()).then_some((failovers, took))
        };
        if let (Some((failovers, took)), Some(upstream)) = (failovers, &self.upstream) {
            for failover in failovers {
                let event = controller::link_event(&failover, took);
                if upstream
                    .try_send(Upstream::Failover(event, failover.at))
                    .is_err()
                {
                    tracing::debug!(peer = %failover.peer, "controller queue full: failover not reported");
                }
            }
        }
        for output in outputs.drain(..) {
            match output {
                Output::Transmit { to, datagram } => self.transmit(to, &datagram).await,
                Output::ResolveUnderlay { link, peer } => {
                    // Only the linux backend sees carrier; a failed lookup
                    // just leaves the link to heartbeat detection.
                    if matches!(self.local, LocalSink::Tun(_)) {
                        match crate::linux::underlay_interface(peer).await {
                            Ok(ifindex) => self.engine().set_link_underlay(link, ifindex),
                            Err(err) => tracing::debug!(%peer, %err, "underlay interface unknown"),
                        }
                    }
                }
                Output::Local(packet) => match &self.local {
                    LocalSink::Tun(device) => {
                        if let Err(err) = device.send(&packet).await {
                            tracing::debug!(%err, "TUN write failed");
                        }
                    }
                    LocalSink::Stack(stack) => stack.deliver(packet),
                },
            }
        }
    }
}

/// Builds the engine from a checked configuration.
pub fn build_engine(
    config: &AgentConfig,
    key: &PrivateKey,
    index_seed: u32,
) -> Result<Engine, EngineError> {
    let specs = config
        .links
        .iter()
        .map(|l| LinkSpec {
            name: l.name.clone(),
            peer: l.public_key,
            endpoint: l.endpoint,
            keepalive: l.keepalive,
            allowed_sources: l.allowed_sources.clone(),
            profile: l.profile.clone(),
        })
        .collect();
    let mut engine = Engine::new(key.bytes(), specs, index_seed)?;
    for prefix in config
        .host_addresses()
        .into_iter()
        .chain(config.local_prefixes.iter().copied())
    {
        engine.insert_route(prefix, vec![Hop::Local])?;
    }
    for route in &config.routes {
        let hops = route
            .via
            .iter()
            .filter_map(|hop| match hop {
                NextHop::Local => Some(Hop::Local),
                NextHop::Link(name) => engine.link_id(name).map(Hop::Link),
            })
            .collect();
        engine.insert_route_in(route.prefix, hops, route.segment)?;
    }
    Ok(engine)
}

/// Runs the agent until `shutdown` completes, then removes what it created.
pub async fn run(
    mut config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let started = Instant::now();
    let key = if config.generate_key {
        PrivateKey::load_or_create(&config.private_key_file)?
    } else {
        PrivateKey::load(&config.private_key_file)?
    };
    let mut background = JoinSet::new();
    check_roles(&config)?;
    let mut client_prefixes = Vec::new();
    let controlled = match ClientConfig::from_agent_config(&config) {
        Some(client_config) => {
            let (event_tx, mut events) = mpsc::channel(64);
            let (report_tx, report_rx) = mpsc::channel(UPSTREAM_QUEUE);
            background.spawn(
                Client::new(client_config, key.clone(), event_tx, report_rx)
                    .run(std::future::pending()),
            );
            let mut state = ControlCore::default();
            // The controller knows the addresses (unless configured), the
            // mesh prefixes the kernel must send into the TUN device (unless
            // configured) and a public Wi-Fi node's client prefixes: wait
            // for it on the first start.
            if config.addresses.is_empty()
                || config.linux.kernel_routes.is_empty()
                || config.public_wifi.is_some()
            {
                let Some(welcome) = controller::first_welcome(&mut events, &mut state).await else {
                    return Err(RunError::ControllerGone);
                };
                client_prefixes = welcome.client_prefixes.clone();
                if config.addresses.is_empty() {
                    config.addresses = welcome.addresses.clone();
                }
                if config.linux.kernel_routes.is_empty() {
                    config.linux.kernel_routes = welcome.mesh_prefixes.clone();
                }
            }
            Some((events, report_tx, state))
        }
        None => None,
    };
    // Under a controller, `[[link]]`s are only candidates to report: the
    // controller decides which links exist and computes the routes.
    let engine_config = if controlled.is_some() {
        AgentConfig {
            links: Vec::new(),
            routes: Vec::new(),
            ..config.clone()
        }
    } else {
        config.clone()
    };
    let mut engine = build_engine(&engine_config, &key, OsRng.next_u32())?;
    let udp = UdpSocket::bind(config.listen)
        .await
        .map_err(|cause| RunError::Bind {
            addr: config.listen,
            cause,
        })?;
    let listen = udp.local_addr().map_err(|cause| RunError::Bind {
        addr: config.listen,
        cause,
    })?;
    let control = ControlServer::bind(&config.control_socket).await?;
    tracing::info!(
        node = %config.name, public_key = %key.public(), %listen,
        links = config.links.len(), routes = engine.table().len(), "agent starting"
    );

    let mut tasks = JoinSet::new();
    let (local, linux_backend, stack_rx, backend_name) = match config.backend {
        Backend::Linux => {
            let backend = LinuxBackend::open(LinuxSettings {
                tun_name: config.linux.tun_name.clone(),
                mtu: config.linux.mtu,
                addresses: config.addresses.clone(),
                routes: config.linux.kernel_routes.clone(),
            })
            .await?;
            let name = format!("linux ({})", backend.name());
            (LocalSink::Tun(backend.device()), Some(backend), None, name)
        }
        Backend::Userspace => {
            let (to_mesh, from_stack) = mpsc::channel(STACK_QUEUE);
            let stack = userspace::spawn(
                UserspaceSettings {
                    addresses: config.addresses.clone(),
                    mtu: config.userspace.mtu,
                    tcp_forwards: config
                        .userspace
                        .tcp_forwards
                        .iter()
                        .map(|f| TcpForward {
                            listen: f.listen,
                            target: f.target,
                        })
                        .collect(),
                    tcp_exposes: config
                        .userspace
                        .tcp_exposes
                        .iter()
                        .map(|e| TcpExpose {
                            port: e.port,
                            target: e.target,
                        })
                        .collect(),
                },
                to_mesh,
            )?;
            (
                LocalSink::Stack(stack),
                None,
                Some(from_stack),
                "userspace".to_owned(),
            )
        }
    };

    engine.start(Instant::now());
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        udp,
        local,
        upstream: controlled
            .as_ref()
            .map(|(_, report_tx, _)| report_tx.clone()),
    });
    let mut outputs = Vec::new();
    shared.with_engine(&mut outputs, |_| {}).await;

    tasks.spawn(underlay_task(shared.clone()));
    tasks.spawn(timer_task(shared.clone()));
    // Under a controller the kernel's routes into the TUN follow the
    // intranet routes it pushes (buildings, sites).
    let (kernel_tx, kernel_rx) = tokio::sync::watch::channel(config.linux.kernel_routes.clone());
    if let Some((events, report_tx, state)) = controlled {
        let own = config.host_addresses();
        let kernel = linux_backend.is_some().then(|| controller::KernelRoutes {
            base: config.linux.kernel_routes.clone(),
            local: config.local_prefixes.clone(),
            tx: kernel_tx,
        });
        background.spawn(controller::apply_events(
            shared.clone(),
            events,
            state,
            own,
            kernel,
        ));
        background.spawn(controller::report(
            shared.clone(),
            Arc::new(config.clone()),
            report_tx,
        ));
    }
    match (&shared.local, stack_rx) {
        (LocalSink::Tun(device), _) => {
            tasks.spawn(tun_task(shared.clone(), device.clone()));
        }
        (LocalSink::Stack(_), Some(from_stack)) => {
            tasks.spawn(stack_task(shared.clone(), from_stack));
        }
        (LocalSink::Stack(_), None) => {}
    }
    let status_context = Arc::new(StatusContext {
        name: config.name.clone(),
        backend: backend_name,
        listen,
        addresses: config.addresses.clone(),
        started,
    });
    let control_shared = shared.clone();
    let control_path = control.path().to_owned();
    tasks.spawn(control.serve(move |request| {
        let shared = control_shared.clone();
        let context = status_context.clone();
        async move { answer(&shared, &context, request).await }
    }));
    if linux_backend.is_some() {
        tasks.spawn(carrier_task(shared.clone()));
    }
    let roles = match &linux_backend {
        Some(backend) => {
            start_roles(&config, backend, &client_prefixes, &shared, &mut tasks).await?
        }
        None => Roles::default(),
    };

    let linux_backend = linux_backend.map(|backend| Arc::new(tokio::sync::Mutex::new(backend)));
    if let Some(backend) = &linux_backend {
        background.spawn(kernel_routes_task(
            backend.clone(),
            config.addresses.clone(),
            kernel_rx,
        ));
    }

    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        Some(ended) = tasks.join_next() => {
            tracing::error!(?ended, "an agent task ended unexpectedly; shutting down");
        }
    }
    tasks.shutdown().await;
    background.shutdown().await;
    let _ = std::fs::remove_file(&control_path);
    roles.stop().await;
    if let Some(backend) = linux_backend {
        // Every task holding a clone has ended above.
        match Arc::try_unwrap(backend) {
            Ok(backend) => backend.into_inner().close().await?,
            Err(_) => tracing::error!(
                "TUN device still in use at shutdown; left for the next start to clean"
            ),
        }
    }
    if let Ok(shared) = Arc::try_unwrap(shared)
        && let LocalSink::Stack(stack) = shared.local
    {
        stack.shutdown().await;
    }
    Ok(())
}

/// Keeps the kernel's routes into the TUN device equal to what
/// [`controller::KernelRoutes`] asks for, changing only what differs.
async fn kernel_routes_task(
    backend: Arc<tokio::sync::Mutex<LinuxBackend>>,
    addresses: Vec<IpNet>,
    mut wanted: tokio::sync::watch::Receiver<Vec<IpNet>>,
) {
    while wanted.changed().await.is_ok() {
        let routes = wanted.borrow_and_update().clone();
        match backend.lock().await.update(&addresses, &routes).await {
            Ok(changes) if !changes.is_empty() => {
                tracing::info!(routes = ?routes, changes = changes.len(), "kernel routes follow the controller's intranet routes");
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%err, "updating kernel routes failed; kept the previous ones")
            }
        }
    }
}

/// Gateways and public Wi-Fi need the kernel: refuse them early elsewhere.
fn check_roles(config: &AgentConfig) -> Result<(), RunError> {
    if config.backend != Backend::Linux {
        if config.gateway.is_some() {
            return Err(RunError::NeedsLinux { section: "gateway" });
        }
        if config.public_wifi.is_some() {
            return Err(RunError::NeedsLinux {
                section: "public_wifi",
            });
        }
    }
    if config.public_wifi.is_some() && config.controller.is_none() {
        return Err(RunError::PublicWifiNeedsController);
    }
    Ok(())
}

/// What the gateway and public Wi-Fi roles set up in the kernel, to be
/// removed at shutdown.
#[derive(Default)]
struct Roles {
    nat: Option<Nat>,
    public_wifi: Option<PublicWifi>,
}

impl Roles {
    async fn stop(self) {
        if let Some(public_wifi) = self.public_wifi
            && let Err(err) = public_wifi.stop().await
        {
            tracing::warn!(%err, "public Wi-Fi cleanup");
        }
        if let Some(nat) = self.nat
            && let Err(err) = nat.remove().await
        {
            tracing::warn!(%err, "NAT cleanup");
        }
    }
}

/// Starts the gateway side (NAT, uplink checker) and the public Wi-Fi
/// side (client interface, firewall, dnsmasq or the system's DHCP/RA via
/// UCI, client count) as configured.
async fn start_roles(
    config: &AgentConfig,
    backend: &LinuxBackend,
    client_prefixes: &[ipnet::IpNet],
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
) -> Result<Roles, RunError> {
    let mut roles = Roles::default();
    if let Some(gateway) = &config.gateway {
        let probe = UplinkProbe::open(UplinkSettings {
            interface: gateway.uplink.clone(),
            targets: gateway.check.clone(),
            checker: CheckerSettings {
                interval: gateway.check_interval,
                misses: gateway.check_misses,
            },
        })?;
        if gateway.nat {
            roles.nat = Some(Nat::install(&gateway.uplink, &config.linux.kernel_routes).await?);
        }
        let (tx, rx) = mpsc::channel(8);
        tasks.spawn(probe.run(tx));
        tasks.spawn(uplink_task(shared.clone(), rx));
    }
    if let Some(public_wifi) = &config.public_wifi {
        // Clients' traffic is routed from their interface into the mesh.
        if let Err(err) = crate::gateway::nat::enable_forwarding() {
            roles.stop().await;
            return Err(err.into());
        }
        let state_dir = config
            .private_key_file
            .parent()
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        let started = PublicWifi::start(&PublicWifiSettings {
            interface: public_wifi.interface.clone(),
            tun_name: backend.name().to_owned(),
            tun_ifindex: backend.ifindex(),
            client_prefixes: client_prefixes.to_vec(),
            dhcp: match public_wifi.dhcp {
                DhcpMode::Dnsmasq => DhcpService::Dnsmasq {
                    binary: public_wifi.dnsmasq.clone(),
                },
                DhcpMode::OpenWrt => DhcpService::OpenWrt {
                    uci: public_wifi.uci.clone(),
                    init_dir: publicwifi::uci::DEFAULT_INIT_DIR.into(),
                    lease_file: publicwifi::uci::DEFAULT_LEASE_FILE.into(),
                    network: public_wifi.network.clone(),
                },
            },
            dns: public_wifi.dns.clone(),
            lease_time: public_wifi.lease_time,
            state_dir,
        })
        .await;
        let started = match started {
            Ok(started) => started,
            Err(err) => {
                roles.stop().await;
                return Err(err.into());
            }
        };
        let (tx, rx) = mpsc::channel(8);
        tasks.spawn(publicwifi::watch_clients(
            started.lease_file().to_owned(),
            started.client_prefixes().to_vec(),
            tx,
        ));
        tasks.spawn(clients_task(shared.clone(), rx));
        roles.public_wifi = Some(started);
    }
    Ok(roles)
}

/// Hands the uplink checker's verdicts to the engine (which withdraws or
/// restores the default routes) and to the controller.
async fn uplink_task(shared: Arc<Shared>, mut verdicts: mpsc::Receiver<bool>) {
    let mut outputs = Vec::new();
    while let Some(up) = verdicts.recv().await {
        if up {
            tracing::info!("uplink up");
        } else {
            tracing::warn!("uplink down");
        }
        shared
            .with_engine(&mut outputs, |engine| engine.set_uplink(up, Instant::now()))
            .await;
        if let Some(upstream) = &shared.upstream
            && upstream.try_send(Upstream::Uplink(up)).is_err()
        {
            tracing::debug!("controller queue full: uplink state not reported");
        }
    }
}

/// Sends the public Wi-Fi client count to the controller when it changes.
async fn clients_task(shared: Arc<Shared>, mut counts: mpsc::Receiver<u32>) {
    while let Some(count) = counts.recv().await {
        if let Some(upstream) = &shared.upstream
            && upstream.try_send(Upstream::Clients(count)).is_err()
        {
            tracing::debug!("controller queue full: client count not reported");
        }
    }
}

struct StatusContext {
    name: String,
    backend: String,
    listen: SocketAddr,
    addresses: Vec<ipnet::IpNet>,
    started: Instant,
}

async fn answer(shared: &Shared, context: &StatusContext, request: Request) -> Response {
    match request {
        Request::Status => {
            let engine = shared.engine().status(Instant::now());
            Response::Status(Box::new(AgentStatus {
                name: context.name.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                backend: context.backend.clone(),
                listen: context.listen,
                addresses: context.addresses.clone(),
                uptime_s: context.started.elapsed().as_secs(),
                engine,
            }))
        }
        Request::Ping { target, count } => match &shared.local {
            LocalSink::Stack(stack) => {
                match stack
                    .ping(
                        target,
                        count,
                        Duration::from_millis(200),
                        Duration::from_secs(2),
                    )
                    .await
                {
                    Ok(report) => Response::Ping(PingSummary {
                        target,
                        sent: report.sent,
                        received: report.received,
                        rtts_us: report
                            .replies
                            .iter()
                            .map(|r| u64::try_from(r.rtt.as_micros()).unwrap_or(u64::MAX))
                            .collect(),
                    }),
                    Err(err) => Response::Error {
                        message: err.to_string(),
                    },
                }
            }
            LocalSink::Tun(_) => Response::Error {
                message:
                    "this agent uses the linux backend: use ping(8) against the overlay address"
                        .into(),
            },
        },
    }
}

async fn underlay_task(shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut outputs = Vec::new();
    loop {
        let (len, from) = match shared.udp.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                // ICMP errors surface here (e.g. a neighbour's port is
                // closed); they say nothing about our own socket.
                tracing::trace!(%err, "underlay receive error");
                continue;
            }
        };
        let datagram = &buf[..len];
        shared
            .with_engine(&mut outputs, |engine| {
                engine.handle_datagram(from, datagram, Instant::now())
            })
            .await;
    }
}

async fn tun_task(shared: Arc<Shared>, device: Arc<tun_rs::AsyncDevice>) {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut outputs = Vec::new();
    loop {
        let len = match device.recv(&mut buf).await {
            Ok(len) => len,
            Err(err) => {
                tracing::error!(%err, "TUN read failed");
                return;
            }
        };
        let packet = &mut buf[..len];
        shared
            .with_engine(&mut outputs, |engine| {
                engine.handle_local_packet(packet, Instant::now())
            })
            .await;
    }
}

async fn stack_task(shared: Arc<Shared>, mut from_stack: mpsc::Receiver<Vec<u8>>) {
    let mut outputs = Vec::new();
    while let Some(mut packet) = from_stack.recv().await {
        shared
            .with_engine(&mut outputs, |engine| {
                engine.handle_local_packet(&mut packet, Instant::now())
            })
            .await;
    }
}

/// Wakes the engine when it asked to be woken: heartbeats and detection
/// deadlines are milliseconds apart, so the timer follows the engine's own
/// schedule instead of a fixed tick.
async fn timer_task(shared: Arc<Shared>) {
    let mut outputs = Vec::new();
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let deadline = shared.engine().poll_timeout();
        let deadline = deadline
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Engine::TICK);
        tokio::time::sleep_until(deadline).await;
        // A busy machine may have kept this agent off the CPU: take in what
        // the neighbours sent meanwhile before judging their silence, so a
        // heartbeat waiting in the socket is not mistaken for a dead link.
        for _ in 0..MAX_DRAIN {
            let Ok((len, from)) = shared.udp.try_recv_from(&mut buf) else {
                break;
            };
            let datagram = &buf[..len];
            shared
                .with_engine(&mut outputs, |engine| {
                    engine.handle_datagram(from, datagram, Instant::now())
                })
                .await;
        }
        shared
            .with_engine(&mut outputs, |engine| engine.handle_timeout(Instant::now()))
            .await;
    }
}

/// Feeds underlay carrier changes to the engine: a link over an interface
/// that lost carrier is down at once, without waiting for its heartbeats.
async fn carrier_task(shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Err(err) = crate::linux::watch_carrier(tx).await {
            tracing::warn!(%err, "cannot watch underlay carrier events; relying on heartbeats");
        }
    });
    let mut outputs = Vec::new();
    // Only a loss of carrier we see happen counts. The state an interface is
    // first reported in may lag behind the wire: the kernel updates operstate
    // up to a second after an interface comes up, while packets already
    // flow over it, so "down" in the first report is not a failure.
    let mut known: BTreeMap<u32, bool> = BTreeMap::new();
    while let Some(event) = rx.recv().await {
        tracing::debug!(interface = %event.name, carrier = event.carrier_up, "underlay carrier");
        let was_up = known.insert(event.ifindex, event.carrier_up);
        if was_up == Some(true) && !event.carrier_up {
            shared
                .with_engine(&mut outputs, |engine| {
                    engine.handle_carrier(event.ifindex, false, Instant::now())
                })
                .await;
        }
    }
    // Without carrier events the agent still detects failures by heartbeat;
    // keep the task alive so its end is not mistaken for a failure.
    std::future::pending::<()>().await;
}
