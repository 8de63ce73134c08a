//! The `linux` backend behind [`LocalBackend`]: a TUN device configured
//! over rtnetlink ([`crate::linux`]), netlink route lookups for the
//! underlay and netlink carrier events.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tun_rs::{AsyncDevice, GROTable, VIRTIO_NET_HDR_LEN};

use super::{BackendError, KernelDevice, LocalBackend, LocalBatch, MAX_LOCAL_PACKET};
use crate::config::AgentConfig;
use crate::linux::{CarrierEvent, LinuxBackend, LinuxError, LinuxSettings};
use crate::ping::PingReport;

/// Packets one offloading read may split into: a 64 KiB TCP segment at
/// the smallest IPv6 MTU (1,280) is 52 packets.
const OFFLOAD_SLOTS: usize = 64;
/// One offloading read: the virtio header and a 64 KiB packet.
const OFFLOAD_READ: usize = VIRTIO_NET_HDR_LEN + 65_535;

/// The TUN device and the kernel state around it.
pub struct TunBackend {
    /// Read and written by the shell's tasks without a lock.
    device: Arc<AsyncDevice>,
    kernel_device: KernelDevice,
    /// Opened with offloads (`linux.offload`): reads split, writes
    /// coalesced, both with a virtio header.
    offload: bool,
    /// The largest packet one split yields: the device's MTU.
    mtu: usize,
    /// Coalescing state and the buffers a step's deliveries are copied into
    /// behind the virtio header's room; taken by one delivering task at a
    /// time, never across an `await`.
    gro: std::sync::Mutex<Coalescer>,
    /// Addresses and routes change rarely and need `&mut`; `None` once
    /// closed.
    kernel: tokio::sync::Mutex<Option<LinuxBackend>>,
    /// Packets for the host the kernel would not take at once.
    dropped_deliveries: AtomicU64,
}

impl TunBackend {
    /// Creates the TUN device with the node's addresses and the kernel
    /// routes `config` asks for.
    pub async fn open(config: &AgentConfig) -> Result<Self, LinuxError> {
        let backend = LinuxBackend::open(LinuxSettings {
            tun_name: config.linux.tun_name.clone(),
            mtu: config.linux.mtu,
            addresses: config.addresses.clone(),
            routes: config.linux.kernel_routes.clone(),
            offload: config.linux.offload,
        })
        .await?;
        Ok(Self {
            device: backend.device(),
            kernel_device: KernelDevice {
                name: backend.name().to_owned(),
                ifindex: backend.ifindex(),
            },
            offload: config.linux.offload,
            mtu: usize::from(config.linux.mtu),
            gro: std::sync::Mutex::new(Coalescer::default()),
            kernel: tokio::sync::Mutex::new(Some(backend)),
            dropped_deliveries: AtomicU64::new(0),
        })
    }
}

/// Writes a step's deliveries to an offloading device: each packet is
/// copied behind room for the virtio header, and tun-rs coalesces the
/// segments of one TCP flow into one write (GRO) before writing.
#[derive(Default)]
struct Coalescer {
    table: GROTable,
    buffers: Vec<Vec<u8>>,
}

impl Coalescer {
    /// The last write error, if any write failed (the device's queue was
    /// full, or tun-rs refused the batch).
    fn write(&mut self, device: &AsyncDevice, packets: &[Vec<u8>]) -> Option<std::io::Error> {
        if packets.is_empty() {
            return None;
        }
        // Buffers are kept from step to step (only ever more of them).
        if self.buffers.len() < packets.len() {
            self.buffers.resize_with(packets.len(), Vec::new);
        }
        let buffers = &mut self.buffers[..packets.len()];
        for (buffer, packet) in buffers.iter_mut().zip(packets) {
            buffer.clear();
            buffer.resize(VIRTIO_NET_HDR_LEN, 0);
            buffer.extend_from_slice(packet);
        }
        // The device's own (non-blocking) batch write, not the async one:
        // a full queue drops, it does not wait.
        let device: &tun_rs::DeviceImpl = device;
        let result = device.send_multiple(&mut self.table, buffers, VIRTIO_NET_HDR_LEN);
        // Coalescing may have grown a buffer to 64 KiB; do not keep that.
        buffers
            .iter_mut()
            .for_each(|b| b.shrink_to(MAX_KEPT_BUFFER));
        result.err()
    }
}

