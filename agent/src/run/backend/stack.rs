//! The `userspace` backend behind [`LocalBackend`]: the node's own traffic
//! ends in a smoltcp stack inside the agent ([`crate::userspace`]). No
//! kernel device, hence no carrier, no underlay lookups, no kernel routes.

use std::net::IpAddr;

use futures::future::BoxFuture;
use ipnet::IpNet;
use tokio::sync::mpsc;

use super::{BackendError, KernelDevice, LocalBackend, PING_INTERVAL, PING_TIMEOUT};
use crate::config::AgentConfig;
use crate::linux::CarrierEvent;
use crate::userspace::{
    self, PacketInlet, PingReport, StackHandle, TcpExpose, TcpForward, UserspaceError,
    UserspaceSettings,
};

/// Packets waiting between the smoltcp stack and the engine.
const STACK_QUEUE: usize = 1024;

/// The running smoltcp stack.
#[derive(Debug)]
pub struct StackBackend {
    inlet: PacketInlet,
    from_stack: tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
    /// For pings and shutdown; `None` once closed.
    stack: tokio::sync::Mutex<Option<StackHandle>>,
}

impl StackBackend {
    /// Starts the stack with the node's addresses and the TCP forwards and
    /// exposes `config` asks for.
    pub fn open(config: &AgentConfig) -> Result<Self, UserspaceError> {
        let (to_mesh, from_stack) = mpsc::channel(STACK_QUEUE);
        let stack = userspace::spawn(
            UserspaceSettings {
                addresses: config.addresses.clone(),
                mtu: config.userspace.mtu,
                tcp_forwards: config
                    .userspace
                    .tcp_forwards
                    .iter()
                    .map(|f| TcpForward {
                        listen: f.listen,
                        target: f.target,
                    })
                    .collect(),
                tcp_exposes: config
                    .userspace
                    .tcp_exposes
                    .iter()
                    .map(|e| TcpExpose {
                        port: e.port,
                        target: e.target,
                    })
                    .collect(),
            },
            to_mesh,
        )?;
        Ok(Self {
            inlet: stack.inlet(),
            from_stack: tokio::sync::Mutex::new(from_stack),
            stack: tokio::sync::Mutex::new(Some(stack)),
        })
    }
}

impl LocalBackend for StackBackend {
    fn describe(&self) -> String {
        "userspace".to_owned()
    }

    fn kernel_device(&self) -> Option<KernelDevice> {
        None
    }

    fn deliver(&self, packet: Vec<u8>) -> BoxFuture<'_, ()> {
        self.inlet.deliver(packet);
        Box::pin(std::future::ready(()))
    }

    fn receive<'a>(&'a self, buf: &'a mut [u8]) -> BoxFuture<'a, Result<usize, BackendError>> {
        Box::pin(async move {
            let packet = self
                .from_stack
                .lock()
                .await
                .recv()
                .await
                .ok_or(BackendError::Closed)?;
            let len = packet.len().min(buf.len());
            buf[..len].copy_from_slice(&packet[..len]);
            Ok(len)
        })
    }

    fn resolve_underlay(&self, _peer: IpAddr) -> BoxFuture<'_, Option<u32>> {
        Box::pin(std::future::ready(None))
    }

    fn watch_carrier(
        &self,
        _events: mpsc::Sender<CarrierEvent>,
    ) -> Option<BoxFuture<'static, Result<(), BackendError>>> {
        None
    }

    fn set_kernel_routes<'a>(
        &'a self,
        _addresses: &'a [IpNet],
        _routes: &'a [IpNet],
    ) -> BoxFuture<'a, Result<usize, BackendError>> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn ping(&self, target: IpAddr, count: u16) -> BoxFuture<'_, Result<PingReport, BackendError>> {
        Box::pin(async move {
            let stack = self.stack.lock().await;
            let stack = stack.as_ref().ok_or(BackendError::Closed)?;
            Ok(stack
                .ping(target, count, PING_INTERVAL, PING_TIMEOUT)
                .await?)
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if let Some(stack) = self.stack.lock().await.take() {
                stack.shutdown().await;
            }
            Ok(())
        })
    }
}
