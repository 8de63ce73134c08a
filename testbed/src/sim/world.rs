//! The simulated mesh: nodes (engine + control path), underlay links, the
//! controller, and the event loop that moves datagrams and frames between
//! them on the virtual clock.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use freimesh_agent::controlplane::Candidate;
use freimesh_agent::core::{DropReason, Engine, LinkSpec, Output};
use freimesh_controller::routing::city::CityMesh;
use freimesh_controller::store::{DEFAULT_CLIENT_SUBNET_LEN, MeshSettings};
use freimesh_proto::control::{self, AgentMsg};
use freimesh_proto::{NodeId, PublicKeyBytes};

use super::agent_control::{AgentControl, REPORT_TICK};
use super::hub::{SimController, ToAgent};
use super::queue::{EventQueue, Nanos, nanos};
use super::rng::SimRng;
use super::scenario::Action;

/// One way through the control channel (agent ↔ controller, over the
/// internet or the backbone).
pub const CONTROL_DELAY: Duration = Duration::from_millis(10);
/// How long the controller takes to notice a session whose agent died
/// (no close: its pings go unanswered).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// First reconnect delay of an agent; doubles up to [`MAX_BACKOFF`].
/// The controller shell's periodic tick (its `REGISTRY_POLL`): registry
/// changes, credential renewals, route upstreams.
const CONTROLLER_TICK: Duration = freimesh_controller::server::REGISTRY_POLL;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The store's clock at virtual time zero (a fixed date: runs replay).
const UNIX_EPOCH_OF_RUN: i64 = 1_800_000_000;
/// Underlay port of every agent.
const PORT: u16 = 51820;
/// The city meshes' lossy links lose up to 5 % of packets; at that rate the
/// default profile's three-miss detection takes a link down every few
/// minutes and hold-downs keep it out for long. The flapping scenario tests
/// that on purpose; elsewhere the simulator drops a tenth of that rate so
/// failures come from the schedule, not from chance.
const LOSS_DIVISOR: u32 = 10;

/// Something due at an instant of virtual time.
#[derive(Debug)]
pub enum Event {
    /// A datagram from node `from` to node `to` (indices, not addresses:
    /// a smaller event moves faster through the queue).
    Datagram {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    EngineTimer {
        node: usize,
        at: Nanos,
    },
    ReportTick {
        node: usize,
        life: u32,
    },
    Connect {
        node: usize,
        life: u32,
    },
    ToController {
        node: usize,
        session: u64,
        frame: Vec<u8>,
    },
    ToAgent {
        node: usize,
        session: u64,
        frame: ToAgent,
    },
    SessionGone {
        node: usize,
        session: u64,
    },
    /// The controller shell's periodic tick.
    ControllerTick,
    /// An agent's first start.
    Start(usize),
    Action(Action),
    Check,
}

/// An underlay link between two neighbours.
#[derive(Debug, Clone)]
pub struct SimLink {
    pub a: usize,
    pub b: usize,
    pub delay: Duration,
    pub loss_ppm: u32,
    pub cut: bool,
}

/// One node: its agent while it runs.
#[derive(Debug)]
pub struct SimNode {
    pub key: PublicKeyBytes,
    secret: [u8; 32],
    pub addr: SocketAddr,
    pub engine: Option<Engine>,
    pub control: AgentControl,
    /// Counts the agent's starts; events of an earlier life are void.
    pub life: u32,
    /// The control session the agent holds, if connected.
    pub session: Option<u64>,
    backoff: Duration,
    timer_at: Option<Nanos>,
    /// Neighbours over the underlay: `(node, link index)`, sorted.
    pub neighbours: Vec<(usize, usize)>,
    pub drained: bool,
    /// The neighbours this agent reports as candidates (its configured
    /// links).
    candidates: Vec<Candidate>,
}

/// What the flows' traces depend on, summed over the mesh: scenario
/// actions (cuts, crashes, drains, …), agent starts, and every engine's
/// forwarding version. Every part only grows, so equal epochs mean no
/// engine's next hops, no link and no node changed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardingEpoch {
    actions: u64,
    lives: u64,
    forwarding: u64,
}

