//! The `userspace` backend behind [`LocalBackend`]: the node's own traffic
//! ends in a smoltcp stack inside the agent ([`crate::userspace`]). No
//! kernel device, hence no carrier, no underlay lookups, no kernel routes.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use ipnet::IpNet;
use tokio::sync::mpsc;

use super::{BackendError, KernelDevice, LocalBackend, LocalBatch, PING_INTERVAL, PING_TIMEOUT};
use crate::config::AgentConfig;
use crate::linux::CarrierEvent;
use crate::userspace::{
    self, PacketInlet, PingReport, Pinger, StackHandle, TcpExpose, TcpForward, UserspaceError,
    UserspaceSettings,
};

/// Packets waiting between the smoltcp stack and the engine.
const STACK_QUEUE: usize = 1024;

/// The running smoltcp stack.
#[derive(Debug)]
pub struct StackBackend {
    inlet: PacketInlet,
    /// Polled by the shell's one reader (`poll_receive` takes `&self`).
    from_stack: Mutex<mpsc::Receiver<Vec<u8>>>,
    /// Outside the lock below, so a long ping never holds up `close`.
    pinger: Pinger,
    /// For shutdown; `None` once closed.
    stack: tokio::sync::Mutex<Option<StackHandle>>,
}

impl StackBackend {
    /// Starts the stack with the node's addresses and the TCP forwards and
    /// exposes `config` asks for.
    pub fn open(config: &AgentConfig) -> Result<Self, UserspaceError> {
        Self::start(UserspaceSettings {
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
        })
    }

    fn start(settings: UserspaceSettings) -> Result<Self, UserspaceError> {
        let (to_mesh, from_stack) = mpsc::channel(STACK_QUEUE);
        let stack = userspace::spawn(settings, to_mesh)?;
        Ok(Self {
            inlet: stack.inlet(),
            pinger: stack.pinger(),
            from_stack: Mutex::new(from_stack),
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

    fn deliver(&self, packets: &mut Vec<Vec<u8>>) {
        for packet in packets.drain(..) {
            self.inlet.deliver(packet);
        }
    }

    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
        batch: &mut LocalBatch,
    ) -> Poll<Result<(), BackendError>> {
        // Only the shell's one reader takes this lock: it is never contended.
        let mut from_stack = self
            .from_stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        from_stack.poll_recv(cx).map(|packet| {
            let packet = packet.ok_or(BackendError::Closed)?;
            let len = packet.len();
            *batch.single() = packet;
            batch.received_one(len);
            Ok(())
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
            Ok(self
                .pinger
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn closing_does_not_wait_for_a_ping_in_progress() {
        let backend = Arc::new(
            StackBackend::start(UserspaceSettings {
                addresses: vec!["10.99.0.1/32".parse().expect("prefix")],
                mtu: 1420,
                tcp_forwards: Vec::new(),
                tcp_exposes: Vec::new(),
            })
            .expect("stack"),
        );
        // Nobody answers: this ping would last u16::MAX intervals.
        let pinging = Arc::clone(&backend);
        let ping = tokio::spawn(async move {
            pinging
                .ping("10.99.0.9".parse().expect("address"), u16::MAX)
                .await
        });
        tokio::time::sleep(PING_INTERVAL).await;
        tokio::time::timeout(Duration::from_secs(5), backend.close())
            .await
            .expect("close does not wait for the ping")
            .expect("closed");
        let ended = tokio::time::timeout(Duration::from_secs(5), ping)
            .await
            .expect("the ping ends with the stack")
            .expect("ping task");
        assert!(ended.is_err(), "{ended:?}");
    }
}
