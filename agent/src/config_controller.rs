//! The `[controller]` section of the agent's configuration and the state
//! file settings that go with it (`docs/agent-config.md`). Parsed like the
//! rest of [`super`]: raw strings first, then typed values with errors that
//! name the field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use freimesh_proto::PublicKeyBytes;
use serde::Deserialize;

use super::{ConfigError, field_err, parse_socket};
use crate::statefile::{DEFAULT_STATE_FILE, DEFAULT_WRITE_INTERVAL};

/// Controller endpoints a node tries in turn: room for the replicas of a
/// redundant controller and their addresses in both families.
pub const MAX_CONTROLLER_ENDPOINTS: usize = 16;
/// Writing more often than every 10 s buys nothing (a restart already
/// loses less than the controller brings back in its first Welcome) and
/// wears flash six times faster than the default.
const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(10);
/// A day: beyond it a restart could come back with routes a day old.
const MAX_WRITE_INTERVAL: Duration = Duration::from_secs(86_400);

/// The `[controller]` section: where the controller is and how to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Where to reach the controller (`endpoints`, or the older single
    /// `endpoint`), tried in this order; never empty.
    pub endpoints: Vec<SocketAddr>,
    /// The controller's public key, pinned: `freimesh-controller init` prints it.
    pub public_key: PublicKeyBytes,
    /// A one-time join token (`freimesh-controller token create`); sent until
    /// the controller welcomes the node, ignored by it afterwards.
    pub join_token: Option<String>,
}

/// Where and how often the agent keeps its state (`node.state_file`,
/// `node.state_write_interval_s`); used only under a controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFileConfig {
    pub path: PathBuf,
    pub write_interval: Duration,
}

impl Default for StateFileConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_STATE_FILE),
            write_interval: DEFAULT_WRITE_INTERVAL,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawController {
    endpoint: Option<String>,
    #[serde(default)]
    endpoints: Vec<String>,
    public_key: String,
    join_token: Option<String>,
}

pub(super) fn check_state_file(
    path: Option<String>,
    interval_s: Option<i64>,
) -> Result<StateFileConfig, ConfigError> {
    let defaults = StateFileConfig::default();
    let path = match path {
        None => defaults.path,
        Some(p) if p.trim().is_empty() => {
            return Err(field_err("node.state_file", "must name a file"));
        }
        Some(p) => PathBuf::from(p),
    };
    let write_interval = match interval_s {
        None => defaults.write_interval,
        Some(s) => u64::try_from(s)
            .ok()
            .map(Duration::from_secs)
            .filter(|d| (MIN_WRITE_INTERVAL..=MAX_WRITE_INTERVAL).contains(d))
            .ok_or_else(|| {
                field_err(
                    "node.state_write_interval_s",
                    format!(
                        "{s} is outside {}..={} seconds",
                        MIN_WRITE_INTERVAL.as_secs(),
                        MAX_WRITE_INTERVAL.as_secs()
                    ),
                )
            })?,
    };
    Ok(StateFileConfig {
        path,
        write_interval,
    })
}

pub(super) fn check_controller(raw: RawController) -> Result<ControllerConfig, ConfigError> {
    if raw.endpoint.is_some() && !raw.endpoints.is_empty() {
        return Err(field_err(
            "controller.endpoint",
            "give either endpoint or endpoints, not both",
        ));
    }
    let endpoints = match raw.endpoint {
        Some(one) => vec![parse_socket("controller.endpoint", &one)?],
        None => {
            let mut endpoints = Vec::new();
            for (i, text) in raw.endpoints.iter().enumerate() {
                let field = format!("controller.endpoints[{i}]");
                let endpoint = parse_socket(&field, text)?;
                if endpoints.contains(&endpoint) {
                    return Err(field_err(field, format!("{endpoint} is listed twice")));
                }
                endpoints.push(endpoint);
            }
            endpoints
        }
    };
    if endpoints.is_empty() {
        return Err(field_err(
            "controller.endpoints",
            "needs at least one address (e.g. endpoints = [\"192.0.2.10:7700\"])",
        ));
    }
    if endpoints.len() > MAX_CONTROLLER_ENDPOINTS {
        return Err(field_err(
            "controller.endpoints",
            format!(
                "{} addresses, more than the {MAX_CONTROLLER_ENDPOINTS} an agent tries",
                endpoints.len()
            ),
        ));
    }
    let public_key = PublicKeyBytes::from_base64(&raw.public_key)
        .map_err(|e| field_err("controller.public_key", e.to_string()))?;
    let join_token = match raw.join_token.map(|t| t.trim().to_owned()) {
        Some(t) if t.is_empty() => {
            return Err(field_err(
                "controller.join_token",
                "is empty; remove the line or paste the token from `freimesh-controller token create`",
            ));
        }
        Some(t) if t.len() > 256 || t.chars().any(char::is_control) => {
            return Err(field_err(
                "controller.join_token",
                "does not look like a join token (at most 256 printable characters)",
            ));
        }
        other => other,
    };
    Ok(ControllerConfig {
        endpoints,
        public_key,
        join_token,
    })
}
