//! One function per endpoint (`docs/api.md`). Each asks the hub for a
//! snapshot or an action and shapes the answer; input is parsed here so a
//! bad request is refused before the hub sees it.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use freimesh_proto::api;
use serde::Deserialize;

use super::Failure;
use super::auth::Operator;
use crate::clock::unix_now_ms;
use crate::export::{meshviewer, metrics};
use crate::hub_api::AdminHandle;
use crate::routing::redundancy as analysis;

type Answer<T> = Result<Json<T>, Failure>;

/// Events one `GET /events` returns unless `limit` says otherwise.
pub const DEFAULT_EVENT_LIMIT: u32 = 100;
/// The most events one `GET /events` returns.
pub const MAX_EVENT_LIMIT: u32 = 1_000;

fn node_id(path: Result<Path<String>, PathRejection>) -> Result<u32, Failure> {
    let Path(text) = path.map_err(|e| Failure::bad_request(e.body_text()))?;
    text.parse()
        .map_err(|_| Failure::bad_request(format!("node id {text:?} is not a number")))
}

pub async fn overview(State(h): State<AdminHandle>) -> Answer<api::Overview> {
    let snap = h.overview().await?;
    let mut overview = snap.overview;
    let red = analysis::redundancy(&snap.nodes, &snap.links);
    let hostname = |id: u32| {
        snap.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.hostname.as_str())
            .unwrap_or("?")
    };
    for c in &red.nodes {
        overview.alerts.push(api::Alert {
            severity: if c.prefixes_cut.is_empty() {
                api::Severity::Warning
            } else {
                api::Severity::Critical
            },
            kind: "single-point-of-failure".into(),
            node: Some(c.node),
            peer: None,
            message: format!(
                "a failure of node {} ({}) would cut off {} node(s)",
                c.node,
                c.hostname,
                c.cuts_off.len()
            ),
        });
    }
    for c in &red.links {
        overview.alerts.push(api::Alert {
            severity: if c.prefixes_cut.is_empty() {
                api::Severity::Warning
            } else {
                api::Severity::Critical
            },
            kind: "single-point-of-failure".into(),
            node: Some(c.a),
            peer: Some(c.b),
            message: format!(
                "a failure of link {} ({}) – {} ({}) would cut off {} node(s)",
                c.a,
                hostname(c.a),
                c.b,
                hostname(c.b),
                c.cuts_off.len()
            ),
        });
    }
    // Most severe first; within a severity, the order they were found.
    overview.alerts.sort_by_key(|a| a.severity);
    Ok(Json(overview))
}

pub async fn nodes(State(h): State<AdminHandle>) -> Answer<Vec<api::Node>> {
    Ok(Json(h.nodes().await?))
}

