//! The controller side of the simulation: the controller's decision core
//! ([`Controller`]) and its registry ([`Store`], SQLite in memory), driven
//! the way the hub shell drives them (`controller/src/server/hub.rs`):
//! a Hello enrols or logs in, a Report becomes link rows that are committed
//! and then applied, an admin drain is committed and then applied. Frames
//! leave encoded and chunked exactly as the server sends them.
//!
//! This adapter stands in for the hub's shell until the controller's
//! enrolment decision moves into the core (issue 11, item 1).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use freimesh_controller::core::{Controller, KeyStatus, Outgoing};
use freimesh_controller::routing::{Metric, Router};
use freimesh_controller::store::{Enrollment, MeshSettings, NodeState, Store};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{self, AgentMsg, ControllerMsg, FrameError, Hello};

/// What goes to one agent connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToAgent {
    Frame(Vec<u8>),
    Close,
}

/// The controller core with its store; see the module docs.
#[derive(Debug)]
pub struct SimController {
    store: Store,
    core: Controller,
    /// Frames for agents, by public key, in order.
    outbox: Vec<(PublicKeyBytes, ToAgent)>,
    /// Nodes with a session now.
    connected: BTreeMap<u32, PublicKeyBytes>,
}

/// Frames one controller message becomes on the wire (the server's
/// chunking: full state and deltas that do not fit one transport message
/// are split).
pub fn encode_frames(msg: &ControllerMsg) -> Result<Vec<Vec<u8>>, FrameError> {
    match msg {
        ControllerMsg::Links { links, last: true } => {
            control::chunked(links, &|links, last| ControllerMsg::Links { links, last })
        }
        ControllerMsg::Routes { routes, last: true } => {
            control::chunked(routes, &|routes, last| ControllerMsg::Routes {
                routes,
                last,
            })
        }
        ControllerMsg::LinksDelta(c) => control::chunked(c, &|c, _| ControllerMsg::LinksDelta(c)),
        ControllerMsg::RoutesDelta(c) => control::chunked(c, &|c, _| ControllerMsg::RoutesDelta(c)),
        other => control::encode(other).map(|f| vec![f]),
    }
}

impl SimController {
    /// A fresh registry with one join token per node to come; returns the
    /// controller and the tokens.
    pub fn new(
        settings: &MeshSettings,
        tokens: usize,
        unix_now: i64,
    ) -> Result<(Self, Vec<String>)> {
        let mut store = Store::open_in_memory().context("opening the in-memory registry")?;
        store.init(settings).context("initialising the registry")?;
        let tokens = (0..tokens)
            .map(|_| store.create_token(unix_now + 365 * 86_400, &[], unix_now))
            .collect::<Result<Vec<_>, _>>()
            .context("creating join tokens")?;
        let core = Self::load(&store)?;
        Ok((
            Self {
                store,
                core,
                outbox: Vec::new(),
                connected: BTreeMap::new(),
            },
            tokens,
        ))
    }

    fn load(store: &Store) -> Result<Controller> {
        Ok(Controller::new(
            store.settings()?,
            store.nodes()?,
            store.prefixes()?,
            store.links()?,
        ))
    }

    /// The controller process restarts: every session is gone and the core
    /// is rebuilt from the store, as at start-up.
    pub fn restart(&mut self) -> Result<()> {
        self.core = Self::load(&self.store)?;
        self.outbox.clear();
        self.connected.clear();
        Ok(())
    }

    pub fn core(&self) -> &Controller {
        &self.core
    }

