//! Where the node's own traffic meets the host: one narrow interface,
//! [`LocalBackend`], with the Linux TUN implementation ([`TunBackend`]),
//! the userspace smoltcp implementation ([`StackBackend`]) and a test
//! double ([`TestBackend`]) that needs no privileges.
//!
//! The shell ([`super`]) holds one `Box<dyn LocalBackend>` and never asks
//! which one it is: it hands the backend the packets the engine delivers
//! here, reads the packets the host sends into the mesh, asks it which
//! underlay interface reaches a peer and what carrier those interfaces
//! have, and lets it keep the kernel's routes into the mesh. What a backend
//! cannot do (the userspace stack sees no carrier, the TUN device cannot
//! ping) it says in its answer, not through a type the shell matches on.
//!
//! Every method takes `&self` (the backend is shared by the shell's tasks),
//! so the trait stays object-safe. The per-packet methods allocate nothing:
//! [`LocalBackend::deliver`] never waits, and [`LocalBackend::poll_receive`]
//! is polled by one long-lived reader in the shell. The rare operations
//! (lookups, kernel routes, ping, close) return a boxed future.

mod double;
#[cfg(feature = "userspace")]
mod stack;
mod tun;

use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use ipnet::IpNet;
use tokio::sync::mpsc;

pub use self::double::{TestBackend, TestHost};
#[cfg(feature = "userspace")]
pub use self::stack::StackBackend;
pub use self::tun::TunBackend;
use super::RunError;
use crate::config::{AgentConfig, Backend};
use crate::linux::{CarrierEvent, LinuxError};
use crate::ping::PingReport;
#[cfg(feature = "userspace")]
use crate::userspace::UserspaceError;

/// Gap between the echo requests of `freimesh-agent ping`: fast enough for
/// an operator waiting at a terminal, slow enough not to look like a flood.
pub const PING_INTERVAL: Duration = Duration::from_millis(200);
/// How long `freimesh-agent ping` waits for replies after the last request:
/// longer than any round trip across a city mesh.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest IP packet a backend hands the shell; a backend that reads
/// into the caller's buffer first makes it this long.
pub const MAX_LOCAL_PACKET: usize = 65_536;

/// The kernel network device local traffic crosses, for what configures
/// the kernel around it (gateway NAT, public Wi-Fi policy routing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDevice {
    pub name: String,
    pub ifindex: u32,
}

/// Errors of a local backend; each names the operation.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Linux(#[from] LinuxError),
    #[cfg(feature = "userspace")]
    #[error(transparent)]
    Userspace(#[from] UserspaceError),
    #[error("reading from the TUN device {device}: {cause}")]
    TunRead {
        device: String,
        cause: std::io::Error,
    },
    #[error("the local backend is closed")]
    Closed,
    #[error("this agent uses the linux backend: use ping(8) against the overlay address")]
    PingNeedsUserspace,
    #[error(
        "backend = \"userspace\": this agent was built without the userspace backend (cargo feature `userspace`; router packages leave it out)"
    )]
    UserspaceNotBuilt,
}

/// What the shell needs from the host side of a node. See the module docs.
pub trait LocalBackend: Send + Sync {
    /// How `freimesh-agent status` names the backend, e.g. `linux (fm0)`.
    fn describe(&self) -> String;

    /// The kernel device local traffic crosses, if it crosses one: only
    /// then can the kernel's routes follow the controller, and only then
    /// may the node be a gateway or serve public Wi-Fi.
    fn kernel_device(&self) -> Option<KernelDevice>;

    /// Hands the host one IP packet addressed to this node. Never waits: a
    /// backend that cannot take it now drops it (and counts it), as a full
    /// NIC queue would.
    fn deliver(&self, packet: Vec<u8>);

    /// Polls for the next IP packet the host sends into the mesh; when one
    /// is ready, its length, the packet being `buf[..len]`. A backend either
    /// reads into `buf` (first making it [`MAX_LOCAL_PACKET`] long if it is
    /// shorter) or, holding the packet already, puts it in `buf`'s place, so
    /// nothing is copied. One reader polls at a time (the shell's); an
    /// error ends the shell: the host side is gone.
    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<Result<usize, BackendError>>;

    /// The underlay interface (ifindex) the host reaches `peer` over, if
    /// the backend can tell; the answer to `Output::ResolveUnderlay`.
    fn resolve_underlay(&self, peer: IpAddr) -> BoxFuture<'_, Option<u32>>;

    /// A watcher that sends every carrier change of the underlay
    /// interfaces to `events` (first the current state of each), or `None`
    /// if this backend sees no carrier (then heartbeats alone detect
    /// failures). The shell spawns it; it runs until `events` closes.
    fn watch_carrier(
        &self,
        events: mpsc::Sender<CarrierEvent>,
    ) -> Option<BoxFuture<'static, Result<(), BackendError>>>;

    /// Makes the kernel hold exactly `addresses` on the device and
    /// `routes` into it; the number of changes it made. Only called when
    /// [`LocalBackend::kernel_device`] names a device.
    fn set_kernel_routes<'a>(
        &'a self,
        addresses: &'a [IpNet],
        routes: &'a [IpNet],
    ) -> BoxFuture<'a, Result<usize, BackendError>>;

    /// Pings `target` from this node's own stack, [`PING_INTERVAL`] apart,
    /// waiting [`PING_TIMEOUT`] after the last request.
    fn ping(&self, target: IpAddr, count: u16) -> BoxFuture<'_, Result<PingReport, BackendError>>;

    /// Removes what the backend set up on the host. Called once, after
    /// every task using the backend has ended.
    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>>;
}

/// Opens the backend `config.backend` names: the one place that chooses.
pub async fn open(config: AgentConfig) -> Result<Box<dyn LocalBackend>, RunError> {
    Ok(match config.backend {
        Backend::Linux => Box::new(TunBackend::open(&config).await?),
        #[cfg(feature = "userspace")]
        Backend::Userspace => Box::new(StackBackend::open(&config)?),
        #[cfg(not(feature = "userspace"))]
        Backend::Userspace => return Err(BackendError::UserspaceNotBuilt.into()),
    })
}