pub async fn node(
    State(h): State<AdminHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Answer<api::NodeDetail> {
    Ok(Json(h.node(node_id(path)?).await?))
}

pub async fn routes(
    State(h): State<AdminHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Answer<Vec<api::Route>> {
    Ok(Json(h.routes(node_id(path)?).await?))
}

pub async fn drain(
    State(h): State<AdminHandle>,
    Extension(op): Extension<Operator>,
    path: Result<Path<String>, PathRejection>,
) -> Answer<api::ActionResult> {
    Ok(Json(h.drain(node_id(path)?, true, op.name).await?))
}

pub async fn undrain(
    State(h): State<AdminHandle>,
    Extension(op): Extension<Operator>,
    path: Result<Path<String>, PathRejection>,
) -> Answer<api::ActionResult> {
    Ok(Json(h.drain(node_id(path)?, false, op.name).await?))
}

pub async fn approve(
    State(h): State<AdminHandle>,
    Extension(op): Extension<Operator>,
    path: Result<Path<String>, PathRejection>,
) -> Answer<api::ActionResult> {
    Ok(Json(h.approve(node_id(path)?, op.name).await?))
}

pub async fn revoke(
    State(h): State<AdminHandle>,
    Extension(op): Extension<Operator>,
    path: Result<Path<String>, PathRejection>,
) -> Answer<api::ActionResult> {
    Ok(Json(h.revoke(node_id(path)?, op.name).await?))
}

/// `POST /nodes/{id}/roles` with `{"role": "gateway", "approved": true}`.
pub async fn roles(
    State(h): State<AdminHandle>,
    Extension(op): Extension<Operator>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Answer<api::ActionResult> {
    let id = node_id(path)?;
    let req: api::RoleChange = serde_json::from_slice(&body)
        .map_err(|e| Failure::bad_request(format!("request body: {e}")))?;
    Ok(Json(
        h.set_role_approval(id, req.role, req.approved, op.name)
            .await?,
    ))
}

pub async fn links(State(h): State<AdminHandle>) -> Answer<Vec<api::Link>> {
    Ok(Json(h.links().await?))
}

pub async fn gateways(State(h): State<AdminHandle>) -> Answer<Vec<api::Gateway>> {
    Ok(Json(h.gateways().await?))
}

pub async fn sites(State(h): State<AdminHandle>) -> Answer<Vec<api::Site>> {
    Ok(Json(h.sites().await?))
}

pub async fn tokens(State(h): State<AdminHandle>) -> Answer<Vec<api::Token>> {
    Ok(Json(h.tokens().await?))
}

/// `POST /tokens`: the body is parsed here, so malformed JSON is a 400 with
/// serde's words for what is wrong.
pub async fn create_token(
    State(h): State<AdminHandle>,
    Extension(op): Extension<Operator>,
    body: Bytes,
) -> Response {
    let req: api::CreateToken = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return Failure::bad_request(format!("request body: {e}")).into_response(),
    };
    match h.create_token(req, op.name).await {
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(e) => Failure::from(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    since: Option<u64>,
    limit: Option<u32>,
}

/// `since` and a checked `limit` of an events query.
fn page(query: Result<Query<EventsQuery>, QueryRejection>) -> Result<(u64, u32), Failure> {
    let Query(q) = query.map_err(|e| {
        Failure::bad_request(format!(
            "{} (since and limit are non-negative integers)",
            e.body_text()
        ))
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_EVENT_LIMIT);
    if !(1..=MAX_EVENT_LIMIT).contains(&limit) {
        return Err(Failure::bad_request(format!(
            "limit {limit}: must be 1 to {MAX_EVENT_LIMIT}"
        )));
    }
    Ok((q.since.unwrap_or(0), limit))
}

pub async fn events(
    State(h): State<AdminHandle>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Answer<Vec<api::Event>> {
    let (since, limit) = page(query)?;
    Ok(Json(h.events_since(since, limit).await?))
}

/// `GET /audit`: the audit log (enrolments, approvals, revocations, join
/// tokens, operators), never pruned; paged like `/events`.
pub async fn audit(
    State(h): State<AdminHandle>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Answer<Vec<api::Event>> {
    let (since, limit) = page(query)?;
    Ok(Json(h.audit_since(since, limit).await?))
}

pub async fn redundancy(State(h): State<AdminHandle>) -> Answer<api::Redundancy> {
    let (nodes, links) = h.graph().await?;
    Ok(Json(analysis::redundancy(&nodes, &links)))
}

pub async fn meshviewer(State(h): State<AdminHandle>) -> Answer<meshviewer::Meshviewer> {
    let map = h.map().await?;
    Ok(Json(meshviewer::meshviewer(
        &map.nodes,
        &map.links,
        &map.gateways,
        unix_now_ms(),
    )))
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub async fn metrics(State(h): State<AdminHandle>) -> Result<Response, Failure> {
    let snap = h.metrics().await?;
    let text = metrics::render(&metrics::MetricsInput {
        nodes: &snap.nodes,
        links: &snap.links,
        gateways: &snap.gateways,
        failovers: &snap.failovers,
        route_computation_seconds: &snap.computation,
        sessions: snap.sessions,
        events_total: snap.events_total,
        started_at_ms: snap.started_at_ms,
        bounded: snap.bounded,
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn not_found() -> Failure {
    Failure::not_found("no such endpoint (see docs/api.md)")
}
