//! Intents per app (`assist_intents`): admin CRUD under
//! `/api/v1/intents`, the state of the app's model
//! (`GET /api/v1/intents/model`) and a retrain request
//! (`POST /api/v1/intents/train`); the doors are in [`super::routes`].
//! Every change marks the app for the
//! background trainer ([`super::trainer`]); until it has trained, routing
//! keeps using the previous model.
//!
//! Invariants: every route is admin-only; a refused request stores
//! nothing; an app has at most [`INTENTS_PER_APP_MAX`] intents (checked in
//! the inserting statement), an intent at most [`EXAMPLES_MAX`] examples.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::change::{After, Change};
use crate::error::ApiError;
use crate::http::extract::PathId;
use crate::ids::{AgentId, AppId, IntentId, TeamId};
use crate::state::AppState;
use crate::time::now_ms;

pub const INTENTS_PER_APP_MAX: i64 = 50;
pub const NAME_MAX_CHARS: usize = 40;
pub const EXAMPLES_MAX: usize = 200;
pub const EXAMPLE_MAX_CHARS: usize = 200;
pub const TAGS_MAX: usize = 10;
pub const TAG_MAX_CHARS: usize = 50;

impl PathId for IntentId {
    const RESOURCE: &'static str = "intent";
}

/// The `Intent` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Intent {
    pub id: IntentId,
    pub app_id: AppId,
    pub name: String,
    pub examples: Vec<String>,
    /// History: chats this team resolved are examples of this intent.
    pub team_id: Option<TeamId>,
    /// History: chats whose ticket has one of these tags are examples.
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: IntentId,
    app_id: AppId,
    name: String,
    examples: String,
    team_id: Option<TeamId>,
    tags: String,
    created_at: i64,
    updated_at: i64,
}

impl From<Row> for Intent {
    fn from(row: Row) -> Self {
        Intent {
            id: row.id,
            app_id: row.app_id,
            name: row.name,
            examples: serde_json::from_str(&row.examples).unwrap_or_default(),
            team_id: row.team_id,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, app_id, name, examples, team_id, tags, created_at, updated_at";

/// A routing rule that names this intent (for this app or any app)
/// blocks its deletion and renaming: the rule would silently stop matching.
async fn used_by_rule(db: &mut sqlx::SqliteConnection, intent: &Intent) -> Result<(), ApiError> {
    let rule: Option<String> = sqlx::query_scalar(
        "SELECT name FROM routing_rules WHERE intent = ?1 AND (app_id IS NULL OR app_id = ?2) LIMIT 1",
    )
    .bind(&intent.name)
    .bind(intent.app_id)
    .fetch_optional(&mut *db)
    .await?;
    match rule {
        Some(rule) => Err(ApiError::Conflict(format!(
            "routing rule {rule} uses this intent"
        ))),
        None => Ok(()),
    }
}

/// Every intent of an app, by name.
pub async fn of_app<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    app: AppId,
) -> Result<Vec<Intent>, ApiError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assist_intents WHERE app_id = ? ORDER BY name LIMIT {INTENTS_PER_APP_MAX}"
    ))
    .bind(app)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Intent::from).collect())
}

fn one_line(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS || !one_line(name) {
        return Err(ApiError::bad_request(format!(
            "name must be 1-{NAME_MAX_CHARS} characters on one line"
        ))
        .in_field("name"));
    }
    Ok(name.to_owned())
}

/// Trimmed, distinct, each 1–`max_chars` characters on one line, at most
/// `max` of them.
fn validate_list(
    list: &[String],
    field: &'static str,
    max: usize,
    max_chars: usize,
) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let item = item.trim();
        if item.is_empty() || item.chars().count() > max_chars || !one_line(item) {
            return Err(ApiError::bad_request(format!(
                "each of {field} must be 1-{max_chars} characters on one line"
            ))
            .in_field(format!("{field}[{i}]")));
        }
        if !out.iter().any(|x| x == item) {
            out.push(item.to_owned());
        }
    }
    if out.len() > max {
        return Err(ApiError::bad_request(format!("at most {max} {field}")).in_field(field));
    }
    Ok(out)
}

async fn app_exists<'e>(db: impl sqlx::SqliteExecutor<'e>, app: AppId) -> Result<(), ApiError> {
    match crate::apps::find(db, app).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("app").in_field("app_id")),
    }
}

async fn team_exists<'e>(db: impl sqlx::SqliteExecutor<'e>, team: TeamId) -> Result<(), ApiError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM teams WHERE id = ?")
        .bind(team)
        .fetch_optional(db)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("team").in_field("team_id")),
    }
}

/// One intent (404 for an unknown id).
pub async fn find<'e>(db: impl sqlx::SqliteExecutor<'e>, id: IntentId) -> Result<Intent, ApiError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assist_intents WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.map(Intent::from)
        .ok_or_else(|| ApiError::not_found("intent"))
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

fn duplicate_name(error: sqlx::Error) -> ApiError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ApiError::Conflict("this app already has an intent of that name".into())
        }
        _ => error.into(),
    }
}

/// The `app_id` the list, the model and a retrain name.
pub fn required_app(app: Option<AppId>) -> Result<AppId, ApiError> {
    app.ok_or_else(|| ApiError::bad_request("app_id is required").in_field("app_id"))
}

/// An existing app's intents, by name (404 for an unknown app).
pub async fn list(db: &SqlitePool, app: AppId) -> Result<Vec<Intent>, ApiError> {
    app_exists(db, app).await?;
    of_app(db, app).await
}

/// A new intent, as an admin sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIntent {
    pub app_id: AppId,
    pub name: String,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub team_id: Option<TeamId>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An admin adds an intent: inserted and audited in one [`Change`]; once
