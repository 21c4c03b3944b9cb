//! Reports: per day and per agent — conversations, messages, first
//! response and resolution times (median, p90), tickets opened/solved.
//! Computed from `reporting_events` (one row per fact, see migration 0002)
//! and the message index (`search`). The doors under `/api/v1/reports`
//! are in [`routes`].
//!
//! A range is whole days `from..=to` (`YYYY-MM-DD`) in an IANA time zone
//! `tz` (default UTC), at most [`RANGE_MAX_DAYS`] days; a day is bucketed by
//! its local midnight, so DST days are 23 or 25 hours long. Percentiles are
//! nearest-rank: the median of 1, 2, 3, 4 is 2. Message counts follow the
//! log through the search indexer, a few milliseconds behind it.
//!
//! Who sees what: admins see the whole shop; an agent sees only their own
//! row of `/reports/agents` (like Chatwoot's agent reports).

use std::collections::{BTreeMap, HashMap};

pub mod routes;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use sqlx::{SqliteExecutor, SqlitePool};

use crate::agents::{Agent, Role};
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId};
use crate::state::AppState;
use crate::time::now_ms;

/// Longest range one request may cover.
pub const RANGE_MAX_DAYS: i64 = 366;

/// The facts reports count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// A conversation started or reopened (a new session).
    ConversationOpened,
    /// The first agent reply of a session; value = time since opened.
    FirstResponse,
    /// Resolved; value = time since opened.
    ConversationResolved,
    TicketOpened,
    TicketSolved,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::ConversationOpened => "conversation_opened",
            EventName::FirstResponse => "first_response",
            EventName::ConversationResolved => "conversation_resolved",
            EventName::TicketOpened => "ticket_opened",
            EventName::TicketSolved => "ticket_solved",
        }
    }
}

/// One fact to record.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub app_id: Option<AppId>,
    pub conversation_id: Option<ConversationId>,
    pub ticket_number: Option<u64>,
    pub agent_id: Option<AgentId>,
    pub value_ms: Option<i64>,
    /// Defaults to now.
    pub at: Option<i64>,
}

pub async fn record<'e>(
    db: impl SqliteExecutor<'e>,
    name: EventName,
    event: Event,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO reporting_events (name, app_id, conversation_id, ticket_number, agent_id, value_ms, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name.as_str())
    .bind(event.app_id)
    .bind(event.conversation_id)
    .bind(event.ticket_number.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
    .bind(event.agent_id)
    .bind(event.value_ms)
    .bind(event.at.unwrap_or_else(now_ms))
    .execute(db)
    .await?;
    Ok(())
}

/// The range a report is asked for.
#[derive(Debug, Deserialize)]
pub struct RangeParams {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub tz: Option<String>,
}

/// A validated range: its days and each day's start, plus the end.
#[derive(Debug, Clone)]
pub struct Range {
    from: Date,
    to: Date,
    tz: String,
    /// Start of each day, ms; `starts.len()` = number of days.
    starts: Vec<i64>,
    end: i64,
}

/// A range as the answer echoes it.
#[derive(Debug, Serialize)]
pub struct RangeOut {
    from: String,
    to: String,
    tz: String,
    start_ms: i64,
    end_ms: i64,
}

impl Range {
    pub fn parse(params: &RangeParams) -> Result<Range, ApiError> {
        let date = |field: &str, text: Option<&str>| -> Result<Date, ApiError> {
            let text = text.ok_or_else(|| {
                ApiError::bad_request(format!("{field} is required (YYYY-MM-DD)"))
                    .in_field(field.to_owned())
            })?;
            let ok = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
            ok.then(|| text.parse::<Date>().ok())
                .flatten()
                .ok_or_else(|| {
                    ApiError::bad_request(format!("{field} must be a date YYYY-MM-DD"))
                        .in_field(field.to_owned())
                })
        };
        let from = date("from", params.from.as_deref())?;
        let to = date("to", params.to.as_deref())?;
        if to < from {
            return Err(ApiError::bad_request("to is before from").in_field("to"));
        }
        let days = (to - from).get_days() as i64 + 1;
        if days > RANGE_MAX_DAYS {
            return Err(ApiError::bad_request(format!(
                "the range is longer than {RANGE_MAX_DAYS} days"
            )));
        }
        let tz_name = params.tz.clone().unwrap_or_else(|| "UTC".to_owned());
        if tz_name.len() > 64 {
            return Err(ApiError::bad_request("tz is not a known time zone").in_field("tz"));
        }
        let tz = TimeZone::get(&tz_name)
            .map_err(|_| ApiError::bad_request("tz is not a known time zone").in_field("tz"))?;
        let start_of = |day: Date| -> Result<i64, ApiError> {
            day.to_zoned(tz.clone())
                .map(|zoned| zoned.timestamp().as_millisecond())
                .map_err(|_| ApiError::bad_request("date out of range"))
        };
        let mut starts = Vec::with_capacity(days as usize);
        let mut day = from;
        while day <= to {
            starts.push(start_of(day)?);
            day = day
                .tomorrow()
                .map_err(|_| ApiError::bad_request("date out of range"))?;
        }
        let end = start_of(day)?;
        Ok(Range {
            from,
            to,
            tz: tz_name,
            starts,
            end,
        })
    }

