//! Assist's HTTP doors: parse, call the operation in [`super`]'s modules,
//! shape the answer. Admins: the FAQ (`/faq_entries`, CSV import and
//! export), intents (`/intents`) and per-app settings
//! (`/apps/{id}/assist`); agents: reply suggestions; visitors: the rating
//! of a bot answer.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::bot::Rating;
use super::faq::{self, CSV_BYTES_MAX, EntryUpdate, FaqEntry, Imported, NewEntry};
use super::intents::{self, Intent, IntentUpdate, NewIntent};
use super::settings::{self, Settings, SettingsUpdate};
use super::suggest::Suggestion;
use crate::auth::{AdminAuth, AgentAuth, VisitorAuth};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ids::{AppId, ConversationId, FaqEntryId, IntentId};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/faq_entries", get(list_faq).post(create_faq))
        .route("/faq_entries/export", get(export_faq))
        .route(
            "/faq_entries/import",
            post(import_faq).layer(DefaultBodyLimit::max(CSV_BYTES_MAX)),
        )
        .route(
            "/faq_entries/{id}",
            get(get_faq).patch(update_faq).delete(delete_faq),
        )
        .route(
            "/apps/{id}/assist",
            get(get_settings).patch(update_settings),
        )
        .route("/visitor/assist/rating", post(rate))
        .route("/conversations/{id}/suggestions", get(suggestions))
        .route("/intents", get(list_intents).post(create_intent))
        .route("/intents/model", get(intent_model))
        .route("/intents/train", post(train_intents))
        .route(
            "/intents/{id}",
            get(get_intent).patch(update_intent).delete(delete_intent),
        )
}

// ---- FAQ ------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct FaqListResponse {
    faq_entries: Vec<FaqEntry>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct EntryResponse {
    faq_entry: FaqEntry,
}

/// An app's entries in id (creation) order, paged.
async fn list_faq(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiQuery(query): ApiQuery<faq::ListQuery>,
) -> ApiResult<Json<FaqListResponse>> {
    let (faq_entries, next_cursor) = faq::list(&state.db, &state.config.limits, query).await?;
    Ok(Json(FaqListResponse {
        faq_entries,
        next_cursor,
    }))
}

async fn create_faq(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(input): ApiJson<NewEntry>,
) -> ApiResult<(StatusCode, Json<EntryResponse>)> {
    let faq_entry = faq::create(&state, admin.id, input).await?;
    Ok((StatusCode::CREATED, Json(EntryResponse { faq_entry })))
}

async fn get_faq(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiPath(id): ApiPath<FaqEntryId>,
) -> ApiResult<Json<EntryResponse>> {
    let faq_entry = faq::find(&state.db, id).await?;
    Ok(Json(EntryResponse { faq_entry }))
}

async fn update_faq(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<FaqEntryId>,
    ApiJson(input): ApiJson<EntryUpdate>,
) -> ApiResult<Json<EntryResponse>> {
    let faq_entry = faq::update(&state, admin.id, id, input).await?;
    Ok(Json(EntryResponse { faq_entry }))
}

async fn delete_faq(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<FaqEntryId>,
) -> ApiResult<StatusCode> {
    faq::delete(&state, admin.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct CsvQuery {
    app_id: Option<AppId>,
    #[serde(default)]
    replace: Option<bool>,
}

/// Every entry of an app as a CSV download.
async fn export_faq(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiQuery(query): ApiQuery<CsvQuery>,
) -> ApiResult<Response> {
    let app = faq::required_app(query.app_id)?;
    let body = faq::export_csv(&state.db, app).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"faq-{app}.csv\""))
            .map_err(ApiError::internal)?,
    );
    Ok((headers, body).into_response())
}

/// `POST /faq_entries/import?app_id=…&replace=false`, body `text/csv` of
/// at most [`CSV_BYTES_MAX`] bytes (413 beyond).
async fn import_faq(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiQuery(query): ApiQuery<CsvQuery>,
    request: Request,
) -> ApiResult<Json<Imported>> {
    let app = faq::required_app(query.app_id)?;
    let csv_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
        });
    if !csv_type {
        return Err(ApiError::bad_request(
            "expected a CSV body with Content-Type: text/csv",
        ));
    }
    let body = Bytes::from_request(request, &state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!("a CSV import is at most {CSV_BYTES_MAX} bytes"))
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
    let replace = query.replace.unwrap_or(false);
    let imported = faq::import(&state, admin.id, app, replace, &body).await?;
    Ok(Json(imported))
}

