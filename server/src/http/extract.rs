//! Extractors whose rejections speak the protocol's error body.
//!
//! - [`ApiJson`]: a body over the limit is 413 `payload_too_large` (the
//!   body read to its end first, up to a bound, so that the client gets
//!   the answer and not a reset connection); bad
//!   JSON, a wrong type, a missing or unknown field 400 `bad_request`, with
//!   `field` naming the member at fault when serde knows it.
//! - [`ApiQuery`]: an empty value (`?status=&cursor=`) is "not given", as
//!   clients that fill a form or a URL template send it (docs/API.md,
//!   Pagination): such pairs are dropped before the struct is read, so a
//!   query struct is plain `Option`s with `#[serde(default)]`. A bad value
//!   is 400 `bad_request` with `field`.
//! - [`ApiPath`]: the one id of a route's path, parsed into its newtype;
//!   an id that cannot exist is 404 `not_found` ("conversation not found"),
//!   as an unknown one is.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId, RuleId, TeamId};

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let req = match req.extensions().get::<BodyLimit>().copied() {
            Some(limit) => read_body(req, limit).await?,
            None => req,
        };
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The JSON body limit of a router (`limits.http_body_bytes`), as a request
/// extension: [`ApiJson`] reads the body itself to answer an oversized one
/// cleanly (see [`read_body`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// How much of an oversized body is read and thrown away before the 413.
pub const DRAIN_BYTES_MAX: usize = 1 << 20;
/// How long draining an oversized body may take.
const DRAIN_TIME_MAX: Duration = Duration::from_secs(2);

/// Reads and drops a body refused by its declared length, up to
/// `max_bytes` and [`DRAIN_TIME_MAX`], so that the client, still sending,
/// reads the answer rather than a reset connection (see [`read_body`]).
pub async fn discard(body: axum::body::Body, max_bytes: usize) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME_MAX;
    while read <= max_bytes {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            _ => break,
        }
    }
}

/// Buffers a body of at most `limit` bytes for the JSON extractor. An
/// oversized one is 413 `payload_too_large` *after* the rest of it (up to
/// [`DRAIN_BYTES_MAX`], within [`DRAIN_TIME_MAX`]) has been read and
/// dropped: answering while the client is still sending and then closing
/// with unread data makes the kernel reset the connection, and the client
/// sees a broken pipe instead of the error body (as under Wine, or over a
/// real network). Bodies declared larger than that are refused at once.
async fn read_body(req: Request, BodyLimit(limit): BodyLimit) -> Result<Request, ApiError> {
    let too_large = || ApiError::too_large("request body too large");
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > (limit + DRAIN_BYTES_MAX) as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::new();
    let mut received = 0usize;
    let mut over = false;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME_MAX;
    loop {
        let next = if over {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            stream.next().await
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) if over => break,
            Err(_) => return Err(ApiError::bad_request("the request body could not be read")),
        };
        received += chunk.len();
        if over {
            if received > limit + DRAIN_BYTES_MAX {
                break;
            }
        } else if received > limit {
            over = true;
            buffer = bytes::BytesMut::new();
        } else {
            buffer.extend_from_slice(&chunk);
        }
    }
    if over {
        return Err(too_large());
    }
    Ok(Request::from_parts(
        parts,
        axum::body::Body::from(buffer.freeze()),
    ))
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large("request body too large");
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("expected a JSON body with Content-Type: application/json")
        }
        JsonRejection::JsonDataError(error) => {
            let refused = ApiError::bad_request(error.body_text());
            // axum reads bodies with serde_path_to_error: the path is there.
            let located = std::iter::successors(std::error::Error::source(&error), |e| e.source())
                .find_map(|e| e.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>());
            match located.and_then(|e| field_at(&e.path().to_string(), &e.inner().to_string())) {
                Some(field) => refused.in_field(field),
                None => refused,
            }
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// The request field a deserialization error is about: its path, or, for
/// a missing or unknown member (reported at the enclosing object), the
/// member's name under that path. `None` when it is the whole body.
fn field_at(path: &str, error: &str) -> Option<String> {
    let path = (path != ".").then_some(path);
    // A missing member is reported at the enclosing object; an unknown or
    // duplicate one is already the path's last segment when there is a
    // path (serde_path_to_error records the key it read).
    if let Some(name) = member(error, "missing field `") {
        return Some(match path {
            Some(path) => format!("{path}.{name}"),
            None => name.to_owned(),
        });
    }
    let named = member(error, "unknown field `").or_else(|| member(error, "duplicate field `"));
    match (path, named) {
        (Some(path), _) => Some(path.to_owned()),
        (None, Some(name)) => Some(name.to_owned()),
        (None, None) => None,
    }
}

/// The member an error message names after `prefix`, up to the closing '`'.
fn member<'a>(error: &'a str, prefix: &str) -> Option<&'a str> {
    error
        .strip_prefix(prefix)
        .and_then(|rest| rest.split('`').next())
        .filter(|name| !name.is_empty())
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Reads a query string into `T`, leaving out pairs with an empty value.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let given = without_empty_values(query);
    let pairs = form_urlencoded::parse(given.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|error| {
        let refused = ApiError::bad_request(format!(
            "Failed to deserialize query string: {}",
            error.inner()
        ));
        match field_at(&error.path().to_string(), &error.inner().to_string()) {
            Some(field) => refused.in_field(field),
            None => refused,
        }
    })
}

