//! Every failure answers with a status and an [`ApiError`] body; nothing
//! else (no stack, no SQL, no token) reaches the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use freimesh_proto::api::ApiError;

use crate::hub_api::OpError;

/// A failed request: status, machine-readable kind, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

impl Failure {
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "unauthorized",
            message: "a valid operator token is required (Authorization: Bearer <token>)".into(),
        }
    }

    pub fn expired() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "unauthorized",
            message: "this operator token has expired; ask for a new one (freimesh-controller operator add)".into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            error: "forbidden",
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "bad-request",
            message: message.into(),
        }
    }

    /// The server is at a limit (e.g. open event streams): retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "unavailable",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            error: "not-found",
            message: message.into(),
        }
    }
}

impl From<OpError> for Failure {
    fn from(e: OpError) -> Self {
        let (status, error) = match &e {
            OpError::NoSuchNode(_) => (StatusCode::NOT_FOUND, "not-found"),
            OpError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            OpError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            OpError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "internal"),
            OpError::Store(_) | OpError::WrongReply(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let message = if let OpError::Store(_) | OpError::WrongReply(_) = &e {
            let inner = &e;
            // The detail goes to the log, not to the client.
            tracing::error!(error = %inner, "admin API request failed");
            "the controller failed to complete the request; see its log".to_owned()
        } else {
            e.to_string()
        };
        Self {
            status,
            error,
            message,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = ApiError {
            error: self.error.to_owned(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}
