//! Routing: who gets a new chat. Policies, the queue, rules, teams, claim
//! and transfer; presence (connection loss → `away`) in [`presence`]. The
//! operations are here and in the submodules; their doors (`/api/v1/routing`,
//! `/queue`, `/routing/rules`, `/teams`, `/conversations/{id}/claim` and
//! `…/transfer`) are all in [`routes`].
//!
//! Where the state lives: everything is in SQLite (`conversations.status /
//! assignee_id / team_id / queued_at`, `agents.status / max_concurrent /
//! last_assigned_at`, `teams`, `team_members`, `routing_rules`, and the
//! policy in `settings`). Nothing routing decides is only in memory, so a
//! restart loses nothing.
//!
//! Invariants:
//! - an assignment by routing or by a claim is one conditional `UPDATE`
//!   (`… WHERE status = 'queued' AND assignee_id IS NULL`, and for routing
//!   also "the agent is online and under capacity" in the same statement):
//!   SQLite runs each statement atomically, so two claimers, or a claim and
//!   the router, can never both win, and an agent is never pushed over
//!   `max_concurrent` by routing;
//! - the queue drains urgent chats first, then in FIFO order,
//!   `(-priority, queued_at, id)` (priority: assist/insight.rs); a conversation
//!   whose team has nobody free is skipped, not blocking the ones behind it
//!   that others can take;
//! - every routing pass (a burst of new chats, a drain) runs under one
//!   async lock ([`Routing::lock`]), so passes do not interleave and the
//!   order stays FIFO; the lock is taken before SQLite's write lock, never
//!   after it.
//!
//! Load: an agent's load is the number of conversations assigned to them
//! with status `open` or `pending`; `resolved` and `queued` ones do not count.

pub mod claim;
pub mod presence;
pub mod routes;
pub mod rules;
pub mod teams;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::SqliteConnection;

use crate::change::{After, Change};
use crate::conversations;
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId, TeamId};
use crate::state::AppState;
use crate::time::now_ms;

/// How routing picks among free agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The free agent whose last automatic assignment is oldest.
    RoundRobin,
    /// The free agent with the fewest open/pending conversations (ties: round robin).
    LeastBusy,
}

impl Policy {
    fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::LeastBusy => "least_busy",
        }
    }
}

/// The admin's choices, `GET/PATCH /api/v1/routing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub policy: Policy,
    /// Off: nothing is assigned automatically; chats wait in the queue for
    /// a claim (rules still set their team).
    pub auto_assign: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::RoundRobin,
            auto_assign: true,
        }
    }
}

const POLICY_KEY: &str = "routing.policy";
const AUTO_ASSIGN_KEY: &str = "routing.auto_assign";

pub async fn settings<'e>(db: impl sqlx::SqliteExecutor<'e>) -> Result<Settings, ApiError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM settings WHERE key IN (?, ?)")
            .bind(POLICY_KEY)
            .bind(AUTO_ASSIGN_KEY)
            .fetch_all(db)
            .await?;
    let mut settings = Settings::default();
    for (key, value) in rows {
        match key.as_str() {
            POLICY_KEY => {
                if let Ok(policy) = serde_json::from_value(Value::String(value)) {
                    settings.policy = policy;
                }
            }
            AUTO_ASSIGN_KEY => settings.auto_assign = value == "true",
            _ => {}
        }
    }
    Ok(settings)
}

/// The serializer of routing passes (see the module invariants).
#[derive(Default)]
pub struct Routing {
    pass: tokio::sync::Mutex<()>,
}

/// A system `event` message in a conversation's thread; visitors see it.
/// Its text must not carry anything internal.
pub async fn event(
    state: &AppState,
    conversation: ConversationId,
    content: String,
    meta: Value,
) -> Result<(), ApiError> {
    conversations::send::line(
        state,
        conversation,
        conversations::Line::event(content, meta),
    )
    .await?;
    Ok(())
}

/// A chat that a routing pass gave to an agent. The pass only writes
/// SQLite; its caller then appends the visitor's "X joined the
/// conversation" line ([`joined`]) and announces the conversation.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub conversation: ConversationId,
    pub agent: AgentId,
    pub name: String,
}

/// A conversation that entered the queue with the visitor's first message
/// (or one that reopened it), for [`enter`].
pub struct Entering<'a> {
    pub conversation: ConversationId,
    pub app_id: AppId,
    pub first_message: &'a str,
    /// The visitor's attributes (JSON text), for the rules.
    pub attributes: &'a str,
}