/// `a=1&b=&c&d=2` → `a=1&d=2`: a pair whose value is empty is not given.
fn without_empty_values(query: &str) -> Cow<'_, str> {
    let given = |pair: &&str| {
        pair.split_once('=')
            .is_some_and(|(_, value)| !value.is_empty())
    };
    if query.split('&').all(|pair| given(&pair)) {
        return Cow::Borrowed(query);
    }
    Cow::Owned(query.split('&').filter(given).collect::<Vec<_>>().join("&"))
}

/// An id type that names a resource in a route's path.
pub trait PathId: std::str::FromStr {
    /// What a 404 says was not found: "conversation" → "conversation not found".
    const RESOURCE: &'static str;
}

impl PathId for AgentId {
    const RESOURCE: &'static str = "agent";
}
impl PathId for AppId {
    const RESOURCE: &'static str = "app";
}
impl PathId for ConversationId {
    const RESOURCE: &'static str = "conversation";
}
impl PathId for RuleId {
    const RESOURCE: &'static str = "rule";
}
impl PathId for TeamId {
    const RESOURCE: &'static str = "team";
}

/// The one `{id}` of a route's path as its id type. An id that does not
/// parse cannot name anything: 404 `not_found`, the answer an unknown id
/// gets (docs/API.md, "Times and ids").
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: PathId + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::not_found(T::RESOURCE);
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| not_found())?;
        text.parse().map(ApiPath).map_err(|_| not_found())
    }
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

/// A page's size: `limit` when given (1 to `limits.page_max`, else a 400
/// naming the field), else `default` (at most `page_max`).
pub fn page_limit(
    limits: &crate::config::Limits,
    limit: Option<u32>,
    default: u32,
) -> Result<u32, ApiError> {
    let max = limits.page_max;
    match limit {
        None => Ok(default.min(max)),
        Some(0) => Err(ApiError::bad_request("limit must be at least 1").in_field("limit")),
        Some(n) if n > max => {
            Err(ApiError::bad_request(format!("limit must be at most {max}")).in_field("limit"))
        }
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Query {
        #[serde(default)]
        status: Option<crate::tickets::TicketStatus>,
        #[serde(default)]
        q: Option<String>,
        #[serde(default)]
        after: Option<u64>,
    }

    fn parse(query: &str) -> Result<Query, ApiError> {
        parse_query(query)
    }

    #[test]
    fn empty_query_values_are_absent() {
        let query = parse("status=&q=&after=").expect("parse");
        assert!(query.status.is_none() && query.q.is_none() && query.after.is_none());
        let query = parse("status&q&&after").expect("parse");
        assert!(query.status.is_none() && query.q.is_none() && query.after.is_none());
        let query = parse("status=solved&q=%E9%80%80&after=7").expect("parse");
        assert_eq!(query.status, Some(crate::tickets::TicketStatus::Solved));
        assert_eq!(query.q.as_deref(), Some("退"));
        assert_eq!(query.after, Some(7));
        // A value that decodes to blanks was given: it is not empty.
        assert_eq!(parse("q=+").expect("parse").q.as_deref(), Some(" "));
        let query = parse("").expect("parse");
        assert!(query.status.is_none());
    }

    #[test]
    fn a_bad_query_value_names_its_field() {
        for (query, field) in [
            ("status=weird", "status"),
            ("after=-1", "after"),
            ("q=x&after=x", "after"),
        ] {
            let error = parse(query).expect_err(query);
            assert_eq!(error.code(), "bad_request", "{query}");
            assert_eq!(error.field(), Some(field), "{query}");
        }
    }

    #[test]
    fn a_field_is_a_path_or_the_member_named() {
        assert_eq!(
            field_at("subject", "invalid type: integer `5`, expected a string"),
            Some("subject".into())
        );
        assert_eq!(
            field_at(".", "missing field `username`"),
            Some("username".into())
        );
        assert_eq!(
            field_at(".", "unknown field `nmae`, expected one of `name`"),
            Some("nmae".into())
        );
        assert_eq!(
            field_at("business_hours", "missing field `days`"),
            Some("business_hours.days".into())
        );
        assert_eq!(field_at("tags[2]", "invalid type"), Some("tags[2]".into()));
        assert_eq!(field_at(".", "invalid type: string, expected a map"), None);
    }

    /// What axum's `Json` hands over for real bodies, end to end through
    /// serde_path_to_error: an unknown member names itself once, at the top
    /// level and nested.
    #[test]
    fn unknown_and_missing_members_of_real_bodies() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            days: Vec<u8>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            #[serde(default)]
            hours: Option<Inner>,
        }
        let field = |body: &str| {
            let error = serde_path_to_error::deserialize::<_, Body>(
                &mut serde_json::Deserializer::from_str(body),
            )
            .expect_err(body);
            field_at(&error.path().to_string(), &error.inner().to_string())
        };
        assert_eq!(field(r#"{"name":"a","colour":1}"#), Some("colour".into()));
        assert_eq!(field(r#"{"colour":1}"#), Some("colour".into()));
        assert_eq!(field(r#"{}"#), Some("name".into()));
        assert_eq!(
            field(r#"{"name":"a","hours":{"days":[],"nights":1}}"#),
            Some("hours.nights".into())
        );
        assert_eq!(
            field(r#"{"name":"a","hours":{}}"#),
            Some("hours.days".into())
        );
        assert_eq!(field(r#"{"name":5}"#), Some("name".into()));
        assert_eq!(field(r#"{"name":"a","name":"b"}"#), Some("name".into()));
    }
}
