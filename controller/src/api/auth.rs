//! Operator token check for every route, the unknown ones included: without
//! a valid token a client learns nothing, not even which paths exist.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use freimesh_proto::api::AUTH_SCHEME;

use super::Failure;
use crate::server::AdminHandle;

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case(AUTH_SCHEME)
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn require_operator(
    State(handle): State<AdminHandle>,
    req: Request,
    next: Next,
) -> Response {
    if bearer(&req).is_some_and(|t| handle.authorized(t)) {
        return next.run(req).await;
    }
    let mut resp = Failure::unauthorized().into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}
