//! The one error type of the HTTP API and its JSON body
//! `{"error": {"code": "snake_case_code", "message": "human readable"}}`,
//! with `"field": "name"` when the error is about one request field
//! ([`ApiError::in_field`]). WebSocket `error` frames are built from the
//! same type (`hub::frames::api_error`), so both doors speak the same codes.
//!
//! Clients branch on `code` (and place errors by `field`), never on
//! `message`. Internal errors are logged with their cause and answered with
//! a generic message.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, not with this method (the routers' fallback).
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many requests, try again later")]
    RateLimited,
    /// A visitor sending messages faster than its rate (`message::rate`):
    /// code `rate_limited`, with how long until the next one is accepted.
    #[error("too many messages, slow down")]
    MessageRateLimited(std::time::Duration),
    #[error("{0}")]
    IdentityRequired(String),
    #[error("{0}")]
    InvalidIdentity(String),
    #[error("{0}")]
    Unavailable(String),
    /// 503 `unavailable` from a LAN host that handed the shop over: the
    /// error body's `successor` says where it went (docs/PROTOCOL.md,
    /// "LAN hosting").
    #[error("{message}")]
    Moved {
        message: String,
        successor: Box<MovedTo>,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// `error`, about one field of the request (a body member, a query
    /// parameter, a frame member): `field` in the body, so a form puts the
    /// message beside its input without reading the text. A nested field is
    /// a path: `business_hours.days[0]`.
    #[error("{error}")]
    Field {
        field: Cow<'static, str>,
        error: Box<ApiError>,
    },
}

impl ApiError {
    /// This error, naming the request field at fault (replacing any field
    /// named before).
    pub fn in_field(self, field: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Field {
            field: field.into(),
            error: Box::new(self.without_field()),
        }
    }

    /// The request field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Field { field, .. } => Some(field.as_ref()),
            _ => None,
        }
    }

    /// The error itself, whatever field it names.
    pub fn kind(&self) -> &ApiError {
        match self {
            ApiError::Field { error, .. } => error.kind(),
            other => other,
        }
    }

    fn without_field(self) -> ApiError {
        match self {
            ApiError::Field { error, .. } => error.without_field(),
            other => other,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Field { error, .. } => error.code(),
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RateLimited | ApiError::MessageRateLimited(_) => "rate_limited",
            ApiError::IdentityRequired(_) => "identity_required",
            ApiError::InvalidIdentity(_) => "invalid_identity",
            ApiError::Unavailable(_) | ApiError::Moved { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Field { error, .. } => error.status(),
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_)
            | ApiError::IdentityRequired(_)
            | ApiError::InvalidIdentity(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited | ApiError::MessageRateLimited(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) | ApiError::Moved { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(message.into())
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::PayloadTooLarge(message.into())
    }
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }
    /// A write refused for want of disk space: 503, retry later.
    pub fn disk_full() -> Self {
        ApiError::Unavailable("the server's disk is full; try again later".into())
    }

    /// The body as JSON text, for WebSocket error frames and responses alike.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field: self.field().map(str::to_owned),
                successor: match self.kind() {
                    ApiError::Moved { successor, .. } => Some((**successor).clone()),
                    _ => None,
                },
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
    /// The request field at fault; absent when the error is not about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub field: Option<String>,
    /// Where the shop went, on a LAN host that handed it over (503
    /// `unavailable`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub successor: Option<MovedTo>,
}

/// The new host of a shop that was handed over (docs/API.md §2.24).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MovedTo {
    /// The new host's device ID.
    pub device_id: String,
    /// Where it serves its LAN listener, when the handover said.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub address: Option<String>,
    /// The term the new host took.
    pub term: u64,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = self.kind() {
            tracing::error!(error = ?cause, "internal error");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self.kind(), ApiError::RateLimited) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        if let ApiError::MessageRateLimited(wait) = self.kind() {
            // Whole seconds, rounded up: never 0, which would invite a
            // client to retry at once.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds.max(1)),
            );
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        // SQLITE_FULL (13, in the low byte of the extended code): the
        // write is refused as a whole and SQLite stays consistent; once
        // there is room again the next write succeeds. Tell the client to
        // retry instead of reporting a bug.
        let full = error
            .as_database_error()
            .and_then(|e| e.code())
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == 13);
        if full {
            tracing::warn!(%error, "SQLite cannot write: the disk is full");
            return ApiError::disk_full();
        }
        ApiError::Internal(error.into())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
