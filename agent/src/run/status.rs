//! Answers to `freimesh-agent status` and `ping` on the control socket.

use std::net::SocketAddr;
use std::time::Instant;

use super::shell::Shared;
use crate::clock;
use crate::control::{AgentStatus, PingSummary, Request, Response};

/// What `status` shows beside the engine's own state.
pub(super) struct StatusContext {
    pub name: String,
    pub backend: String,
    pub listen: SocketAddr,
    pub addresses: Vec<ipnet::IpNet>,
    pub started: Instant,
}

pub(super) async fn answer(shared: &Shared, context: &StatusContext, request: Request) -> Response {
    match request {
        Request::Status => {
            let engine = shared.engine().status(clock::now());
            Response::Status(Box::new(AgentStatus {
                name: context.name.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                backend: context.backend.clone(),
                listen: context.listen,
                addresses: context.addresses.clone(),
                uptime_s: clock::now()
                    .saturating_duration_since(context.started)
                    .as_secs(),
                discovery: *shared.discovery_counters(),
                engine,
                state_writes: shared.upstream.is_some().then(|| {
                    shared
                        .state_writes
                        .load(std::sync::atomic::Ordering::Relaxed)
                }),
            }))
        }
        Request::Ping { target, count } => match shared.local.ping(target, count).await {
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
        },
    }
}
