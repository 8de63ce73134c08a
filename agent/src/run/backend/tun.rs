//! The `linux` backend behind [`LocalBackend`]: a TUN device configured
//! over rtnetlink ([`crate::linux`]), netlink route lookups for the
//! underlay and netlink carrier events.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tun_rs::AsyncDevice;

use super::{BackendError, KernelDevice, LocalBackend, MAX_LOCAL_PACKET};
use crate::config::AgentConfig;
use crate::linux::{CarrierEvent, LinuxBackend, LinuxError, LinuxSettings};
use crate::ping::PingReport;

/// The TUN device and the kernel state around it.
pub struct TunBackend {
    /// Read and written by the shell's tasks without a lock.
    device: Arc<AsyncDevice>,
    kernel_device: KernelDevice,
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
        })
        .await?;
        Ok(Self {
            device: backend.device(),
            kernel_device: KernelDevice {
                name: backend.name().to_owned(),
                ifindex: backend.ifindex(),
            },
            kernel: tokio::sync::Mutex::new(Some(backend)),
            dropped_deliveries: AtomicU64::new(0),
        })
    }
}

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

    fn deliver(&self, packet: Vec<u8>) {
        // A TUN write only fails to go through at once when the kernel's
        // queue toward the host is full: then the packet is dropped.
        if let Err(err) = self.device.try_send(&packet) {
            let dropped = self.dropped_deliveries.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(%err, dropped, "TUN write failed: packet dropped");
        }
    }

    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<Result<usize, BackendError>> {
        if buf.len() < MAX_LOCAL_PACKET {
            buf.resize(MAX_LOCAL_PACKET, 0);
        }
        self.device
            .poll_recv(cx, buf)
            .map_err(|cause| BackendError::TunRead {
                device: self.kernel_device.name.clone(),
                cause,
            })
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