/// New chats entered the queue (a burst of them, in the caller's
/// transaction, under the routing lock): rules pick each one's team or
/// agent (the rules are read once), then one pass gives the queue, new
/// chats in their FIFO place, to free agents. Returns the assignments for
/// the caller to announce after its commit.
pub async fn enter(
    _pass: &RoutingPass<'_>,
    conn: &mut SqliteConnection,
    entering: &[Entering<'_>],
) -> Result<Vec<Assigned>, ApiError> {
    if entering.is_empty() {
        return Ok(Vec::new());
    }
    let rules = rules::enabled(&mut *conn).await?;
    let mut agents = Vec::new();
    for chat in entering {
        let attributes: Value = serde_json::from_str(chat.attributes).unwrap_or_else(|_| json!({}));
        // The intent the starter predicted (assist/insight.rs).
        let insight: Option<(Option<String>,)> =
            sqlx::query_as("SELECT assist_insight FROM conversations WHERE id = ?")
                .bind(chat.conversation)
                .fetch_optional(&mut *conn)
                .await?;
        let intent = insight
            .and_then(|(text,)| text)
            .and_then(|text| serde_json::from_str::<crate::assist::insight::Insight>(&text).ok())
            .and_then(|insight| insight.intent);
        let target = rules::pick(
            &rules,
            chat.app_id,
            chat.first_message,
            &attributes,
            intent.as_ref(),
        );
        let team = match target {
            Some(rules::Target::Team(team)) => Some(team),
            _ => None,
        };
        let updated = sqlx::query(
            "UPDATE conversations SET team_id = ? WHERE id = ? AND status = 'queued' AND assignee_id IS NULL",
        )
        .bind(team)
        .bind(chat.conversation)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if let (1, Some(rules::Target::Agent(agent))) = (updated, target) {
            agents.push((chat.conversation, agent));
        }
    }
    let settings = settings(&mut *conn).await?;
    if !settings.auto_assign {
        return Ok(Vec::new());
    }
    let mut assigned = Vec::new();
    for (conversation, agent) in agents {
        if let Some(name) = try_assign(&mut *conn, conversation, agent).await? {
            assigned.push(Assigned {
                conversation,
                agent,
                name,
            });
        }
    }
    assigned.extend(drain_on(conn, settings).await?);
    Ok(assigned)
}

/// Proof that the routing lock is held (see the module invariants).
pub struct RoutingPass<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl Routing {
    /// Takes the routing lock: passes do not interleave.
    pub async fn lock(&self) -> RoutingPass<'_> {
        RoutingPass(self.pass.lock().await)
    }
}

/// Gives queued conversations to free agents, oldest first. Called after
/// anything that may free capacity or add an agent.
pub async fn drain(state: &AppState) -> Result<(), ApiError> {
    let queued: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM conversations WHERE status = 'queued' LIMIT 1")
            .fetch_optional(&state.db)
            .await?;
    if queued.is_none() {
        return Ok(());
    }
    let pass = state.routing.lock().await;
    let settings = settings(&state.db).await?;
    if !settings.auto_assign {
        return Ok(());
    }
    let mut conn = state.db.acquire().await?;
    let assigned = drain_on(&mut conn, settings).await?;
    drop(conn);
    drop(pass);
    announce_assigned(state, &assigned).await
}

/// After a pass: each assignment's "X joined" line, then its conversation
/// to every agent.
pub async fn announce_assigned(state: &AppState, assigned: &[Assigned]) -> Result<(), ApiError> {
    for chat in assigned {
        joined(state, chat.conversation, chat.agent, &chat.name, "auto").await?;
        conversations::announce(state, chat.conversation).await?;
    }
    Ok(())
}

/// As [`drain`], logging instead of failing: for callers whose own change
/// already succeeded.
pub async fn drain_logged(state: &AppState) {
    if let Err(error) = drain(state).await {
        tracing::error!(%error, "draining the queue failed");
    }
}

/// How many queued conversations one pass looks at, at most.
const PASS_MAX: usize = 2_000;
const PAGE: i64 = 200;

