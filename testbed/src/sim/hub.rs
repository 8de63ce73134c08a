//! The controller side of the simulation: the controller's hub core
//! ([`HubCore`]: enrolment plans, the decision core, the registry in an
//! in-memory SQLite store, admin requests) driven the way its tokio shell
//! drives it. Frames leave encoded and chunked exactly as the server sends
//! them; pings are answered here, as the server's connection task does.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, anyhow};
use freimesh_controller::core::{Controller, KeyStatus};
use freimesh_controller::hub_api::AdminRequest;
use freimesh_controller::server::{HubConfig, HubCore, HubOutput};
use freimesh_controller::store::{MeshSettings, Store};
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{self, AgentMsg, ControllerMsg, Hello};

/// What goes to one agent connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToAgent {
    Frame(Vec<u8>),
    Close,
}

/// The hub core; see the module docs.
pub struct SimController {
    /// `None` only while restarting.
    hub: Option<HubCore>,
    /// Frames for agents, by session, in order.
    outbox: Vec<(u64, ToAgent)>,
    /// Events the hub raised (stored already; the simulator only counts
    /// them).
    pub events: u64,
}

impl std::fmt::Debug for SimController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimController")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl SimController {
    /// A fresh registry with one join token per node to come; returns the
    /// controller and the tokens.
    pub fn new(settings: &MeshSettings, tokens: usize, now_ms: i64) -> Result<(Self, Vec<String>)> {
        let mut store = Store::open_in_memory().context("opening the in-memory registry")?;
        store.init(settings).context("initialising the registry")?;
        let now = now_ms / 1000;
        let tokens = (0..tokens)
            .map(|_| store.create_token(now + 365 * 86_400, &[], now))
            .collect::<Result<Vec<_>, _>>()
            .context("creating join tokens")?;
        let hub = HubCore::new(store, HubConfig::default(), now_ms)?;
        Ok((
            Self {
                hub: Some(hub),
                outbox: Vec::new(),
                events: 0,
            },
            tokens,
        ))
    }

    fn hub(&mut self) -> Result<&mut HubCore> {
        self.hub
            .as_mut()
            .ok_or_else(|| anyhow!("the controller is restarting"))
    }

    /// The controller process restarts: every session is gone and the hub
    /// is rebuilt from its store, as at start-up.
    pub fn restart(&mut self, now_ms: i64) -> Result<()> {
        let store = self
            .hub
            .take()
            .ok_or_else(|| anyhow!("the controller is restarting"))?
            .into_store();
        self.hub = Some(HubCore::new(store, HubConfig::default(), now_ms)?);
        self.outbox.clear();
        Ok(())
    }

    /// The decision core, read-only.
    pub fn core(&self) -> &Controller {
        match &self.hub {
            Some(hub) => hub.controller(),
            None => unreachable!("the hub is only absent inside restart"),
        }
    }

    /// A connection's first frame.
    pub fn handle_hello(
        &mut self,
        session: u64,
        source: SocketAddr,
        key: PublicKeyBytes,
        hello: Hello,
        now_ms: i64,
    ) -> Result<()> {
        self.hub()?
            .handle_hello(session, source, key, hello, now_ms);
        self.flush()
    }

    /// A later frame on `session`.
    pub fn handle_agent_msg(&mut self, session: u64, msg: AgentMsg, now_ms: i64) -> Result<()> {
        if let AgentMsg::Ping(n) = msg {
            let pong = control::encode(&ControllerMsg::Pong(n))?;
            self.outbox.push((session, ToAgent::Frame(pong)));
            return Ok(());
        }
        self.hub()?.handle_agent_msg(session, msg, now_ms);
        self.flush()
    }

    /// The shell's periodic tick.
    pub fn handle_tick(&mut self, now_ms: i64) -> Result<()> {
        self.hub()?.handle_tick(now_ms);
        self.flush()
    }

    /// `session`'s connection ended.
    pub fn handle_gone(&mut self, session: u64, now_ms: i64) -> Result<()> {
        self.hub()?.handle_gone(session, now_ms);
        self.flush()
    }

    /// An operator drains (or undrains) the node holding `key` through the
    /// admin API.
    pub fn drain(&mut self, key: PublicKeyBytes, drained: bool, now_ms: i64) -> Result<()> {
        if let KeyStatus::Active(id) = self.core().lookup(&key) {
            self.hub()?
                .handle_admin(
                    AdminRequest::Drain {
                        id,
                        drained,
                        by: "sim".into(),
                    },
                    now_ms,
                )
                .map_err(|e| anyhow!("drain {id}: {e:?}"))?;
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        let hub = self.hub()?;
        let mut out = Vec::new();
        while let Some(o) = hub.poll_output() {
            out.push(o);
        }
        let mut events = 0;
        while hub.poll_event().is_some() {
            events += 1;
        }
        self.events += events;
        for o in out {
            match o {
                HubOutput::Transmit { session, msg } => {
                    for frame in control::encode_controller_frames(&msg)? {
                        self.outbox.push((session, ToAgent::Frame(frame)));
                    }
                }
                HubOutput::Close { session } => self.outbox.push((session, ToAgent::Close)),
            }
        }
        Ok(())
    }

    /// Everything queued for agents since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<(u64, ToAgent)> {
        std::mem::take(&mut self.outbox)
    }
}
