//! The HTTP surface: wires each domain's routes under `/api/v1`, the
//! service routes, the edge checks (Host, client IP), CORS, body limits,
//! security headers and metrics, and serves them (`serve`). The domain
//! modules own their routes; this module only assembles them.

pub mod edge;
pub mod extract;
pub mod metrics_listener;
pub mod public;
pub mod serve;

pub use edge::{ClientIp, cross_origin};

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::metrics::HttpLabels;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    router_for(state, Listener::Loopback)
}

/// The router of the LAN listener (`lan::host`): the same app, plus the
/// pairing routes, behind the LAN gate (inside the Host check).
pub fn lan_router(state: AppState) -> Router {
    router_for(state, Listener::Lan)
}

/// The router of the public listener (`http::public`): the same app with
/// everything but the visitors' routes hidden (inside the Host check).
pub fn public_router(state: AppState) -> Router {
    router_for(state, Listener::Public)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Listener {
    Loopback,
    Lan,
    Public,
}

fn router_for(state: AppState, listener: Listener) -> Router {
    let lan = listener == Listener::Lan;
    let api = Router::new()
        .merge(crate::agents::routes::routes())
        .merge(crate::apps::routes::routes())
        .merge(crate::visitors::routes::routes())
        .merge(crate::conversations::routes::routes())
        .merge(crate::tickets::routes::routes())
        .merge(crate::routing::routes::routes())
        .merge(crate::attachments::routes::routes())
        .merge(crate::reads::routes::routes())
        .merge(crate::canned::routes::routes())
        .merge(crate::search::routes::routes())
        .merge(crate::reports::routes::routes())
        .merge(crate::audit::routes::routes())
        .merge(crate::app_settings::routes::routes())
        .merge(crate::ops::routes::routes())
        .merge(crate::export::routes::routes())
        .merge(crate::lan::routes::routes())
        .merge(crate::assist::routes::routes())
        .route("/ws", get(crate::ws::routes::upgrade))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A LAN host's handover holds the API's writes while it pauses
        // (SQLite's, not only the log's); elsewhere it passes at once.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::lan::handover::routes::api_writes,
        ));

    // Browsers may call the API from any origin: tokens travel in the
    // Authorization header, never in cookies, so CORS is not what protects
    // an agent. Visitors are held to their app's `allowed_origins` by the
    // visitor routes and the WebSocket themselves (403).
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600));

    let mut app = Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::ui::routes());
    // With a metrics listener of its own, `/metrics` is served only there.
    if state.config.http.metrics_bind.is_none() {
        app = app.route("/metrics", get(metrics));
    }
    if lan {
        app = app.merge(crate::lan::routes::pairing_routes());
    }
    let mut app = app
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(state.config.limits.http_body_bytes))
        .layer(axum::Extension(extract::BodyLimit(
            state.config.limits.http_body_bytes,
        )));
    if listener == Listener::Public {
        app = app.layer(middleware::from_fn(public::gate));
    }
    let mut app = app.layer(cors);
    if lan {
        // Outside CORS: a CORS preflight (which the CORS layer answers
        // itself) passes the gate too, and its answer carries the term, as
        // every answer of the LAN listener must for a peer's relay (a
        // webview's JSON request through a peer starts with one).
        app = app.layer(middleware::from_fn_with_state(
            state.clone(),
            crate::lan::host::gate,
        ));
    }
    app
        // Outside CORS: a foreign Host gets nothing, not even a preflight.
        .layer(middleware::from_fn_with_state(
            Arc::new(edge::Edge::new(&state.config)),
            edge::edge,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready to take traffic: the stores are open and the message log can
/// write. While it cannot (a full disk) every send would be refused, so a
/// load balancer should send traffic elsewhere: 503 until it recovers.
async fn readyz(State(state): State<AppState>) -> Response {
    let sqlite_ok = sqlx::query("SELECT 1").execute(&state.db).await.is_ok();
    if !sqlite_ok || !state.log.is_open() || state.shutdown.is_cancelled() {
        ApiError::Unavailable("store not open".into()).into_response()
    } else if !state.log.is_writable() {
        ApiError::Unavailable("the message log cannot write (is the disk full?)".into())
            .into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.refresh(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Records the latency of every request by route template, never by raw
/// path (ids would explode the label set, and paths are not logged).
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state.metrics.http_request(
        HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        },
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The `method` label: the standard methods by name, anything else (a
/// client may send any token) as `other`, so the label set stays bounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}
