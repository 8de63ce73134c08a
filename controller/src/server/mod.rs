//! The control server's I/O shell (`freimesh-controller run`).
//!
//! ```text
//!  TCP accept ──► conn task (Noise, frames, keepalive) ─┐ ToHub
//!  TCP accept ──► conn task ────────────────────────────┤────► hub task: Store + core::Controller
//!                      ▲  Outgoing (per connection)     │        │ polls PRAGMA data_version
//!                      └────────────────────────────────┘        │ for the CLI's writes
//!  HTTP (admin API) ──► AdminHandle ── AdminCall ───────────────►│ events ──► SSE streams
//! ```
//!
//! One task per connection owns its socket and Noise session and does only
//! wire work; one hub task (`shell.rs`) drives [`HubCore`], the sans-IO
//! owner of the SQLite store and the decision core, so
//! every decision is taken in one place, in order, and committed before any
//! agent hears of it.

mod actions;
mod admission;
mod agent_msgs;
mod conn;
pub mod credentials;
mod events;
pub mod exits;
mod hello;
pub mod hub;
pub mod limits;
mod node_reports;
mod queue;
mod registry;
mod shell;
mod telemetry;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use crate::core::quota::{
    EVENT_AGE_SLACK_MS, EVENT_BURST, EVENTS_PER_MINUTE, MAX_EVENT_AGE_MS, MAX_HOSTNAME_LEN,
    MAX_PENDING_NODES, NEW_PENDING_PER_SOURCE_PER_MINUTE, check_hostname,
};
pub use events::HISTORY_KEEP;
pub use hub::{CLI_OPERATOR, HubConfig, HubCore, HubOutput};
pub use limits::Limits;
pub use telemetry::HISTORY_LEN;

use crate::api::{ApiError, ApiOptions, BoundApi};
use crate::clock::unix_now_ms;
use crate::hub_api::AdminHandle;
use crate::keyfile::{self, KeyFileError};
use crate::store::{Store, StoreError};
use crate::warnings::WarningLimiter;

/// How often the hub checks whether the CLI changed the database: a revoke
/// reaches the neighbours within this time.
pub const REGISTRY_POLL: Duration = Duration::from_millis(500);
/// A peer that has not finished the handshake and its Hello by then is
/// dropped: half-open connections must not pile up. (Message 1 has to come
/// much sooner: [`limits::FIRST_MESSAGE_WAIT`].)
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Agents ping every 25 s (`KEEPALIVE` in the agent); three missed pings
/// and a bit mean the agent is gone. Only frames from the agent count.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Messages waiting for the hub, per queue (connections, admin API): a
/// burst of reconnecting nodes fits; beyond it senders wait, which slows
/// the connection tasks instead of growing memory.
const HUB_QUEUE: usize = 1024;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("accepting connections: {0}")]
    Accept(std::io::Error),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// What `freimesh-controller run` was told.
#[derive(Debug, Clone)]
pub struct Options {
    pub db: PathBuf,
    pub listen: SocketAddr,
    /// Nodes without a token wait for approval (also when `init` did not
    /// set `--approval`).
    pub require_approval: bool,
}

/// A bound server, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    private_key: [u8; 32],
    hub: shell::Hub,
    api: Option<BoundApi>,
    limits: Limits,
}

impl Server {
    /// Opens the database, loads the registry and binds the listener.
    pub async fn bind(opts: &Options) -> Result<Self, ServerError> {
        Self::bind_with_lifetime(opts, credentials::DEFAULT_CREDENTIAL_LIFETIME).await
    }

