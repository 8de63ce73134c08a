//! The I/O shell: drives the sans-IO [`Engine`] over a UDP socket and one
//! [`LocalBackend`] (TUN, smoltcp or the test double), and serves the
//! control socket.
//!
//! Tasks, all on one tokio runtime:
//!
//! ```text
//!  UDP socket ──recv──▶ underlay task ─┐             ┌─▶ UDP send_to
//!                                       ├─▶ Engine ──┤
//!  LocalBackend ──────▶ local task ────┘  (mutex)    └─▶ LocalBackend::deliver
//!  poll_timeout ──────▶ timer task ──────▶ handle_timeout
//!  LocalBackend ──────▶ carrier task ────▶ handle_carrier (losses only)
//!  controller client ─▶ controller tasks ▶ links, routes; reports back
//!  control socket ────▶ status / ping
//! ```
//!
//! The engine sits behind a plain mutex held only while it decides; sends
//! happen after the lock is released, so the two directions overlap.
//! [`run`] opens the backend the configuration names; [`run_with_backend`]
//! takes any, which is how the shell is tested without root.

pub mod backend;
mod batch;
mod controller;
mod discovery;
mod mesh_control;
mod respondd;
mod roles;
mod shell;
mod state;
mod status;
#[cfg(test)]
mod tests;
mod underlay_socket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand_core::{OsRng, RngCore as _};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::backend::{BackendError, LocalBackend};
use self::roles::Roles;
use self::shell::{Outputs, Shared};
use self::state::StateKeeper;
use self::status::StatusContext;
use crate::clock;
use crate::config::{AgentConfig, NextHop};
use crate::control::{ControlError, ControlServer};
use crate::controlplane::{Client, ClientConfig, ControlCore, ControllerEvent, Upstream};
use crate::core::{Engine, EngineError, Hop, LinkSpec};
use crate::discovery::shell::DiscoverySocket;
use crate::gateway::GatewayError;
use crate::identity::{IdentityError, PrivateKey};
use crate::linux::LinuxError;
use crate::publicwifi::PublicWifiError;
#[cfg(feature = "userspace")]
use crate::userspace::UserspaceError;

