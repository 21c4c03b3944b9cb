//! Export (issue 19 item 2): messages and tickets of one conversation or of
//! a date range, as JSON Lines or CSV, for audits and for leaving Kefu.
//! Routes in docs/API.md 2.18, their doors in [`routes`]: the operations
//! here ([`messages`], [`tickets`]) check, audit and start the stream; the
//! door sends it as the response body.
//!
//! Invariants:
//! - Admins only (`AdminAuth`), or the server's local operator
//!   (`kefu-server export`, with the operator token of `server.json`, from
//!   loopback: `ops::Operator`); every export is audited
//!   (`export.messages`, `export.tickets`, with what was asked; no actor
//!   for the operator) before the first byte goes out.
//! - **Streamed:** a task reads a page at a time (conversations by id, 200
//!   per page; each conversation's log 500 messages per page; tickets 200
//!   per page) and sends ~64 KiB chunks through a channel of
//!   [`CHANNEL_CHUNKS`]: memory stays bounded whatever the size of the
//!   export, and a client that stops reading stops the reader. A store
//!   error mid-way aborts the response (the body ends without its final
//!   chunk, so a client sees a failed download, never a short file that
//!   looks complete).
//! - **Bounded:** a range spans at most [`RANGE_MAX_MS`] (366 days), and at
//!   most [`CONCURRENT_MAX`] exports run at once, each counted until its
//!   download ends (more: 429).
//! - JSON Lines are exact: one `Message` (the same JSON the API serves,
//!   notes included) or one ticket with its comments per line. CSV is for
//!   spreadsheets (RFC 4180, CRLF), with a cell that starts with `=`, `+`,
//!   `-`, `@`, tab or CR prefixed with `'` so that a spreadsheet does not
//!   run it as a formula (CSV injection); use JSON Lines for an exact copy.
//!   CSV writing is ten lines here rather than a dependency.

pub mod routes;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::error::ApiError;
use crate::ids::{AgentId, ConversationId};
use crate::state::AppState;

/// The longest date range one export may span.
pub const RANGE_MAX_MS: i64 = 366 * 24 * 3600 * 1000;
/// Exports running at once, server-wide.
pub const CONCURRENT_MAX: usize = 2;
/// Chunks waiting for a slow client (each up to [`CHUNK_BYTES`]).
const CHANNEL_CHUNKS: usize = 8;
const CHUNK_BYTES: usize = 64 * 1024;
const CONVERSATION_PAGE: i64 = 200;
const MESSAGE_PAGE: usize = 500;
const TICKET_PAGE: i64 = 200;

static RUNNING: Semaphore = Semaphore::const_new(CONCURRENT_MAX);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Csv,
}

/// What an export asks for, as the query string says it.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    pub format: Option<String>,
    pub conversation_id: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// What to export: one conversation, or `[from, to)` in Unix ms.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Conversation(ConversationId),
    Range { from: i64, to: i64 },
}

impl ExportQuery {
    fn parse(&self) -> Result<(Format, Scope), ApiError> {
        let format = match self.format.as_deref() {
            None | Some("jsonl") => Format::JsonLines,
            Some("csv") => Format::Csv,
            Some(_) => {
                return Err(ApiError::bad_request("format must be jsonl or csv").in_field("format"));
            }
        };
        let scope = match (&self.conversation_id, self.from, self.to) {
            (Some(id), None, None) => Scope::Conversation(id.parse().map_err(|_| {
                ApiError::bad_request("conversation_id is not a valid id")
                    .in_field("conversation_id")
            })?),
            (None, Some(from), Some(to)) => {
                if from < 0 || to <= from {
                    return Err(ApiError::bad_request(
                        "from and to are Unix milliseconds with from < to",
                    )
                    .in_field("to"));
                }
                if to - from > RANGE_MAX_MS {
                    return Err(ApiError::bad_request(
                        "a range may span at most 366 days: export it in parts",
                    )
                    .in_field("to"));
                }
                Scope::Range { from, to }
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give either conversation_id, or from and to (Unix milliseconds)",
                ));
            }
        };
        Ok((format, scope))
    }
}

/// The scope as the audit record and the file name say it.
fn describe(scope: Scope) -> (Value, String) {
    match scope {
        Scope::Conversation(id) => (json!({"conversation_id": id}), id.to_string()),
        Scope::Range { from, to } => (json!({"from": from, "to": to}), format!("{from}-{to}")),
    }
}

