//! The shell's moving parts: [`Shared`] (the engine behind a mutex, the
//! underlay socket, the local backend) and the tasks that feed the engine
//! and carry out what it asks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::backend::{LocalBackend, LocalBatch};
use super::batch::plan_runs;
use super::discovery::DiscoveredLink;
use super::underlay_socket::{RecvBatch, UnderlaySocket};
use crate::clock;
use crate::controlplane::Upstream;
use crate::controlplane::link_event;
use crate::core::{Engine, Failover, Output};
use crate::discovery::DiscoveryCounters;
use crate::linux::CarrierEvent;
use crate::membership::Membership;

/// Receives (each up to a whole [`RecvBatch`]) the timer takes in before a
/// liveness check, at most.
const MAX_DRAIN: usize = 32;
/// Carrier events waiting for the engine: a burst is one per interface.
const CARRIER_QUEUE: usize = 64;

/// What one engine step leaves for the shell, kept by each task from step
/// to step so nothing is allocated per packet: the outputs (their
/// datagrams go back to the engine for reuse) and the buffer a GSO run is
/// assembled in.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    outputs: Vec<Output>,
    gso: Vec<u8>,
    /// The step's packets for this node, handed to the backend together.
    local: Vec<Vec<u8>>,
}

pub(super) struct Shared {
    engine: Mutex<Engine>,
    udp: UnderlaySocket,
    pub(super) local: Box<dyn LocalBackend>,
    /// To the controller client, when there is a controller: failovers
    /// go up as they happen.
    pub(super) upstream: Option<mpsc::Sender<Upstream>>,
    /// Failovers the controller never heard of because the queue to its
    /// client was full (the client stopped reading).
    unreported_failovers: AtomicU64,
    /// The controller's signing key, this node's credential and the
    /// revocation list (`crate::membership`): set by the control path,
    /// read by discovery, saved by the state file. Whoever changes it
    /// calls `state_changed.notify_one()` so the state file follows.
    pub(super) membership: Mutex<Membership>,
    /// Wakes the state file's keeper: something it holds (the membership)
    /// changed outside the controller event path.
    pub(super) state_changed: tokio::sync::Notify,
    /// State file writes by this process (`state_writes` in the status).
    /// 32 bits: MIPS routers have no 64-bit atomics, and at the default
    /// interval it takes 8,000 years to wrap.
    pub(super) state_writes: AtomicU32,
    /// Public Wi-Fi clients holding a lease now (a count, never who), for
    /// respondd's statistics.
    pub(super) public_wifi_clients: AtomicU32,
    /// Discovered links: where each neighbour is (with the scope id a
    /// controller assignment lacks) and the host routes set for it.
    discovered: Mutex<BTreeMap<PublicKeyBytes, DiscoveredLink>>,
    /// Discovery's totals for `status` (`None`: no mesh interfaces).
    discovery_counters: Mutex<Option<DiscoveryCounters>>,
    /// respondd's totals, once it runs (for `status`).
    respondd_counters: Mutex<Option<crate::respondd::RespondCounters>>,
    /// The exit gateway the controller named last, for respondd.
    exit_gateway: Mutex<Option<PublicKeyBytes>>,
    /// The neighbours the controller assigns links to (`None` until it
    /// has been heard), for discovery's dense-cell policy.
    pub(super) controller_links: watch::Sender<Option<BTreeSet<PublicKeyBytes>>>,
    /// Control through the mesh: exits, neighbours' relays, the own
    /// session's path.
    pub(super) mesh_control: super::mesh_control::MeshControl,
    /// When the timer task sleeps until (see [`TimerAlarm`]).
    alarm: TimerAlarm,
}

/// The timer task sleeps until the engine's [`Engine::poll_timeout`]; a
/// step that moves that instant earlier (a link heard again goes back to
/// its full heartbeat rate) wakes it to sleep again until the new one.
/// Later instants need nothing: the task wakes, finds nothing due and
/// sleeps again.
struct TimerAlarm {
    /// Zero of `armed_us`.
    base: std::time::Instant,
    /// Microseconds after `base` the timer sleeps until; `u64::MAX`: none.
    armed_us: AtomicU64,
    rearm: tokio::sync::Notify,
}

impl TimerAlarm {
    fn new() -> Self {
        Self {
            base: clock::now(),
            armed_us: AtomicU64::new(u64::MAX),
            rearm: tokio::sync::Notify::new(),
        }
    }

