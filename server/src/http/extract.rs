//! `Json` and `Query` extractors whose rejections speak the protocol's error
//! body: a body over the limit is 413 `payload_too_large`, anything
//! malformed (bad JSON, wrong type, missing field) 400 `bad_request`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large("request body too large");
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("expected a JSON body with Content-Type: application/json")
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

/// For `Option<Option<T>>` fields with `#[serde(default)]`: `None` when the
/// field is absent, `Some(None)` for an explicit `null` (e.g. "unassign").
pub fn explicit_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// For query parameters: an empty value (`?status=`) means "not given", as
/// clients that fill a form or a template send it. Enum-like values.
pub fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::IntoDeserializer;
    let text = <Option<String> as serde::Deserialize>::deserialize(deserializer)?;
    match text {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => {
            let value: serde::de::value::StringDeserializer<D::Error> = text.into_deserializer();
            T::deserialize(value).map(Some)
        }
    }
}

/// As [`empty_as_none`], for numbers (parsed with `FromStr`).
pub fn empty_as_none_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = <Option<String> as serde::Deserialize>::deserialize(deserializer)?;
    match text {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A page is fetched with `limit + 1` rows, so that one more row says there
/// is a next page: cuts `rows` to `limit` and returns the cursor of its last
/// row then (`None` on the last page).
pub fn cut_page<T>(
    rows: &mut Vec<T>,
    limit: u32,
    cursor: impl FnOnce(&T) -> String,
) -> Option<String> {
    let limit = limit as usize;
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Query {
        #[serde(default, deserialize_with = "empty_as_none")]
        status: Option<crate::tickets::TicketStatus>,
        #[serde(default, deserialize_with = "empty_as_none")]
        q: Option<String>,
        #[serde(default, deserialize_with = "empty_as_none_number")]
        after: Option<u64>,
    }

    fn parse(query: &str) -> Result<Query, String> {
        let uri: axum::http::Uri = format!("/x?{query}").parse().map_err(|e| format!("{e}"))?;
        axum::extract::Query::<Query>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn empty_query_values_are_absent() {
        let query = parse("status=&q=&after=").expect("parse");
        assert!(query.status.is_none() && query.q.is_none() && query.after.is_none());
        let query = parse("status=solved&q=%E9%80%80&after=7").expect("parse");
        assert_eq!(query.status, Some(crate::tickets::TicketStatus::Solved));
        assert_eq!(query.q.as_deref(), Some("退"));
        assert_eq!(query.after, Some(7));
        assert!(parse("status=weird").is_err());
        assert!(parse("after=-1").is_err());
        assert!(parse("after=x").is_err());
        let query = parse("").expect("parse");
        assert!(query.status.is_none());
    }
}
