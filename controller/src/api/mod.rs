//! The admin API (`docs/api.md`): HTTP + JSON for the terminal UI and
//! scripts, a live event stream (SSE), Prometheus `/metrics` and a
//! meshviewer export.
//!
//! ```text
//!  HTTP request ──► auth (operator token) ──► handler ──► AdminHandle ──► hub task
//!                                                │  (JSON, SSE, graph analysis, rendering
//!                                                ▼   happen here, off the hub)
//!                                            response
//! ```
//!
//! The API holds no state of its own and never writes the store: every read
//! is a snapshot the hub copies out, every action runs on the hub; both go
//! as a typed [`crate::hub_api::AdminRequest`] (the API does not import the
//! server). Served by the server (`Server::run`) next to the
//! agent listener, on localhost by default, optionally over TLS (rustls with
//! the ring provider).

mod auth;
mod error;
mod handlers;
mod serve;
mod sse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use freimesh_proto::api::API_PREFIX;

use crate::hub_api::AdminHandle;

pub use error::Failure;
pub use serve::{ApiLimits, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_EVENT_STREAMS};

/// Where the admin API listens unless told otherwise: only this host.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7780";

/// `run --api ADDR [--api-tls-cert PEM --api-tls-key PEM]
/// [--insecure-plain-http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOptions {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on a non-loopback address (operator tokens then
    /// cross the network in clear text): refused unless this is set.
    pub insecure_plain_http: bool,
    pub limits: ApiLimits,
}

impl ApiOptions {
    /// Plain HTTP on `listen` with the default limits (refused at bind
    /// unless `listen` is a loopback address).
    pub fn plain(listen: SocketAddr) -> Self {
        Self {
            listen,
            tls: None,
            insecure_plain_http: false,
            limits: ApiLimits::default(),
        }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("admin API: listening on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("admin API TLS: {path}: {message}")]
    TlsFile { path: PathBuf, message: String },
    #[error("admin API TLS: {0}")]
    Tls(String),
    #[error(
        "admin API: refusing plain HTTP on {addr}, which is not a loopback address: operator tokens would cross the network in clear text; give --api-tls-cert and --api-tls-key, or --insecure-plain-http if the network is trusted"
    )]
    PlainHttpNotLoopback { addr: SocketAddr },
}

/// Every route, behind the operator token check, with the default limits.
pub fn router(handle: AdminHandle) -> Router {
    router_with(handle, &ApiLimits::default())
}

/// Every route, behind the operator token check; at most
/// `limits.max_event_streams` event streams at once.
pub fn router_with(handle: AdminHandle, limits: &ApiLimits) -> Router {
    let streams = serve::StreamSlots::new(limits.max_event_streams);
    let api = Router::new()
        .route("/overview", get(handlers::overview))
        .route("/nodes", get(handlers::nodes))
        .route("/nodes/{id}", get(handlers::node))
        .route("/nodes/{id}/routes", get(handlers::routes))
        .route("/nodes/{id}/drain", post(handlers::drain))
        .route("/nodes/{id}/undrain", post(handlers::undrain))
        .route("/nodes/{id}/approve", post(handlers::approve))
        .route("/nodes/{id}/revoke", post(handlers::revoke))
        .route("/nodes/{id}/roles", post(handlers::roles))
        .route("/links", get(handlers::links))
        .route("/gateways", get(handlers::gateways))
        .route("/sites", get(handlers::sites))
        .route(
            "/tokens",
            get(handlers::tokens).post(handlers::create_token),
        )
        .route("/events", get(handlers::events))
        .route("/audit", get(handlers::audit))
        .route(
            "/events/stream",
            get(sse::stream).layer(axum::middleware::from_fn_with_state(
                streams,
                serve::limit_streams,
            )),
        )
        .route("/redundancy", get(handlers::redundancy))
        .route("/meshviewer.json", get(handlers::meshviewer));
    Router::new()
        .nest(API_PREFIX, api)
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            handle.clone(),
            auth::require_operator,
        ))
        .with_state(handle)
}

/// A bound API listener, with its TLS configuration loaded.
#[derive(Debug)]
pub struct BoundApi {
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ApiLimits,
}

impl BoundApi {
    /// Binds `opts.listen` and loads the certificate, so that a bad address
    /// or file stops the controller at start, not at the first request.
    /// Plain HTTP beyond loopback needs `opts.insecure_plain_http`.
    pub fn bind(opts: &ApiOptions) -> Result<Self, ApiError> {
        if opts.tls.is_none() && !opts.listen.ip().is_loopback() && !opts.insecure_plain_http {
            return Err(ApiError::PlainHttpNotLoopback { addr: opts.listen });
        }
        let bind_err = |cause| ApiError::Bind {
            addr: opts.listen,
            cause,
        };
        let listener = std::net::TcpListener::bind(opts.listen).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let tls = opts.tls.as_ref().map(tls_config).transpose()?;
        Ok(Self {
            listener,
            tls,
            limits: opts.limits.clone(),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the task is dropped.
    pub async fn serve(self, handle: AdminHandle) -> std::io::Result<()> {
        let app = router_with(handle, &self.limits);
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        serve::accept_loop(listener, app, tls, self.limits).await
    }
}

/// A rustls server configuration with the ring provider, chosen here
/// explicitly rather than through a process-wide default.
fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let file_err = |path: &PathBuf, e: &dyn std::fmt::Display| ApiError::TlsFile {
        path: path.clone(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_err(&files.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(file_err(&files.cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ApiError::Tls(e.to_string()))?;
    // The server speaks HTTP/1.1 only (axum's http1 feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
