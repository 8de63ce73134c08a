//! The hub task: owns the store and the core, takes every decision in
//! order. Enrolment outcomes are committed to the store before the agent is
//! told; a refusal writes nothing.

use std::collections::BTreeMap;

use freimesh_proto::NodeId;
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{AgentMsg, ControllerMsg, ErrorCode, ErrorMsg, Hello};
use tokio::sync::mpsc;

use super::{REGISTRY_POLL, ServerError};
use crate::admin::unix_now;
use crate::core::{Controller, KeyStatus, Outgoing};
use crate::store::{Enrollment, Store, StoreError};

/// Sender of one connection's outgoing frames.
pub type OutTx = mpsc::UnboundedSender<Outgoing>;

/// What connection tasks tell the hub.
#[derive(Debug)]
pub enum ToHub {
    /// A peer completed the handshake (its key is authenticated) and sent a
    /// Hello of our version.
    Hello {
        session: u64,
        key: PublicKeyBytes,
        hello: Hello,
        out: OutTx,
    },
    /// A later frame (Report) from an established session.
    Frame { session: u64, msg: AgentMsg },
    /// The connection closed.
    Gone { session: u64 },
}

#[derive(Debug)]
pub struct Hub {
    store: Store,
    core: Controller,
    data_version: i64,
    /// session → node id, for welcomed sessions.
    sessions: BTreeMap<u64, u32>,
    /// node id → (session, sender) of its current connection.
    conns: BTreeMap<u32, (u64, OutTx)>,
}

fn refuse(out: &OutTx, key: &PublicKeyBytes, code: ErrorCode, message: String) {
    tracing::warn!(%key, ?code, "refused: {message}");
    let _ = out.send(Outgoing::Frame(ControllerMsg::Error(ErrorMsg {
        code,
        message,
    })));
    let _ = out.send(Outgoing::Close);
}