    fn micros(&self, at: std::time::Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    /// The timer task goes to sleep until `deadline`.
    fn arm(&self, deadline: std::time::Instant) {
        self.armed_us
            .store(self.micros(deadline), Ordering::Relaxed);
    }

    /// The engine now wants to be woken at `deadline`: if that is earlier
    /// than the timer sleeps, wake it.
    fn follow(&self, deadline: Option<std::time::Instant>) {
        if let Some(deadline) = deadline
            && self.micros(deadline) < self.armed_us.load(Ordering::Relaxed)
        {
            self.armed_us
                .store(self.micros(deadline), Ordering::Relaxed);
            self.rearm.notify_one();
        }
    }
}

/// Hands the failovers of one engine step to the controller client as one
/// message (the session keeps up to `PENDING_FAILOVERS` of them); how
/// many were lost because its queue was full.
fn hand_over_failovers(
    upstream: &mpsc::Sender<Upstream>,
    failovers: &[Failover],
    took: Duration,
) -> u64 {
    if failovers.is_empty() {
        return 0;
    }
    let events = failovers
        .iter()
        .map(|f| (link_event(f, took), f.at))
        .collect();
    match upstream.try_send(Upstream::Failovers(events)) {
        Ok(()) => 0,
        Err(_) => u64::try_from(failovers.len()).unwrap_or(u64::MAX),
    }
}

impl Shared {
    pub(super) fn new(
        engine: Engine,
        udp: UnderlaySocket,
        local: Box<dyn LocalBackend>,
        upstream: Option<mpsc::Sender<Upstream>>,
    ) -> Self {
        Self {
            engine: Mutex::new(engine),
            udp,
            local,
            upstream,
            unreported_failovers: AtomicU64::new(0),
            membership: Mutex::new(Membership::new()),
            state_changed: tokio::sync::Notify::new(),
            state_writes: AtomicU32::new(0),
            public_wifi_clients: AtomicU32::new(0),
            discovered: Mutex::new(BTreeMap::new()),
            discovery_counters: Mutex::new(None),
            respondd_counters: Mutex::new(None),
            exit_gateway: Mutex::new(None),
            controller_links: watch::Sender::new(None),
            mesh_control: super::mesh_control::MeshControl::default(),
            alarm: TimerAlarm::new(),
        }
    }

