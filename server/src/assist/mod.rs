//! Kefu Assist: an offline FAQ bot that runs inside Kefu, on the shop's
//! own data, and hands a chat to a person whenever it is unsure
//! (docs/ASSIST.md).
//!
//! - [`normalize`] — the text normalisation everything shares (NFKC,
//!   full-width → half-width, lower case, Traditional → Simplified).
//! - [`retrieval`] — the FAQ index (TF-IDF over character 1–2-grams,
//!   cosine confidence) and the answer / choices / unsure decision.
//! - [`signals`] — words that hand off at once (a person asked for, a
//!   complaint, urgency).
//! - [`faq`] — FAQ entries per app: admin CRUD, CSV import and export.
//! - [`settings`] — per-app mode (`off`, `when_unavailable`, `always`) and
//!   thresholds.
//! - [`bot`] — the bot task, the hand-off and the visitor's rating.
//! - [`suggest`] — reply suggestions for agents, learnt off the message
//!   path from resolved chats.
//! - [`intent`] — the intent model (hashed character 1–2-grams, softmax);
//!   [`intents`] — intents per app (admin CRUD); [`trainer`] — retrains
//!   each app's model in the background at idle priority.
//! - [`language`] — the visitor's language, by script first;
//!   [`insight`] — intent, language and urgency of each conversation, and
//!   its priority.
//! - [`routes`] — every HTTP door of Assist (parse, call the operation
//!   here, shape the answer).
//!
//! **Off the message path.** A visitor's send is acknowledged exactly as
//! without Assist. The conversation starter asks [`hold`] (inside its own
//! transaction) whether the bot takes a starting chat: if so the chat is
//! `pending` with `assist_state = 'bot'` instead of `queued`, and routing
//! does not see it. The log's commit hook hands the visitor messages of
//! held chats to [`Assist::mark`] (no I/O; one atomic load when no app has
//! the bot on), and the bot task answers them after the ack. A hand-off
//! puts the chat in the queue as if it had just started (rules, automatic
//! assignment, the offline auto-reply when the shop is unavailable).
//!
//! **Invariants.** The bot only ever writes into a conversation that is
//! `pending`, unassigned and `assist_state = 'bot'` (checked in SQLite
//! before each answer; an agent who assigns or claims the chat ends the
//! bot's turn). Each bot message's `client_msg_id` derives from the seq of
//! the visitor message it answers, so a replay stores nothing twice. The
//! queue of messages waiting for the bot is bounded ([`QUEUE_MAX`]).

pub mod bot;
pub mod faq;
pub mod insight;
pub mod intent;
pub mod intents;
pub mod language;
pub mod normalize;
pub mod retrieval;
pub mod routes;
pub mod settings;
pub mod signals;
pub mod suggest;
pub mod trainer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use sqlx::SqliteConnection;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::ids::{AppId, ConversationId, FaqEntryId};
use crate::state::AppState;
use crate::store::messages::StoredMessage;
use retrieval::Index;
use settings::{Mode, Settings};

/// Visitor messages waiting for the bot, at most. Beyond it the oldest is
/// dropped (logged): its chat waits for a later message or an agent.
pub const QUEUE_MAX: usize = 10_000;
/// Conversations the bot holds, remembered in memory at most (a chat
/// beyond it is still held in SQLite; its messages reach the bot after
/// the next restart).
const HELD_MAX: usize = 100_000;
/// Apps whose index is kept built.
const INDEXES_MAX: usize = 256;

/// Assist's shared state (in `Kefu::assist`).
#[derive(Default)]
pub struct Assist {
    any_on: AtomicBool,
    settings: Mutex<HashMap<AppId, Settings>>,
    indexes: Mutex<HashMap<AppId, Arc<Index>>>,
    held: RwLock<HashSet<ConversationId>>,
    queue: Mutex<VecDeque<Arc<StoredMessage>>>,
    wake: Notify,
    /// The last "did you mean…" of each conversation, so that "2" picks
    /// the second choice.
    choices: Mutex<HashMap<ConversationId, Vec<FaqEntryId>>>,
    /// Reply suggestions for agents ([`suggest`]).
    pub suggestions: suggest::Suggestions,
    /// Intent models and their background training.
    pub trainer: trainer::Trainer,
    /// Urgency of later messages.
    pub watcher: insight::Watcher,
}

