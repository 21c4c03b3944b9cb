//! The intent trainer: retrains an app's model ([`super::intent`]) in the
//! background, on a thread of its own at the lowest CPU priority (as the
//! search indexer), with its own SQLite connection, and stores it in
//! `assist_intent_models`. Nothing on the message path waits for it:
//! routing reads the last stored model from memory ([`Trainer::model`]).
//!
//! **Examples.** The admin's examples of each intent, and the shop's
//! history, newest first and at most [`HISTORY_MAX`] chats:
//! - a resolved chat whose team is an intent's `team_id` (and no other
//!   intent's) is an example of that intent. The team is the chat's team
//!   when it was resolved, so a chat routed to the wrong team and
//!   **transferred** to the right one teaches the right intent (a
//!   transfer is a correction);
//! - a chat with a ticket tagged with one of an intent's `tags` is an
//!   example of it; a tag outranks the team, and a chat whose tags name
//!   two intents teaches nothing.
//!
//! The example text of a history chat is the visitor message that started
//! its last session (`conversations.start_seq`), the same message routing
//! classifies.
//!
//! **When.** An app is retrained after any change to its intents (the
//! admin routes mark it), on `POST /intents/train`, at start-up when its
//! intents changed after its model, and every [`RETRAIN_EVERY`] when a
//! chat of it was resolved since its last training.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::json;
use sqlx::SqliteConnection;
use tokio::sync::Notify;

use super::intent::{Example, Model};
use super::intents;
use crate::error::ApiError;
use crate::ids::{AppId, ConversationId, TeamId};
use crate::message::{MessageKind, SenderType};
use crate::state::AppState;
use crate::time::now_ms;

/// History chats read per training, at most (newest first).
pub const HISTORY_MAX: i64 = 5_000;
/// How often apps learning from history are checked for new resolved chats.
pub const RETRAIN_EVERY: Duration = Duration::from_secs(600);
/// Apps whose model is kept in memory.
const MODELS_MAX: usize = 256;
/// Apps waiting to be retrained, at most (a mark beyond it is dropped and
/// picked up by the next periodic check).
const PENDING_MAX: usize = 4_096;

/// The trainer's shared state (in `Assist::trainer`).
#[derive(Default)]
pub struct Trainer {
    pending: Mutex<HashSet<AppId>>,
    running: Mutex<Option<AppId>>,
    wake: Notify,
    /// `None`: the app has no ready model.
    models: RwLock<HashMap<AppId, Option<Arc<Model>>>>,
}

impl Trainer {
    /// Queues `app` for retraining.
    pub fn mark(&self, app: AppId) {
        let mut pending = self.pending.lock();
        if pending.len() < PENDING_MAX {
            pending.insert(app);
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Whether `app` waits to be retrained or is being retrained.
    pub fn is_pending(&self, app: AppId) -> bool {
        self.pending.lock().contains(&app) || *self.running.lock() == Some(app)
    }

    fn take(&self) -> Option<AppId> {
        let mut pending = self.pending.lock();
        let app = *pending.iter().next()?;
        pending.remove(&app);
        *self.running.lock() = Some(app);
        Some(app)
    }

    fn store(&self, app: AppId, model: Option<Arc<Model>>) {
        let mut models = self.models.write();
        if models.len() >= MODELS_MAX && !models.contains_key(&app) {
            models.clear();
        }
        models.insert(app, model);
    }

    /// The app's ready model: from memory, else read from SQLite once.
    pub async fn model(
        &self,
        db: &mut SqliteConnection,
        app: AppId,
    ) -> Result<Option<Arc<Model>>, ApiError> {
        if let Some(model) = self.models.read().get(&app) {
            return Ok(model.clone());
        }
        let blob: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT model FROM assist_intent_models WHERE app_id = ?")
                .bind(app)
                .fetch_optional(&mut *db)
                .await?;
        let model = blob
            .and_then(|bytes| Model::from_bytes(&bytes))
            .map(Arc::new);
        self.store(app, model.clone());
        Ok(model)
    }
}

/// Starts the trainer on a thread of its own at the lowest CPU priority.
/// The handle resolves when the thread has stopped (after shutdown, once
/// the model being trained is stored): the serving task waits for it, so
/// that its SQLite connection and its hold on the state are gone when the
/// server has stopped.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("kefu-intent-trainer".into())
        .spawn(move || {
            crate::store::db::lower_own_priority();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run(state)),
                Err(error) => tracing::error!(%error, "cannot start the intent trainer"),
            }
            let _ = done.send(());
        });
    if let Err(error) = &spawned {
        tracing::error!(%error, "cannot start the intent trainer's thread");
    }
    tokio::spawn(async move {
        let _ = stopped.await;
    })
}

