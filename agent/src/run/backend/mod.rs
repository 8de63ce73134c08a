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
//! so the trait stays object-safe. The per-packet methods allocate nothing
//! and take packets in batches (a step's deliveries, a receive's
//! [`LocalBatch`]), which is what lets the TUN device's offloads move a
//! whole TCP segment per system call: [`LocalBackend::deliver`] never
//! waits, and [`LocalBackend::poll_receive`] is polled by one long-lived
//! reader in the shell. The rare operations
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

/// What one receive from the host brought, kept by the shell's reader from
/// read to read so nothing is allocated per packet.
#[derive(Debug)]
pub struct LocalBatch {
    /// `packets[i][..sizes[i]]` for `i < count`; never empty.
    packets: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
    /// An offloading device's read: the virtio header and the unsplit packet.
    raw: Vec<u8>,
}

impl Default for LocalBatch {
    fn default() -> Self {
        Self {
            packets: vec![Vec::new()],
            sizes: vec![0],
            count: 0,
            raw: Vec::new(),
        }
    }
}

impl LocalBatch {
    /// The packets of the last receive, in order, to be handed on in place.
    pub fn packets_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let count = self.count;
        self.packets
            .iter_mut()
            .zip(&self.sizes)
            .take(count)
            .map(|(packet, &len)| {
                let len = len.min(packet.len());
                &mut packet[..len]
            })
    }

    /// For a backend that receives one packet at a time: the buffer to read
    /// into or to swap a held packet into; [`LocalBatch::received_one`] then
    /// says how long it is.
    pub fn single(&mut self) -> &mut Vec<u8> {
        self.count = 0;
        &mut self.packets[0]
    }

    pub fn received_one(&mut self, len: usize) {
        self.sizes[0] = len;
        self.count = 1;
    }

    /// For an offloading device: `slots` buffers of `slot_bytes` each, and
    /// room for one raw read of `raw_bytes`; then the three parts that
    /// tun-rs's `recv_multiple` fills, and [`LocalBatch::received`].
    pub fn offload_parts(
        &mut self,
        slots: usize,
        slot_bytes: usize,
        raw_bytes: usize,
    ) -> (&mut [u8], &mut [Vec<u8>], &mut [usize]) {
        self.count = 0;
        if self.packets.len() != slots {
            self.packets.resize_with(slots.max(1), Vec::new);
            self.sizes.resize(slots.max(1), 0);
        }
        for packet in &mut self.packets {
            if packet.len() < slot_bytes {
                packet.resize(slot_bytes, 0);
            }
        }
        if self.raw.len() < raw_bytes {
            self.raw.resize(raw_bytes, 0);
        }
        (&mut self.raw, &mut self.packets, &mut self.sizes)
    }

    pub fn received(&mut self, count: usize) {
        self.count = count.min(self.packets.len());
    }
}

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

    /// Hands the host the IP packets of one engine step addressed to this
    /// node, emptying `packets`. Never waits: a backend that cannot take a
    /// packet now drops it (and counts it), as a full NIC queue would. One
    /// call per step lets a backend with offloads coalesce a flow's packets
    /// into one write.
    fn deliver(&self, packets: &mut Vec<Vec<u8>>);

    /// Polls for the next packets the host sends into the mesh: one, or
    /// with TUN offloads the MTU-sized packets of one TCP segment of up to
    /// 64 KiB, in order, in `batch`. One reader polls at a time (the
    /// shell's); an error ends the shell: the host side is gone.
    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
        batch: &mut LocalBatch,
    ) -> Poll<Result<(), BackendError>>;

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
