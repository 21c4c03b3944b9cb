//! The bot task: answers the visitor messages of the chats it holds, after
//! their ack, and hands chats to people. Also the visitor's rating of an
//! answer ([`rate`]; its door `POST /api/v1/visitor/assist/rating` is in
//! [`super::routes`]).
//!
//! For each visitor message of a held chat, in order:
//! 1. not text (an image, a file) → hand off;
//! 2. a request for a person or an angry/urgent message
//!    ([`super::signals`]) → hand off;
//! 3. a pick from the last "did you mean…" (`meta.assist_choice` from the
//!    widget's button, or the choice's number typed by an API client) →
//!    that entry's answer;
//! 4. otherwise the index decides ([`super::retrieval::Index::decide`]):
//!    answer, offer choices, or hand off.
//!
//! The bot's messages are `text` from `{"type": "system", "id": "assist"}`
//! with `meta.assist` (docs/API.md 2.17): `kind` (`answer`, `choices`,
//! `handoff`), the `confidence`, and what matched, which agents see in the
//! thread.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::normalize::{is_han, normalize};
use super::retrieval::{Decision, Match};
use super::signals::{self, Signal};
use crate::conversations::Line;
use crate::error::ApiError;
use crate::ids::{AppId, ConversationId, FaqEntryId};
use crate::message::{Message, MessageKind, SenderType};
use crate::routing::Entering;
use crate::state::AppState;
use crate::store::messages::StoredMessage;
use crate::time::now_ms;

/// `sender.id` of every bot message.
pub const BOT_ID: &str = "assist";

/// The bot task: runs until shutdown.
pub async fn run(state: AppState) {
    loop {
        while let Some(message) = state.assist.take() {
            if let Err(error) = handle(&state, &message).await {
                tracing::error!(%error, conversation = %message.conversation_id, "assist failed on a message");
            }
        }
        tokio::select! {
            _ = state.assist.wake.notified() => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}

/// Why a chat went to a person (`meta.assist.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Requested,
    Urgent,
    Unsure,
    Rating,
    Attachment,
    Off,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::Urgent => "urgent",
            Reason::Unsure => "unsure",
            Reason::Rating => "rating",
            Reason::Attachment => "attachment",
            Reason::Off => "off",
        }
    }
}

/// What SQLite says about a held chat.
struct Held {
    app: AppId,
    app_name: String,
    opened_at: i64,
}

async fn still_held(
    state: &AppState,
    conversation: ConversationId,
) -> Result<Option<Held>, ApiError> {
    let row: Option<(AppId, String, Option<i64>)> = sqlx::query_as(
        "SELECT c.app_id, a.name, c.opened_at FROM conversations c JOIN apps a ON a.id = c.app_id
         WHERE c.id = ? AND c.assist_state = 'bot' AND c.status = 'pending' AND c.assignee_id IS NULL",
    )
    .bind(conversation)
    .fetch_optional(&state.db)
    .await?;
    Ok(row.map(|(app, app_name, opened_at)| Held {
        app,
        app_name,
        opened_at: opened_at.unwrap_or_default(),
    }))
}

async fn handle(state: &AppState, stored: &Arc<StoredMessage>) -> Result<(), ApiError> {
    let conversation = stored.conversation_id;
    if stored.start {
        // Whether the bot holds it is decided by the start's transaction.
        state.starts.settled(conversation).await;
    }
    if !state.assist.is_held(conversation) {
        return Ok(());
    }
    let message = stored.decode().map_err(ApiError::internal)?;
    if message.sender.kind != SenderType::Visitor {
        return Ok(());
    }
    let Some(held) = still_held(state, conversation).await? else {
        state.assist.release(conversation);
        return Ok(());
    };
    let chinese = message.content.chars().any(is_han);
    let settings = {
        let mut conn = state.db.acquire().await?;
        state.assist.settings(&mut conn, held.app).await?
    };
    if settings.mode == super::settings::Mode::Off {
        return hand_off(
            state,
            conversation,
            &held,
            &message,
            Reason::Off,
            None,
            chinese,
        )
        .await;
    }
    if message.kind != MessageKind::Text {
        return hand_off(
            state,
            conversation,
            &held,
            &message,
            Reason::Attachment,
            None,
            chinese,
        )
        .await;
    }
    let text = normalize(&message.content);
    match signals::detect(&text) {
        Some(Signal::Human) => {
            return hand_off(
                state,
                conversation,
                &held,
                &message,
                Reason::Requested,
                None,
                chinese,
            )
            .await;
        }
        Some(Signal::Urgent) => {
            return hand_off(
                state,
                conversation,
                &held,
                &message,
                Reason::Urgent,
                None,
                chinese,
            )
            .await;
        }
        None => {}
    }
    let index = state.assist.index(state, held.app).await?;
    if let Some(entry) = picked(state, conversation, &message, &text)
        && let Some(found) = index.entry(entry)
    {
        let matched = Match {
            entry,
            confidence: 1.0,
            question: found.questions.first().cloned().unwrap_or_default(),
        };
        let answer = found.answer.clone();
        return answer_with(
            state,
            conversation,
            &held,
            &message,
            &matched,
            answer,
            "choice",
        )
        .await;
    }
    match index.decide(&message.content, settings.thresholds()) {
        Decision::Answer(matched) => {
            let answer = index
                .entry(matched.entry)
                .map(|e| e.answer.clone())
                .unwrap_or_default();
            answer_with(
                state,
                conversation,
                &held,
                &message,
                &matched,
                answer,
                "retrieval",
            )
            .await
        }
        Decision::Choices(choices) => {
            offer(state, conversation, &held, &message, &choices, chinese).await
        }
        Decision::Unsure(best) => {
            hand_off(
                state,
                conversation,
                &held,
                &message,
                Reason::Unsure,
                best.as_ref(),
                chinese,
            )
            .await
        }
    }
}