async fn run(state: AppState) {
    let Some(conn) = serve(&state).await else {
        return;
    };
    if let Err(error) = sqlx::Connection::close(conn).await {
        tracing::warn!(%error, "closing the intent trainer's SQLite connection failed");
    }
}

/// Trains until shutdown; the connection, for the caller to close.
async fn serve(state: &AppState) -> Option<SqliteConnection> {
    let mut conn = match crate::store::db::connect_background(
        &state.config.data_dir,
        state.config.memory.sqlite(),
    )
    .await
    {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(%error, "the intent trainer cannot open SQLite");
            return None;
        }
    };
    if let Err(error) = mark_stale(state, &mut conn).await {
        tracing::warn!(%error, "cannot list the intent models to retrain");
    }
    let mut tick = tokio::time::interval(RETRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        while let Some(app) = state.assist.trainer.take() {
            if let Err(error) = train(state, &mut conn, app).await {
                tracing::warn!(%error, %app, "training the intent model failed");
            }
            *state.assist.trainer.running.lock() = None;
            if state.shutdown.is_cancelled() {
                return Some(conn);
            }
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return Some(conn),
            _ = state.assist.trainer.wake.notified() => {}
            _ = tick.tick() => {
                if let Err(error) = mark_learning(state, &mut conn).await {
                    tracing::warn!(%error, "cannot list the apps to retrain");
                }
            }
        }
    }
}

