//! Starting a conversation, off the send path.
//!
//! A visitor's first message (or one that reopens a resolved chat) is
//! acknowledged as soon as it is durable, like any other message. It is
//! written with a `conv_start` marker in its own log batch
//! ([`crate::store::messages::Draft::start`]); the log's commit hook hands
//! it to [`Starts`], and the starter task ([`run`]) does the rest in
//! batches: every start waiting is committed in one SQLite transaction
//! (status, `queued_at`, `opened_at`, the `conversation_opened` report
//! event, the rules' team, and one routing pass for the whole burst), then
//! the markers are deleted, the agents get each `conversation` frame, the
//! visitors the "X joined" lines and any offline auto-reply.
//!
//! Invariants:
//! - A start is derivable from the log: its marker is written in the same
//!   `WriteBatch` as its message and deleted only after its transaction
//!   committed. At start-up, before anything is served, [`recover`] runs
//!   every marker left (a crash between the ack and the commit).
//! - Replaying a start changes nothing once it was committed:
//!   `conversations.start_seq` holds the seq of the message that started
//!   the current session, and a start only reopens a resolved conversation
//!   whose `start_seq` is older than its message.
//! - Starts run in commit order, each conversation at most once per pass
//!   (its first waiting message routes it).
//! - Reads wait for the starts acknowledged before them ([`Starts::settled`],
//!   [`Starts::settled_all`]): an agent's list, a conversation, the queue,
//!   reports, a status change, and a further send to the same conversation
//!   (so a thread reads as before: first message, its auto-reply or "joined"
//!   line, then the next). The wait is bounded ([`SETTLE_WAIT_MAX`]); a
//!   message frame can still reach agents before its `conversation` frame,
//!   as it always could.
//! - Bounded: at most [`QUEUE_MAX`] starts wait; a send that would start
//!   one more waits for room before it is appended.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Notify, watch};

use super::ConversationCache;
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId};
use crate::routing::{self, Assigned, Entering};
use crate::state::AppState;
use crate::store::messages::StoredMessage;
use crate::time::now_ms;

/// Starts waiting at most; a send that would add one more waits for room.
pub const QUEUE_MAX: usize = 20_000;
/// Starts one pass (one transaction) takes at most.
const PASS_MAX: usize = 2_000;
/// How long a read or a send waits for pending starts before it goes on
/// without them (SQLite stuck or failing: the starter retries).
pub const SETTLE_WAIT_MAX: Duration = Duration::from_secs(5);
/// Pause after a failed pass before it is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A committed message that starts its conversation, with its ticket
/// (the number of starts handed over before it, plus one).
struct Start {
    ticket: u64,
    message: Arc<StoredMessage>,
}

#[derive(Default)]
struct Waiting {
    queue: VecDeque<Start>,
    /// Each conversation's newest ticket not yet done.
    latest: HashMap<ConversationId, u64>,
}

/// The starts handed over by the log and not yet done.
pub struct Starts {
    waiting: Mutex<Waiting>,
    /// Tickets handed out so far (the last one).
    issued: AtomicU64,
    /// Every ticket up to this one is done.
    done: watch::Sender<u64>,
    wake: Notify,
}

impl Default for Starts {
    fn default() -> Self {
        Starts {
            waiting: Mutex::new(Waiting::default()),
            issued: AtomicU64::new(0),
            done: watch::Sender::new(0),
            wake: Notify::new(),
        }
    }
}

impl Starts {
    /// Called on the log's writer thread with each committed batch: takes
    /// the messages written with a start marker. Never blocks on I/O.
    pub fn mark(&self, messages: &[(Arc<StoredMessage>, Option<u64>)]) {
        let mut starts = messages.iter().filter(|(m, _)| m.start).peekable();
        if starts.peek().is_none() {
            return;
        }
        let mut waiting = self.waiting.lock();
        for (message, _) in starts {
            let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
            waiting.latest.insert(message.conversation_id, ticket);
            waiting.queue.push_back(Start {
                ticket,
                message: Arc::clone(message),
            });
        }
        drop(waiting);
        self.wake.notify_one();
    }

    fn done(&self) -> u64 {
        *self.done.borrow()
    }