/// A started export: the body's chunks (the export's slot is held until
/// they are read to the end or dropped) and how to label them.
pub struct Export {
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The download's file name (ASCII: ids and numbers only).
    pub file_name: String,
    /// ~64 KiB chunks; an `Err` ends the body as a failed download.
    pub chunks: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// Exports messages (by `actor`; `None`: the local operator): checked,
/// audited, then streamed.
pub async fn messages(
    state: &AppState,
    actor: Option<AgentId>,
    query: &ExportQuery,
) -> Result<Export, ApiError> {
    let (format, scope) = query.parse()?;
    if let Scope::Conversation(id) = scope {
        let exists: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM conversations WHERE id = ?")
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
        if exists.is_none() {
            return Err(ApiError::not_found("conversation"));
        }
    }
    start(state, actor, "messages", format, scope, |sink| {
        Box::pin(write_messages(Arc::clone(state), format, scope, sink))
    })
    .await
}

/// Exports tickets with their comments (by `actor`, as [`messages`]).
pub async fn tickets(
    state: &AppState,
    actor: Option<AgentId>,
    query: &ExportQuery,
) -> Result<Export, ApiError> {
    let (format, scope) = query.parse()?;
    start(state, actor, "tickets", format, scope, |sink| {
        Box::pin(write_tickets(Arc::clone(state), format, scope, sink))
    })
    .await
}

type Writer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiError>> + Send>>;

/// Takes a slot, audits, and streams what `write` produces.
async fn start(
    state: &AppState,
    actor: Option<AgentId>,
    what: &str,
    format: Format,
    scope: Scope,
    write: impl FnOnce(Sink) -> Writer,
) -> Result<Export, ApiError> {
    let permit = RUNNING.try_acquire().map_err(|_| ApiError::RateLimited)?;
    let (details, name) = describe(scope);
    let mut details = details;
    details["format"] = json!(match format {
        Format::JsonLines => "jsonl",
        Format::Csv => "csv",
    });
    crate::audit::record(&state.db, actor, &format!("export.{what}"), None, details).await?;
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_CHUNKS);
    let sink = Sink {
        sender,
        buffer: Vec::with_capacity(CHUNK_BYTES),
    };
    let writer = write(sink);
    tokio::spawn(async move {
        if let Err(error) = writer.await {
            tracing::warn!(%error, "export stopped");
        }
    });
    // The slot is the body's: an export counts until its download ends
    // (read to the end, or dropped with the connection).
    let chunks =
        futures_util::stream::unfold((receiver, permit), |(mut receiver, permit)| async move {
            receiver
                .recv()
                .await
                .map(|chunk| (chunk, (receiver, permit)))
        })
        .boxed();
    let (content_type, extension) = match format {
        Format::JsonLines => ("application/x-ndjson; charset=utf-8", "jsonl"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    Ok(Export {
        content_type,
        file_name: format!("kefu-{what}-{name}.{extension}"),
        chunks,
    })
}

/// Buffers output into chunks for the response body.
struct Sink {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl Sink {
    async fn line(&mut self, line: &[u8]) -> Result<(), ApiError> {
        self.buffer.extend_from_slice(line);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ApiError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.sender
            .send(Ok(chunk))
            .await
            // The client went away: stop reading the store.
            .map_err(|_| ApiError::internal(anyhow::anyhow!("the client went away")))
    }

    /// Ends the body with an error, so the client sees a failed download.
    async fn fail(self, error: &ApiError) {
        let _ = self
            .sender
            .send(Err(std::io::Error::other(error.to_string())))
            .await;
    }
}

/// Runs `body` and, on error, aborts the response.
async fn finish(
    mut sink: Sink,
    body: impl AsyncFnOnce(&mut Sink) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    match body(&mut sink).await {
        Ok(()) => sink.flush().await,
        Err(error) => {
            sink.fail(&error).await;
            Err(error)
        }
    }
}

const MESSAGE_COLUMNS: &str = "conversation_id,seq,id,created_at,created_at_utc,sender_type,sender_id,kind,content,attachment_name,attachment_url\r\n";

async fn write_messages(
    state: AppState,
    format: Format,
    scope: Scope,
    sink: Sink,
) -> Result<(), ApiError> {
    finish(sink, async |sink: &mut Sink| {
        if format == Format::Csv {
            sink.line(MESSAGE_COLUMNS.as_bytes()).await?;
        }
        let (from, to) = match scope {
            Scope::Conversation(id) => {
                return write_conversation(&state, format, id, i64::MIN, i64::MAX, sink).await;
            }
            Scope::Range { from, to } => (from, to),
        };
        // Conversations that can hold a message in the range: created
        // before its end, last active at or after its start.
        let mut after = String::new();
        loop {
            let page: Vec<(ConversationId,)> = sqlx::query_as(
                "SELECT id FROM conversations WHERE id > ? AND created_at < ? AND activity_at >= ?
                 ORDER BY id LIMIT ?",
            )
            .bind(&after)
            .bind(to)
            .bind(from)
            .bind(CONVERSATION_PAGE)
            .fetch_all(&state.db)
            .await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.0.to_string();
            for (id,) in page {
                write_conversation(&state, format, id, from, to, sink).await?;
            }
        }
    })
    .await
}

/// One conversation's messages created in `[from, to)`, page by page.
async fn write_conversation(
    state: &AppState,
    format: Format,
    conversation: ConversationId,
    from: i64,
    to: i64,
    sink: &mut Sink,
) -> Result<(), ApiError> {
    let mut after = 0;
    loop {
        let reading = Arc::clone(state);
        let page = tokio::task::spawn_blocking(move || {
            reading
                .log
                .page(conversation, after, None, MESSAGE_PAGE, true)
        })
        .await
        .map_err(ApiError::internal)??;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        for stored in &page {
            if stored.created_at < from || stored.created_at >= to {
                continue;
            }
            match format {
                Format::JsonLines => {
                    let mut line = stored.json.as_bytes().to_vec();
                    line.push(b'\n');
                    sink.line(&line).await?;
                }
                Format::Csv => {
                    let message = stored.decode()?;
                    let attachment = message.attachment.as_ref();
                    let text = |key: &str| {
                        attachment
                            .and_then(|a| a[key].as_str())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let sender = serde_json::to_value(&message.sender).unwrap_or(Value::Null);
                    let kind = serde_json::to_value(message.kind).unwrap_or(Value::Null);
                    let row = csv_row(&[
                        &message.conversation_id.to_string(),
                        &message.seq.to_string(),
                        &message.id.to_string(),
                        &message.created_at.to_string(),
                        &utc(message.created_at),
                        sender["type"].as_str().unwrap_or(""),
                        sender["id"].as_str().unwrap_or(""),
                        kind.as_str().unwrap_or(""),
                        &message.content,
                        &text("name"),
                        &text("url"),
                    ]);
                    sink.line(row.as_bytes()).await?;
                }
            }
        }
        if page.len() < MESSAGE_PAGE {
            return Ok(());
        }
    }
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    number: i64,
    subject: String,
    description: String,
    status: String,
    priority: String,
    assignee_id: Option<String>,
    conversation_id: Option<String>,
    requester_visitor_id: Option<String>,
    requester_email: Option<String>,
    tags: String,
    created_by: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const TICKET_COLUMNS: &str = "number,subject,description,status,priority,assignee_id,conversation_id,requester_visitor_id,requester_email,tags,created_by,created_at,created_at_utc,updated_at\r\n";

async fn write_tickets(
    state: AppState,
    format: Format,
    scope: Scope,
    sink: Sink,
) -> Result<(), ApiError> {
    finish(sink, async |sink: &mut Sink| {
        if format == Format::Csv {
            sink.line(TICKET_COLUMNS.as_bytes()).await?;
        }
        let mut after = 0_i64;
        loop {
            let page: Vec<TicketRow> = match scope {
                Scope::Conversation(id) => {
                    sqlx::query_as(
                        "SELECT number, subject, description, status, priority, assignee_id,
                                conversation_id, requester_visitor_id, requester_email, tags,
                                created_by, created_at, updated_at
                         FROM tickets WHERE number > ? AND conversation_id = ?
                         ORDER BY number LIMIT ?",
                    )
                    .bind(after)
                    .bind(id)
                    .bind(TICKET_PAGE)
                    .fetch_all(&state.db)
                    .await?
                }
                Scope::Range { from, to } => {
                    sqlx::query_as(
                        "SELECT number, subject, description, status, priority, assignee_id,
                                conversation_id, requester_visitor_id, requester_email, tags,
                                created_by, created_at, updated_at
                         FROM tickets WHERE number > ? AND created_at >= ? AND created_at < ?
                         ORDER BY number LIMIT ?",
                    )
                    .bind(after)
                    .bind(from)
                    .bind(to)
                    .bind(TICKET_PAGE)
                    .fetch_all(&state.db)
                    .await?
                }
            };
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.number;
            for ticket in page {
                match format {
                    Format::JsonLines => {
                        let comments: Vec<(String, String, String, bool, i64)> = sqlx::query_as(
                            "SELECT id, author_id, body, public, created_at FROM ticket_comments
                             WHERE ticket_number = ? ORDER BY created_at, id",
                        )
                        .bind(ticket.number)
                        .fetch_all(&state.db)
                        .await?;
                        let comments: Vec<Value> = comments
                            .into_iter()
                            .map(|(id, author_id, body, public, created_at)| {
                                json!({"id": id, "author_id": author_id, "body": body,
                                       "public": public, "created_at": created_at})
                            })
                            .collect();
                        let tags: Value =
                            serde_json::from_str(&ticket.tags).unwrap_or_else(|_| json!([]));
                        let mut line = json!({
                            "number": ticket.number,
                            "subject": ticket.subject,
                            "description": ticket.description,
                            "status": ticket.status,
                            "priority": ticket.priority,
                            "assignee_id": ticket.assignee_id,
                            "conversation_id": ticket.conversation_id,
                            "requester_visitor_id": ticket.requester_visitor_id,
                            "requester_email": ticket.requester_email,
                            "tags": tags,
                            "created_by": ticket.created_by,
                            "created_at": ticket.created_at,
                            "updated_at": ticket.updated_at,
                            "comments": comments,
                        })
                        .to_string()
                        .into_bytes();
                        line.push(b'\n');
                        sink.line(&line).await?;
                    }
                    Format::Csv => {
                        let none = String::new();
                        let row = csv_row(&[
                            &ticket.number.to_string(),
                            &ticket.subject,
                            &ticket.description,
                            &ticket.status,
                            &ticket.priority,
                            ticket.assignee_id.as_ref().unwrap_or(&none),
                            ticket.conversation_id.as_ref().unwrap_or(&none),
                            ticket.requester_visitor_id.as_ref().unwrap_or(&none),
                            ticket.requester_email.as_ref().unwrap_or(&none),
                            &ticket.tags,
                            ticket.created_by.as_ref().unwrap_or(&none),
                            &ticket.created_at.to_string(),
                            &utc(ticket.created_at),
                            &ticket.updated_at.to_string(),
                        ]);
                        sink.line(row.as_bytes()).await?;
                    }
                }
            }
        }
    })
    .await
}

fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One CSV record (RFC 4180), CRLF-terminated; see the module doc for
/// the formula prefix.
fn csv_row(fields: &[&str]) -> String {
    let mut row = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            row.push(',');
        }
        let guarded = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
        let quote = guarded || field.contains([',', '"', '\n', '\r']);
        if quote {
            row.push('"');
        }
        if guarded {
            row.push('\'');
        }
        row.push_str(&field.replace('"', "\"\""));
        if quote {
            row.push('"');
        }
    }
    row.push_str("\r\n");
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_guards_formulas() {
        assert_eq!(csv_row(&["a", "b"]), "a,b\r\n");
        assert_eq!(
            csv_row(&["x,y", "say \"hi\"", "two\nlines"]),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
        assert_eq!(
            csv_row(&["=HYPERLINK(\"x\")", "-1", "@a", ""]),
            "\"'=HYPERLINK(\"\"x\"\")\",\"'-1\",\"'@a\",\r\n"
        );
    }

    #[test]
    fn scope_needs_one_conversation_or_a_bounded_range() {
        let query = |format: Option<&str>, id: Option<&str>, from: Option<i64>, to: Option<i64>| {
            ExportQuery {
                format: format.map(str::to_owned),
                conversation_id: id.map(str::to_owned),
                from,
                to,
            }
            .parse()
        };
        assert!(query(None, None, Some(0), Some(RANGE_MAX_MS)).is_ok());
        assert!(
            query(
                Some("csv"),
                Some(&ConversationId::new().to_string()),
                None,
                None
            )
            .is_ok()
        );
        for bad in [
            query(Some("xml"), None, Some(0), Some(1)),
            query(None, None, Some(0), Some(RANGE_MAX_MS + 1)),
            query(None, None, Some(5), Some(5)),
            query(None, None, Some(-1), Some(5)),
            query(None, None, None, Some(5)),
            query(None, None, None, None),
            query(None, Some("nope"), None, None),
            query(
                None,
                Some(&ConversationId::new().to_string()),
                Some(0),
                Some(1),
            ),
        ] {
            assert!(bad.is_err());
        }
    }
}