/// committed the app's model is marked for retraining.
pub async fn create(
    state: &AppState,
    admin: AgentId,
    input: NewIntent,
) -> Result<Intent, ApiError> {
    let name = validate_name(&input.name)?;
    let examples = validate_list(&input.examples, "examples", EXAMPLES_MAX, EXAMPLE_MAX_CHARS)?;
    let tags = validate_list(&input.tags, "tags", TAGS_MAX, TAG_MAX_CHARS)?;
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    app_exists(&mut *change, input.app_id).await?;
    if let Some(team) = input.team_id {
        team_exists(&mut *change, team).await?;
    }
    let id = IntentId::new();
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO assist_intents (id, app_id, name, examples, team_id, tags, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7
         WHERE (SELECT COUNT(*) FROM assist_intents WHERE app_id = ?2) < ?8",
    )
    .bind(id)
    .bind(input.app_id)
    .bind(&name)
    .bind(to_json(&examples))
    .bind(input.team_id)
    .bind(to_json(&tags))
    .bind(now)
    .bind(INTENTS_PER_APP_MAX)
    .execute(&mut *change)
    .await
    .map_err(duplicate_name)?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::bad_request(format!(
            "an app has at most {INTENTS_PER_APP_MAX} intents"
        )));
    }
    change
        .audit(
            "assist.intent.create",
            ("intent", &id.to_string()),
            json!({"app_id": input.app_id, "name": name, "examples": examples.len()}),
        )
        .await?;
    change.then(After::Intents(input.app_id));
    change.commit(state).await?;
    find(&state.db, id).await
}

/// The fields of an intent an admin may change; absent ones stay
/// (`team_id: null` clears the team).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentUpdate {
    pub name: Option<String>,
    pub examples: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    pub team_id: Option<Option<TeamId>>,
    pub tags: Option<Vec<String>>,
}

/// An admin changes an intent (a rename not while a routing rule names
/// it): written and audited in one [`Change`].
pub async fn update(
    state: &AppState,
    admin: AgentId,
    id: IntentId,
    input: IntentUpdate,
) -> Result<Intent, ApiError> {
    let name = input.name.as_deref().map(validate_name).transpose()?;
    let examples = input
        .examples
        .as_deref()
        .map(|e| validate_list(e, "examples", EXAMPLES_MAX, EXAMPLE_MAX_CHARS))
        .transpose()?;
    let tags = input
        .tags
        .as_deref()
        .map(|t| validate_list(t, "tags", TAGS_MAX, TAG_MAX_CHARS))
        .transpose()?;
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let mut intent = find(&mut *change, id).await?;
    if let Some(name) = name {
        if name != intent.name {
            used_by_rule(&mut change, &intent).await?;
        }
        intent.name = name;
    }
    if let Some(examples) = examples {
        intent.examples = examples;
    }
    if let Some(tags) = tags {
        intent.tags = tags;
    }
    if let Some(team) = input.team_id {
        if let Some(team) = team {
            team_exists(&mut *change, team).await?;
        }
        intent.team_id = team;
    }
    sqlx::query(
        "UPDATE assist_intents SET name = ?, examples = ?, team_id = ?, tags = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(&intent.name)
    .bind(to_json(&intent.examples))
    .bind(intent.team_id)
    .bind(to_json(&intent.tags))
    .bind(now_ms())
    .bind(id)
    .execute(&mut *change)
    .await
    .map_err(duplicate_name)?;
    change
        .audit(
            "assist.intent.update",
            ("intent", &id.to_string()),
            json!({"name": intent.name, "examples": intent.examples.len()}),
        )
        .await?;
    change.then(After::Intents(intent.app_id));
    change.commit(state).await?;
    find(&state.db, id).await
}

/// An admin deletes an intent (not while a routing rule names it):
/// deleted and audited in one [`Change`].
pub async fn delete(state: &AppState, admin: AgentId, id: IntentId) -> Result<(), ApiError> {
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let intent = find(&mut *change, id).await?;
    used_by_rule(&mut change, &intent).await?;
    sqlx::query("DELETE FROM assist_intents WHERE id = ?")
        .bind(id)
        .execute(&mut *change)
        .await?;
    change
        .audit(
            "assist.intent.delete",
            ("intent", &id.to_string()),
            json!({"name": intent.name}),
        )
        .await?;
    change.then(After::Intents(intent.app_id));
    change.commit(state).await?;
    Ok(())
}

/// The stored summary of the app's model, or `{"ready": false}` before
/// its first training; `pending` while a retrain is waiting or running
/// (404 for an unknown app).
pub async fn model(state: &AppState, app: AppId) -> Result<Value, ApiError> {
    app_exists(&state.db, app).await?;
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT summary, trained_at FROM assist_intent_models WHERE app_id = ?")
            .bind(app)
            .fetch_optional(&state.db)
            .await?;
    let mut model = match row {
        Some((summary, trained_at)) => {
            let mut summary: Value = serde_json::from_str(&summary).unwrap_or_else(|_| json!({}));
            summary["trained_at"] = json!(trained_at);
            summary
        }
        None => json!({"ready": false, "trained_at": null}),
    };
    model["pending"] = json!(state.assist.trainer.is_pending(app));
    model["min_intents"] = json!(super::intent::MIN_INTENTS);
    model["min_examples_per_intent"] = json!(super::intent::MIN_EXAMPLES_PER_INTENT);
    Ok(model)
}

/// Queues a retrain of an existing app's model now (history changes are
/// otherwise picked up every [`super::trainer::RETRAIN_EVERY`]).
pub async fn train(state: &AppState, app: AppId) -> Result<(), ApiError> {
    app_exists(&state.db, app).await?;
    state.assist.intents_changed(app);
    Ok(())
}
