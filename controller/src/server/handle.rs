//! [`AdminHandle`]: how the admin API talks to the hub. Each call sends a
//! job into the hub's queue and awaits its answer, so the API never touches
//! the store or the core itself.

use freimesh_proto::api;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::hub::{Hub, OperatorList, ToHub};
use crate::export::metrics::{BoundedCounts, FailoverStats, Histogram};
use crate::store::{OperatorScope, StoreError, operator_hash};

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("no node with id {0}")]
    NoSuchNode(u32),
    /// The action does not apply to the node as it is.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the controller is shutting down")]
    Unavailable,
}

/// What `/metrics` renders, copied out of the hub.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub nodes: Vec<api::Node>,
    pub links: Vec<api::Link>,
    pub gateways: Vec<api::Gateway>,
    pub failovers: FailoverStats,
    pub computation: Histogram,
    pub sessions: u32,
    pub events_total: u64,
    pub started_at_ms: i64,
    pub bounded: BoundedCounts,
}

/// The overview as the hub sees it plus the lists the API needs to finish
/// it (single points of failure).
#[derive(Debug, Clone)]
pub struct OverviewSnapshot {
    pub overview: api::Overview,
    pub nodes: Vec<api::Node>,
    pub links: Vec<api::Link>,
}

/// A cloneable handle on a running hub.
#[derive(Debug, Clone)]
pub struct AdminHandle {
    tx: mpsc::Sender<ToHub>,
    live: broadcast::Sender<api::Event>,
    operators: OperatorList,
}