    /// Nothing handed over is still waiting: the common case, two atomic
    /// reads.
    fn idle(&self) -> bool {
        self.done() >= self.issued.load(Ordering::Acquire)
    }

    async fn wait_done(&self, ticket: u64) {
        let mut done = self.done.subscribe();
        let late = tokio::time::timeout(SETTLE_WAIT_MAX, done.wait_for(|d| *d >= ticket))
            .await
            .is_err();
        if late {
            tracing::warn!(
                ticket,
                "a read went on without a conversation start that is late"
            );
        }
    }

    /// Waits until this conversation's starts acknowledged so far are done.
    pub async fn settled(&self, conversation: ConversationId) {
        if self.idle() {
            return;
        }
        let ticket = self.waiting.lock().latest.get(&conversation).copied();
        if let Some(ticket) = ticket {
            self.wait_done(ticket).await;
        }
    }

    /// Waits until every start acknowledged so far is done.
    pub async fn settled_all(&self) {
        if self.idle() {
            return;
        }
        self.wait_done(self.issued.load(Ordering::Acquire)).await;
    }

    /// Waits while [`QUEUE_MAX`] starts wait (see the module doc).
    pub async fn room(&self) {
        let full = |done: u64| {
            self.issued.load(Ordering::Acquire).saturating_sub(done) >= QUEUE_MAX as u64
        };
        if !full(self.done()) {
            return;
        }
        let mut done = self.done.subscribe();
        let _room = tokio::time::timeout(SETTLE_WAIT_MAX, done.wait_for(|done| !full(*done)))
            .await
            .is_ok();
    }

    fn take(&self, max: usize) -> Vec<Start> {
        let mut waiting = self.waiting.lock();
        let count = waiting.queue.len().min(max);
        waiting.queue.drain(..count).collect()
    }

    /// A failed pass's starts go back to the front, in order.
    fn put_back(&self, starts: Vec<Start>) {
        let mut waiting = self.waiting.lock();
        for start in starts.into_iter().rev() {
            waiting.queue.push_front(start);
        }
    }

    fn finish(&self, through: u64) {
        self.waiting
            .lock()
            .latest
            .retain(|_, ticket| *ticket > through);
        self.done.send_modify(|done| *done = (*done).max(through));
    }
}