/// A delivery buffer larger than this is given back after the write.
const MAX_KEPT_BUFFER: usize = 4_096;

impl std::fmt::Debug for TunBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunBackend")
            .field("device", &self.kernel_device)
            .finish_non_exhaustive()
    }
}

impl LocalBackend for TunBackend {
    fn describe(&self) -> String {
        format!("linux ({})", self.kernel_device.name)
    }

    fn kernel_device(&self) -> Option<KernelDevice> {
        Some(self.kernel_device.clone())
    }

    fn deliver(&self, packets: &mut Vec<Vec<u8>>) {
        let failed = if self.offload {
            let mut gro = self.gro.lock().unwrap_or_else(PoisonError::into_inner);
            gro.write(&self.device, packets)
        } else {
            // A TUN write only fails to go through at once when the kernel's
            // queue toward the host is full: then the packet is dropped.
            packets
                .iter()
                .map(|packet| self.device.try_send(packet))
                .filter_map(Result::err)
                .last()
        };
        packets.clear();
        if let Some(err) = failed {
            let dropped = self.dropped_deliveries.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(%err, dropped, "TUN write failed: packets dropped");
        }
    }

    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
        batch: &mut LocalBatch,
    ) -> Poll<Result<(), BackendError>> {
        let read_error = |cause| BackendError::TunRead {
            device: self.kernel_device.name.clone(),
            cause,
        };
        if !self.offload {
            let buf = batch.single();
            if buf.len() < MAX_LOCAL_PACKET {
                buf.resize(MAX_LOCAL_PACKET, 0);
            }
            let len = ready!(self.device.poll_recv(cx, buf)).map_err(read_error)?;
            batch.received_one(len);
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.device.poll_readable(cx)).map_err(read_error)?;
            let (raw, packets, sizes) = batch.offload_parts(OFFLOAD_SLOTS, self.mtu, OFFLOAD_READ);
            match self.device.try_recv_multiple(raw, packets, sizes, 0) {
                Ok(count) => {
                    batch.received(count);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                // tun-rs could not split what the kernel handed over (a
                // header it does not know): that packet is lost, the
                // device is fine.
                Err(err) if err.raw_os_error().is_none() => {
                    tracing::debug!(%err, "TUN read not split: dropped");
                }
                Err(err) => return Poll::Ready(Err(read_error(err))),
            }
        }
    }

    fn resolve_underlay(&self, peer: IpAddr) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async move {
            match crate::linux::underlay_interface(peer).await {
                Ok(ifindex) => Some(ifindex),
                Err(err) => {
                    // The link is then left to heartbeat detection.
                    tracing::debug!(%peer, %err, "underlay interface unknown");
                    None
                }
            }
        })
    }

    fn watch_carrier(
        &self,
        events: mpsc::Sender<CarrierEvent>,
    ) -> Option<BoxFuture<'static, Result<(), BackendError>>> {
        Some(Box::pin(async move {
            crate::linux::watch_carrier(events).await?;
            Ok(())
        }))
    }

    fn set_kernel_routes<'a>(
        &'a self,
        addresses: &'a [IpNet],
        routes: &'a [IpNet],
    ) -> BoxFuture<'a, Result<usize, BackendError>> {
        Box::pin(async move {
            let mut kernel = self.kernel.lock().await;
            let backend = kernel.as_mut().ok_or(BackendError::Closed)?;
            Ok(backend.update(addresses, routes).await?.len())
        })
    }

    fn ping(
        &self,
        _target: IpAddr,
        _count: u16,
    ) -> BoxFuture<'_, Result<PingReport, BackendError>> {
        Box::pin(std::future::ready(Err(BackendError::PingNeedsUserspace)))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if let Some(backend) = self.kernel.lock().await.take() {
                backend.close().await?;
            }
            Ok(())
        })
    }
}