impl Hub {
    pub fn new(store: Store, core: Controller) -> Result<Self, ServerError> {
        Ok(Self {
            data_version: store.data_version()?,
            store,
            core,
            sessions: BTreeMap::new(),
            conns: BTreeMap::new(),
        })
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<ToHub>) {
        let mut poll = tokio::time::interval(REGISTRY_POLL);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = poll.tick() => self.poll_registry(),
            }
            self.flush();
        }
    }

    fn handle(&mut self, msg: ToHub) {
        match msg {
            ToHub::Hello {
                session,
                key,
                hello,
                out,
            } => self.hello(session, key, hello, out),
            ToHub::Frame { session, msg } => {
                let Some(id) = self.sessions.get(&session).copied() else {
                    return;
                };
                match msg {
                    AgentMsg::Report(report) => {
                        let rows = self.core.plan_report(id, &report);
                        if rows.is_empty() {
                            return;
                        }
                        match self.store.save_links(&rows, unix_now()) {
                            Ok(()) => self.core.apply_links(&rows),
                            Err(e) => {
                                tracing::error!(node = id, error = %e, "saving links failed; report ignored")
                            }
                        }
                    }
                    AgentMsg::Hello(_) => {
                        tracing::warn!(node = id, "second Hello on one session");
                        self.core.push_error(
                            id,
                            ErrorCode::Malformed,
                            "Hello is only valid as the first frame",
                        );
                    }
                    AgentMsg::Ping(_) | AgentMsg::Pong(_) => {}
                    // Served by the admin API (issue 5); until then, dropped.
                    AgentMsg::Events(_) | AgentMsg::Traffic(_) => {}
                }
            }
            ToHub::Gone { session } => {
                if let Some(id) = self.sessions.remove(&session)
                    && self.conns.get(&id).is_some_and(|(s, _)| *s == session)
                {
                    self.conns.remove(&id);
                    self.core.handle_disconnect(id);
                    tracing::info!(node = id, "node disconnected");
                }
            }
        }
    }

    fn hello(&mut self, session: u64, key: PublicKeyBytes, hello: Hello, out: OutTx) {
        let id = match self.core.lookup(&key) {
            KeyStatus::Revoked(_) => {
                return refuse(
                    &out,
                    &key,
                    ErrorCode::Revoked,
                    format!("key {key} was revoked"),
                );
            }
            KeyStatus::Active(id) => {
                // Enrolled: the key alone authenticates; a token is ignored.
                if let Some(p) = self.core.unapproved_prefix(id, &hello.prefixes) {
                    return refuse(
                        &out,
                        &key,
                        ErrorCode::PrefixNotApproved,
                        format!(
                            "prefix {p} is not approved for this node (freimesh-controller prefix approve {id} {p})"
                        ),
                    );
                }
                if let Err(e) = self.refresh_endpoints(id, &hello) {
                    return refuse(&out, &key, ErrorCode::Internal, e.to_string());
                }
                id
            }
            status @ (KeyStatus::Unknown | KeyStatus::Pending(_)) => match &hello.join_token {
                Some(token) => {
                    let enrol = Enrollment {
                        key,
                        hostname: &hello.hostname,
                        endpoints: &hello.endpoints,
                        token,
                        want_addresses: &hello.want_addresses,
                        prefixes: &hello.prefixes,
                    };
                    match self.store.enroll(&enrol, unix_now()) {
                        Ok(rec) => {
                            tracing::info!(node = rec.id, %key, hostname = %rec.hostname, addresses = ?rec.addresses, "node enrolled");
                            let id = rec.id;
                            let prefixes = match self.store.prefixes() {
                                Ok(p) => p
                                    .into_iter()
                                    .filter(|(n, _)| *n == id)
                                    .map(|(_, p)| p)
                                    .collect(),
                                Err(e) => {
                                    return refuse(&out, &key, ErrorCode::Internal, e.to_string());
                                }
                            };
                            self.core.upsert_node(rec, prefixes);
                            id
                        }
                        Err(e) => return refuse(&out, &key, e.code(), e.to_string()),
                    }
                }
                None if self.core.settings().approval => {
                    if let KeyStatus::Unknown = status {
                        match self.store.add_pending(
                            key,
                            &hello.hostname,
                            &hello.endpoints,
                            unix_now(),
                        ) {
                            Ok(rec) => {
                                tracing::info!(node = rec.id, %key, "node waits for approval");
                                self.core.upsert_node(rec, Vec::new());
                            }
                            Err(e) => {
                                return refuse(&out, &key, ErrorCode::Internal, e.to_string());
                            }
                        }
                    }
                    let _ = out.send(Outgoing::Frame(ControllerMsg::Pending {
                        node_id: NodeId::of(&key),
                    }));
                    let _ = out.send(Outgoing::Close);
                    return;
                }
                None => {
                    return refuse(
                        &out,
                        &key,
                        ErrorCode::UnknownKey,
                        format!("unknown key {key}: not enrolled and no join token given"),
                    );
                }
            },
        };
        if let Some((old, old_out)) = self.conns.insert(id, (session, out)) {
            // The node reconnected before we noticed the old connection die.
            self.sessions.remove(&old);
            let _ = old_out.send(Outgoing::Close);
            self.core.handle_disconnect(id);
        }
        self.sessions.insert(session, id);
        tracing::info!(node = id, %key, "node connected");
        self.core.handle_connect(id);
    }

    fn refresh_endpoints(&mut self, id: u32, hello: &Hello) -> Result<(), StoreError> {
        let rec = self.store.node(id)?;
        if rec.endpoints != hello.endpoints {
            self.store.set_endpoints(id, &hello.endpoints)?;
            self.core.upsert_node(
                crate::store::NodeRecord {
                    endpoints: hello.endpoints.clone(),
                    ..rec
                },
                Vec::new(),
            );
        }
        Ok(())
    }

    fn poll_registry(&mut self) {
        let version = match self.store.data_version() {
            Ok(v) => v,
            Err(e) => return tracing::error!(error = %e, "checking the database failed"),
        };
        if version == self.data_version {
            return;
        }
        self.data_version = version;
        let snapshot = (|| {
            Ok::<_, StoreError>((
                self.store.nodes()?,
                self.store.prefixes()?,
                self.store.links()?,
            ))
        })();
        match snapshot {
            Ok((nodes, prefixes, links)) => {
                tracing::info!("registry changed; resynchronising nodes");
                self.core.handle_registry(nodes, prefixes, links);
            }
            Err(e) => tracing::error!(error = %e, "reloading the registry failed"),
        }
    }

    fn flush(&mut self) {
        while let Some((id, out)) = self.core.poll_transmit() {
            let Some((session, tx)) = self.conns.get(&id) else {
                continue;
            };
            let close = out == Outgoing::Close;
            let _ = tx.send(out);
            if close {
                let session = *session;
                self.sessions.remove(&session);
                self.conns.remove(&id);
                self.core.handle_disconnect(id);
            }
        }
    }
}
