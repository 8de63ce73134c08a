//! [`AdminHandle`]: how the admin API talks to the hub. Each call sends a
//! job into the hub's queue and awaits its answer, so the API never touches
//! the store or the core itself.

use freimesh_proto::api;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::hub::{Hub, OperatorHashes, ToHub};
use crate::export::metrics::{FailoverStats, Histogram};
use crate::store::StoreError;

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
    operators: OperatorHashes,
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
        operators: OperatorHashes,
    ) -> Self {
        Self {
            tx,
            live,
            operators,
        }
    }

    /// Is `token` an operator's? Every stored hash is compared in full.
    pub fn authorized(&self, token: &str) -> bool {
        let hash = crate::store::operator_hash(token);
        let Ok(hashes) = self.operators.read() else {
            return false;
        };
        hashes.iter().fold(false, |found, h| same(h, &hash) | found)
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

    pub async fn metrics(&self) -> Result<MetricsSnapshot, OpError> {
        self.call(|hub| hub.metrics()).await
    }

    pub async fn drain(&self, id: u32, drained: bool) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.set_drained(id, drained)).await?
    }

    pub async fn approve(&self, id: u32) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.approve(id)).await?
    }

    pub async fn revoke(&self, id: u32) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.revoke(id)).await?
    }

    pub async fn set_role_approval(
        &self,
        id: u32,
        role: api::Role,
        approved: bool,
    ) -> Result<api::Node, OpError> {
        self.call(move |hub| hub.set_role_approval(id, role, approved))
            .await?
    }

    pub async fn create_token(&self, req: api::CreateToken) -> Result<api::CreatedToken, OpError> {
        self.call(move |hub| hub.create_token(&req)).await?
    }

    /// The newest event's seq (0 if none yet).
    pub async fn last_event_seq(&self) -> Result<u64, OpError> {
        self.call(|hub| hub.events.last_seq()).await
    }
}
