//! The agent's control path: talks to the controller over TCP with Noise IK
//! (`docs/protocol.md`), folds what it hears into engine changes, and
//! reports link states, failovers and traffic back.
//!
//! Every decision is in a sans-IO core, fed with `handle_*(…, now)` and
//! drained with `poll_*()`:
//!
//! ```text
//!  controller ══ TCP + Noise IK ══ Client (shell: socket, backoff)
//!                                    │ ▲ ControllerMsg / AgentMsg
//!                                    ▼ │
//!                                  Session ◄── Upstream ── LinkReporter ◄── engine link states
//!                                    │ ControllerEvent       ▲  (Report, Traffic)
//!                                    ▼                       └── failovers, uplink, clients
//!                                  ControlCore ── EngineChange ──► Engine::apply
//!                                              └─ kernel routes ─► TUN routes (linux)
//! ```
//!
//! * [`Session`]: one connection's protocol (Hello, pings, idle timeout,
//!   chunked full sets, Pending/Error), and what waits for the controller
//!   while it is away (failovers, up to [`PENDING_FAILOVERS`], with their
//!   age; the latest report, uplink state and client count).
//! * [`ControlCore`]: the controller-given state; a delta becomes exactly
//!   the [`EngineChange`]s it implies, the full state after a Welcome a
//!   full reconcile (start-up and reconnect only).
//! * [`LinkReporter`]: link reports when states or measurements change,
//!   byte counters every [`TRAFFIC_INTERVAL`].
//! * [`apply_to_membership`]: the signing key, this node's credential and
//!   revocation pages into the agent's [`crate::membership::Membership`]
//!   (beside the `ControlCore`, which keeps links and routes).
//! * [`ControlPath`]: the three composed for a caller that owns the engine
//!   and the frames itself (the whole-mesh simulator).
//! * [`Client`]: the tokio shell: it moves frames between the socket and
//!   the session and reconnects on its own: the [`Dialer`] tries the
//!   controller endpoints in order, and once all failed in a row waits an
//!   exponential backoff ([`Backoff`]: 1 s doubling to 30 s, ±20 % jitter).
//!
//! While the controller is unreachable the agent keeps its last state: the
//! mesh keeps forwarding.
//!
//! Enrolment: the configured join token is sent in every Hello until this
//! process has seen a Welcome. The controller ignores a token from an
//! already enrolled key, so a restarted agent (which sends it again) simply
//! logs in by key; no marker file is needed.

mod backoff;
mod client;
mod core;
mod membership;
mod path;
mod report;
mod session;

pub use backoff::{Backoff, DialPath, Dialer, NEXT_ENDPOINT_DELAY, PathKind};
pub use client::{CONNECT_TIMEOUT, Client, RelayPaths, TCP_CONNECT_TIMEOUT};
pub use freimesh_proto::control::{
    Candidate, ErrorCode, ErrorMsg, LinkAssignment, LinkChange, LinkEvent, LinkMeasurement,
    LinkTraffic, Report, Route, RouteChange, Welcome,
};

pub use self::core::{ControlCore, KernelRouteRule, link_event};
pub use crate::core::EngineChange;
pub use membership::{MembershipUpdate, apply_to_membership};
pub use path::ControlPath;
pub use report::{LinkReporter, NOMINAL_RTT_US, REPORT_INTERVAL, REPORT_TICK, TRAFFIC_INTERVAL};
pub use session::{
    ClientConfig, ControllerEvent, IDLE_TIMEOUT, KEEPALIVE, Keepalive, MAX_FULL_SET_ENTRIES,
    MIN_STATISTICS_SPACING, PENDING_FAILOVERS, Session, SessionEnded, Upstream,
};

impl ClientConfig {
    /// The client settings an agent config implies, if it has a
    /// `[controller]` section: hostname = `node.name`, endpoint = `node.listen`
    /// (left out when it is a wildcard address: the controller then relies on
    /// the endpoints neighbours report), prefixes = `node.local_prefixes`,
    /// wanted addresses = `node.addresses` (a static node keeps its addresses
    /// if they lie in the mesh pools; the controller refuses it otherwise),
    /// roles = whether `[gateway]` and `[public_wifi]` are configured.
    pub fn from_agent_config(cfg: &crate::config::AgentConfig) -> Option<Self> {
        let ctl = cfg.controller.as_ref()?;
        let endpoints = if cfg.listen.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![cfg.listen]
        };
        Some(Self {
            controller_endpoints: ctl.endpoints.clone(),
            controller_key: ctl.public_key,
            join_token: ctl.join_token.clone(),
            hostname: cfg.name.clone(),
            endpoints,
            prefixes: cfg.local_prefixes.clone(),
            want_addresses: cfg.addresses.iter().map(|a| a.addr()).collect(),
            roles: freimesh_proto::control::Roles {
                gateway: cfg.gateway.is_some(),
                public_wifi: cfg.public_wifi.is_some(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use ipnet::IpNet;

    use super::*;
    use crate::config::AgentConfig;

    #[test]
    fn client_config_follows_the_agent_config() {
        let cfg = AgentConfig::from_toml(
            r#"
[node]
name = "kita"
private_key_file = "/k"
listen = "0.0.0.0:51820"
local_prefixes = ["10.20.0.0/24"]

[controller]
endpoint = "192.0.2.10:7700"
public_key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
"#,
        )
        .expect("config");
        let c = ClientConfig::from_agent_config(&cfg).expect("controller");
        assert_eq!(c.hostname, "kita");
        assert!(c.endpoints.is_empty(), "wildcard listen is not an endpoint");
        assert_eq!(
            c.prefixes,
            vec!["10.20.0.0/24".parse::<IpNet>().expect("net")]
        );
        assert!(c.want_addresses.is_empty() && c.join_token.is_none());
    }
}