/// At start-up: apps whose intents changed after their model was trained
/// (or that have none yet), and apps whose model is of an older format.
async fn mark_stale(state: &AppState, conn: &mut SqliteConnection) -> Result<(), ApiError> {
    let apps: Vec<(AppId,)> = sqlx::query_as(
        "SELECT i.app_id FROM assist_intents i
         LEFT JOIN assist_intent_models m ON m.app_id = i.app_id
         GROUP BY i.app_id
         HAVING MAX(i.updated_at) >= COALESCE(MAX(m.trained_at), -1)",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (app,) in apps {
        state.assist.trainer.mark(app);
    }
    // Models stored by an older Kefu (another format): still read, but
    // trained again with today's features.
    let heads: Vec<(AppId, Vec<u8>)> = sqlx::query_as(
        "SELECT app_id, substr(model, 1, 1) FROM assist_intent_models WHERE length(model) > 0",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (app, head) in heads {
        if Model::is_outdated(&head) {
            state.assist.trainer.mark(app);
        }
    }
    Ok(())
}

/// Apps that learn from history and had a chat resolved since their last
/// training.
async fn mark_learning(state: &AppState, conn: &mut SqliteConnection) -> Result<(), ApiError> {
    let apps: Vec<(AppId,)> = sqlx::query_as(
        "SELECT DISTINCT i.app_id FROM assist_intents i
         WHERE (i.team_id IS NOT NULL OR i.tags != '[]')
           AND EXISTS (SELECT 1 FROM conversations c WHERE c.app_id = i.app_id
                 AND c.status = 'resolved'
                 AND c.resolved_at > COALESCE((SELECT trained_at FROM assist_intent_models m
                                               WHERE m.app_id = i.app_id), -1))",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (app,) in apps {
        state.assist.trainer.mark(app);
    }
    Ok(())
}

/// The labelled history chats of an app: conversation, its start message's
/// seq, and the intent (index into `intents`).
async fn history(
    conn: &mut SqliteConnection,
    app: AppId,
    intents: &[intents::Intent],
) -> Result<Vec<(ConversationId, i64, usize)>, ApiError> {
    let mut by_team: HashMap<TeamId, Option<usize>> = HashMap::new();
    let mut by_tag: HashMap<&str, Option<usize>> = HashMap::new();
    for (index, intent) in intents.iter().enumerate() {
        if let Some(team) = intent.team_id {
            by_team
                .entry(team)
                .and_modify(|i| *i = None)
                .or_insert(Some(index));
        }
        for tag in &intent.tags {
            by_tag
                .entry(tag.as_str())
                .and_modify(|i| *i = None)
                .or_insert(Some(index));
        }
    }
    let mut labels: HashMap<ConversationId, (i64, Option<usize>)> = HashMap::new();
    if !by_tag.is_empty() {
        let tagged: Vec<(ConversationId, i64, String)> = sqlx::query_as(
            "SELECT c.id, c.start_seq, tt.tag FROM tickets t
             JOIN ticket_tags tt ON tt.number = t.number
             JOIN conversations c ON c.id = t.conversation_id
             WHERE c.app_id = ? AND c.start_seq IS NOT NULL
             ORDER BY t.number DESC LIMIT ?",
        )
        .bind(app)
        .bind(HISTORY_MAX * 4)
        .fetch_all(&mut *conn)
        .await?;
        for (id, seq, tag) in tagged {
            let Some(Some(intent)) = by_tag.get(tag.as_str()) else {
                continue;
            };
            labels
                .entry(id)
                .and_modify(|(_, label)| {
                    if *label != Some(*intent) {
                        *label = None;
                    }
                })
                .or_insert((seq, Some(*intent)));
        }
    }
    if !by_team.is_empty() {
        let resolved: Vec<(ConversationId, i64, TeamId)> = sqlx::query_as(
            "SELECT c.id, c.start_seq, c.team_id FROM conversations c
             WHERE c.app_id = ? AND c.status = 'resolved' AND c.start_seq IS NOT NULL
               AND c.team_id IN (SELECT team_id FROM assist_intents WHERE app_id = ? AND team_id IS NOT NULL)
             ORDER BY c.resolved_at DESC LIMIT ?",
        )
        .bind(app)
        .bind(app)
        .bind(HISTORY_MAX)
        .fetch_all(&mut *conn)
        .await?;
        for (id, seq, team) in resolved {
            if let Some(Some(intent)) = by_team.get(&team) {
                labels.entry(id).or_insert((seq, Some(*intent)));
            }
        }
    }
    let mut out: Vec<(ConversationId, i64, usize)> = labels
        .into_iter()
        .filter_map(|(id, (seq, label))| Some((id, seq, label?)))
        .collect();
    out.sort_unstable_by_key(|(id, _, _)| *id);
    out.truncate(HISTORY_MAX as usize);
    Ok(out)
}

/// Trains and stores one app's model.
async fn train(state: &AppState, conn: &mut SqliteConnection, app: AppId) -> Result<(), ApiError> {
    let intents = intents::of_app(&mut *conn, app).await?;
    let mut examples: Vec<Example> = Vec::new();
    for (label, intent) in intents.iter().enumerate() {
        examples.extend(intent.examples.iter().map(|text| Example {
            text: text.clone(),
            label,
        }));
    }
    let from_admin = examples.len();
    for (conversation, seq, label) in history(&mut *conn, app, &intents).await? {
        let Ok(Some(stored)) = state.log.get(conversation, u64::try_from(seq).unwrap_or(0)) else {
            continue;
        };
        let Ok(message) = stored.decode() else {
            continue;
        };
        if message.sender.kind == SenderType::Visitor
            && message.kind == MessageKind::Text
            && !message.content.trim().is_empty()
        {
            examples.push(Example {
                text: message.content,
                label,
            });
        }
    }
    let names: Vec<String> = intents.iter().map(|i| i.name.clone()).collect();
    let counts = super::intent::distinct_counts(names.len(), &examples);
    let started = std::time::Instant::now();
    let model = if intents.is_empty() {
        None
    } else {
        Model::train(&names, &examples)
    };
    let summary = json!({
        "ready": model.is_some(),
        "intents": model.as_ref().map(|m| m.intents.clone()).unwrap_or_default(),
        "examples": examples.len(),
        "from_history": examples.len() - from_admin,
        "per_intent": names.iter().zip(&counts).map(|(n, c)| (n.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
        "train_ms": started.elapsed().as_millis() as u64,
    });
    let bytes = model.as_ref().map(Model::to_bytes).unwrap_or_default();
    sqlx::query(
        "INSERT INTO assist_intent_models (app_id, model, summary, trained_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app_id) DO UPDATE SET model = ?2, summary = ?3, trained_at = ?4",
    )
    .bind(app)
    .bind(bytes)
    .bind(summary.to_string())
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    state.assist.trainer.store(app, model.map(Arc::new));
    Ok(())
}