// ---- settings -------------------------------------------------------------

#[derive(Debug, Serialize)]
struct SettingsResponse {
    assist: Settings,
}

async fn get_settings(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiPath(app): ApiPath<AppId>,
) -> ApiResult<Json<SettingsResponse>> {
    let assist = settings::of_app(&state.db, app).await?;
    Ok(Json(SettingsResponse { assist }))
}

async fn update_settings(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(app): ApiPath<AppId>,
    ApiJson(input): ApiJson<SettingsUpdate>,
) -> ApiResult<Json<SettingsResponse>> {
    let assist = settings::update(&state, admin.id, app, input).await?;
    Ok(Json(SettingsResponse { assist }))
}

// ---- the visitor's rating ---------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatingBody {
    seq: u64,
    rating: Rating,
}

#[derive(Debug, Serialize)]
struct RatingView {
    seq: u64,
    rating: Rating,
    entry_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct RatingResponse {
    rating: RatingView,
    /// The chat went to a person because of this rating.
    handed_off: bool,
}

/// A visitor rates a bot answer in its own conversation.
async fn rate(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    ApiJson(input): ApiJson<RatingBody>,
) -> ApiResult<Json<RatingResponse>> {
    let conversation = visitor.conversation_id;
    let rated = super::bot::rate(&state, conversation, input.seq, input.rating).await?;
    Ok(Json(RatingResponse {
        rating: RatingView {
            seq: input.seq,
            rating: input.rating,
            entry_id: rated.entry_id,
        },
        handed_off: rated.handed_off,
    }))
}

// ---- suggestions ------------------------------------------------------------

#[derive(Debug, Serialize)]
struct SuggestionsResponse {
    suggestions: Vec<Suggestion>,
}

/// `GET /api/v1/conversations/{id}/suggestions` — agent.
async fn suggestions(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
) -> ApiResult<Json<SuggestionsResponse>> {
    let suggestions = super::suggest::for_agent(&state, &agent, id).await?;
    Ok(Json(SuggestionsResponse { suggestions }))
}

// ---- intents ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct AppQuery {
    app_id: Option<AppId>,
}

#[derive(Debug, Serialize)]
struct IntentListResponse {
    intents: Vec<Intent>,
}

#[derive(Debug, Serialize)]
struct IntentResponse {
    intent: Intent,
}

async fn list_intents(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiQuery(query): ApiQuery<AppQuery>,
) -> ApiResult<Json<IntentListResponse>> {
    let app = intents::required_app(query.app_id)?;
    let intents = intents::list(&state.db, app).await?;
    Ok(Json(IntentListResponse { intents }))
}

async fn create_intent(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(input): ApiJson<NewIntent>,
) -> ApiResult<(StatusCode, Json<IntentResponse>)> {
    let intent = intents::create(&state, admin.id, input).await?;
    Ok((StatusCode::CREATED, Json(IntentResponse { intent })))
}

async fn get_intent(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiPath(id): ApiPath<IntentId>,
) -> ApiResult<Json<IntentResponse>> {
    let intent = intents::find(&state.db, id).await?;
    Ok(Json(IntentResponse { intent }))
}

async fn update_intent(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<IntentId>,
    ApiJson(input): ApiJson<IntentUpdate>,
) -> ApiResult<Json<IntentResponse>> {
    let intent = intents::update(&state, admin.id, id, input).await?;
    Ok(Json(IntentResponse { intent }))
}

async fn delete_intent(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<IntentId>,
) -> ApiResult<Json<Value>> {
    intents::delete(&state, admin.id, id).await?;
    Ok(Json(json!({})))
}

/// The state of an app's model, as `GET /intents/model` shows it.
#[derive(Debug, Serialize)]
struct ModelResponse {
    model: Value,
}

async fn intent_model(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiQuery(query): ApiQuery<AppQuery>,
) -> ApiResult<Json<ModelResponse>> {
    let app = intents::required_app(query.app_id)?;
    let model = intents::model(&state, app).await?;
    Ok(Json(ModelResponse { model }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainBody {
    app_id: AppId,
}

/// Queues a retrain of the app's model now: 202.
async fn train_intents(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiJson(input): ApiJson<TrainBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    intents::train(&state, input.app_id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"pending": true}))))
}
