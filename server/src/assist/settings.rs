//! Per-app Assist settings: the bot's mode and thresholds
//! (`assist_settings`; admin doors `GET`/`PATCH /api/v1/apps/{id}/assist`
//! in [`super::routes`]).

use serde::{Deserialize, Serialize};
use sqlx::{SqliteExecutor, SqlitePool};

use super::retrieval::Thresholds;
use crate::change::{After, Change};
use crate::error::ApiError;
use crate::ids::{AgentId, AppId};
use crate::state::AppState;
use crate::time::now_ms;

/// When the bot answers a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Never (the default).
    #[default]
    Off,
    /// Only for chats started while the shop is unavailable (closed by its
    /// hours, or nobody `online`).
    WhenUnavailable,
    /// Every chat gets the bot's first reply.
    Always,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::WhenUnavailable => "when_unavailable",
            Mode::Always => "always",
        }
    }

    fn parse(text: &str) -> Mode {
        match text {
            "when_unavailable" => Mode::WhenUnavailable,
            "always" => Mode::Always,
            _ => Mode::Off,
        }
    }
}

/// Defaults chosen on the evaluation set (docs/ASSIST.md, "Tuning").
pub const DEFAULT_ANSWER: f64 = 0.4;
pub const DEFAULT_MARGIN: f64 = 0.2;
pub const DEFAULT_SUGGEST: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    pub mode: Mode,
    pub answer_threshold: f64,
    pub margin: f64,
    pub suggest_threshold: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Off,
            answer_threshold: DEFAULT_ANSWER,
            margin: DEFAULT_MARGIN,
            suggest_threshold: DEFAULT_SUGGEST,
        }
    }
}

impl Settings {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            answer: self.answer_threshold as f32,
            margin: self.margin as f32,
            suggest: self.suggest_threshold as f32,
        }
    }
}

/// An app's settings as stored (the defaults when it has no row).
pub async fn load<'e>(db: impl SqliteExecutor<'e>, app: AppId) -> Result<Settings, ApiError> {
    let row: Option<(String, f64, f64, f64)> = sqlx::query_as(
        "SELECT mode, answer_threshold, margin, suggest_threshold FROM assist_settings WHERE app_id = ?",
    )
    .bind(app)
    .fetch_optional(db)
    .await?;
    Ok(
        row.map_or_else(Settings::default, |(mode, answer, margin, suggest)| {
            Settings {
                mode: Mode::parse(&mode),
                answer_threshold: answer,
                margin,
                suggest_threshold: suggest,
            }
        }),
    )
}

/// Whether any app has the bot on (the log's commit hook skips all work
/// when none has).
pub async fn any_on<'e>(db: impl SqliteExecutor<'e>) -> Result<bool, ApiError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM assist_settings WHERE mode != 'off' LIMIT 1")
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}

async fn app_exists(db: &SqlitePool, app: AppId) -> Result<(), ApiError> {
    match crate::apps::find(db, app).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("app")),
    }
}

/// An existing app's settings (404 for an unknown app).
pub async fn of_app(db: &SqlitePool, app: AppId) -> Result<Settings, ApiError> {
    app_exists(db, app).await?;
    load(db, app).await
}

/// The fields an admin may change; absent ones keep their value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    pub mode: Option<Mode>,
    pub answer_threshold: Option<f64>,
    pub margin: Option<f64>,
    pub suggest_threshold: Option<f64>,
}

fn unit(field: &'static str, value: Option<f64>) -> Result<(), ApiError> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => {
            Err(ApiError::bad_request(format!("{field} must be between 0 and 1")).in_field(field))
        }
        _ => Ok(()),
    }
}

/// An admin changes an app's settings: written and audited in one
/// [`Change`]; once committed the bot's cache takes them.
pub async fn update(
    state: &AppState,
    admin: AgentId,
    app: AppId,
    input: SettingsUpdate,
) -> Result<Settings, ApiError> {
    unit("answer_threshold", input.answer_threshold)?;
    unit("margin", input.margin)?;
    unit("suggest_threshold", input.suggest_threshold)?;
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    if crate::apps::find(&mut *change, app).await?.is_none() {
        return Err(ApiError::not_found("app"));
    }
    let mut settings = load(&mut *change, app).await?;
    if let Some(mode) = input.mode {
        settings.mode = mode;
    }
    if let Some(v) = input.answer_threshold {
        settings.answer_threshold = v;
    }
    if let Some(v) = input.margin {
        settings.margin = v;
    }
    if let Some(v) = input.suggest_threshold {
        settings.suggest_threshold = v;
    }
    if settings.suggest_threshold > settings.answer_threshold {
        let field = if input.suggest_threshold.is_some() {
            "suggest_threshold"
        } else {
            "answer_threshold"
        };
        return Err(
            ApiError::bad_request("suggest_threshold must not be above answer_threshold")
                .in_field(field),
        );
    }
    sqlx::query(
        "INSERT INTO assist_settings (app_id, mode, answer_threshold, margin, suggest_threshold, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(app_id) DO UPDATE SET mode = ?2, answer_threshold = ?3, margin = ?4,
             suggest_threshold = ?5, updated_at = ?6",
    )
    .bind(app)
    .bind(settings.mode.as_str())
    .bind(settings.answer_threshold)
    .bind(settings.margin)
    .bind(settings.suggest_threshold)
    .bind(now_ms())
    .execute(&mut *change)
    .await?;
    change
        .audit(
            "assist.settings",
            ("app", &app.to_string()),
            serde_json::to_value(settings).unwrap_or_default(),
        )
        .await?;
    let on = any_on(&mut *change).await?;
    change.then(After::AssistSettings {
        app,
        settings,
        any_on: on,
    });
    change.commit(state).await?;
    Ok(settings)
}
