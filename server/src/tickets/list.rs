//! `GET /api/v1/tickets`: filters, sort and cursor, built so that every page
//! is an index range read at any store size.
//!
//! Each equality filter (status, priority, assignee, tag, requester,
//! conversation) and the common pairs have an index that ends in the sort key
//! (migration 0004); the unit tests below check the plan of every
//! combination with `EXPLAIN QUERY PLAN`. Several statuses are one branch per
//! status, each an ordered index read of at most `limit + 1` rows, merged by
//! `UNION ALL … ORDER BY` (SQLite would otherwise sort every matching row).
//! `q` reads the full-text indexes of `search` (subject, description and
//! comments; trigram, or CJK bigrams for 2-character Chinese terms): with
//! creation order the FTS table drives in rowid (= number) order, so a page
//! costs about `limit` index hits. A `q` too short to be a search query (one
//! character, two Latin letters) falls back to a substring `LIKE` on subject
//! and description, a scan of what the other filters leave.
//! Known slow path: `tag` with
//! `sort=updated` walks the update order checking the tag, which is slow
//! only for a rare tag.

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use super::{COLUMNS, Priority, Ticket, TicketRow, TicketStatus};
use crate::error::ApiError;
use crate::ids::{AgentId, ConversationId, VisitorId};

const Q_MAX_CHARS: usize = 200;

/// What the ticket list is asked for (`assignee=me` is `agent`).
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// One status or several, comma-separated (`open,pending`).
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    /// A visitor id or an email address.
    #[serde(default)]
    requester: Option<String>,
    #[serde(default)]
    conversation_id: Option<ConversationId>,
    #[serde(default)]
    sort: Option<Sort>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Newest ticket first (by number).
    #[default]
    Created,
    /// Most recently updated first.
    Updated,
}

/// Where the previous page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    Number(i64),
    Updated(i64, i64),
}

impl Cursor {
    fn parse(text: &str, sort: Sort) -> Result<Cursor, ApiError> {
        let bad = || ApiError::bad_request("invalid cursor").in_field("cursor");
        match sort {
            Sort::Created => text.parse().map(Cursor::Number).map_err(|_| bad()),
            Sort::Updated => {
                let (at, number) = text
                    .strip_prefix('u')
                    .and_then(|rest| rest.split_once('_'))
                    .ok_or_else(bad)?;
                Ok(Cursor::Updated(
                    at.parse().map_err(|_| bad())?,
                    number.parse().map_err(|_| bad())?,
                ))
            }
        }
    }