impl Assist {
    /// On the log's writer thread with each committed batch: queues the
    /// messages the bot may have to answer (starting ones, and those of
    /// held chats). Never blocks on I/O.
    pub fn mark(&self, messages: &[(Arc<StoredMessage>, Option<u64>)]) {
        if !self.any_on.load(Ordering::Acquire) {
            return;
        }
        let mut taken = false;
        {
            let held = self.held.read();
            let mut queue = self.queue.lock();
            for (message, _) in messages {
                if message.note || !(message.start || held.contains(&message.conversation_id)) {
                    continue;
                }
                if queue.len() >= QUEUE_MAX {
                    queue.pop_front();
                    tracing::warn!("assist queue full: a visitor message was dropped");
                }
                queue.push_back(Arc::clone(message));
                taken = true;
            }
        }
        if taken {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> Option<Arc<StoredMessage>> {
        self.queue.lock().pop_front()
    }

    fn push(&self, message: Arc<StoredMessage>) {
        let mut queue = self.queue.lock();
        if queue.len() < QUEUE_MAX {
            queue.push_back(message);
        }
        drop(queue);
        self.wake.notify_one();
    }

    pub fn is_held(&self, conversation: ConversationId) -> bool {
        self.held.read().contains(&conversation)
    }

    /// After the starter committed: these chats are the bot's.
    pub fn held(&self, conversations: impl IntoIterator<Item = ConversationId>) {
        let mut held = self.held.write();
        for id in conversations {
            if held.len() >= HELD_MAX {
                tracing::warn!("too many chats held by the bot to remember them all");
                break;
            }
            held.insert(id);
        }
    }

    fn release(&self, conversation: ConversationId) {
        self.held.write().remove(&conversation);
        self.choices.lock().remove(&conversation);
    }

    /// An admin changed an app's settings.
    pub fn settings_changed(&self, app: AppId, settings: Settings, any_on: bool) {
        self.settings.lock().insert(app, settings);
        self.any_on.store(any_on, Ordering::Release);
    }

    /// An admin changed an app's intents: its model is trained again in
    /// the background (routing keeps the previous one meanwhile).
    pub fn intents_changed(&self, app: AppId) {
        self.trainer.mark(app);
    }

    /// An admin changed an app's FAQ: its index is built again when next
    /// needed.
    pub fn faq_changed(&self, app: AppId) {
        self.indexes.lock().remove(&app);
    }

    async fn settings(&self, db: &mut SqliteConnection, app: AppId) -> Result<Settings, ApiError> {
        if let Some(settings) = self.settings.lock().get(&app) {
            return Ok(*settings);
        }
        let settings = settings::load(&mut *db, app).await?;
        let mut cache = self.settings.lock();
        if cache.len() >= INDEXES_MAX * 16 {
            cache.clear();
        }
        cache.insert(app, settings);
        Ok(settings)
    }

    async fn index(&self, state: &AppState, app: AppId) -> Result<Arc<Index>, ApiError> {
        if let Some(index) = self.indexes.lock().get(&app) {
            return Ok(Arc::clone(index));
        }
        let entries = faq::enabled(&state.db, app).await?;
        let index = Arc::new(
            tokio::task::spawn_blocking(move || Index::build(entries))
                .await
                .map_err(ApiError::internal)?,
        );
        let mut indexes = self.indexes.lock();
        if indexes.len() >= INDEXES_MAX {
            indexes.clear();
        }
        indexes.insert(app, Arc::clone(&index));
        Ok(index)
    }
}

/// Called by the conversation starter, inside its transaction, for a chat
/// that starts (or reopens) without an assignee: whether the bot takes it.
/// If so the chat is made `pending` with `assist_state = 'bot'` and the
/// caller keeps it out of routing and sends no offline auto-reply.
pub async fn hold(
    state: &AppState,
    db: &mut SqliteConnection,
    conversation: ConversationId,
    app: AppId,
    now: i64,
) -> Result<bool, ApiError> {
    if !state.assist.any_on.load(Ordering::Acquire) {
        return Ok(false);
    }
    let settings = state.assist.settings(&mut *db, app).await?;
    let take = match settings.mode {
        Mode::Off => false,
        Mode::Always => true,
        Mode::WhenUnavailable => !available(&mut *db, app, now).await?,
    };
    let state_now = if take { Some("bot") } else { None };
    sqlx::query(
        "UPDATE conversations SET assist_state = ?2,
             status = CASE WHEN ?2 IS NULL THEN status ELSE 'pending' END,
             queued_at = CASE WHEN ?2 IS NULL THEN queued_at ELSE NULL END
         WHERE id = ?1",
    )
    .bind(conversation)
    .bind(state_now)
    .execute(&mut *db)
    .await?;
    Ok(take)
}

/// The shop is open by its hours and someone is `online`
/// (as `GET /visitor/config` says).
async fn available(db: &mut SqliteConnection, app: AppId, now: i64) -> Result<bool, ApiError> {
    let Some(app) = crate::apps::find(&mut *db, app).await? else {
        return Ok(false);
    };
    let open = app
        .business_hours
        .as_ref()
        .is_none_or(|hours| hours.is_open_at(now));
    if !open {
        return Ok(false);
    }
    let online: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM agents WHERE status = 'online' LIMIT 1")
            .fetch_optional(&mut *db)
            .await?;
    Ok(online.is_some())
}

/// At start-up, before the interrupted conversation starts are completed
/// (they ask [`hold`]): whether any app has the bot on.
pub async fn prepare(state: &AppState) -> anyhow::Result<()> {
    let on = settings::any_on(&state.db).await?;
    state.assist.any_on.store(on, Ordering::Release);
    Ok(())
}

/// At start-up, after the interrupted conversation starts were completed:
/// whether any app has the bot on, the chats it holds, and the last
/// visitor message of each such chat that the bot may not have answered
/// before the stop (answering twice is impossible: the answer's
/// `client_msg_id` derives from that message).
pub async fn recover(state: &AppState) -> anyhow::Result<()> {
    let held: Vec<(ConversationId,)> = sqlx::query_as(
        "SELECT id FROM conversations
         WHERE assist_state = 'bot' AND status = 'pending' AND assignee_id IS NULL LIMIT ?",
    )
    .bind(HELD_MAX as i64)
    .fetch_all(&state.db)
    .await?;
    state.assist.held(held.iter().map(|(id,)| *id));
    for (id,) in held {
        let Some(head) = state.log.head(id)? else {
            continue;
        };
        if let Some(message) = state.log.get(id, head.last_seq)? {
            let visitor = message
                .decode()
                .is_ok_and(|m| m.sender.kind == crate::message::SenderType::Visitor);
            if visitor {
                state.assist.push(Arc::new(message));
            }
        }
    }
    Ok(())
}
