//! The state file: what a router needs to come back into its mesh after a
//! reboot while the controller is unreachable (a town after a power cut).
//!
//! It holds the node's key, the controller key it was issued under, the
//! membership state (signing key, own credential, revocation list), the
//! last Welcome (node id, addresses, mesh and client prefixes), the links
//! and routes as the controller last gave them, and the controller
//! endpoints. At start-up the agent loads it ([`load`]); with a usable
//! file it replays it into the control core as a Welcome and its full sets
//! ([`NodeState::replay`]) and comes up without waiting for the controller.
//! When the controller answers, its Welcome and full sets are an ordinary
//! full reconcile that changes only what differs.
//!
//! * [`format`]: the bytes (header, postcard body, BLAKE2s checksum).
//! * [`saver`]: the sans-IO [`StateSaver`] deciding when to write (only
//!   real changes, at most once per interval, at shutdown).
//! * [`file`]: the atomic write and the bounded read.
//!
//! A missing file is a first start; a corrupt, truncated, oversized or
//! foreign one (another key, another controller, another format) is
//! reported and the agent starts clean, as without it.

pub mod file;
pub mod format;
pub mod saver;

use std::net::SocketAddr;
use std::path::Path;

use freimesh_proto::PublicKeyBytes;

pub use self::file::{Loaded, MAX_STATE_FILE_BYTES, StateFileError, load, write_atomic};
pub use self::format::{FormatError, NodeState, StateDigest};
pub use self::saver::{DEFAULT_WRITE_INTERVAL, SETTLE, StateSaver};
use crate::controlplane::{ControlCore, ControllerEvent};
use crate::membership::Membership;

/// Default `state_file` on Linux: `/var/lib` is where a daemon's state
/// lives (FHS). The OpenWrt package sets its own path (`docs/openwrt.md`).
pub const DEFAULT_STATE_FILE: &str = "/var/lib/freimesh/state";

impl NodeState {
    /// The state to keep, as it is now.
    pub fn capture(
        node_key: PublicKeyBytes,
        controller_key: PublicKeyBytes,
        membership: &Membership,
        core: &ControlCore,
        controller_endpoints: &[SocketAddr],
    ) -> Self {
        Self {
            node_key,
            controller_key,
            membership: membership.snapshot(),
            welcome: core.welcome().cloned(),
            links: core.links().values().cloned().collect(),
            routes: core.routes().values().cloned().collect(),
            controller_endpoints: controller_endpoints.to_vec(),
            control_exits: core.control_exits().to_vec(),
        }
    }

    /// The controller events that bring a fresh [`ControlCore`] to this
    /// state: a Welcome and its two full sets, exactly what the controller
    /// sends after a Welcome. Empty without a Welcome (the node was never
    /// enrolled: nothing to start from).
    pub fn replay(&self) -> Vec<ControllerEvent> {
        let Some(welcome) = &self.welcome else {
            return Vec::new();
        };
        vec![
            ControllerEvent::Welcome(welcome.clone()),
            ControllerEvent::Links(self.links.clone()),
            ControllerEvent::Routes(self.routes.clone()),
            ControllerEvent::ControlExits(self.control_exits.clone()),
        ]
    }
}

/// Logs why a state file is not used; the agent then starts clean.
pub fn report_load(path: &Path, loaded: &Loaded) {
    match loaded {
        Loaded::Missing => {
            tracing::info!(path = %path.display(), "no state file yet (first start): starting clean")
        }
        Loaded::Unusable(err) => {
            tracing::warn!(path = %path.display(), "state file not used, starting clean: {err}")
        }
        Loaded::Usable { state, .. } => tracing::info!(
            path = %path.display(),
            links = state.links.len(),
            routes = state.routes.len(),
            "starting from the state file"
        ),
    }
}

#[cfg(test)]
mod tests;