    fn after(row: &TicketRow, sort: Sort) -> String {
        match sort {
            Sort::Created => row.number.to_string(),
            Sort::Updated => format!("u{}_{}", row.updated_at, row.number),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Bind {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, Default)]
struct Filter {
    statuses: Vec<TicketStatus>,
    priority: Option<Priority>,
    /// `Some(None)`: unassigned.
    assignee: Option<Option<AgentId>>,
    tag: Option<String>,
    requester_visitor: Option<VisitorId>,
    requester_email: Option<String>,
    conversation: Option<ConversationId>,
    q: Option<String>,
    sort: Sort,
    cursor: Option<Cursor>,
    limit: u32,
}

fn enum_text<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Filter {
    fn from_query(query: ListQuery, me: AgentId, limit: u32) -> Result<Filter, ApiError> {
        let mut statuses = Vec::new();
        for part in query.status.as_deref().unwrap_or("").split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let status: TicketStatus =
                serde_json::from_value(serde_json::json!(part)).map_err(|_| {
                    ApiError::bad_request("status must be open, pending, solved or closed")
                        .in_field("status")
                })?;
            if !statuses.contains(&status) {
                statuses.push(status);
            }
        }
        let assignee = match query.assignee.as_deref() {
            None => None,
            Some("me") => Some(Some(me)),
            Some("none") => Some(None),
            Some(other) => Some(Some(other.parse().map_err(|_| {
                ApiError::bad_request("assignee must be me, none or an agent id")
                    .in_field("assignee")
            })?)),
        };
        let (requester_visitor, requester_email) = match query.requester.as_deref() {
            None => (None, None),
            Some(text) if text.contains('@') => (None, Some(text.trim().to_owned())),
            Some(text) => (
                Some(text.parse().map_err(|_| {
                    ApiError::bad_request("requester must be a visitor id or an email")
                        .in_field("requester")
                })?),
                None,
            ),
        };
        let q = query
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned);
        if q.as_ref().is_some_and(|q| q.chars().count() > Q_MAX_CHARS) {
            return Err(ApiError::bad_request(format!(
                "q is longer than {Q_MAX_CHARS} characters"
            ))
            .in_field("q"));
        }
        if let Some(q) = &q {
            // A NUL would break the FTS query (500 before); see search.rs.
            crate::search::check_text("q", q)?;
        }
        let sort = query.sort.unwrap_or_default();
        let cursor = query
            .cursor
            .as_deref()
            .map(|c| Cursor::parse(c, sort))
            .transpose()?;
        Ok(Filter {
            statuses,
            priority: query.priority,
            assignee,
            tag: query
                .tag
                .as_deref()
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty()),
            requester_visitor,
            requester_email,
            conversation: query.conversation_id,
            q,
            sort,
            cursor,
            limit,
        })
    }

    /// The SELECT of one branch: every filter but the status list, plus
    /// `status` if given.
    fn branch(&self, status: Option<TicketStatus>, binds: &mut Vec<Bind>) -> String {
        // With a tag and creation order, walk the tag's rows in number
        // order (CROSS JOIN fixes the join order in SQLite).
        let tag_driven = self.tag.is_some() && self.sort == Sort::Created;
        let fts = self
            .q
            .as_deref()
            .and_then(crate::search::Query::ticket_filter);
        // With a search query and creation order (and no tag), the FTS
        // table drives: its rows come in number order already.
        let fts_driven = fts.is_some() && !tag_driven && self.sort == Sort::Created;
        let mut sql = if let (true, Some(fts)) = (fts_driven, &fts) {
            let table = fts.driver.0;
            binds.push(Bind::Text(fts.driver.1.clone()));
            format!(
                "SELECT {COLUMNS} FROM {table} CROSS JOIN tickets t ON t.number = {table}.rowid WHERE {table} MATCH ?"
            )
        } else if tag_driven {
            format!(
                "SELECT {COLUMNS} FROM ticket_tags tt CROSS JOIN tickets t ON t.number = tt.number WHERE tt.tag = ?"
            )
        } else {
            format!("SELECT {COLUMNS} FROM tickets t WHERE 1 = 1")
        };
        if let (true, Some(tag)) = (tag_driven, &self.tag) {
            binds.push(Bind::Text(tag.clone()));
        }
        if let Some(status) = status {
            sql.push_str(" AND t.status = ?");
            binds.push(Bind::Text(enum_text(status)));
        }
        if let Some(priority) = self.priority {
            sql.push_str(" AND t.priority = ?");
            binds.push(Bind::Text(enum_text(priority)));
        }
        match self.assignee {
            None => {}
            Some(None) => sql.push_str(" AND t.assignee_id IS NULL"),
            Some(Some(agent)) => {
                sql.push_str(" AND t.assignee_id = ?");
                binds.push(Bind::Text(agent.to_string()));
            }
        }
        if let Some(visitor) = self.requester_visitor {
            sql.push_str(" AND t.requester_visitor_id = ?");
            binds.push(Bind::Text(visitor.to_string()));
        }
        if let Some(email) = &self.requester_email {
            sql.push_str(" AND t.requester_email = ? COLLATE NOCASE");
            binds.push(Bind::Text(email.clone()));
        }
        if let Some(conversation) = self.conversation {
            sql.push_str(" AND t.conversation_id = ?");
            binds.push(Bind::Text(conversation.to_string()));
        }
        if let (false, Some(tag)) = (tag_driven, &self.tag) {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM ticket_tags x WHERE x.tag = ? AND x.number = t.number)",
            );
            binds.push(Bind::Text(tag.clone()));
        }
        if let Some(fts) = &fts {
            let filters = if fts_driven {
                fts.also.iter().collect::<Vec<_>>()
            } else {
                std::iter::once(&fts.driver)
                    .chain(fts.also.iter())
                    .collect()
            };
            for (table, text) in filters {
                sql.push_str(&format!(
                    " AND t.number IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)"
                ));
                binds.push(Bind::Text(text.clone()));
            }
        } else if let Some(q) = &self.q {
            let pattern = format!(
                "%{}%",
                q.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            sql.push_str(" AND (t.subject LIKE ? ESCAPE '\\' OR t.description LIKE ? ESCAPE '\\')");
            binds.push(Bind::Text(pattern.clone()));
            binds.push(Bind::Text(pattern));
        }
        match self.cursor {
            None => {}
            Some(Cursor::Number(before)) => {
                match (fts_driven, &fts) {
                    (true, Some(fts)) => {
                        sql.push_str(&format!(" AND {}.rowid < ?", fts.driver.0));
                    }
                    _ if tag_driven => sql.push_str(" AND tt.number < ?"),
                    _ => sql.push_str(" AND t.number < ?"),
                }
                binds.push(Bind::Int(before));
            }
            Some(Cursor::Updated(at, number)) => {
                sql.push_str(" AND (t.updated_at, t.number) < (?, ?)");
                binds.push(Bind::Int(at));
                binds.push(Bind::Int(number));
            }
        }
        if let (true, Some(fts)) = (fts_driven, &fts) {
            let table = fts.driver.0;
            sql.push_str(&format!(" ORDER BY {table}.rowid DESC LIMIT ?"));
            binds.push(Bind::Int(i64::from(self.limit) + 1));
            return sql;
        }
        sql.push_str(match (self.sort, tag_driven) {
            (Sort::Created, true) => " ORDER BY tt.number DESC",
            (Sort::Created, false) => " ORDER BY t.number DESC",
            (Sort::Updated, _) => " ORDER BY t.updated_at DESC, t.number DESC",
        });
        sql.push_str(" LIMIT ?");
        binds.push(Bind::Int(i64::from(self.limit) + 1));
        sql
    }

    /// The whole query: one branch, or a merge of one branch per status.
    fn sql(&self) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        if self.statuses.len() <= 1 {
            let sql = self.branch(self.statuses.first().copied(), &mut binds);
            return (sql, binds);
        }
        let branches: Vec<String> = self
            .statuses
            .iter()
            .map(|status| format!("SELECT * FROM ({})", self.branch(Some(*status), &mut binds)))
            .collect();
        let order = match self.sort {
            Sort::Created => "number DESC",
            Sort::Updated => "updated_at DESC, number DESC",
        };
        let sql = format!("{} ORDER BY {order} LIMIT ?", branches.join(" UNION ALL "));
        binds.push(Bind::Int(i64::from(self.limit) + 1));
        (sql, binds)
    }
}

