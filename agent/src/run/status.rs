//! Answers to `freimesh-agent status` and `ping` on the control socket.

use std::net::SocketAddr;
use std::time::Instant;

use super::shell::Shared;
use crate::clock;
use crate::control::{AgentStatus, MembershipStatus, PingSummary, Request, Response};

/// What `status` shows beside the engine's own state.
pub(super) struct StatusContext {
    pub name: String,
    pub backend: String,
    pub listen: SocketAddr,
    pub addresses: Vec<ipnet::IpNet>,
    pub started: Instant,
    /// Under a controller: show the membership credential and the
    /// revocation list.
    pub controlled: bool,
}

/// The membership part of `status`, by the wall clock (credentials
/// expire in Unix time).
fn membership_status(shared: &Shared) -> Option<MembershipStatus> {
    let membership = shared.membership();
    let now_unix_s = crate::clock::unix_now_s();
    let expires = membership
        .own_credential_decoded()
        .map(|c| c.expires_unix_s);
    Some(MembershipStatus {
        credential_expires_unix_s: expires,
        credential_valid_for_s: expires.map(|at| {
            i64::try_from(at)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(now_unix_s).unwrap_or(i64::MAX))
        }),
        revocation_serial: membership.revocation_serial(),
        revoked: membership.revoked_keys().count(),
    })
}

/// The agent's status now.
fn status(shared: &Shared, context: &StatusContext) -> AgentStatus {
    let engine = shared.engine().status(clock::now());
    AgentStatus {
        name: context.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: context.backend.clone(),
        listen: context.listen,
        addresses: context.addresses.clone(),
        uptime_s: clock::now()
            .saturating_duration_since(context.started)
            .as_secs(),
        discovery: *shared.discovery_counters(),
        respondd: *shared.respondd_counters(),
        engine,
        state_writes: shared.upstream.is_some().then(|| {
            shared
                .state_writes
                .load(std::sync::atomic::Ordering::Relaxed)
        }),
        membership: if context.controlled {
            membership_status(shared)
        } else {
            None
        },
    }
}

pub(super) async fn answer(shared: &Shared, context: &StatusContext, request: Request) -> Response {
    match request {
        Request::Status => Response::Status(Box::new(status(shared, context))),
        Request::StatusReport => Response::Report {
            text: crate::control::render_status(&status(shared, context)),
        },
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
