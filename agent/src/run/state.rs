//! The state file in the shell ([`crate::statefile`]): read once at
//! start-up, replayed into the control core and the membership before the
//! controller answers; then kept up to date by the [`StateSaver`] core,
//! which decides when a write is due. Encoding and the write itself run on
//! the blocking pool (fsync on flash can take a while).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use freimesh_proto::PublicKeyBytes;

use super::shell::Shared;
use crate::clock;
use crate::config::StateFileConfig;
use crate::controlplane::ControlCore;
use crate::membership::Membership;
use crate::statefile::{self, Loaded, NodeState, StateSaver};

/// What the state file gave at start-up.
#[derive(Debug, Default)]
pub(super) struct Restored {
    /// The saved state, if the file was usable.
    pub state: Option<NodeState>,
    /// The membership rebuilt from it (every signature checked again).
    pub membership: Option<Membership>,
    pub on_disk: Option<statefile::StateDigest>,
}

/// Reads the state file and says what became of it (info when missing,
/// warn naming the path and the cause when unusable).
pub(super) fn restore(
    config: &StateFileConfig,
    node_key: &PublicKeyBytes,
    controller_key: &PublicKeyBytes,
) -> Restored {
    let loaded = statefile::load(&config.path, node_key, controller_key);
    statefile::report_load(&config.path, &loaded);
    let Loaded::Usable { state, digest } = loaded else {
        return Restored::default();
    };
    let (membership, errors) = Membership::restore(node_key, state.membership.clone());
    for err in errors {
        tracing::warn!(path = %config.path.display(), %err, "part of the saved membership state not used");
    }
    Restored {
        state: Some(*state),
        membership: Some(membership),
        on_disk: Some(digest),
    }
}

/// Keeps the state file in step with the control core and the membership.
#[derive(Debug)]
pub(super) struct StateKeeper {
    path: PathBuf,
    saver: StateSaver,
    node_key: PublicKeyBytes,
    controller_key: PublicKeyBytes,
    controller_endpoints: Vec<SocketAddr>,
    /// The controller revoked this node: nothing is saved any more.
    revoked: bool,
}

impl StateKeeper {
    pub(super) fn new(
        config: &StateFileConfig,
        on_disk: Option<statefile::StateDigest>,
        node_key: PublicKeyBytes,
        controller_key: PublicKeyBytes,
        controller_endpoints: Vec<SocketAddr>,
    ) -> Self {
        Self {
            path: config.path.clone(),
            saver: StateSaver::new(config.write_interval, on_disk),
            node_key,
            controller_key,
            controller_endpoints,
            revoked: false,
        }
    }

    /// The controller says this node is revoked: the state file goes, so
    /// the next start does not bring the node back into the mesh from it,
    /// and nothing is written again.
    pub(super) async fn forget(&mut self) {
        self.revoked = true;
        let path = self.path.clone();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(&path)).await;
        match removed {
            Ok(Ok(())) => {
                tracing::warn!(path = %self.path.display(), "the controller revoked this node: state file removed")
            }
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(err)) => {
                tracing::warn!(path = %self.path.display(), %err, "the controller revoked this node, but the state file could not be removed")
            }
            Err(err) => tracing::warn!(%err, "removing the state file failed"),
        }
    }

    /// Something the file holds may have changed.
    pub(super) fn handle_change(&mut self, now: Instant) {
        self.saver.handle_change(now);
    }

    /// When [`StateKeeper::save`] is next due (never, once revoked).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.revoked {
            return None;
        }
        self.saver.poll_timeout()
    }

    /// The last write, at a clean shutdown (if the state differs).
    pub(super) async fn save_at_shutdown(&mut self, shared: &Shared, core: &ControlCore) {
        self.saver.handle_shutdown(clock::now());
        self.save(shared, core).await;
    }

    /// Writes the state if the saver says a write is due and the state
    /// differs from the file.
    pub(super) async fn save(&mut self, shared: &Shared, core: &ControlCore) {
        if self.revoked || !self.saver.wants_state(clock::now()) {
            return;
        }
        let state = {
            let membership = shared.membership();
            NodeState::capture(
                self.node_key,
                self.controller_key,
                &membership,
                core,
                &self.controller_endpoints,
            )
        };
        let encoded =
            match tokio::task::spawn_blocking(move || statefile::format::encode(&state)).await {
                Ok(Ok(encoded)) => encoded,
                Ok(Err(err)) => {
                    tracing::warn!(%err, "state not saved; trying again later");
                    self.saver.handle_written(false, clock::now());
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, "state encoder failed; trying again later");
                    self.saver.handle_written(false, clock::now());
                    return;
                }
            };
        self.saver.handle_state(encoded, clock::now());
        while let Some(bytes) = self.saver.poll_write() {
            let path = self.path.clone();
            let written =
                tokio::task::spawn_blocking(move || statefile::write_atomic(&path, &bytes)).await;
            let ok = match written {
                Ok(Ok(())) => true,
                Ok(Err(err)) => {
                    tracing::warn!(%err, "state file not written; trying again later");
                    false
                }
                Err(err) => {
                    tracing::warn!(%err, "state file writer failed");
                    false
                }
            };
            self.saver.handle_written(ok, clock::now());
            if ok {
                tracing::debug!(path = %self.path.display(), writes = self.saver.writes(), "state file written");
            }
            shared
                .state_writes
                .store(self.saver.writes(), Ordering::Relaxed);
        }
    }
}