/// Events from the controller client waiting to be applied.
const CONTROLLER_EVENT_QUEUE: usize = 64;
/// Reports, failovers and counters waiting for the controller client (it
/// keeps taking them while disconnected, so this only absorbs bursts).
const UPSTREAM_QUEUE: usize = 64;
/// The last state file write at shutdown: an fsync on slow flash takes a
/// moment, but a stuck disk must not keep the agent from stopping.
const FINAL_SAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    #[cfg(feature = "userspace")]
    #[error(transparent)]
    Userspace(#[from] UserspaceError),
    #[error(transparent)]
    Backend(#[from] BackendError),
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
    #[error("opening the discovery socket (UDP port {port}) for node.mesh_interfaces: {cause}")]
    Discovery { port: u16, cause: std::io::Error },
    #[error("opening the respondd socket (UDP port {port}) for node.respondd: {cause}")]
    Respondd { port: u16, cause: std::io::Error },
}

/// Builds the engine from a checked configuration; `now` starts its clock.
pub fn build_engine(
    config: &AgentConfig,
    key: &PrivateKey,
    index_seed: u32,
    now: Instant,
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
    let mut engine = Engine::new(key.bytes(), specs, index_seed, now)?;
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

/// Runs the agent with the backend `config.backend` names until `shutdown`
/// completes, then removes what it created.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    run_with_backend(config, backend::open, shutdown).await
}

/// [`run`] with the local backend `open` returns; it is called with the
/// final configuration (addresses from the controller filled in).
pub async fn run_with_backend<Open, Opening>(
    mut config: AgentConfig,
    open: Open,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError>
where
    Open: FnOnce(AgentConfig) -> Opening,
    Opening: Future<Output = Result<Box<dyn LocalBackend>, RunError>>,
{
    let started = clock::now();
    let key = if config.generate_key {
        PrivateKey::load_or_create(&config.private_key_file)?
    } else {
        PrivateKey::load(&config.private_key_file)?
    };
    roles::check_roles(&config)?;
    let mut background = JoinSet::new();
    // Opened before the controller is dialled: a router that is not
    // enrolled yet hears its neighbours' relays through it.
    let discovery_socket = if config.mesh_interfaces.is_empty() {
        None
    } else {
        let port = freimesh_proto::discovery::DISCOVERY_PORT;
        Some(
            crate::discovery::shell::DiscoverySocket::open(port)
                .map_err(|cause| RunError::Discovery { port, cause })?,
        )
    };
    let mesh_control = mesh_control::MeshControl::default();
    let (mut controlled, client_prefixes, discovery_socket) = connect_controller(
        &mut config,
        &key,
        &mesh_control,
        discovery_socket,
        &mut background,
    )
    .await?;
    let mut engine = if controlled.is_some() {
        // Under a controller, `[[link]]`s are only candidates to report: the
        // controller decides which links exist and computes the routes.
        let own_only = AgentConfig {
            links: Vec::new(),
            routes: Vec::new(),
            ..config.clone()
        };
        build_engine(&own_only, &key, OsRng.next_u32(), clock::now())?
    } else {
        build_engine(&config, &key, OsRng.next_u32(), clock::now())?
    };
    let bind_error = |cause| RunError::Bind {
        addr: config.listen,
        cause,
    };
    let udp = UdpSocket::bind(config.listen).await.map_err(bind_error)?;
    let udp = underlay_socket::UnderlaySocket::new(udp).map_err(bind_error)?;
    let listen = udp.local_addr().map_err(bind_error)?;
    let control = ControlServer::bind(&config.control_socket).await?;
    let respondd_socket = if config.respondd {
        let port = crate::respondd::RESPONDD_PORT;
        Some(
            crate::respondd::shell::RespondSocket::open(port)
                .map_err(|cause| RunError::Respondd { port, cause })?,
        )
    } else {
        None
    };
    tracing::info!(
        node = %config.name, public_key = %key.public(), %listen,
        links = config.links.len(), routes = engine.table().len(), "agent starting"
    );
    let local = open(config.clone()).await?;
    let kernel_device = local.kernel_device();
    let status_context = Arc::new(StatusContext {
        name: config.name.clone(),
        backend: local.describe(),
        listen,
        addresses: config.addresses.clone(),
        started,
        controlled: controlled.is_some(),
    });

    engine.start(clock::now());
    let controlled_node = controlled.is_some();
    let upstream = controlled.as_ref().map(|c| c.reports.clone());
    let mut shared = Shared::new(engine, udp, local, upstream);
    shared.mesh_control = mesh_control.clone();
    let shared = Arc::new(shared);
    if let Some(membership) = controlled.as_mut().and_then(|c| c.membership.take()) {
        *shared.membership() = membership;
    }
    shared.with_engine(&mut Outputs::default(), |_| {}).await;
    let mut tasks = JoinSet::new();
    shell::spawn_engine_tasks(&shared, &mut tasks);
    let applier = controlled.map(|controlled| {
        let follow_kernel = kernel_device.is_some();
        spawn_controller_tasks(controlled, &config, &shared, follow_kernel, &mut background)
    });
    let control_shared = shared.clone();
    let control_path = control.path().to_owned();
    tasks.spawn(control.serve(move |request| {
        let shared = control_shared.clone();
        let context = status_context.clone();
        async move { status::answer(&shared, &context, request).await }
    }));
    // Neighbour discovery reads the membership the controller (or the
    // state file) set.
    if let Some(socket) = discovery_socket {
        let discovery = discovery::run(
            discovery::DiscoveryHost::Agent(shared.clone()),
            socket,
            config.mesh_interfaces.clone(),
            listen.port(),
            config.max_discovered_links_per_interface,
            None,
        );
        tasks.spawn(async move {
            discovery.await;
        });
    }
    // Under a controller, this node relays others' control channels
    // (`crate::relay`).
    if controlled_node && let Some(listener) = mesh_control::bind_relay() {
        let site = crate::relay::shell::RelaySite {
            own_key: key.public(),
            mesh_interfaces: config.mesh_interfaces.clone(),
            overlay: config.host_addresses().iter().map(|a| a.addr()).collect(),
        };
        mesh_control.spawn_relay(listener, site, &mut tasks);
    }
    if let Some(socket) = respondd_socket {
        let settings = respondd_settings(&config, &key, &client_prefixes);
        tasks.spawn(respondd::run(shared.clone(), socket, settings));
    }
    let roles = match &kernel_device {
        Some(device) => {
            roles::start_roles(&config, device, &client_prefixes, &shared, &mut tasks).await?
        }
        None => Roles::default(),
    };

    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        Some(ended) = tasks.join_next() => {
            tracing::error!(?ended, "an agent task ended unexpectedly; shutting down");
        }
    }
    tasks.shutdown().await;
    if let Some(applier) = applier {
        applier.finish().await;
    }
    background.shutdown().await;
    let _ = std::fs::remove_file(&control_path);
    roles.stop().await;
    shared.local.close().await?;
    Ok(())
}

/// What the respondd task needs: who this node is, and the prefixes its
/// source policy admits (the mesh) and refuses (public Wi-Fi clients).
fn respondd_settings(
    config: &AgentConfig,
    key: &PrivateKey,
    client_prefixes: &[ipnet::IpNet],
) -> respondd::RespondSettings {
    let mesh = respondd::mesh_prefixes(&config.linux.kernel_routes, &config.addresses);
    respondd::RespondSettings {
        own: crate::respondd::OwnNode {
            key: key.public(),
            hostname: config.name.clone(),
            addresses: respondd::overlay_addresses(&config.addresses),
            is_gateway: config.gateway.is_some(),
        },
        policy: crate::respondd::SourcePolicy::new(&mesh, client_prefixes),
        interfaces: config.mesh_interfaces.clone(),
        node_info: config.node_info.clone(),
    }
}

/// Under a controller: applies what it assigns to the engine, reports link
/// states back and, with `follow_kernel`, keeps the kernel's routes into the
/// local device in step with the intranet routes it pushes (buildings,
/// sites). The task applying the controller's events also keeps the state
/// file: it is returned, to be stopped last.
fn spawn_controller_tasks(
    controlled: Controlled,
    config: &AgentConfig,
    shared: &Arc<Shared>,
    follow_kernel: bool,
    background: &mut JoinSet<()>,
) -> Applier {
    let (kernel_tx, kernel_rx) = tokio::sync::watch::channel(config.linux.kernel_routes.clone());
    let kernel = follow_kernel.then(|| controller::KernelRoutes {
        base: config.linux.kernel_routes.clone(),
        local: config.local_prefixes.clone(),
        tx: kernel_tx,
    });
    if kernel.is_some() {
        background.spawn(shell::kernel_routes_task(
            shared.clone(),
            config.addresses.clone(),
            kernel_rx,
        ));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(controller::apply_events(
        shared.clone(),
        controlled.events,
        controlled.state,
        controller::OwnNode {
            key: controlled.own_key,
            prefixes: config.host_addresses(),
        },
        kernel,
        controlled.keeper,
        stopped,
    ));
    background.spawn(crate::nodeinfo::report_task(
        crate::nodeinfo::Collector::new("/", config.node_info.clone()),
        controlled.reports.clone(),
    ));
    background.spawn(controller::report(
        shared.clone(),
        Arc::new(config.clone()),
        controlled.reports,
    ));
    Applier { stop, task }
}

/// The task applying the controller's events (and keeping the state file).
struct Applier {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Applier {
    /// Stops it after its last state file write (bounded in time).
    async fn finish(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(FINAL_SAVE_TIMEOUT, self.task)
            .await
            .is_err()
        {
            tracing::warn!("state file not saved at shutdown: the write did not finish in time");
            abort.abort();
        }
    }
}

/// The controller client and what it has said so far.
struct Controlled {
    events: mpsc::Receiver<ControllerEvent>,
    reports: mpsc::Sender<Upstream>,
    state: ControlCore,
    /// The membership the state file held, for `Shared`.
    membership: Option<crate::membership::Membership>,
    keeper: StateKeeper,
    /// This node's public key: its credential must name it.
    own_key: freimesh_proto::PublicKeyBytes,
}

/// Starts the controller client if the configuration names a controller.
/// The controller knows the addresses (unless configured), the mesh
/// prefixes the kernel must send into the TUN device (unless configured)
/// and a public Wi-Fi node's client prefixes: they come from the state
/// file when it holds a Welcome (the controller may be unreachable after a
/// power cut); on the first start, wait for the controller. Either fills
/// them into `config`. Returns the client and the client prefixes.
async fn connect_controller(
    config: &mut AgentConfig,
    key: &PrivateKey,
    mesh_control: &mesh_control::MeshControl,
    mut discovery_socket: Option<DiscoverySocket>,
    background: &mut JoinSet<()>,
) -> Result<
    (
        Option<Controlled>,
        Vec<ipnet::IpNet>,
        Option<DiscoverySocket>,
    ),
    RunError,
> {
    let Some(client_config) = ClientConfig::from_agent_config(config) else {
        return Ok((None, Vec::new(), discovery_socket));
    };
    let controller_key = client_config.controller_key;
    // The configured endpoints are the ones dialled: the file's list is
    // what this node dialled last, kept for when the controller announces
    // endpoints itself (redundant controllers); an endpoint the operator
    // took out of the configuration must not come back from it.
    let mut restored = state::restore(&config.state_file, &key.public(), &controller_key);
    let keeper = StateKeeper::new(
        &config.state_file,
        restored.on_disk,
        key.public(),
        controller_key,
        client_config.controller_endpoints.clone(),
    );
    if let Some(saved) = &restored.state {
        mesh_control.publish_exits(&saved.control_exits);
    }
    let (event_tx, mut events) = mpsc::channel(CONTROLLER_EVENT_QUEUE);
    let (reports, report_rx) = mpsc::channel(UPSTREAM_QUEUE);
    background.spawn(
        Client::new(client_config, key.clone(), event_tx, report_rx)
            .with_relay_paths(mesh_control.client_paths())
            .run(std::future::pending()),
    );
    let mut state = ControlCore::default();
    let mut client_prefixes = Vec::new();
    let saved_welcome = restored.state.as_ref().and_then(|s| s.welcome.clone());
    let welcome = if let Some(welcome) = saved_welcome {
        tracing::info!(node_id = %welcome.node_id, addresses = ?welcome.addresses, "addresses from the state file: not waiting for the controller");
        Some(welcome)
    } else if config.addresses.is_empty()
        || config.linux.kernel_routes.is_empty()
        || config.public_wifi.is_some()
    {
        // Not enrolled yet: beacon (without a credential) and listen for
        // neighbours' relays while waiting, in case the controller is
        // only reachable through the mesh.
        let bootstrap = discovery_socket.take().map(|socket| {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let host = discovery::DiscoveryHost::Unenrolled {
                own_key: key.public(),
                membership: Box::new(std::sync::Mutex::new(crate::membership::Membership::new())),
                mesh: mesh_control.clone(),
            };
            let task = tokio::spawn(discovery::run(
                host,
                socket,
                config.mesh_interfaces.clone(),
                config.listen.port(),
                config.max_discovered_links_per_interface,
                Some(stopped),
            ));
            (stop, task)
        });
        let welcome = controller::first_welcome(&mut events, &mut state).await;
        if let Some((stop, task)) = bootstrap {
            let _ = stop.send(());
            match task.await {
                Ok(socket) => discovery_socket = Some(socket),
                Err(err) => tracing::error!(%err, "discovery before enrolment failed"),
            }
        }
        let Some(welcome) = welcome else {
            return Err(RunError::ControllerGone);
        };
        Some(welcome)
    } else {
        None
    };
    if let Some(welcome) = welcome {
        client_prefixes = welcome.client_prefixes.clone();
        if config.addresses.is_empty() {
            config.addresses = welcome.addresses.clone();
        }
        if config.linux.kernel_routes.is_empty() {
            config.linux.kernel_routes = welcome.mesh_prefixes.clone();
        }
    }
    if let Some(saved) = restored.state.take() {
        // Own prefixes first, as `apply_events` sets them: routes for them
        // are never applied.
        state.set_own_prefixes(config.host_addresses());
        controller::replay_saved(&mut state, saved.replay());
    }
    Ok((
        Some(Controlled {
            events,
            reports,
            state,
            membership: restored.membership,
            keeper,
            own_key: key.public(),
        }),
        client_prefixes,
        discovery_socket,
    ))
}