/// Counts that end up in the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub datagrams: u64,
    pub datagrams_lost: u64,
    pub frames: u64,
    pub events: u64,
    pub malformed_frames: u64,
    /// Engine changes from the control path that the engine refused.
    pub refused_changes: u64,
}

/// The whole simulated mesh.
#[derive(Debug)]
pub struct World {
    pub now: Nanos,
    pub base: Instant,
    pub queue: EventQueue<Event>,
    pub nodes: Vec<SimNode>,
    pub links: Vec<SimLink>,
    pub by_addr: BTreeMap<SocketAddr, usize>,
    pub by_key: BTreeMap<PublicKeyBytes, usize>,
    pub controller: SimController,
    pub controller_up: bool,
    /// The node behind every session ever opened.
    session_node: BTreeMap<u64, usize>,
    next_session: u64,
    pub rng: SimRng,
    pub counters: Counters,
    /// FNV-1a over every event handled: equal digests, equal runs.
    pub digest: u64,
    /// When a controller frame that changed some node's routes was last
    /// applied.
    pub last_route_change: Option<Nanos>,
    /// When the last scenario action happened.
    pub last_action: Option<Nanos>,
    /// The earliest failure (cut, crash, drain) whose global repair has
    /// not been seen to complete yet.
    pub pending_failure: Option<Nanos>,
    /// Control frames sent and not yet handled (either direction).
    pub frames_in_flight: u64,
    /// Scenario actions scheduled and not yet carried out.
    pub pending_actions: u64,
    /// Scenario actions carried out.
    actions_done: u64,
    /// Datagrams an engine queued, reused from one call to the next.
    sends: Vec<(SocketAddr, Vec<u8>)>,
}

fn underlay(i: usize) -> SocketAddr {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 1));
    let offset = u32::try_from(i).unwrap_or(u32::MAX);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(base.wrapping_add(offset))), PORT)
}

pub fn mesh_settings() -> MeshSettings {
    MeshSettings {
        ula: "fd5e:4d00:11::/48"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
        ipv4: "10.64.0.0/14".parse().unwrap_or_else(|_| unreachable!()),
        approval: false,
        controller_public_key: PublicKeyBytes([9; 32]),
        clients_ipv4: None,
        client_subnet_len: DEFAULT_CLIENT_SUBNET_LEN,
    }
}