    fn start(&self) -> i64 {
        self.starts.first().copied().unwrap_or(self.end)
    }

    /// Index of the day `at` falls in.
    fn day_of(&self, at: i64) -> Option<usize> {
        if at < self.start() || at >= self.end {
            return None;
        }
        Some(self.starts.partition_point(|&start| start <= at) - 1)
    }

    pub fn out(&self) -> RangeOut {
        RangeOut {
            from: self.from.to_string(),
            to: self.to.to_string(),
            tz: self.tz.clone(),
            start_ms: self.start(),
            end_ms: self.end,
        }
    }
}

/// Median and p90 of durations, nearest-rank.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Durations {
    pub count: usize,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn durations(mut values: Vec<i64>) -> Durations {
    values.sort_unstable();
    Durations {
        count: values.len(),
        median_ms: percentile(&values, 0.5),
        p90_ms: percentile(&values, 0.9),
    }
}

/// Raw tallies of one bucket (a day, an agent, the whole range).
#[derive(Debug, Default)]
struct Tally {
    opened: u64,
    resolved: u64,
    visitor_messages: u64,
    agent_messages: u64,
    first_response: Vec<i64>,
    resolution: Vec<i64>,
    tickets_opened: u64,
    tickets_solved: u64,
}

#[derive(Debug, Serialize)]
struct Counts {
    opened: u64,
    resolved: u64,
}

#[derive(Debug, Serialize)]
struct MessageCounts {
    visitor: u64,
    agent: u64,
}

#[derive(Debug, Serialize)]
struct TicketCounts {
    opened: u64,
    solved: u64,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    conversations: Counts,
    messages: MessageCounts,
    first_response: Durations,
    resolution: Durations,
    tickets: TicketCounts,
}

impl From<Tally> for Figures {
    fn from(tally: Tally) -> Figures {
        Figures {
            conversations: Counts {
                opened: tally.opened,
                resolved: tally.resolved,
            },
            messages: MessageCounts {
                visitor: tally.visitor_messages,
                agent: tally.agent_messages,
            },
            first_response: durations(tally.first_response),
            resolution: durations(tally.resolution),
            tickets: TicketCounts {
                opened: tally.tickets_opened,
                solved: tally.tickets_solved,
            },
        }
    }
}

impl Tally {
    fn add_event(&mut self, name: &str, value_ms: Option<i64>) {
        match name {
            "conversation_opened" => self.opened += 1,
            "conversation_resolved" => {
                self.resolved += 1;
                self.resolution.extend(value_ms);
            }
            "first_response" => self.first_response.extend(value_ms),
            "ticket_opened" => self.tickets_opened += 1,
            "ticket_solved" => self.tickets_solved += 1,
            _ => {}
        }
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    name: String,
    agent_id: Option<String>,
    value_ms: Option<i64>,
    created_at: i64,
}

async fn events(db: &SqlitePool, range: &Range) -> Result<Vec<EventRow>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT name, agent_id, value_ms, created_at FROM reporting_events
         WHERE name IN ('conversation_opened', 'first_response', 'conversation_resolved',
                        'ticket_opened', 'ticket_solved')
           AND created_at >= ? AND created_at < ?",
    )
    .bind(range.start())
    .bind(range.end)
    .fetch_all(db)
    .await?)
}

/// Messages per day and sender: `(day, sender_type, sender_id, count)`.
/// Notes and events are not conversation traffic and are not counted.
async fn message_counts(
    db: &SqlitePool,
    range: &Range,
) -> Result<Vec<(usize, String, String, u64)>, ApiError> {
    let mut out = Vec::new();
    for (day, &start) in range.starts.iter().enumerate() {
        let end = range.starts.get(day + 1).copied().unwrap_or(range.end);
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT sender_type, sender_id, COUNT(*) FROM message_index
             WHERE created_at >= ? AND created_at < ? AND kind IN ('text', 'image', 'file')
             GROUP BY sender_type, sender_id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(db)
        .await?;
        out.extend(
            rows.into_iter()
                .map(|(kind, id, count)| (day, kind, id, u64::try_from(count).unwrap_or(0))),
        );
    }
    Ok(out)
}

fn add_messages(tally: &mut Tally, sender_type: &str, count: u64) {
    match sender_type {
        "visitor" => tally.visitor_messages += count,
        "agent" => tally.agent_messages += count,
        _ => {}
    }
}

