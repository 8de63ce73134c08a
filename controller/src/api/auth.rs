//! Operator token check for every route, the unknown ones included: without
//! a valid token a client learns nothing, not even which paths exist.
//!
//! A `read` token may only read (GET and HEAD: every view, the event
//! stream, `/metrics`, the meshviewer export); anything else is refused
//! with 403. An expired token is refused like an unknown one (401), with a
//! message saying it expired. The operator's name travels with the request
//! ([`Operator`]) so that actions record who asked.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use freimesh_proto::api::AUTH_SCHEME;

use super::Failure;
use crate::clock::unix_now;
use crate::hub_api::{AdminHandle, Authorization};
use crate::store::{OperatorScope, operator_hash};

/// The operator a request runs for, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    /// The token's hash: event streams check it again while they run.
    pub token_hash: [u8; 32],
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case(AUTH_SCHEME)
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Requests a `read` token may make.
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn unauthorized(failure: Failure) -> Response {
    let mut resp = failure.into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

pub async fn require_operator(
    State(handle): State<AdminHandle>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(&req) else {
        return unauthorized(Failure::unauthorized());
    };
    let token_hash = operator_hash(token);
    match handle.authorize_hash(&token_hash, unix_now()) {
        Authorization::Unknown => unauthorized(Failure::unauthorized()),
        Authorization::Expired { name } => {
            tracing::info!(operator = %name, "admin API: expired operator token refused");
            unauthorized(Failure::expired())
        }
        Authorization::Granted { name, scope } => {
            if scope == OperatorScope::Read && !is_read(req.method()) {
                return Failure::forbidden(format!(
                    "operator {name:?} has a read-only token; {} needs scope full",
                    req.method()
                ))
                .into_response();
            }
            req.extensions_mut().insert(Operator { name, token_hash });
            next.run(req).await
        }
    }
}