impl World {
    /// Builds the mesh of `city` with every agent started at time zero.
    pub fn new(city: &CityMesh, seed: u64) -> Result<Self> {
        let mut rng = SimRng::new(seed);
        let n = usize::try_from(city.n).context("mesh size")?;
        let (controller, tokens) =
            SimController::new(&mesh_settings(), n, UNIX_EPOCH_OF_RUN * 1000)?;
        let mut links = Vec::with_capacity(city.links.len());
        for ((a, b, _), cost) in city.links.iter().zip(&city.costs) {
            links.push(SimLink {
                a: usize::try_from(*a)?,
                b: usize::try_from(*b)?,
                delay: Duration::from_micros(u64::from(cost.rtt_us / 2)),
                loss_ppm: cost.loss_ppm / LOSS_DIVISOR,
                cut: false,
            });
        }
        let mut neighbours: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for (i, l) in links.iter().enumerate() {
            neighbours[l.a].push((l.b, i));
            neighbours[l.b].push((l.a, i));
        }
        let mut nodes = Vec::with_capacity(n);
        let mut by_key = BTreeMap::new();
        let mut by_addr = BTreeMap::new();
        let secrets: Vec<[u8; 32]> = (0..n).map(|_| rng.secret()).collect();
        let base = Instant::now();
        let keys: Vec<PublicKeyBytes> = secrets
            .iter()
            .map(|s| Engine::new(*s, Vec::new(), 0, base).map(|e| e.public_key()))
            .collect::<Result<_, _>>()?;
        for (i, (mut nb, token)) in neighbours.into_iter().zip(tokens).enumerate() {
            nb.sort_unstable();
            let candidates: Vec<Candidate> = nb
                .iter()
                .map(|(p, _)| Candidate {
                    peer: keys[*p],
                    endpoint: Some(underlay(*p)),
                })
                .collect();
            by_key.insert(keys[i], i);
            by_addr.insert(underlay(i), i);
            nodes.push(SimNode {
                key: keys[i],
                secret: secrets[i],
                addr: underlay(i),
                engine: None,
                control: AgentControl::new(
                    format!("n{i}"),
                    underlay(i),
                    token,
                    candidates.clone(),
                    base,
                ),
                life: 0,
                session: None,
                backoff: FIRST_BACKOFF,
                timer_at: None,
                neighbours: nb,
                drained: false,
                candidates,
            });
        }
        let mut world = Self {
            now: 0,
            base,
            queue: EventQueue::default(),
            nodes,
            links,
            by_addr,
            by_key,
            controller,
            controller_up: true,
            session_node: BTreeMap::new(),
            next_session: 0,
            rng,
            counters: Counters::default(),
            digest: 0xcbf2_9ce4_8422_2325,
            last_route_change: None,
            last_action: None,
            pending_failure: None,
            frames_in_flight: 0,
            pending_actions: 0,
            actions_done: 0,
            sends: Vec::new(),
        };
        for i in 0..n {
            // Agents come up over the first second, not all at once.
            let at = world.rng.below(nanos(Duration::from_secs(1)));
            world.queue.push(at, Event::Start(i));
        }
        world
            .queue
            .push(nanos(CONTROLLER_TICK), Event::ControllerTick);
        Ok(world)
    }

    pub fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    /// The hub's clock: Unix milliseconds.
    fn unix_ms(&self) -> i64 {
        UNIX_EPOCH_OF_RUN * 1000 + i64::try_from(self.now / 1_000_000).unwrap_or(0)
    }