/// The entry a visitor picked from the last choices, if this message is a
/// pick: the widget's `meta.assist_choice`, or the choice's number.
fn picked(
    state: &AppState,
    conversation: ConversationId,
    message: &Message,
    text: &str,
) -> Option<FaqEntryId> {
    let choices = state.assist.choices.lock().get(&conversation).cloned()?;
    if let Some(id) = message
        .meta
        .get("assist_choice")
        .and_then(Value::as_str)
        .and_then(|id| id.parse::<FaqEntryId>().ok())
    {
        return choices.contains(&id).then_some(id);
    }
    let number: usize = text.trim_end_matches(['.', ')', '、']).parse().ok()?;
    choices.get(number.checked_sub(1)?).copied()
}

async fn append(
    state: &AppState,
    conversation: ConversationId,
    held: &Held,
    reply_to: u64,
    content: String,
    meta: Value,
) -> Result<(), ApiError> {
    let line = Line::system(
        BOT_ID,
        held.app_name.clone(),
        content,
        json!({ "assist": meta }),
    )
    .once(format!("assist-{reply_to}"));
    crate::conversations::send::line(state, conversation, line).await?;
    Ok(())
}

async fn answer_with(
    state: &AppState,
    conversation: ConversationId,
    held: &Held,
    message: &Message,
    matched: &Match,
    answer: String,
    how: &str,
) -> Result<(), ApiError> {
    state.assist.choices.lock().remove(&conversation);
    append(
        state,
        conversation,
        held,
        message.seq,
        answer,
        json!({
            "kind": "answer",
            "entry_id": matched.entry,
            "question": matched.question,
            "confidence": round(matched.confidence),
            "matched_by": how,
            "reply_to": message.seq,
        }),
    )
    .await
}

fn round(confidence: f32) -> f64 {
    (f64::from(confidence) * 1000.0).round() / 1000.0
}

async fn offer(
    state: &AppState,
    conversation: ConversationId,
    held: &Held,
    message: &Message,
    choices: &[Match],
    chinese: bool,
) -> Result<(), ApiError> {
    let mut content = if chinese {
        "您是想问以下哪个问题？".to_owned()
    } else {
        "Did you mean one of these?".to_owned()
    };
    for (i, choice) in choices.iter().enumerate() {
        content.push_str(&format!("\n{}. {}", i + 1, choice.question));
    }
    content.push_str(if chinese {
        "\n请回复序号选择，或回复“人工”联系客服。"
    } else {
        "\nReply with a number, or \"human\" to talk to a person."
    });
    state
        .assist
        .choices
        .lock()
        .insert(conversation, choices.iter().map(|c| c.entry).collect());
    append(
        state,
        conversation,
        held,
        message.seq,
        content,
        json!({
            "kind": "choices",
            "choices": choices.iter().map(|c| json!({
                "entry_id": c.entry, "question": c.question, "confidence": round(c.confidence),
            })).collect::<Vec<_>>(),
            "confidence": choices.first().map(|c| round(c.confidence)),
            "reply_to": message.seq,
        }),
    )
    .await
}

