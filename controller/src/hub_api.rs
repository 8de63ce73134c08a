//! What the admin API and the hub say to each other: typed requests
//! ([`AdminRequest`]) and replies ([`AdminReply`]), and the
//! [`AdminHandle`] the API holds. Neither side owns this module, so the API
//! does not import the server and the server does not import the API's
//! handlers (the server only starts the API).
//!
//! Each call sends one [`AdminCall`] into the hub's admin queue and awaits
//! its answer, so the API never touches the store or the core itself.

use std::sync::{Arc, RwLock};

use freimesh_proto::api;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::export::metrics::{BoundedCounts, FailoverStats, Histogram};
use crate::store::{OperatorCredential, OperatorScope, StoreError, operator_hash};

/// The operators (token hash, scope, expiry) the API accepts, shared with
/// it and refreshed by the hub when the CLI changes them.
pub type OperatorList = Arc<RwLock<Vec<OperatorCredential>>>;

/// One admin request. Reads are answered from the hub's state at that
/// moment; actions (`by` names the operator, carried by their events)
/// write the store, update the core and raise events in one step.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminRequest {
    /// [`AdminReply::Overview`].
    Overview,
    /// [`AdminReply::Nodes`].
    Nodes,
    /// [`AdminReply::NodeDetail`].
    NodeDetail(u32),
    /// [`AdminReply::Routes`].
    Routes(u32),
    /// [`AdminReply::Links`].
    Links,
    /// Nodes and links from one instant: [`AdminReply::Graph`].
    Graph,
    /// Nodes, links and default routes from one instant, for the
    /// meshviewer export: [`AdminReply::Map`].
    Map,
    /// [`AdminReply::Gateways`].
    Gateways,
    /// [`AdminReply::Sites`].
    Sites,
    /// [`AdminReply::Tokens`].
    Tokens,
    /// Stored events with `seq > since`, oldest first: [`AdminReply::Events`].
    EventsSince { since: u64, limit: u32 },
    /// Stored audit events with `seq > since`: [`AdminReply::Events`].
    AuditSince { since: u64, limit: u32 },
    /// [`AdminReply::Metrics`].
    Metrics,
    /// The newest event's seq: [`AdminReply::LastEventSeq`].
    LastEventSeq,
    /// Drain or undrain: [`AdminReply::Node`].
    Drain { id: u32, drained: bool, by: String },
    /// Approve a pending node: [`AdminReply::Node`].
    Approve { id: u32, by: String },
    /// Revoke: [`AdminReply::Node`].
    Revoke { id: u32, by: String },
    /// Approve or withdraw a role: [`AdminReply::Node`].
    SetRoleApproval {
        id: u32,
        role: api::Role,
        approved: bool,
        by: String,
    },
    /// A one-time join token: [`AdminReply::CreatedToken`].
    CreateToken { req: api::CreateToken, by: String },
}

impl AdminRequest {
    /// Whether this action may change a node's state, roles or prefixes
    /// (and so its credential or the revocation list).
    pub fn changes_nodes(&self) -> bool {
        matches!(
            self,
            Self::Drain { .. }
                | Self::Approve { .. }
                | Self::Revoke { .. }
                | Self::SetRoleApproval { .. }
        )
    }
}

/// What the meshviewer export needs, from one instant.
#[derive(Debug, Clone)]
pub struct MapSnapshot {
    pub nodes: Vec<api::Node>,
    pub links: Vec<api::Link>,
    /// Node id → its current default route.
    pub gateways: std::collections::BTreeMap<u32, crate::export::meshviewer::DefaultGateway>,
}

/// The answer to one [`AdminRequest`] (each request's doc names its variant).
#[derive(Debug, Clone)]
pub enum AdminReply {
    Overview(Box<OverviewSnapshot>),
    Nodes(Vec<api::Node>),
    Node(Box<api::Node>),
    NodeDetail(Box<api::NodeDetail>),
    Routes(Vec<api::Route>),
    Links(Vec<api::Link>),
    Graph(Vec<api::Node>, Vec<api::Link>),
    Map(Box<MapSnapshot>),
    Gateways(Vec<api::Gateway>),
    Sites(Vec<api::Site>),
    Tokens(Vec<api::Token>),
    Events(Vec<api::Event>),
    Metrics(Box<MetricsSnapshot>),
    LastEventSeq(u64),
    CreatedToken(api::CreatedToken),
}

