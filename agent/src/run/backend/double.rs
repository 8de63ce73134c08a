//! A [`LocalBackend`] for tests: no device, no privileges. The shell sees a
//! backend; the test holds the other half, a [`TestHost`], through which it
//! plays the host: it sends packets into the mesh, reports carrier changes,
//! says which interface reaches which peer, and reads back everything the
//! shell asked for.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use ipnet::IpNet;
use tokio::sync::{Notify, mpsc};

use super::{BackendError, KernelDevice, LocalBackend, LocalBatch};
use crate::linux::CarrierEvent;
use crate::ping::PingReport;

/// Packets and carrier events the test may queue before the shell reads
/// them; tests send a handful.
const TEST_QUEUE: usize = 64;

/// What the shell asked of the double, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requests {
    /// Packets handed to the host.
    pub delivered: Vec<Vec<u8>>,
    /// Peers whose underlay interface the shell asked for.
    pub resolved: Vec<IpAddr>,
    /// Every `(addresses, routes)` the kernel was asked to hold.
    pub kernel_routes: Vec<(Vec<IpNet>, Vec<IpNet>)>,
    /// Pings asked for, by target.
    pub pings: Vec<IpAddr>,
    pub closed: bool,
}

#[derive(Debug, Default)]
struct State {
    requests: Requests,
    /// The answers to `resolve_underlay`, set by the test.
    underlay: BTreeMap<IpAddr, u32>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken whenever the shell asks something.
    changed: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, f: impl FnOnce(&mut Requests)) {
        f(&mut self.state().requests);
        self.changed.notify_waiters();
    }
}

/// The backend half of the double, for the shell.
#[derive(Debug)]
pub struct TestBackend {
    shared: Arc<Shared>,
    kernel_device: Option<KernelDevice>,
    from_host: Mutex<mpsc::Receiver<Vec<u8>>>,
    carrier: Mutex<Option<mpsc::Receiver<CarrierEvent>>>,
}

/// The host half of the double, for the test.
#[derive(Debug, Clone)]
pub struct TestHost {
    shared: Arc<Shared>,
    to_engine: mpsc::Sender<Vec<u8>>,
    carrier: mpsc::Sender<CarrierEvent>,
}

impl TestBackend {
    /// A double that behaves like a backend with a kernel device named
    /// `kernel_device` (so carrier and kernel routes are followed), or
    /// like the userspace stack with `None`.
    pub fn new(kernel_device: Option<KernelDevice>) -> (Self, TestHost) {
        let shared = Arc::new(Shared::default());
        let (to_engine, from_host) = mpsc::channel(TEST_QUEUE);
        let (carrier_tx, carrier_rx) = mpsc::channel(TEST_QUEUE);
        (
            Self {
                shared: Arc::clone(&shared),
                kernel_device,
                from_host: Mutex::new(from_host),
                carrier: Mutex::new(Some(carrier_rx)),
            },
            TestHost {
                shared,
                to_engine,
                carrier: carrier_tx,
            },
        )
    }
}

impl TestHost {
    /// The host sends `packet` into the mesh.
    pub async fn send(&self, packet: Vec<u8>) {
        // The shell holds the receiver until it stops; a test that sends
        // after that gets nothing delivered, which it then asserts.
        let _ = self.to_engine.send(packet).await;
    }

    /// The interface `ifindex` (named `name`) has or lacks carrier now.
    pub async fn carrier(&self, ifindex: u32, name: &str, carrier_up: bool) {
        let _ = self
            .carrier
            .send(CarrierEvent {
                ifindex,
                name: name.to_owned(),
                carrier_up,
            })
            .await;
    }

    /// From now on, `peer` is reached over interface `ifindex`.
    pub fn route_underlay(&self, peer: IpAddr, ifindex: u32) {
        self.shared.state().underlay.insert(peer, ifindex);
    }

    /// Everything the shell asked so far.
    pub fn requests(&self) -> Requests {
        self.shared.state().requests.clone()
    }

    /// Waits until `done` holds for what the shell asked; returns it.
    pub async fn wait_for(&self, done: impl Fn(&Requests) -> bool) -> Requests {
        loop {
            let changed = self.shared.changed.notified();
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            changed.await;
        }
    }
}

impl LocalBackend for TestBackend {
    fn describe(&self) -> String {
        match &self.kernel_device {
            Some(device) => format!("test ({})", device.name),
            None => "test".to_owned(),
        }
    }

    fn kernel_device(&self) -> Option<KernelDevice> {
        self.kernel_device.clone()
    }

    fn deliver(&self, packets: &mut Vec<Vec<u8>>) {
        self.shared.record(|r| r.delivered.append(packets));
    }

    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
        batch: &mut LocalBatch,
    ) -> Poll<Result<(), BackendError>> {
        let mut from_host = self
            .from_host
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        from_host.poll_recv(cx).map(|packet| {
            let buf = batch.single();
            *buf = packet.ok_or(BackendError::Closed)?;
            let len = buf.len();
            batch.received_one(len);
            Ok(())
        })
    }

    fn resolve_underlay(&self, peer: IpAddr) -> BoxFuture<'_, Option<u32>> {
        let answer = self.shared.state().underlay.get(&peer).copied();
        self.shared.record(|r| r.resolved.push(peer));
        Box::pin(std::future::ready(answer))
    }

    fn watch_carrier(
        &self,
        events: mpsc::Sender<CarrierEvent>,
    ) -> Option<BoxFuture<'static, Result<(), BackendError>>> {
        self.kernel_device.as_ref()?;
        let mut from_test = self
            .carrier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(Box::pin(async move {
            while let Some(event) = from_test.recv().await {
                if events.send(event).await.is_err() {
                    break;
                }
            }
            Ok(())
        }))
    }

    fn set_kernel_routes<'a>(
        &'a self,
        addresses: &'a [IpNet],
        routes: &'a [IpNet],
    ) -> BoxFuture<'a, Result<usize, BackendError>> {
        self.shared.record(|r| {
            r.kernel_routes.push((addresses.to_vec(), routes.to_vec()));
        });
        Box::pin(std::future::ready(Ok(routes.len())))
    }

    fn ping(&self, target: IpAddr, _count: u16) -> BoxFuture<'_, Result<PingReport, BackendError>> {
        self.shared.record(|r| r.pings.push(target));
        Box::pin(std::future::ready(Err(BackendError::PingNeedsUserspace)))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        self.shared.record(|r| r.closed = true);
        Box::pin(std::future::ready(Ok(())))
    }
}