/// What an operator token may do right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// No operator has this token (or it was removed).
    Unknown,
    /// The operator's token expired.
    Expired {
        name: String,
    },
    Granted {
        name: String,
        scope: OperatorScope,
    },
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of a guessed hash was right.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminHandle {
    pub(super) fn new(
        tx: mpsc::Sender<ToHub>,
        live: broadcast::Sender<api::Event>,
        operators: OperatorList,
    ) -> Self {
        Self {
            tx,
            live,
            operators,
        }
    }

    /// Whose is `token`, and may it be used at `now` (Unix seconds)?
    pub fn authorize(&self, token: &str, now: i64) -> Authorization {
        self.authorize_hash(&operator_hash(token), now)
    }

    /// [`Self::authorize`] for a token's hash: event streams keep the hash
    /// and check it again while they run. Every stored hash is compared in
    /// full.
    pub fn authorize_hash(&self, hash: &[u8; 32], now: i64) -> Authorization {
        let Ok(operators) = self.operators.read() else {
            return Authorization::Unknown;
        };
        let mut found = None;
        for op in operators.iter() {
            if same(&op.hash, hash) {
                found = Some(op);
            }
        }
        match found {
            None => Authorization::Unknown,
            Some(op) if op.expired(now) => Authorization::Expired {
                name: op.name.clone(),
            },
            Some(op) => Authorization::Granted {
                name: op.name.clone(),
                scope: op.scope,
            },
        }
    }

    /// Live events from now on (see [`Self::events_since`] for the past).
    pub fn subscribe(&self) -> broadcast::Receiver<api::Event> {
        self.live.subscribe()
    }

    async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Hub) -> T + Send + 'static,
    ) -> Result<T, OpError> {
        let (tx, rx) = oneshot::channel();
        let job = super::hub::AdminJob(Box::new(move |hub| {
            let _ = tx.send(job(hub));
        }));
        self.tx
            .send(ToHub::Admin(job))
            .await
            .map_err(|_| OpError::Unavailable)?;
        rx.await.map_err(|_| OpError::Unavailable)
    }

    pub async fn overview(&self) -> Result<OverviewSnapshot, OpError> {
        self.call(|hub| {
            let nodes = hub.nodes();
            let links = hub.links(None);
            let overview = hub.overview(&nodes, &links)?;
            Ok(OverviewSnapshot {
                overview,
                nodes,
                links,
            })
        })
        .await?
    }

    pub async fn nodes(&self) -> Result<Vec<api::Node>, OpError> {
        self.call(|hub| hub.nodes()).await
    }

    pub async fn node(&self, id: u32) -> Result<api::NodeDetail, OpError> {
        self.call(move |hub| hub.node_detail(id)).await?
    }

    pub async fn routes(&self, id: u32) -> Result<Vec<api::Route>, OpError> {
        self.call(move |hub| hub.routes(id)).await?
    }

    pub async fn links(&self) -> Result<Vec<api::Link>, OpError> {
        self.call(|hub| hub.links(None)).await
    }

    /// Nodes and links together, from one instant.
    pub async fn graph(&self) -> Result<(Vec<api::Node>, Vec<api::Link>), OpError> {
        self.call(|hub| (hub.nodes(), hub.links(None))).await
    }

    pub async fn gateways(&self) -> Result<Vec<api::Gateway>, OpError> {
        self.call(|hub| hub.gateways()).await
    }

    pub async fn sites(&self) -> Result<Vec<api::Site>, OpError> {
        self.call(|hub| hub.sites()).await
    }

    pub async fn tokens(&self) -> Result<Vec<api::Token>, OpError> {
        self.call(|hub| hub.tokens()).await?
    }

    /// Stored events with `seq > since`, oldest first.
    pub async fn events_since(&self, since: u64, limit: u32) -> Result<Vec<api::Event>, OpError> {
        self.call(move |hub| hub.events_since(since, limit)).await?
    }

    /// Stored audit events with `seq > since`, oldest first.
    pub async fn audit_since(&self, since: u64, limit: u32) -> Result<Vec<api::Event>, OpError> {
        self.call(move |hub| hub.audit_since(since, limit)).await?
    }

    pub async fn metrics(&self) -> Result<MetricsSnapshot, OpError> {
        self.call(|hub| hub.metrics()).await
    }

    /// The actions below name the operator `by` who asked: their events
    /// carry it.
    pub async fn drain(&self, id: u32, drained: bool, by: String) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.set_drained(id, drained, &by))
            .await?
    }

    pub async fn approve(&self, id: u32, by: String) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.approve(id, &by)).await?
    }

    pub async fn revoke(&self, id: u32, by: String) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.revoke(id, &by)).await?
    }

    pub async fn set_role_approval(
        &self,
        id: u32,
        role: api::Role,
        approved: bool,
        by: String,
    ) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.set_role_approval(id, role, approved, &by))
            .await?
    }

    pub async fn create_token(
        &self,
        req: api::CreateToken,
        by: String,
    ) -> Result<api::CreatedToken, OpError> {
        self.call(move |hub| hub.create_token(&req, &by)).await?
    }

    /// The newest event's seq (0 if none yet).
    pub async fn last_event_seq(&self) -> Result<u64, OpError> {
        self.call(|hub| hub.events.last_seq()).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;
    use crate::store::OperatorCredential;

    fn handle_with(operators: Vec<OperatorCredential>) -> AdminHandle {
        let (tx, _rx) = mpsc::channel(1);
        let (live, _) = broadcast::channel(1);
        AdminHandle::new(tx, live, Arc::new(RwLock::new(operators)))
    }

    fn operator(
        name: &str,
        token: &str,
        scope: OperatorScope,
        expires_at: Option<i64>,
    ) -> OperatorCredential {
        OperatorCredential {
            name: name.into(),
            hash: operator_hash(token),
            scope,
            expires_at,
        }
    }

    #[test]
    fn a_token_is_granted_with_its_scope_refused_when_expired_and_unknown_otherwise() {
        let handle = handle_with(vec![
            operator("grafana", "fmo1-read", OperatorScope::Read, None),
            operator("contractor", "fmo1-temp", OperatorScope::Full, Some(1_000)),
        ]);
        assert_eq!(
            handle.authorize("fmo1-read", 5_000),
            Authorization::Granted {
                name: "grafana".into(),
                scope: OperatorScope::Read
            }
        );
        assert_eq!(
            handle.authorize("fmo1-temp", 999),
            Authorization::Granted {
                name: "contractor".into(),
                scope: OperatorScope::Full
            }
        );
        assert_eq!(
            handle.authorize("fmo1-temp", 1_000),
            Authorization::Expired {
                name: "contractor".into()
            }
        );
        assert_eq!(handle.authorize("fmo1-guess", 0), Authorization::Unknown);
    }

    #[test]
    fn a_removed_operator_is_unknown_at_once() {
        let list = Arc::new(RwLock::new(vec![operator(
            "night-shift",
            "fmo1-n",
            OperatorScope::Full,
            None,
        )]));
        let (tx, _rx) = mpsc::channel(1);
        let (live, _) = broadcast::channel(1);
        let handle = AdminHandle::new(tx, live, list.clone());
        let hash = operator_hash("fmo1-n");
        assert!(matches!(
            handle.authorize_hash(&hash, 0),
            Authorization::Granted { .. }
        ));
        list.write().expect("lock").clear();
        assert_eq!(handle.authorize_hash(&hash, 0), Authorization::Unknown);
    }
}