/// The starter task: one pass per wake-up while starts wait; a last pass
/// at shutdown (the log is closed after it).
pub async fn run(state: AppState) {
    let mut connection: Option<SqliteConnection> = None;
    loop {
        let stopping = tokio::select! {
            _ = state.starts.wake.notified() => false,
            _ = state.shutdown.cancelled() => true,
        };
        loop {
            let starts = state.starts.take(PASS_MAX);
            if starts.is_empty() {
                break;
            }
            if let Err((error, starts)) = pass(&state, &mut connection, starts).await {
                tracing::error!(%error, "starting conversations failed; retrying");
                state.starts.put_back(starts);
                if stopping {
                    // Their markers stay in the log: done at the next start.
                    return;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        if stopping {
            return;
        }
    }
}

/// At start-up, before serving: the starts a crash interrupted (every
/// marker left in the log), done in order.
pub async fn recover(state: &AppState) -> anyhow::Result<()> {
    let reading = Arc::clone(state);
    let markers = tokio::task::spawn_blocking(move || reading.log.pending_starts()).await??;
    if markers.is_empty() {
        return Ok(());
    }
    let mut messages = Vec::with_capacity(markers.len());
    let mut orphans = Vec::new();
    for (conversation, seq) in markers {
        match state.log.get(conversation, seq)? {
            Some(mut message) => {
                message.start = true;
                messages.push((Arc::new(message), None));
            }
            None => orphans.push((conversation, seq)),
        }
    }
    // Commit order is seq order within a conversation; across them, the
    // message's time is the best order left.
    messages.sort_by_key(|(m, _): &(Arc<StoredMessage>, Option<u64>)| (m.created_at, m.seq));
    tracing::info!(
        starts = messages.len(),
        "completing conversation starts interrupted by a stop"
    );
    state.starts.mark(&messages);
    let mut connection = None;
    loop {
        let starts = state.starts.take(PASS_MAX);
        if starts.is_empty() {
            break;
        }
        if let Err((error, _)) = pass(state, &mut connection, starts).await {
            anyhow::bail!("completing interrupted conversation starts: {error}");
        }
    }
    if !orphans.is_empty() {
        let clearing = Arc::clone(state);
        tokio::task::spawn_blocking(move || clearing.log.clear_starts(&orphans)).await??;
    }
    Ok(())
}

/// One conversation's share of a pass.
struct Group {
    first: Arc<StoredMessage>,
    /// Every marker of it in this pass (deleted after the commit).
    seqs: Vec<u64>,
}

/// A start that changed the conversation.
struct Begun {
    conversation: ConversationId,
    app_id: AppId,
    assignee: Option<AgentId>,
    attributes: String,
    first_message: String,
    /// Kept by the Assist bot: out of routing, no offline auto-reply yet.
    held: bool,
}

type PassError = (ApiError, Vec<Start>);

async fn pass(
    state: &AppState,
    connection: &mut Option<SqliteConnection>,
    starts: Vec<Start>,
) -> Result<(), PassError> {
    let through = starts.last().map_or(0, |s| s.ticket);
    let mut order: Vec<ConversationId> = Vec::new();
    let mut groups: HashMap<ConversationId, Group> = HashMap::new();
    for start in &starts {
        let id = start.message.conversation_id;
        groups
            .entry(id)
            .and_modify(|group| group.seqs.push(start.message.seq))
            .or_insert_with(|| {
                order.push(id);
                Group {
                    first: Arc::clone(&start.message),
                    seqs: vec![start.message.seq],
                }
            });
    }
    // Marked active before the update: a concurrent resolve (update, then
    // `forget_active`) always ends with the mark removed.
    for id in &order {
        ConversationCache::remember(&state.conversations.active, *id);
    }
    let now = now_ms();
    let committed = match connection.take() {
        Some(conn) => Ok(conn),
        None => crate::store::db::connect_own(&state.config.data_dir, state.config.memory.sqlite())
            .await
            .map_err(ApiError::Internal),
    };
    let committed = match committed {
        Ok(mut conn) => {
            let routing_pass = state.routing.lock().await;
            let result = commit(state, &mut conn, &routing_pass, &order, &groups, now).await;
            drop(routing_pass);
            // A connection that failed may be broken: a new one next time.
            if result.is_ok() {
                *connection = Some(conn);
            }
            result
        }
        Err(error) => Err(error),
    };
    let (begun, assigned) = match committed {
        Ok(done) => done,
        Err(error) => {
            for id in &order {
                state.conversations.forget_active(*id);
            }
            return Err((error, starts));
        }
    };
    // Committed: the markers have served their purpose. A delete lost in a
    // crash only makes the start run again, which then changes nothing.
    let markers: Vec<(ConversationId, u64)> = groups
        .iter()
        .flat_map(|(id, group)| group.seqs.iter().map(|seq| (*id, *seq)))
        .collect();
    let clearing = Arc::clone(state);
    // A write to the log, so it passes the LAN handover's gate as sends do
    // (refused once the shop was handed over: the new host's start
    // completes these starts from their markers).
    let pass = crate::lan::handover::enter(state).await;
    let cleared = match pass {
        Ok(pass) => {
            let cleared =
                tokio::task::spawn_blocking(move || clearing.log.clear_starts(&markers)).await;
            drop(pass);
            cleared
        }
        Err(_) => Ok(Ok(())),
    };
    match cleared {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot delete conversation start markers"),
        Err(error) => tracing::warn!(%error, "deleting conversation start markers panicked"),
    }
    finish_pass(state, &begun, &assigned, now).await;
    state.starts.finish(through);
    Ok(())
}

/// The transaction of a pass: every start, then routing for the burst.
async fn commit(
    state: &AppState,
    connection: &mut SqliteConnection,
    routing_pass: &routing::RoutingPass<'_>,
    order: &[ConversationId],
    groups: &HashMap<ConversationId, Group>,
    now: i64,
) -> Result<(Vec<Begun>, Vec<Assigned>), ApiError> {
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    let mut begun = Vec::new();
    for id in order {
        let Some(group) = groups.get(id) else {
            continue;
        };
        let first_seq = i64::try_from(group.first.seq).unwrap_or(i64::MAX);
        // The session opened when the visitor wrote, not when this pass
        // ran: under a storm (or after a restart that completes an
        // interrupted start) the two differ, and the reports' first
        // response and queue wait are counted from the visitor's message.
        let at = group.first.created_at;
        let last_seq = group.seqs.iter().copied().max().unwrap_or(group.first.seq);
        let changed: Option<(AppId, Option<AgentId>, String)> = sqlx::query_as(
            "UPDATE conversations
             SET status = CASE WHEN assignee_id IS NULL THEN 'queued' ELSE 'open' END,
                 started_at = COALESCE(started_at, ?1),
                 opened_at = ?1, first_response_at = NULL, resolved_at = NULL, queued_at = ?1,
                 start_seq = ?4
             WHERE id = ?2
               AND (started_at IS NULL OR (status = 'resolved' AND COALESCE(start_seq, 0) < ?3))
             RETURNING app_id, assignee_id,
                 (SELECT v.attributes FROM visitors v WHERE v.id = conversations.visitor_id)",
        )
        .bind(at)
        .bind(*id)
        .bind(first_seq)
        .bind(i64::try_from(last_seq).unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((app_id, assignee, attributes)) = changed else {
            // Already going (a cache miss after a restart), or a replayed
            // start of a session since resolved: only the former is active.
            let going: Option<(bool,)> = sqlx::query_as(
                "SELECT started_at IS NOT NULL AND status != 'resolved' FROM conversations WHERE id = ?",
            )
            .bind(*id)
            .fetch_optional(&mut *tx)
            .await?;
            if going.is_none_or(|(going,)| !going) {
                state.conversations.forget_active(*id);
            }
            continue;
        };
        crate::reports::record(
            &mut *tx,
            crate::reports::EventName::ConversationOpened,
            crate::reports::Event {
                app_id: Some(app_id),
                conversation_id: Some(*id),
                agent_id: assignee,
                at: Some(at),
                ..Default::default()
            },
        )
        .await?;
        let held =
            assignee.is_none() && crate::assist::hold(state, &mut tx, *id, app_id, now).await?;
        let first_message = group.first.decode().map(|m| m.content).unwrap_or_default();
        // Intent, language, urgency: before routing, whose rules read them.
        crate::assist::insight::at_start(state, &mut tx, *id, app_id, &first_message).await?;
        begun.push(Begun {
            conversation: *id,
            app_id,
            assignee,
            attributes,
            first_message,
            held,
        });
    }
    let entering: Vec<Entering<'_>> = begun
        .iter()
        .filter(|chat| chat.assignee.is_none() && !chat.held)
        .map(|chat| Entering {
            conversation: chat.conversation,
            app_id: chat.app_id,
            first_message: &chat.first_message,
            attributes: &chat.attributes,
        })
        .collect();
    let assigned = routing::enter(routing_pass, &mut tx, &entering).await?;
    drop(entering);
    tx.commit().await?;
    Ok((begun, assigned))
}

/// After the commit: the visitors' "X joined" lines, every changed
/// conversation to the agents, offline auto-replies. Failures are logged:
/// the start itself is committed.
async fn finish_pass(state: &AppState, begun: &[Begun], assigned: &[Assigned], now: i64) {
    state
        .assist
        .held(begun.iter().filter(|b| b.held).map(|b| b.conversation));
    let joined = assigned.iter().map(|chat| async move {
        if let Err(error) = routing::joined(state, chat.conversation, chat.agent, &chat.name, "auto").await {
            tracing::error!(%error, conversation = %chat.conversation, "appending the joined line failed");
        }
    });
    futures_util::future::join_all(joined).await;
    let mut announced: Vec<ConversationId> = begun.iter().map(|b| b.conversation).collect();
    announced.extend(assigned.iter().map(|a| a.conversation));
    announced.sort_unstable();
    announced.dedup();
    if let Err(error) = super::announce_many(state, &announced).await {
        tracing::error!(%error, "announcing started conversations failed");
    }
    let replies = begun.iter().filter(|chat| !chat.held).map(|chat| async move {
        if let Err(error) =
            crate::app_settings::offline_auto_reply(state, chat.conversation, chat.app_id, now)
                .await
        {
            tracing::error!(%error, conversation = %chat.conversation, "offline auto-reply failed");
        }
    });
    futures_util::future::join_all(replies).await;
}
