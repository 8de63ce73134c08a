//! The agent's control-plane client: talks to the controller over TCP with
//! Noise IK (`docs/protocol.md`) and turns what it hears into typed
//! [`ControllerEvent`]s for the run loop.
//!
//! ```text
//!  Client::run ── TCP + Noise IK ──► controller
//!     │  ▲
//!     │  └── mpsc::Receiver<Upstream>         (reports, failovers, traffic)
//!     └────► mpsc::Sender<ControllerEvent>    (Welcome, Links, Routes, deltas, …)
//! ```
//!
//! The client owns no forwarding state: whoever consumes the events applies
//! them to the engine. It reconnects on its own with exponential backoff
//! ([`Backoff`]: 1 s doubling to 30 s, ±20 % jitter) and, after every
//! (re)connect, the controller sends the full links and routes again, so the
//! consumer replaces its controller-given state on [`ControllerEvent::Links`]
//! and [`ControllerEvent::Routes`] and patches it on the deltas. While the
//! controller is unreachable the consumer keeps its last state: the mesh
//! keeps forwarding.
//!
//! Enrolment: the configured join token is sent in every Hello until this
//! process has seen a Welcome. The controller ignores a token from an
//! already enrolled key, so a restarted agent (which sends it again) simply
//! logs in by key; no marker file is needed.

mod backoff;
mod client;
mod state;

pub use backoff::Backoff;
pub use client::{Client, ClientConfig, ControllerEvent, PENDING_FAILOVERS, Upstream};
pub use freimesh_proto::control::{
    Candidate, ErrorCode, ErrorMsg, LinkAssignment, LinkChange, LinkEvent, LinkMeasurement,
    LinkTraffic, Report, Route, RouteChange, Welcome,
};
pub use state::ControllerState;

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
            endpoint: ctl.endpoint,
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