    fn mix(&mut self, words: &[u64]) {
        for w in words {
            for b in w.to_le_bytes() {
                self.digest ^= u64::from(b);
                self.digest = self.digest.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }

    /// Runs every event due up to `until` (inclusive); `check` is called for
    /// every `Check` event.
    pub fn run_until(&mut self, until: Nanos, check: &mut dyn FnMut(&mut World)) -> Result<()> {
        while let Some((at, event)) = self.queue.pop_until(until) {
            self.now = at;
            self.counters.events += 1;
            self.handle(event, check)?;
        }
        self.now = until;
        Ok(())
    }

    fn handle(&mut self, event: Event, check: &mut dyn FnMut(&mut World)) -> Result<()> {
        let now = self.now;
        match event {
            Event::Datagram { to, from, bytes } => {
                self.mix(&[now, 1, to as u64, bytes.len() as u64]);
                let instant = self.instant();
                let from = self.nodes[from].addr;
                if let Some(engine) = self.nodes[to].engine.as_mut() {
                    engine.handle_datagram(from, &bytes, instant);
                    self.after_engine(to);
                }
            }
            Event::EngineTimer { node, at } => {
                if self.nodes[node].timer_at == Some(at) {
                    self.mix(&[now, 2, node as u64]);
                    self.nodes[node].timer_at = None;
                    let instant = self.instant();
                    if let Some(engine) = self.nodes[node].engine.as_mut() {
                        engine.handle_timeout(instant);
                        self.after_engine(node);
                    }
                }
            }
            Event::ReportTick { node, life } => {
                if self.nodes[node].life == life && self.nodes[node].engine.is_some() {
                    self.mix(&[now, 3, node as u64]);
                    self.queue
                        .push(now + nanos(REPORT_TICK), Event::ReportTick { node, life });
                    let instant = self.instant();
                    let n = &mut self.nodes[node];
                    let result = match n.engine.as_ref() {
                        Some(engine) => n.control.handle_tick(engine, instant),
                        None => Ok(()),
                    };
                    if result.is_err() {
                        self.lose_session(node);
                    } else {
                        self.flush_agent(node)?;
                    }
                }
            }
            Event::Connect { node, life } => {
                if self.nodes[node].life == life && self.nodes[node].session.is_none() {
                    self.mix(&[now, 4, node as u64]);
                    if self.controller_up {
                        self.next_session += 1;
                        let session = self.next_session;
                        let instant = self.instant();
                        self.session_node.insert(session, node);
                        self.nodes[node].session = Some(session);
                        self.nodes[node].control.handle_connected(instant);
                        self.flush_agent(node)?;
                    } else {
                        let n = &mut self.nodes[node];
                        let wait = n.backoff;
                        n.backoff = (n.backoff * 2).min(MAX_BACKOFF);
                        self.queue
                            .push(now + nanos(wait), Event::Connect { node, life });
                    }
                }
            }
            Event::ToController {
                node,
                session,
                frame,
            } => {
                self.frames_in_flight -= 1;
                if self.controller_up {
                    self.mix(&[now, 5, node as u64, frame.len() as u64]);
                    self.counters.frames += 1;
                    self.controller_frame(node, session, &frame)?;
                }
            }
            Event::ToAgent {
                node,
                session,
                frame,
            } => {
                self.frames_in_flight -= 1;
                if self.nodes[node].session == Some(session) {
                    self.mix(&[now, 6, node as u64]);
                    self.counters.frames += 1;
                    match frame {
                        ToAgent::Frame(bytes) => {
                            let instant = self.instant();
                            let n = &mut self.nodes[node];
                            if let Some(engine) = n.engine.as_mut() {
                                let applied = n.control.handle_frame(engine, &bytes, instant);
                                if applied.malformed {
                                    self.counters.malformed_frames += 1;
                                }
                                self.counters.refused_changes += u64::from(applied.refused);
                                if applied.routes {
                                    self.last_route_change = Some(now);
                                }
                                if applied.ended || applied.malformed {
                                    self.lose_session(node);
                                } else {
                                    self.flush_agent(node)?;
                                }
                                self.after_engine(node);
                            }
                        }
                        ToAgent::Close => self.lose_session(node),
                    }
                }
            }
            Event::SessionGone { node, session } => {
                if self.controller_up {
                    self.mix(&[now, 9, node as u64]);
                    self.controller.handle_gone(session, self.unix_ms())?;
                    self.flush_controller();
                }
            }
            Event::ControllerTick => {
                self.queue
                    .push(now + nanos(CONTROLLER_TICK), Event::ControllerTick);
                if self.controller_up {
                    self.mix(&[now, 10]);
                    self.controller.handle_tick(self.unix_ms())?;
                    self.flush_controller();
                }
            }
            Event::Start(node) => {
                self.mix(&[now, 7, node as u64]);
                self.start_agent(node)?;
            }
            Event::Action(action) => {
                self.pending_actions -= 1;
                self.mix(&[now, 8]);
                self.last_action = Some(now);
                if matches!(action, Action::Cut(_) | Action::Crash(_) | Action::Drain(_)) {
                    self.pending_failure.get_or_insert(now);
                }
                self.act(action)?;
            }
            Event::Check => check(self),
        }
        Ok(())
    }

    /// Sends what node `node`'s control path queued for the controller.
    fn flush_agent(&mut self, node: usize) -> Result<()> {
        let Some(session) = self.nodes[node].session else {
            return Ok(());
        };
        while let Some(msg) = self.nodes[node].control.poll_report() {
            self.send_to_controller(node, session, &msg)?;
        }
        Ok(())
    }

    fn send_to_controller(&mut self, node: usize, session: u64, msg: &AgentMsg) -> Result<()> {
        let frame = control::encode(msg)?;
        self.frames_in_flight += 1;
        self.queue.push(
            self.now + nanos(CONTROL_DELAY),
            Event::ToController {
                node,
                session,
                frame,
            },
        );
        Ok(())
    }

    fn controller_frame(&mut self, node: usize, session: u64, frame: &[u8]) -> Result<()> {
        let msg: AgentMsg = control::decode(frame)?;
        let now_ms = self.unix_ms();
        match msg {
            AgentMsg::Hello(hello) => {
                let (key, source) = (self.nodes[node].key, self.nodes[node].addr);
                self.controller
                    .handle_hello(session, source, key, hello, now_ms)?;
            }
            other => self.controller.handle_agent_msg(session, other, now_ms)?,
        }
        self.flush_controller();
        Ok(())
    }

    fn flush_controller(&mut self) {
        for (session, out) in self.controller.take_outbox() {
            let Some(&node) = self.session_node.get(&session) else {
                continue;
            };
            self.frames_in_flight += 1;
            self.queue.push(
                self.now + nanos(CONTROL_DELAY),
                Event::ToAgent {
                    node,
                    session,
                    frame: out,
                },
            );
        }
    }

    /// The agent's session ended: it keeps its state (headless) and
    /// reconnects with backoff.
    fn lose_session(&mut self, node: usize) {
        let instant = self.instant();
        let n = &mut self.nodes[node];
        // The connection's end reaches the controller like any frame.
        if let Some(session) = n.session.take() {
            self.queue.push(
                self.now + nanos(CONTROL_DELAY),
                Event::SessionGone { node, session },
            );
        }
        let n = &mut self.nodes[node];
        n.control.handle_disconnected(n.backoff, instant);
        let wait = n.backoff;
        n.backoff = (n.backoff * 2).min(MAX_BACKOFF);
        let life = n.life;
        self.queue
            .push(self.now + nanos(wait), Event::Connect { node, life });
    }

    /// Carries out what the engine of `node` asked for and re-arms its timer.
    fn after_engine(&mut self, node: usize) {
        let instant = self.base + Duration::from_nanos(self.now);
        let SimNode {
            engine, control, ..
        } = &mut self.nodes[node];
        let Some(engine) = engine.as_mut() else {
            return;
        };
        let mut sends = std::mem::take(&mut self.sends);
        while let Some(out) = engine.poll_output() {
            if let Output::Transmit { to, datagram } = out {
                sends.push((to, datagram));
            }
        }
        let mut failed_over = false;
        while let Some(failover) = engine.poll_failover() {
            control
                .path
                .handle_failover(&failover, Duration::ZERO, instant);
            failed_over = true;
        }
        let timeout = engine.poll_timeout();
        for (to, datagram) in sends.drain(..) {
            self.transmit(node, to, datagram);
        }
        self.sends = sends;
        if failed_over {
            // Failovers go up as Events frames while a session is welcomed.
            let _ = self.flush_agent(node);
        }
        if let Some(at) = timeout {
            let at = nanos(at.saturating_duration_since(self.base)).max(self.now);
            let n = &mut self.nodes[node];
            if n.timer_at.is_none_or(|t| at < t) {
                n.timer_at = Some(at);
                self.queue.push(at, Event::EngineTimer { node, at });
            }
        }
    }

    fn transmit(&mut self, from: usize, to: SocketAddr, datagram: Vec<u8>) {
        self.counters.datagrams += 1;
        let Some(&dst) = self.by_addr.get(&to) else {
            self.counters.datagrams_lost += 1;
            return;
        };
        let nb = &self.nodes[from].neighbours;
        let Ok(pos) = nb.binary_search_by_key(&dst, |(p, _)| *p) else {
            self.counters.datagrams_lost += 1;
            return;
        };
        let link = &self.links[nb[pos].1];
        if link.cut || self.rng.chance_ppm(link.loss_ppm) {
            self.counters.datagrams_lost += 1;
            return;
        }
        let at = self.now + nanos(link.delay);
        self.queue.push(
            at,
            Event::Datagram {
                to: dst,
                from,
                bytes: datagram,
            },
        );
    }

    /// Schedules a scenario action.
    pub fn schedule(&mut self, at: Nanos, action: Action) {
        self.pending_actions += 1;
        self.queue.push(at, Event::Action(action));
    }

    /// Carries out one scenario action now.
    pub fn act(&mut self, action: Action) -> Result<()> {
        self.actions_done += 1;
        match action {
            Action::Cut(l) => self.links[l].cut = true,
            Action::Restore(l) => self.links[l].cut = false,
            Action::Crash(n) => {
                let node = &mut self.nodes[n];
                node.engine = None;
                node.timer_at = None;
                node.life += 1;
                if let Some(session) = node.session.take() {
                    self.queue.push(
                        self.now + nanos(SESSION_TIMEOUT),
                        Event::SessionGone { node: n, session },
                    );
                }
            }
            Action::Restart(n) => self.start_agent(n)?,
            Action::ControllerDown => {
                self.controller_up = false;
                for n in 0..self.nodes.len() {
                    if self.nodes[n].session.is_some() {
                        self.lose_session(n);
                    }
                }
            }
            Action::ControllerUp => {
                self.controller.restart(self.unix_ms())?;
                self.controller_up = true;
            }
            Action::Drain(n) | Action::Undrain(n) => {
                let drained = matches!(action, Action::Drain(_));
                self.nodes[n].drained = drained;
                if self.controller_up {
                    self.controller
                        .drain(self.nodes[n].key, drained, self.unix_ms())?;
                    self.flush_controller();
                }
            }
        }
        Ok(())
    }

    /// Starts (or restarts) node `n`'s agent from nothing: links to its
    /// underlay neighbours as configured, then the controller.
    fn start_agent(&mut self, n: usize) -> Result<()> {
        let specs = self.nodes[n]
            .neighbours
            .iter()
            .map(|(p, _)| LinkSpec {
                name: NodeId::of(&self.nodes[*p].key).to_string(),
                peer: self.nodes[*p].key,
                endpoint: Some(self.nodes[*p].addr),
                keepalive: None,
                allowed_sources: Vec::new(),
                profile: "default".into(),
            })
            .collect();
        let index_seed = u32::try_from(self.rng.below(1 << 24)).unwrap_or(0);
        let mut engine = Engine::new(self.nodes[n].secret, specs, index_seed, self.instant())?;
        engine.use_simulated_tunnels();
        engine.start(self.instant());
        let node = &mut self.nodes[n];
        node.engine = Some(engine);
        node.life += 1;
        node.session = None;
        node.backoff = FIRST_BACKOFF;
        node.timer_at = None;
        let token = node.control.token();
        node.control = AgentControl::new(
            format!("n{n}"),
            node.addr,
            token,
            node.candidates.clone(),
            self.base + Duration::from_nanos(self.now),
        );
        let life = node.life;
        self.after_engine(n);
        self.queue.push(
            self.now + nanos(REPORT_TICK),
            Event::ReportTick { node: n, life },
        );
        self.queue.push(self.now, Event::Connect { node: n, life });
        Ok(())
    }

    /// The mesh's forwarding epoch now (see [`ForwardingEpoch`]).
    pub fn forwarding_epoch(&self) -> ForwardingEpoch {
        let mut epoch = ForwardingEpoch {
            actions: self.actions_done,
            lives: 0,
            forwarding: 0,
        };
        for n in &self.nodes {
            epoch.lives += u64::from(n.life);
            if let Some(engine) = &n.engine {
                epoch.forwarding += engine.forwarding_version();
            }
        }
        epoch
    }

    /// Whether no scenario action is still to come.
    pub fn queue_has_no_actions(&self) -> bool {
        self.pending_actions == 0
    }

    /// Total drops of `reason` over every running engine.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.engine.as_ref())
            .map(|e| e.drops(reason))
            .sum()
    }
}