    /// A connection's first frame.
    pub fn handle_hello(
        &mut self,
        key: PublicKeyBytes,
        hello: &Hello,
        unix_now: i64,
    ) -> Result<()> {
        let id = match self.core.lookup(&key) {
            KeyStatus::Active(id) => id,
            KeyStatus::Unknown | KeyStatus::Pending(_) => {
                let Some(token) = &hello.join_token else {
                    self.outbox.push((key, ToAgent::Close));
                    return Ok(());
                };
                let rec = self.store.enroll(
                    &Enrollment {
                        key,
                        hostname: &hello.hostname,
                        endpoints: &hello.endpoints,
                        token,
                        want_addresses: &hello.want_addresses,
                        prefixes: &hello.prefixes,
                        roles: hello.roles,
                    },
                    unix_now,
                )?;
                let id = rec.id;
                self.core.upsert_node(rec, Vec::new());
                id
            }
            KeyStatus::Revoked(_) => {
                self.outbox.push((key, ToAgent::Close));
                return Ok(());
            }
        };
        if self.connected.insert(id, key).is_some() {
            self.core.handle_disconnect(id);
        }
        self.core.handle_connect(id);
        self.flush()
    }

    /// A frame on an established session of the node holding `key`.
    pub fn handle_frame(
        &mut self,
        key: PublicKeyBytes,
        msg: AgentMsg,
        unix_now: i64,
    ) -> Result<()> {
        let KeyStatus::Active(id) = self.core.lookup(&key) else {
            return Ok(());
        };
        if let AgentMsg::Ping(n) = msg {
            // The server's connection task answers pings itself.
            let pong = control::encode(&ControllerMsg::Pong(n))?;
            self.outbox.push((key, ToAgent::Frame(pong)));
            return Ok(());
        }
        if let AgentMsg::Report(report) = msg {
            let rows = self.core.plan_report(id, &report);
            while self.core.poll_dispute().is_some() {}
            if !rows.is_empty() {
                self.store.save_links(&rows, unix_now)?;
                self.core.apply_links(&rows);
            }
        }
        self.flush()
    }

    /// The connection of the node holding `key` ended.
    pub fn handle_gone(&mut self, key: PublicKeyBytes) {
        if let KeyStatus::Active(id) = self.core.lookup(&key)
            && self.connected.remove(&id).is_some()
        {
            self.core.handle_disconnect(id);
        }
    }

    /// An operator drains (or undrains) a node: committed, then applied.
    pub fn drain(&mut self, key: PublicKeyBytes, drained: bool) -> Result<()> {
        if let KeyStatus::Active(id) = self.core.lookup(&key) {
            self.store.set_drained(id, drained)?;
            self.core.set_drained(id, drained);
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        while let Some((id, out)) = self.core.poll_transmit() {
            let Some(key) = self.core.nodes().get(&id).map(|n| n.public_key) else {
                continue;
            };
            match out {
                Outgoing::Frame(msg) => {
                    for frame in encode_frames(&msg)? {
                        self.outbox.push((key, ToAgent::Frame(frame)));
                    }
                }
                Outgoing::Close => {
                    self.connected.remove(&id);
                    self.core.handle_disconnect(id);
                    self.outbox.push((key, ToAgent::Close));
                }
            }
        }
        Ok(())
    }

    /// Everything queued for agents since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<(PublicKeyBytes, ToAgent)> {
        std::mem::take(&mut self.outbox)
    }

    /// Routes for every active node computed from scratch over the core's
    /// current links and drains: `(source, destination) -> next hops`
    /// (primary first), by node id.
    pub fn routes_from_scratch(&self) -> BTreeMap<(u32, u32), Vec<u32>> {
        let mut router = Router::new();
        let active: Vec<u32> = self
            .core
            .nodes()
            .values()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| n.id)
            .collect();
        for id in &active {
            router.add_node(*id);
            router.set_drained(*id, self.core.nodes()[id].drained);
        }
        for l in self.core.links().values().filter(|l| l.up) {
            router.set_link(l.a, l.b, Metric(Controller::link_metric(l)));
        }
        router.compute_all();
        let mut out = BTreeMap::new();
        for src in &active {
            for (dst, hops) in router.routes(*src) {
                let via = std::iter::once(hops.primary)
                    .chain(hops.alternates)
                    .collect();
                out.insert((*src, dst), via);
            }
        }
        out
    }
}