/// Sends the chat to people: the bot says so, the chat enters the queue as
/// a new chat does (rules with the visitor's message, automatic
/// assignment), agents get its `conversation` frame, and the offline
/// auto-reply follows when the shop is unavailable.
async fn hand_off(
    state: &AppState,
    conversation: ConversationId,
    held: &Held,
    message: &Message,
    reason: Reason,
    best: Option<&Match>,
    chinese: bool,
) -> Result<(), ApiError> {
    let content = if chinese {
        "好的，已为您转接人工客服，请稍候。"
    } else {
        "I'm passing you to a person from our team; please wait a moment."
    };
    append(
        state,
        conversation,
        held,
        message.seq,
        content.to_owned(),
        json!({
            "kind": "handoff",
            "reason": reason.as_str(),
            "confidence": best.map(|b| round(b.confidence)),
            "entry_id": best.map(|b| b.entry),
            "question": best.map(|b| b.question.clone()),
            "reply_to": message.seq,
        }),
    )
    .await?;
    queue(state, conversation, held, &message.content).await
}

/// The chat leaves the bot for the queue (idempotent: only a held chat
/// moves).
async fn queue(
    state: &AppState,
    conversation: ConversationId,
    held: &Held,
    first_message: &str,
) -> Result<(), ApiError> {
    let pass = state.routing.lock().await;
    let mut tx = crate::store::db::begin_write(&state.db).await?;
    let now = now_ms();
    let moved: Option<(String,)> = sqlx::query_as(
        "UPDATE conversations SET status = 'queued', queued_at = ?2, assist_state = 'handed_off'
         WHERE id = ?1 AND assist_state = 'bot' AND status = 'pending' AND assignee_id IS NULL
         RETURNING (SELECT v.attributes FROM visitors v WHERE v.id = conversations.visitor_id)",
    )
    .bind(conversation)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((attributes,)) = moved else {
        drop(tx);
        drop(pass);
        state.assist.release(conversation);
        return Ok(());
    };
    let entering = [Entering {
        conversation,
        app_id: held.app,
        first_message,
        attributes: &attributes,
    }];
    let assigned = crate::routing::enter(&pass, &mut tx, &entering).await?;
    tx.commit().await?;
    drop(pass);
    state.assist.release(conversation);
    crate::routing::announce_assigned(state, &assigned).await?;
    if assigned.is_empty() {
        crate::conversations::announce(state, conversation).await?;
    }
    crate::app_settings::offline_auto_reply(state, conversation, held.app, held.opened_at).await
}

/// A visitor's rating of a bot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

/// What a rating did.
#[derive(Debug)]
pub struct Rated {
    /// The FAQ entry the rated answer came from.
    pub entry_id: Option<String>,
    /// The chat went to a person because of this rating.
    pub handed_off: bool,
}

/// A visitor rates a bot answer in its own conversation; 👎 hands the chat
/// to a person at once. Rating again replaces the rating.
pub async fn rate(
    state: &AppState,
    conversation: ConversationId,
    rated_seq: u64,
    rating: Rating,
) -> Result<Rated, ApiError> {
    let stored = state
        .log
        .get(conversation, rated_seq)
        .map_err(ApiError::internal)?
        .filter(|m| !m.note)
        .ok_or_else(|| ApiError::not_found("message").in_field("seq"))?;
    let message = stored.decode().map_err(ApiError::internal)?;
    let assist = message.meta.get("assist");
    let is_answer = message.sender.kind == SenderType::System
        && message.sender.id == BOT_ID
        && assist.and_then(|a| a.get("kind")).and_then(Value::as_str) == Some("answer");
    if !is_answer {
        return Err(ApiError::bad_request("only a bot answer can be rated").in_field("seq"));
    }
    let entry_id = assist
        .and_then(|a| a.get("entry_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let seq =
        i64::try_from(rated_seq).map_err(|_| ApiError::bad_request("bad seq").in_field("seq"))?;
    sqlx::query(
        "INSERT INTO assist_ratings (conversation_id, seq, entry_id, rating, created_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(conversation_id, seq) DO UPDATE SET rating = excluded.rating,
             created_at = excluded.created_at",
    )
    .bind(conversation)
    .bind(seq)
    .bind(&entry_id)
    .bind(match rating {
        Rating::Up => "up",
        Rating::Down => "down",
    })
    .bind(now_ms())
    .execute(&state.db)
    .await?;
    let mut handed_off = false;
    if rating == Rating::Down
        && let Some(held) = still_held(state, conversation).await?
    {
        let chinese = message.content.chars().any(is_han);
        // The reply's id derives from the rated answer's seq, so a
        // second 👎 on it writes nothing twice.
        let rated = Message {
            content: String::new(),
            ..message
        };
        hand_off(
            state,
            conversation,
            &held,
            &rated,
            Reason::Rating,
            None,
            chinese,
        )
        .await?;
        handed_off = true;
    }
    Ok(Rated {
        entry_id,
        handed_off,
    })
}