fn admin_only(agent: &Agent) -> Result<(), ApiError> {
    if agent.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "shop-wide reports are for admins; agents see /reports/agents",
        ))
    }
}

/// The shop's figures over the range asked for (admins only; checked
/// before the range is).
pub async fn summary(
    state: &AppState,
    viewer: &Agent,
    params: &RangeParams,
) -> Result<(Range, Figures), ApiError> {
    admin_only(viewer)?;
    let range = Range::parse(params)?;
    // Every start acked before this request is counted (`conversations::start`).
    state.starts.settled_all().await;
    let mut tally = Tally::default();
    for event in events(&state.db, &range).await? {
        tally.add_event(&event.name, event.value_ms);
    }
    for (_, sender_type, _, count) in message_counts(&state.db, &range).await? {
        add_messages(&mut tally, &sender_type, count);
    }
    Ok((range, tally.into()))
}

/// One day's figures.
#[derive(Debug, Serialize)]
pub struct Day {
    pub date: String,
    pub start_ms: i64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The shop's figures per day of the range asked for (admins only;
/// checked before the range is).
pub async fn daily(
    state: &AppState,
    viewer: &Agent,
    params: &RangeParams,
) -> Result<(Range, Vec<Day>), ApiError> {
    admin_only(viewer)?;
    let range = Range::parse(params)?;
    // Every start acked before this request is counted (`conversations::start`).
    state.starts.settled_all().await;
    let mut tallies: Vec<Tally> = range.starts.iter().map(|_| Tally::default()).collect();
    for event in events(&state.db, &range).await? {
        if let Some(day) = range.day_of(event.created_at) {
            tallies[day].add_event(&event.name, event.value_ms);
        }
    }
    for (day, sender_type, _, count) in message_counts(&state.db, &range).await? {
        add_messages(&mut tallies[day], &sender_type, count);
    }
    let mut days = Vec::with_capacity(tallies.len());
    let mut date = range.from;
    for (tally, &start) in tallies.into_iter().zip(&range.starts) {
        days.push(Day {
            date: date.to_string(),
            start_ms: start,
            figures: tally.into(),
        });
        date = date.tomorrow().unwrap_or(date);
    }
    Ok((range, days))
}

/// One agent's row. `opened` counts sessions that opened assigned to them;
/// `resolved` and resolution times, conversations resolved while assigned
/// to them; `messages.agent` their replies (`messages.visitor` is 0).
#[derive(Debug, Serialize)]
pub struct AgentRow {
    pub agent_id: AgentId,
    pub display_name: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Figures per agent over `range`: every agent for an admin, an agent's
/// own row for anyone else.
pub async fn agents(
    state: &AppState,
    viewer: &Agent,
    range: &Range,
) -> Result<Vec<AgentRow>, ApiError> {
    let agent = viewer;
    // Every start acked before this request is counted (`conversations::start`).
    state.starts.settled_all().await;
    let people: Vec<(AgentId, String)> = if agent.role == Role::Admin {
        sqlx::query_as("SELECT id, display_name FROM agents ORDER BY display_name, id")
            .fetch_all(&state.db)
            .await?
    } else {
        vec![(agent.id, agent.display_name.clone())]
    };
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for event in events(&state.db, range).await? {
        if let Some(id) = event.agent_id {
            tallies
                .entry(id)
                .or_default()
                .add_event(&event.name, event.value_ms);
        }
    }
    for (_, sender_type, sender_id, count) in message_counts(&state.db, range).await? {
        if sender_type == "agent" {
            add_messages(tallies.entry(sender_id).or_default(), &sender_type, count);
        }
    }
    let mut tallies: HashMap<String, Tally> = tallies.into_iter().collect();
    Ok(people
        .into_iter()
        .map(|(id, display_name)| AgentRow {
            figures: tallies.remove(&id.to_string()).unwrap_or_default().into(),
            agent_id: id,
            display_name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.9), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), Some(2));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 0.9), Some(9));
        assert_eq!(percentile(&ten, 0.5), Some(5));
    }

    #[test]
    fn days_follow_local_midnight() {
        let params = RangeParams {
            from: Some("2026-03-28".into()),
            to: Some("2026-03-30".into()),
            tz: Some("Europe/Paris".into()),
        };
        let range = Range::parse(&params).expect("range");
        assert_eq!(range.starts.len(), 3);
        // 29 March 2026 is 23 hours long in Paris (DST starts).
        assert_eq!(range.starts[2] - range.starts[1], 23 * 3_600_000);
        assert_eq!(range.day_of(range.starts[1]), Some(1));
        assert_eq!(range.day_of(range.starts[1] - 1), Some(0));
        assert_eq!(range.day_of(range.end), None);
    }
}
