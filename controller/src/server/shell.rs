//! The hub task: the thin tokio shell around [`HubCore`]. It reads the
//! connections' messages and the admin API's requests, hands them to the
//! core with the wall-clock time, and carries the core's outputs: frames
//! into each session's bounded queue ([`OutTx`]), events to the live
//! streams, replies to the API.
//!
//! Connections and the admin API reach it through two queues; the hub
//! handles one message at a time from either, so there is still one writer
//! and one order of events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::api;
use freimesh_proto::control::{AgentMsg, Hello};
use tokio::sync::{broadcast, mpsc};

use super::REGISTRY_POLL;
use super::events::LIVE_BUFFER;
use super::hub::{HubCore, HubOutput};
use crate::clock::unix_now_ms;
use crate::core::Outgoing;
use crate::hub_api::AdminCall;

/// Sender of one connection's outgoing frames: bounded, never blocks the
/// hub; a full queue ends that session (see `server::queue`).
pub use super::queue::OutTx;

/// What connection tasks tell the hub.
#[derive(Debug)]
pub enum ToHub {
    /// A peer completed the handshake (its key is authenticated) and sent a
    /// Hello of our version.
    Hello {
        session: u64,
        /// The TCP peer: the source address approval mode budgets by.
        peer: SocketAddr,
        key: PublicKeyBytes,
        hello: Hello,
        /// The relay its connection came through (relay preamble).
        relay: Option<PublicKeyBytes>,
        out: OutTx,
    },
    /// A later frame (Report) from an established session.
    Frame { session: u64, msg: AgentMsg },
    /// The connection closed.
    Gone { session: u64 },
}

/// The hub task's state: the core and where its outputs go.
#[derive(Debug)]
pub struct Hub {
    core: HubCore,
    /// session → its connection's queue, from Hello until Gone or Close.
    outs: BTreeMap<u64, OutTx>,
    live: broadcast::Sender<api::Event>,
}

impl Hub {
    pub fn new(core: HubCore) -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Self {
            core,
            outs: BTreeMap::new(),
            live,
        }
    }

    pub fn core(&self) -> &HubCore {
        &self.core
    }

    /// A sender for API streams to subscribe from.
    pub fn live_events(&self) -> broadcast::Sender<api::Event> {
        self.live.clone()
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<ToHub>,
        mut admin: mpsc::Receiver<AdminCall>,
    ) {
        let mut poll = tokio::time::interval(REGISTRY_POLL);
        loop {
            let start = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                Some(call) = admin.recv() => {
                    let start = Instant::now();
                    let reply = self.core.handle_admin(call.request, unix_now_ms());
                    // An API client that went away is no error.
                    let _ = call.reply.send(reply);
                    start
                }
                _ = poll.tick() => {
                    let start = Instant::now();
                    self.core.handle_tick(unix_now_ms());
                    start
                }
            };
            self.core.handle_step_time(start.elapsed());
            self.carry_outputs();
        }
    }

    /// Hands one connection message to the core; returns when it started.
    fn handle(&mut self, msg: ToHub) -> Instant {
        let start = Instant::now();
        let now_ms = unix_now_ms();
        match msg {
            ToHub::Hello {
                session,
                peer,
                key,
                hello,
                relay,
                out,
            } => {
                self.outs.insert(session, out);
                self.core
                    .handle_hello_via(session, peer, key, hello, relay, now_ms);
            }
            ToHub::Frame { session, msg } => self.core.handle_agent_msg(session, msg, now_ms),
            ToHub::Gone { session } => {
                self.outs.remove(&session);
                self.core.handle_gone(session, now_ms);
            }
        }
        start
    }

    fn carry_outputs(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                HubOutput::Transmit { session, msg } => {
                    if let Some(tx) = self.outs.get(&session) {
                        // A full queue ends the session on its own.
                        let _ = tx.send(Outgoing::Frame(msg));
                    }
                }
                HubOutput::Close { session } => {
                    if let Some(tx) = self.outs.remove(&session) {
                        let _ = tx.send(Outgoing::Close);
                    }
                }
            }
        }
        while let Some(event) = self.core.poll_event() {
            // No subscriber is not an error.
            let _ = self.live.send(event);
        }
    }
}