/// A request on its way to the hub, with where its answer goes.
#[derive(Debug)]
pub struct AdminCall {
    pub request: AdminRequest,
    pub reply: oneshot::Sender<Result<AdminReply, OpError>>,
}

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
    /// The hub answered with a reply of another kind: a bug.
    #[error("the controller answered {0} with the wrong kind of reply")]
    WrongReply(&'static str),
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
    tx: mpsc::Sender<AdminCall>,
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
    /// `tx` reaches the hub's admin queue, `live` is its event broadcast.
    pub fn new(
        tx: mpsc::Sender<AdminCall>,
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

    /// Sends `request` to the hub and awaits its reply.
    pub async fn call(&self, request: AdminRequest) -> Result<AdminReply, OpError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(AdminCall { request, reply })
            .await
            .map_err(|_| OpError::Unavailable)?;
        rx.await.map_err(|_| OpError::Unavailable)?
    }

    pub async fn overview(&self) -> Result<OverviewSnapshot, OpError> {
        match self.call(AdminRequest::Overview).await? {
            AdminReply::Overview(o) => Ok(*o),
            _ => Err(OpError::WrongReply("overview")),
        }
    }

    pub async fn nodes(&self) -> Result<Vec<api::Node>, OpError> {
        match self.call(AdminRequest::Nodes).await? {
            AdminReply::Nodes(n) => Ok(n),
            _ => Err(OpError::WrongReply("nodes")),
        }
    }

    pub async fn node(&self, id: u32) -> Result<api::NodeDetail, OpError> {
        match self.call(AdminRequest::NodeDetail(id)).await? {
            AdminReply::NodeDetail(n) => Ok(*n),
            _ => Err(OpError::WrongReply("node")),
        }
    }

    pub async fn routes(&self, id: u32) -> Result<Vec<api::Route>, OpError> {
        match self.call(AdminRequest::Routes(id)).await? {
            AdminReply::Routes(r) => Ok(r),
            _ => Err(OpError::WrongReply("routes")),
        }
    }

    pub async fn links(&self) -> Result<Vec<api::Link>, OpError> {
        match self.call(AdminRequest::Links).await? {
            AdminReply::Links(l) => Ok(l),
            _ => Err(OpError::WrongReply("links")),
        }
    }

    /// Nodes, links and default routes together, from one instant.
    pub async fn map(&self) -> Result<MapSnapshot, OpError> {
        match self.call(AdminRequest::Map).await? {
            AdminReply::Map(m) => Ok(*m),
            _ => Err(OpError::WrongReply("map")),
        }
    }

    /// Nodes and links together, from one instant.
    pub async fn graph(&self) -> Result<(Vec<api::Node>, Vec<api::Link>), OpError> {
        match self.call(AdminRequest::Graph).await? {
            AdminReply::Graph(n, l) => Ok((n, l)),
            _ => Err(OpError::WrongReply("graph")),
        }
    }

    pub async fn gateways(&self) -> Result<Vec<api::Gateway>, OpError> {
        match self.call(AdminRequest::Gateways).await? {
            AdminReply::Gateways(g) => Ok(g),
            _ => Err(OpError::WrongReply("gateways")),
        }
    }

    pub async fn sites(&self) -> Result<Vec<api::Site>, OpError> {
        match self.call(AdminRequest::Sites).await? {
            AdminReply::Sites(s) => Ok(s),
            _ => Err(OpError::WrongReply("sites")),
        }
    }

    pub async fn tokens(&self) -> Result<Vec<api::Token>, OpError> {
        match self.call(AdminRequest::Tokens).await? {
            AdminReply::Tokens(t) => Ok(t),
            _ => Err(OpError::WrongReply("tokens")),
        }
    }

    /// Stored events with `seq > since`, oldest first.
    pub async fn events_since(&self, since: u64, limit: u32) -> Result<Vec<api::Event>, OpError> {
        match self
            .call(AdminRequest::EventsSince { since, limit })
            .await?
        {
            AdminReply::Events(e) => Ok(e),
            _ => Err(OpError::WrongReply("events")),
        }
    }

    /// Stored audit events with `seq > since`, oldest first.
    pub async fn audit_since(&self, since: u64, limit: u32) -> Result<Vec<api::Event>, OpError> {
        match self.call(AdminRequest::AuditSince { since, limit }).await? {
            AdminReply::Events(e) => Ok(e),
            _ => Err(OpError::WrongReply("audit")),
        }
    }

    pub async fn metrics(&self) -> Result<MetricsSnapshot, OpError> {
        match self.call(AdminRequest::Metrics).await? {
            AdminReply::Metrics(m) => Ok(*m),
            _ => Err(OpError::WrongReply("metrics")),
        }
    }

    /// The actions below name the operator `by` who asked: their events
    /// carry it.
    pub async fn drain(&self, id: u32, drained: bool, by: String) -> Result<api::Node, OpError> {
        self.node_action(AdminRequest::Drain { id, drained, by }, "drain")
            .await
    }

    pub async fn approve(&self, id: u32, by: String) -> Result<api::Node, OpError> {
        self.node_action(AdminRequest::Approve { id, by }, "approve")
            .await
    }

    pub async fn revoke(&self, id: u32, by: String) -> Result<api::Node, OpError> {
        self.node_action(AdminRequest::Revoke { id, by }, "revoke")
            .await
    }

    pub async fn set_role_approval(
        &self,
        id: u32,
        role: api::Role,
        approved: bool,
        by: String,
    ) -> Result<api::Node, OpError> {
        let request = AdminRequest::SetRoleApproval {
            id,
            role,
            approved,
            by,
        };
        self.node_action(request, "role approval").await
    }

    async fn node_action(
        &self,
        request: AdminRequest,
        what: &'static str,
    ) -> Result<api::Node, OpError> {
        match self.call(request).await? {
            AdminReply::Node(n) => Ok(*n),
            _ => Err(OpError::WrongReply(what)),
        }
    }

    pub async fn create_token(
        &self,
        req: api::CreateToken,
        by: String,
    ) -> Result<api::CreatedToken, OpError> {
        match self.call(AdminRequest::CreateToken { req, by }).await? {
            AdminReply::CreatedToken(t) => Ok(t),
            _ => Err(OpError::WrongReply("create token")),
        }
    }

    /// The newest event's seq (0 if none yet).
    pub async fn last_event_seq(&self) -> Result<u64, OpError> {
        match self.call(AdminRequest::LastEventSeq).await? {
            AdminReply::LastEventSeq(s) => Ok(s),
            _ => Err(OpError::WrongReply("last event")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
