//! Committing an enrolment plan ([`HelloPlan`], decided in the core): the
//! store writes it implies in one transaction, then the core's mirror, the
//! events, and what the agent hears. A store failure is a refusal with the
//! store error's code (a join token that is invalid, expired or used ends
//! here), and a refusal writes nothing.

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::api::{self, EventKind};
use freimesh_proto::control::{ControllerMsg, ErrorCode, Hello, Roles};

use super::hub::HubCore;
use crate::clock::MS_PER_S;
use crate::core::{HelloPlan, RefreshNode};
use crate::records::{Enrollment, NodeRecord};

impl HubCore {
    /// Commits `plan` for `hello` on `session`; returns the node to
    /// welcome, or `None` when the session was refused or told Pending.
    pub(super) fn commit_hello(
        &mut self,
        session: u64,
        key: &PublicKeyBytes,
        hello: &Hello,
        plan: HelloPlan,
    ) -> Option<u32> {
        let now_s = self.now_ms / MS_PER_S;
        match plan {
            HelloPlan::Refuse { code, message } => {
                self.refuse(session, key, code, message);
                None
            }
            HelloPlan::Pending { node_id, new } => {
                if let Some(new) = new {
                    let added = self.store.add_pending(
                        *key,
                        &new.hostname,
                        &new.endpoints,
                        new.roles,
                        now_s,
                    );
                    match added {
                        Ok(rec) => {
                            tracing::info!(node = rec.id, %key, "node waits for approval");
                            self.emit(EventKind::Enrolled {
                                node: rec.id,
                                hostname: rec.hostname.clone(),
                            });
                            self.roles_awaiting(&rec, Roles::default());
                            self.timed(|core| core.upsert_node(rec, Vec::new()));
                        }
                        Err(e) => {
                            self.refuse(session, key, ErrorCode::Internal, e.to_string());
                            return None;
                        }
                    }
                }
                self.send_and_close(session, ControllerMsg::Pending { node_id });
                None
            }
            HelloPlan::Enrol { token } => {
                let enrol = Enrollment {
                    key: *key,
                    hostname: &hello.hostname,
                    endpoints: &hello.endpoints,
                    token: &token,
                    want_addresses: &hello.want_addresses,
                    prefixes: &hello.prefixes,
                    roles: hello.roles,
                };
                let enrolled = self
                    .store
                    .enroll(&enrol, now_s)
                    .and_then(|rec| Ok((self.store.prefixes_of(rec.id)?, rec)));
                match enrolled {
                    Ok((prefixes, rec)) => {
                        tracing::info!(node = rec.id, %key, hostname = %rec.hostname, addresses = ?rec.addresses, "node enrolled");
                        let id = rec.id;
                        self.telemetry.nodes.entry(id).or_default().first_seen_ms =
                            Some(now_s.saturating_mul(MS_PER_S));
                        self.emit(EventKind::Enrolled {
                            node: id,
                            hostname: rec.hostname.clone(),
                        });
                        self.roles_awaiting(&rec, Roles::default());
                        self.timed(|core| core.upsert_node(rec, prefixes));
                        Some(id)
                    }
                    Err(e) => {
                        self.refuse(session, key, e.code(), e.to_string());
                        None
                    }
                }
            }
            HelloPlan::Welcome { id, refresh } => {
                if refresh == RefreshNode::default() {
                    return Some(id);
                }
                let endpoints = refresh.endpoints.as_deref();
                let roles = refresh.roles.map(|r| r.now);
                match self.store.refresh_node(id, endpoints, roles) {
                    Ok(rec) => {
                        if let Some(r) = refresh.roles {
                            tracing::info!(node = id, requested = ?r.now, in_effect = ?rec.roles(), client_prefixes = ?rec.client_prefixes, "node roles changed");
                            self.roles_awaiting(&rec, r.before);
                        }
                        self.timed(|core| core.upsert_node(rec, Vec::new()));
                        Some(id)
                    }
                    Err(e) => {
                        self.refuse(session, key, e.code(), e.to_string());
                        None
                    }
                }
            }
        }
    }

    /// An event for each role `rec` requests without approval that it did
    /// not request `before` (so a reconnecting node raises none).
    fn roles_awaiting(&mut self, rec: &NodeRecord, before: Roles) {
        for role in api::Role::list(&rec.roles_awaiting()) {
            if role.is_in(&before) {
                continue;
            }
            tracing::warn!(node = rec.id, %role, "node requests a role no operator approved; it stays an ordinary node (freimesh-controller role approve {} {role})", rec.id);
            self.emit(EventKind::RoleAwaitsApproval { node: rec.id, role });
        }
    }
}