/// One page of tickets for `agent`, at most `limit`, and the cursor of
/// the next.
pub async fn list(
    db: &SqlitePool,
    agent: AgentId,
    query: ListQuery,
    limit: u32,
) -> Result<(Vec<Ticket>, Option<String>), ApiError> {
    let filter = Filter::from_query(query, agent, limit)?;
    let (sql, binds) = filter.sql();
    let mut q = sqlx::query_as::<_, TicketRow>(&sql);
    for bind in binds {
        q = match bind {
            Bind::Int(n) => q.bind(n),
            Bind::Text(s) => q.bind(s),
        };
    }
    let mut rows = q.fetch_all(db).await?;
    let next_cursor =
        crate::http::extract::cut_page(&mut rows, limit, |row| Cursor::after(row, filter.sort));
    Ok((rows.into_iter().map(Ticket::from).collect(), next_cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn plan_of(db: &sqlx::SqlitePool, filter: &Filter) -> String {
        let (sql, binds) = filter.sql();
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql);
        for bind in binds {
            q = match bind {
                Bind::Int(n) => q.bind(n),
                Bind::Text(s) => q.bind(s),
            };
        }
        let rows = q.fetch_all(db).await.expect("explain");
        rows.into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every combination of the equality filters, with both sorts and with
    /// and without a cursor, reads an index in order: no full scan of the
    /// tickets when a filter is given, and no sort of an unbounded set.
    #[tokio::test]
    async fn every_filter_combination_reads_an_index_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::store::db::open(dir.path()).await.expect("db");
        let agent = AgentId::new();
        let mut checked = 0;
        for mask in 0u32..(1 << 7) {
            for sort in [Sort::Created, Sort::Updated] {
                for with_cursor in [false, true] {
                    let has = |bit: u32| mask & (1 << bit) != 0;
                    let filter = Filter {
                        statuses: match (has(0), has(6)) {
                            (false, _) => vec![],
                            (true, false) => vec![TicketStatus::Open],
                            (true, true) => vec![TicketStatus::Open, TicketStatus::Pending],
                        },
                        priority: has(1).then_some(Priority::High),
                        assignee: has(2).then_some(Some(agent)),
                        tag: has(3).then(|| "vip".to_owned()),
                        requester_visitor: has(4).then(VisitorId::new),
                        conversation: has(5).then(ConversationId::new),
                        sort,
                        cursor: with_cursor.then_some(match sort {
                            Sort::Created => Cursor::Number(1000),
                            Sort::Updated => Cursor::Updated(1000, 7),
                        }),
                        limit: 50,
                        ..Filter::default()
                    };
                    let plan = plan_of(&db, &filter).await;
                    let filtered = mask & 0b11_1111 != 0;
                    let tag_by_update = filter.tag.is_some() && sort == Sort::Updated;
                    for line in plan.lines() {
                        let full_scan = line.starts_with("SCAN t")
                            && !line.starts_with("SCAN t USING INDEX tickets_updated")
                            && !line.contains("(subquery");
                        assert!(
                            !(filtered && full_scan && !tag_by_update),
                            "{filter:?} scans the tickets:\n{plan}"
                        );
                        // A multi-status merge sorts its branches' own
                        // LIMIT-bounded rows (each branch is the same SQL as
                        // the single-status query, checked here too), and one requester's or one
                        // conversation's tickets are few; nothing else may
                        // sort.
                        let small_set =
                            filter.requester_visitor.is_some() || filter.conversation.is_some();
                        let unbounded_sort = line.contains("TEMP B-TREE FOR ORDER BY")
                            && filter.statuses.len() < 2
                            && !small_set;
                        assert!(!unbounded_sort, "{filter:?} sorts:\n{plan}");
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 512);
        // Requester email: its own index.
        let filter = Filter {
            requester_email: Some("li@example.com".into()),
            statuses: vec![TicketStatus::Open],
            limit: 50,
            ..Filter::default()
        };
        let plan = plan_of(&db, &filter).await;
        assert!(plan.contains("tickets_requester_email"), "{plan}");
        // The pairs agents use most have their own index.
        let filter = Filter {
            statuses: vec![TicketStatus::Open],
            assignee: Some(Some(agent)),
            limit: 50,
            ..Filter::default()
        };
        let plan = plan_of(&db, &filter).await;
        assert!(plan.contains("tickets_assignee_status"), "{plan}");
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        assert_eq!(
            Cursor::parse("42", Sort::Created).expect("c"),
            Cursor::Number(42)
        );
        assert_eq!(
            Cursor::parse("u1718000000000_42", Sort::Updated).expect("c"),
            Cursor::Updated(1_718_000_000_000, 42)
        );
        assert!(Cursor::parse("u1_2", Sort::Created).is_err());
        assert!(Cursor::parse("42", Sort::Updated).is_err());
        assert!(Cursor::parse("uX_2", Sort::Updated).is_err());
    }
}
