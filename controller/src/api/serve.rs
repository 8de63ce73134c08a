//! The API's accept loop: bounded in connections, in time to send a
//! request's headers, and in open event streams.
//!
//! `axum::serve` offers no header-read timeout and no connection cap, and
//! serves plain HTTP only, so the loop is ours: a semaphore permit before
//! each `accept` (over the cap, connections wait in the kernel's backlog,
//! not in our memory), an optional TLS handshake with a deadline, then
//! hyper's HTTP/1.1 connection with `header_read_timeout`, which also ends
//! keep-alive connections that stay silent that long.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use futures::StreamExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Failure;
use crate::warnings::{ACCEPT_ERROR_PAUSE, WARNING_INTERVAL, WarningLimiter};

/// A client must send a request's headers (and a TLS client its
/// handshake) within this time. A script or the TUI sends them in one
/// segment; 10 s leave a slow VPN path ample room while 40 half-sent
/// requests no longer stay open forever (issue 12).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many API connections at once; more wait in the listen
/// backlog. A control room runs a few TUIs, a Prometheus and a map
/// scraper: 128 is ample, and bounds the descriptors a client flood costs.
pub const MAX_CONNECTIONS: usize = 128;

/// At most this many event streams (SSE) at once, a quarter of the
/// connections, so streams can never take every connection from the
/// requests the TUI needs. Over it a stream request gets 503.
pub const MAX_EVENT_STREAMS: usize = 32;

/// API connections take at most this fraction (1 / n) of the process's
/// `RLIMIT_NOFILE`; see [`ApiLimits::for_descriptors`].
pub const API_SHARE_OF_DESCRIPTORS: u64 = 4;

/// The bounds of the API server; tests lower them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_event_streams: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_event_streams: MAX_EVENT_STREAMS,
        }
    }
}

impl ApiLimits {
    /// The default limits, with the connection cap lowered to a quarter of
    /// `descriptors` (the control server's unauthenticated peers get another
    /// quarter; sessions and SQLite the rest).
    pub fn for_descriptors(descriptors: u64) -> Self {
        let share = usize::try_from(descriptors / API_SHARE_OF_DESCRIPTORS)
            .unwrap_or(usize::MAX)
            .max(2);
        let max_connections = MAX_CONNECTIONS.min(share);
        Self {
            max_connections,
            max_event_streams: MAX_EVENT_STREAMS.min(max_connections / 2),
            ..Self::default()
        }
    }
}

/// Serves `app` on `listener` until the task is dropped.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ApiLimits,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut warnings = WarningLimiter::new(WARNING_INTERVAL);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                if let Some(suppressed) = warnings.handle_occurrence(Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "admin API: accept failed");
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = permit;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_connection(tls, app, header_read_timeout).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "admin API: TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "admin API: TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, app, header_read_timeout).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, app: Router, header_read_timeout: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        // Timeouts and clients that hang up: nothing an operator acts on.
        tracing::debug!("admin API connection: {e}");
    }
}

/// The open event streams, shared by the stream route's middleware.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// Middleware of the event stream route: takes a slot for the whole life
/// of the response body (the stream), or answers 503.
pub async fn limit_streams(State(slots): State<StreamSlots>, req: Request, next: Next) -> Response {
    let Ok(slot) = slots.slots.clone().try_acquire_owned() else {
        return Failure::unavailable(format!(
            "too many event streams are open (at most {}); close one or retry later",
            slots.max
        ))
        .into_response();
    };
    let (parts, body) = next.run(req).await.into_parts();
    // The slot goes with the body: it is freed when the stream is dropped
    // (the client left and the next write failed).
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = &slot;
        chunk
    }));
    Response::from_parts(parts, body)
}