/// One drain pass on `conn` (a pool connection, or the caller's
/// transaction): every assignment is one conditional statement.
async fn drain_on(
    conn: &mut SqliteConnection,
    settings: Settings,
) -> Result<Vec<Assigned>, ApiError> {
    let mut assigned = Vec::new();
    let mut after: Option<(i64, ConversationId, i64)> = None;
    let mut seen = 0usize;
    while seen < PASS_MAX {
        if !anyone_free(&mut *conn).await? {
            return Ok(assigned);
        }
        // Urgent chats first (assist/insight.rs), then FIFO.
        let page: Vec<(ConversationId, Option<TeamId>, i64, i64)> = sqlx::query_as(
            "SELECT id, team_id, COALESCE(queued_at, 0), -priority FROM conversations
             WHERE status = 'queued' AND assignee_id IS NULL AND started_at IS NOT NULL
               AND (?1 IS NULL OR (-priority, COALESCE(queued_at, 0), id) > (?4, ?1, ?2))
             ORDER BY -priority, COALESCE(queued_at, 0), id LIMIT ?3",
        )
        .bind(after.map(|(at, _, _)| at))
        .bind(after.map(|(_, id, _)| id))
        .bind(PAGE)
        .bind(after.map(|(_, _, rank)| rank))
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = page.last() else {
            return Ok(assigned);
        };
        after = Some((last.2, last.0, last.3));
        seen += page.len();
        let full = page.len() as i64 == PAGE;
        for (conversation, team, _, _) in page {
            for agent in candidates(&mut *conn, team, settings.policy).await? {
                if let Some(name) = try_assign(&mut *conn, conversation, agent).await? {
                    assigned.push(Assigned {
                        conversation,
                        agent,
                        name,
                    });
                    break;
                }
            }
        }
        if !full {
            return Ok(assigned);
        }
    }
    Ok(assigned)
}

const LOAD: &str = "(SELECT COUNT(*) FROM conversations x WHERE x.assignee_id = a.id AND x.status IN ('open', 'pending'))";

async fn anyone_free(conn: &mut SqliteConnection) -> Result<bool, ApiError> {
    let row: Option<(i64,)> = sqlx::query_as(&format!(
        "SELECT 1 FROM agents a WHERE a.status = 'online' AND a.deactivated_at IS NULL AND {LOAD} < a.max_concurrent LIMIT 1"
    ))
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Free agents (online, under capacity, in `team` if given), best first.
async fn candidates(
    conn: &mut SqliteConnection,
    team: Option<TeamId>,
    policy: Policy,
) -> Result<Vec<AgentId>, ApiError> {
    let order = match policy {
        Policy::RoundRobin => "COALESCE(a.last_assigned_at, 0), a.id".to_owned(),
        Policy::LeastBusy => format!("{LOAD}, COALESCE(a.last_assigned_at, 0), a.id"),
    };
    let rows: Vec<(AgentId,)> = sqlx::query_as(&format!(
        "SELECT a.id FROM agents a
         WHERE a.status = 'online' AND a.deactivated_at IS NULL AND {LOAD} < a.max_concurrent
           AND (?1 IS NULL OR EXISTS (SELECT 1 FROM team_members m WHERE m.team_id = ?1 AND m.agent_id = a.id))
         ORDER BY {order} LIMIT 8"
    ))
    .bind(team)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Assigns a queued, unassigned conversation to `agent` if the agent is
/// online and under capacity, all in one statement (race-safe). Returns
/// the agent's name when it won; the caller appends "X joined the
/// conversation" and announces ([`announce_assigned`]).
async fn try_assign(
    conn: &mut SqliteConnection,
    conversation: ConversationId,
    agent: AgentId,
) -> Result<Option<String>, ApiError> {
    let now = now_ms();
    let won: Option<(String,)> = sqlx::query_as(&format!(
        "UPDATE conversations SET assignee_id = ?1, status = 'open'
         WHERE id = ?2 AND status = 'queued' AND assignee_id IS NULL
           AND EXISTS (SELECT 1 FROM agents a WHERE a.id = ?1 AND a.status = 'online' AND a.deactivated_at IS NULL
                       AND {LOAD} < a.max_concurrent)
         RETURNING (SELECT display_name FROM agents WHERE id = ?1)"
    ))
    .bind(agent)
    .bind(conversation)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((name,)) = won else {
        return Ok(None);
    };
    sqlx::query("UPDATE agents SET last_assigned_at = ? WHERE id = ?")
        .bind(now)
        .bind(agent)
        .execute(&mut *conn)
        .await?;
    Ok(Some(name))
}

/// The visitor-visible "X joined the conversation" event.
pub(crate) async fn joined(
    state: &AppState,
    conversation: ConversationId,
    agent: AgentId,
    name: &str,
    how: &str,
) -> Result<(), ApiError> {
    event(
        state,
        conversation,
        format!("{name} joined the conversation"),
        // `agent_name` lets a client word the line in its reader's language
        // without a lookup a visitor cannot make (docs/API.md, event lines).
        json!({"event": "assigned", "agent_id": agent, "agent_name": name, "by": how}),
    )
    .await
}

/// A change of the routing settings (`PATCH /api/v1/routing`): the fields
/// given are set, the others kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    pub policy: Option<Policy>,
    pub auto_assign: Option<bool>,
}

/// Writes the settings `update` gives, audited (`routing.update`, by
/// `admin`), then drains the queue (turning auto-assignment on may have
/// one to drain). Returns the settings now in force.
pub async fn update_settings(
    state: &AppState,
    admin: AgentId,
    update: SettingsUpdate,
) -> Result<Settings, ApiError> {
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let mut changed = serde_json::Map::new();
    for (key, value, field) in [
        (
            POLICY_KEY,
            update.policy.map(|p| p.as_str().to_owned()),
            "policy",
        ),
        (
            AUTO_ASSIGN_KEY,
            update.auto_assign.map(|b| b.to_string()),
            "auto_assign",
        ),
    ] {
        if let Some(value) = value {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES (?, ?)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(&value)
            .execute(&mut *change)
            .await?;
            changed.insert(field.to_owned(), Value::String(value));
        }
    }
    change
        .audit_all("routing.update", Value::Object(changed))
        .await?;
    // Turning auto-assignment on may have a queue to drain.
    change.then(After::Drain);
    change.commit(state).await?;
    settings(&state.db).await
}

/// Which queued chats [`queue`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFilter {
    All,
    /// The chats routed to no team.
    NoTeam,
    Team(TeamId),
}