    /// [`Self::bind`] with membership credentials valid for
    /// `credential_lifetime` (`run --credential-lifetime`).
    pub async fn bind_with_lifetime(
        opts: &Options,
        credential_lifetime: Duration,
    ) -> Result<Self, ServerError> {
        let private_key = keyfile::load_key(&opts.db)?;
        let store = Store::open(&opts.db)?;
        let config = HubConfig {
            require_approval: opts.require_approval,
            credential_lifetime,
        };
        let start = Instant::now();
        let mut core = HubCore::new(store, config, unix_now_ms())?;
        core.handle_step_time(start.elapsed());
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|cause| ServerError::Bind {
                addr: opts.listen,
                cause,
            })?;
        Ok(Self {
            listener,
            private_key,
            hub: shell::Hub::new(core),
            api: None,
            limits: Limits::default(),
        })
    }

    /// Replaces the connection limits ([`Limits::default`] until then).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Binds the admin API as well (its address and TLS files are checked
    /// now, so a mistake stops the start); returns its address.
    pub fn bind_api(&mut self, opts: &ApiOptions) -> Result<Option<SocketAddr>, ServerError> {
        let api = BoundApi::bind(opts)?;
        let addr = api.local_addr();
        self.api = Some(api);
        Ok(addr)
    }

    /// The agent listener's address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The admin API's address, if it is served.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(BoundApi::local_addr)
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let (hub_tx, hub_rx) = mpsc::channel(HUB_QUEUE);
        let (admin_tx, admin_rx) = mpsc::channel(HUB_QUEUE);
        let handle = AdminHandle::new(
            admin_tx,
            self.hub.live_events(),
            self.hub.core().operators(),
        );
        let signing_key = self.hub.core().signing_key().to_base64();
        let hub = tokio::spawn(self.hub.run(hub_rx, admin_rx));
        let api = self.api.map(|api| {
            tracing::info!(listen = ?api.local_addr(), tls = api.is_tls(), "admin API serving");
            tokio::spawn(async move {
                if let Err(e) = api.serve(handle).await {
                    tracing::error!(error = %e, "admin API stopped");
                }
            })
        });
        tracing::info!(listen = ?self.listener.local_addr().ok(), %signing_key, "controller serving");
        tokio::pin!(shutdown);
        let gate = admission::Gate::new(admission::Admission::with_relays(
            self.limits.max_unauthenticated,
            self.limits.max_unauthenticated_per_source,
            self.limits.max_unauthenticated_per_relay,
        ));
        let mut accept_warnings = WarningLimiter::new(limits::WARNING_INTERVAL);
        let mut refusal_warnings = WarningLimiter::new(limits::WARNING_INTERVAL);
        let mut session: u64 = 0;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends pass; keep serving the rest,
                            // but neither spin nor flood the log meanwhile.
                            if let Some(suppressed) = accept_warnings.handle_occurrence(Instant::now()) {
                                tracing::warn!(error = %e, suppressed, "accept failed");
                            }
                            tokio::time::sleep(limits::ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    };
                    let ticket = match gate.admit(peer.ip()) {
                        Ok(t) => t,
                        Err(refusal) => {
                            if let Some(suppressed) = refusal_warnings.handle_occurrence(Instant::now()) {
                                tracing::warn!(%peer, ?refusal, unauthenticated = gate.unauthenticated(), suppressed, "too many connections in the handshake; closed a new one");
                            }
                            drop(stream);
                            continue;
                        }
                    };
                    session += 1;
                    let key = self.private_key;
                    let tx = hub_tx.clone();
                    tokio::spawn(conn::serve(stream, peer, key, session, tx, self.limits.clone(), ticket));
                }
            }
        }
        // Live event streams never end on their own: stop the API outright
        // rather than wait for its connections.
        if let Some(api) = api {
            api.abort();
        }
        drop(hub_tx);
        hub.abort();
        Ok(())
    }
}

/// Binds and serves, with the admin API unless `api` is `None`: what the
/// binary calls.
pub async fn run(
    opts: Options,
    api: Option<ApiOptions>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut server = Server::bind(&opts).await?;
    if let Some(api) = &api {
        server.bind_api(api)?;
    }
    server.run(shutdown).await
}
