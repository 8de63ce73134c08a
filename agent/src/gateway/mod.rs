//! What a gateway node runs besides the mesh: the uplink checker, which
//! pings far-side targets through the uplink and tells the engine when the
//! uplink fails or comes back (so the node's default routes are withdrawn
//! and clients move to another gateway), and NAT for mesh sources leaving
//! through the uplink.
//!
//! [`checker`] is the sans-IO verdict; [`icmp`] the socket loop around it;
//! [`nat`] the nftables table. Linux only; see `docs/gateways.md`.

pub mod checker;
pub mod icmp;
pub mod nat;

#[cfg(test)]
mod tests;

use std::io;

pub use self::{
    checker::{CheckerSettings, UplinkChecker},
    icmp::{UplinkProbe, UplinkSettings, run_checker},
    nat::Nat,
};
use crate::linux::nft::NftError;

/// An error of the gateway functions.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Neither a raw nor a datagram ICMP socket could be opened.
    #[error("opening an ICMP socket for the uplink checker: {cause} (needs root or CAP_NET_RAW)")]
    IcmpSocket { cause: io::Error },
    /// `SO_BINDTODEVICE` failed (no such interface, or no privilege).
    #[error("binding the uplink checker to interface {interface}: {cause}")]
    BindUplink { interface: String, cause: io::Error },
    /// `[gateway] check` is empty.
    #[error("the uplink checker needs at least one target address ([gateway] check)")]
    NoTargets,
    /// Writing a sysctl failed.
    #[error("writing {path}: {cause}")]
    Sysctl { path: String, cause: io::Error },
    #[error(transparent)]
    Nft(#[from] NftError),
}