    pub(super) fn membership(&self) -> MutexGuard<'_, Membership> {
        // Membership is plain data checked on every update; what a panicking
        // holder left is still the best we have.
        self.membership
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn discovery_counters(&self) -> MutexGuard<'_, Option<DiscoveryCounters>> {
        self.discovery_counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn respondd_counters(
        &self,
    ) -> MutexGuard<'_, Option<crate::respondd::RespondCounters>> {
        self.respondd_counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The exit gateway the controller named last.
    pub(super) fn exit_gateway(&self) -> Option<PublicKeyBytes> {
        *self
            .exit_gateway
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn set_exit_gateway(&self, gateway: Option<PublicKeyBytes>) {
        *self
            .exit_gateway
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = gateway;
    }

    pub(super) fn discovered(&self) -> MutexGuard<'_, BTreeMap<PublicKeyBytes, DiscoveredLink>> {
        self.discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends the step's datagrams to the underlay in order, consecutive
    /// ones to the same neighbour together in one GSO send
    /// ([`super::batch`]).
    async fn transmit_all(&self, outputs: &[Output], gso: &mut Vec<u8>) {
        let transmits = || {
            outputs.iter().filter_map(|output| match output {
                Output::Transmit { to, datagram } => Some((*to, datagram.as_slice())),
                _ => None,
            })
        };
        let runs = plan_runs(
            transmits().map(|(to, datagram)| (to, datagram.len())),
            self.udp.max_segments(),
        );
        let mut datagrams = transmits();
        for run in &runs {
            if run.count == 1 {
                if let Some((_, datagram)) = datagrams.next() {
                    self.udp.send(run, datagram).await;
                }
                continue;
            }
            gso.clear();
            for (_, datagram) in datagrams.by_ref().take(run.count) {
                gso.extend_from_slice(datagram);
            }
            self.udp.send(run, gso).await;
        }
    }

    pub(super) fn engine(&self) -> MutexGuard<'_, Engine> {
        // A panic while holding the lock would be a bug in the engine; the
        // engine's state is still the best we have, so keep forwarding.
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the engine, then carries out everything it asked for
    /// (the engine contract's step 5: outputs in order, then failovers).
    /// `outputs` is the caller's, kept from call to call: the datagrams it
    /// sent last time go back to the engine for reuse under the same lock.
    pub(super) async fn with_engine(&self, outputs: &mut Outputs, f: impl FnOnce(&mut Engine)) {
        let Outputs {
            outputs,
            gso,
            local,
        } = outputs;
        let mut failovers = Vec::new();
        let took = {
            let mut engine = self.engine();
            for output in outputs.drain(..) {
                if let Output::Transmit { datagram, .. } = output {
                    engine.recycle(datagram);
                }
            }
            let started = clock::now();
            f(&mut engine);
            // The engine step that took a link down also switched the
            // table: its duration bounds the switch time the controller
            // shows operators.
            let took = clock::now().saturating_duration_since(started);
            outputs.extend(std::iter::from_fn(|| engine.poll_output()));
            failovers.extend(std::iter::from_fn(|| engine.poll_failover()));
            self.alarm.follow(engine.poll_timeout());
            took
        };
        if let Some(upstream) = &self.upstream {
            let lost = hand_over_failovers(upstream, &failovers, took);
            if lost > 0 {
                let total = self.unreported_failovers.fetch_add(lost, Ordering::Relaxed) + lost;
                tracing::warn!(
                    lost,
                    total,
                    "queue to the controller client full: failovers not reported"
                );
            }
        }
        self.transmit_all(outputs, gso).await;
        for output in outputs.iter_mut() {
            match output {
                Output::Transmit { .. } => {}
                Output::ResolveUnderlay { link, peer } => {
                    // A backend that cannot tell leaves the link to
                    // heartbeat detection.
                    if let Some(ifindex) = self.local.resolve_underlay(*peer).await {
                        self.engine().set_link_underlay(*link, ifindex);
                    }
                }
                Output::Local(packet) => local.push(std::mem::take(packet)),
            }
        }
        if !local.is_empty() {
            self.local.deliver(local);
        }
    }
}

/// Starts the tasks that feed the engine: underlay datagrams, the timer,
/// packets from the host and carrier events. Each runs until the runtime
/// stops it; one that ends on its own means the shell lost a source.
pub(super) fn spawn_engine_tasks(shared: &Arc<Shared>, tasks: &mut JoinSet<()>) {
    tasks.spawn(underlay_task(shared.clone()));
    tasks.spawn(timer_task(shared.clone()));
    tasks.spawn(local_task(shared.clone()));
    tasks.spawn(carrier_task(shared.clone()));
}

async fn underlay_task(shared: Arc<Shared>) {
    let mut batch = RecvBatch::new();
    let mut outputs = Outputs::default();
    loop {
        if let Err(err) = shared.udp.recv(&mut batch).await {
            // ICMP errors surface here (e.g. a neighbour's port is
            // closed); they say nothing about our own socket.
            tracing::trace!(%err, "underlay receive error");
            continue;
        }
        shared
            .with_engine(&mut outputs, |engine| handle_batch(engine, &batch))
            .await;
    }
}

/// One receive's datagrams into the engine, in the order they arrived,
/// in one step: their replies and forwards leave together.
fn handle_batch(engine: &mut Engine, batch: &RecvBatch) {
    for (from, datagram) in batch.datagrams() {
        engine.handle_datagram(from, datagram, clock::now());
    }
}

/// Packets the host sends into the mesh.
async fn local_task(shared: Arc<Shared>) {
    let mut batch = LocalBatch::default();
    let mut outputs = Outputs::default();
    loop {
        if let Err(err) = std::future::poll_fn(|cx| shared.local.poll_receive(cx, &mut batch)).await
        {
            tracing::error!(%err, "local backend read failed");
            return;
        }
        shared
            .with_engine(&mut outputs, |engine| {
                for packet in batch.packets_mut() {
                    engine.handle_local_packet(packet, clock::now());
                }
            })
            .await;
    }
}

/// Wakes the engine when it asked to be woken, and only then: heartbeats
/// and detection deadlines are milliseconds apart, so the timer follows
/// the engine's own schedule (coalesced: one wake-up per heartbeat interval
/// for all idle links) instead of a fixed tick, and is woken early only
/// when a step moved that schedule earlier ([`TimerAlarm`]).
async fn timer_task(shared: Arc<Shared>) {
    let mut outputs = Outputs::default();
    let mut batch = RecvBatch::new();
    loop {
        // Armed under the engine's lock, as `TimerAlarm::follow` is: no
        // step can move the deadline between reading and arming it.
        let deadline = {
            let engine = shared.engine();
            let deadline = engine
                .poll_timeout()
                .unwrap_or_else(|| clock::now() + Engine::TICK);
            shared.alarm.arm(deadline);
            deadline
        };
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            // An earlier deadline: sleep again until that one.
            () = shared.alarm.rearm.notified() => continue,
        }
        // A busy machine may have kept this agent off the CPU: take in what
        // the neighbours sent meanwhile before judging their silence, so a
        // heartbeat waiting in the socket is not mistaken for a dead link.
        for _ in 0..MAX_DRAIN {
            if shared.udp.try_recv(&mut batch).is_err() {
                break;
            }
            shared
                .with_engine(&mut outputs, |engine| handle_batch(engine, &batch))
                .await;
        }
        shared
            .with_engine(&mut outputs, |engine| engine.handle_timeout(clock::now()))
            .await;
    }
}

/// The carrier rule: only a loss of carrier we see happen counts. The
/// state an interface is first reported in may lag behind the wire: the
/// kernel updates operstate up to a second after an interface comes up,
/// while packets already flow over it, so "down" in the first report is
/// not a failure. Regaining carrier changes nothing either: the link comes
/// back when its neighbour is heard again.
#[derive(Debug, Default)]
pub(super) struct CarrierRule {
    known: BTreeMap<u32, bool>,
}

impl CarrierRule {
    /// The interface that just lost carrier, if `event` says one did.
    pub(super) fn lost(&mut self, event: &CarrierEvent) -> Option<u32> {
        let was_up = self.known.insert(event.ifindex, event.carrier_up);
        (was_up == Some(true) && !event.carrier_up).then_some(event.ifindex)
    }
}

/// Feeds underlay carrier losses to the engine: a link over an interface
/// that lost carrier is down at once, without waiting for its heartbeats.
async fn carrier_task(shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::channel(CARRIER_QUEUE);
    if let Some(watcher) = shared.local.watch_carrier(tx) {
        tokio::spawn(async move {
            if let Err(err) = watcher.await {
                tracing::warn!(%err, "cannot watch underlay carrier events; relying on heartbeats");
            }
        });
    }
    let mut outputs = Outputs::default();
    let mut rule = CarrierRule::default();
    while let Some(event) = rx.recv().await {
        tracing::debug!(interface = %event.name, carrier = event.carrier_up, "underlay carrier");
        if let Some(ifindex) = rule.lost(&event) {
            shared
                .with_engine(&mut outputs, |engine| {
                    engine.handle_carrier(ifindex, false, clock::now())
                })
                .await;
        }
    }
    // Without carrier events the agent still detects failures by heartbeat;
    // keep the task alive so its end is not mistaken for a failure.
    std::future::pending::<()>().await;
}

/// Keeps the kernel's routes into the local device equal to what
/// [`controller::KernelRoutes`] asks for, changing only what differs.
pub(super) async fn kernel_routes_task(
    shared: Arc<Shared>,
    addresses: Vec<IpNet>,
    mut wanted: tokio::sync::watch::Receiver<Vec<IpNet>>,
) {
    while wanted.changed().await.is_ok() {
        let routes = wanted.borrow_and_update().clone();
        match shared.local.set_kernel_routes(&addresses, &routes).await {
            Ok(0) => {}
            Ok(changes) => {
                tracing::info!(routes = ?routes, changes, "kernel routes follow the controller's intranet routes");
            }
            Err(err) => {
                tracing::warn!(%err, "updating kernel routes failed; kept the previous ones")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use freimesh_proto::PublicKeyBytes;

    use super::*;
    use crate::core::liveness::DownCause;

    #[test]
    fn a_burst_of_failovers_in_one_step_reaches_the_client_whole() {
        // A queue that has room for one message only.
        let (upstream, mut client) = mpsc::channel(1);
        let at = Instant::now();
        let burst: Vec<Failover> = (0..=u8::MAX)
            .map(|b| Failover {
                peer: PublicKeyBytes([b; 32]),
                cause: DownCause::Carrier,
                silent_for: Duration::ZERO,
                rerouted: 1,
                lost: 0,
                at,
            })
            .collect();
        let lost = hand_over_failovers(&upstream, &burst, Duration::from_micros(5));
        assert_eq!(lost, 0);
        let Ok(Upstream::Failovers(events)) = client.try_recv() else {
            panic!("one message with the whole burst");
        };
        assert_eq!(events.len(), burst.len());
        // With the queue full the loss is counted, not hidden.
        upstream
            .try_send(Upstream::Uplink(true))
            .expect("room for one");
        assert_eq!(
            hand_over_failovers(&upstream, &burst[..3], Duration::ZERO),
            3
        );
    }
}