/// One chat in the queue, as [`queue`] lists it.
#[derive(Debug, Serialize)]
pub struct QueueEntry {
    /// 1 for the head of the queue (among the entries listed by this filter).
    pub position: u64,
    /// Milliseconds since `queued_at`, at the time of the answer.
    pub waiting_ms: i64,
    pub conversation: conversations::Conversation,
}

/// The head of the queue under a filter.
#[derive(Debug)]
pub struct QueueHead {
    /// How many conversations wait in all (under the filter).
    pub total: u64,
    /// The first `limit` of them, head first.
    pub entries: Vec<QueueEntry>,
}

/// The queue head first (urgent chats first, then FIFO), at most `limit`
/// entries, as every start acked before the call left it.
pub async fn queue(
    state: &AppState,
    filter: QueueFilter,
    limit: u32,
) -> Result<QueueHead, ApiError> {
    // Every start acked before this request is in the queue (see
    // `conversations::start`).
    state.starts.settled_all().await;
    // `all`, `none` (routed to no team) or a team id.
    let team = match filter {
        QueueFilter::All => "all".to_owned(),
        QueueFilter::NoTeam => "none".to_owned(),
        QueueFilter::Team(team) => team.to_string(),
    };
    const FILTER: &str = "status = 'queued' AND started_at IS NOT NULL
        AND (?1 = 'all' OR (?1 = 'none' AND team_id IS NULL) OR team_id = ?1)";
    let total: (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM conversations WHERE {FILTER}"
    ))
    .bind(&team)
    .fetch_one(&state.db)
    .await?;
    let ids: Vec<(ConversationId,)> = sqlx::query_as(&format!(
        "SELECT id FROM conversations WHERE {FILTER} ORDER BY priority DESC, COALESCE(queued_at, 0), id LIMIT ?2"
    ))
    .bind(&team)
    .bind(i64::from(limit))
    .fetch_all(&state.db)
    .await?;
    let now = now_ms();
    let mut entries = Vec::with_capacity(ids.len());
    for (position, (id,)) in ids.into_iter().enumerate() {
        if let Some(mut conversation) = conversations::find(state, id).await? {
            conversations::fill_last_message(&state.log, &mut conversation);
            entries.push(QueueEntry {
                position: position as u64 + 1,
                waiting_ms: conversation.queued_at.map_or(0, |at| (now - at).max(0)),
                conversation,
            });
        }
    }
    Ok(QueueHead {
        total: u64::try_from(total.0).unwrap_or(0),
        entries,
    })
}
