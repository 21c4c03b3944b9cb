//! The FAQ knowledge base: entries per app (several question phrasings,
//! one answer, tags, enabled), admin CRUD and CSV import/export, under
//! `/api/v1/faq_entries` (the doors are in [`super::routes`]). Every
//! change drops the app's index, which the bot rebuilds on its next
//! message for that app.
//!
//! Invariants: every route is admin-only; a refused request stores
//! nothing (an import is one transaction: one bad row and no row is
//! written); an app never holds more than [`ENTRIES_PER_APP_MAX`] entries
//! (the count is checked inside the writing statement or transaction).

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::change::{After, Change};
use crate::config::Limits;
use crate::error::ApiError;
use crate::http::extract::{PathId, cut_page};
use crate::ids::{AgentId, AppId, FaqEntryId};
use crate::state::AppState;
use crate::time::now_ms;

pub const ENTRIES_PER_APP_MAX: i64 = 10_000;
pub const QUESTIONS_MAX: usize = 20;
pub const QUESTION_MAX_CHARS: usize = 200;
pub const ANSWER_MAX_CHARS: usize = 4_000;
pub const TAGS_MAX: usize = 10;
pub const TAG_MAX_CHARS: usize = 50;
/// Largest CSV import body.
pub const CSV_BYTES_MAX: usize = 2 * 1024 * 1024;

impl PathId for FaqEntryId {
    const RESOURCE: &'static str = "faq entry";
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaqEntry {
    pub id: FaqEntryId,
    pub app_id: AppId,
    pub questions: Vec<String>,
    pub answer: String,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: FaqEntryId,
    app_id: AppId,
    questions: String,
    answer: String,
    tags: String,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<Row> for FaqEntry {
    fn from(row: Row) -> Self {
        FaqEntry {
            id: row.id,
            app_id: row.app_id,
            questions: serde_json::from_str(&row.questions).unwrap_or_default(),
            answer: row.answer,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            enabled: row.enabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, app_id, questions, answer, tags, enabled, created_at, updated_at";

/// Printable text: no control characters (tabs and, where `lines`, line
/// breaks allowed).
fn printable(text: &str, lines: bool) -> bool {
    text.chars()
        .all(|c| !c.is_control() || (lines && matches!(c, '\n' | '\r' | '\t')))
}

fn validate_questions(questions: &[String], field: &str) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::with_capacity(questions.len());
    for (i, question) in questions.iter().enumerate() {
        let question = question.trim();
        let at = || format!("{field}[{i}]");
        if question.is_empty() || question.chars().count() > QUESTION_MAX_CHARS {
            return Err(ApiError::bad_request(format!(
                "each question must be 1-{QUESTION_MAX_CHARS} characters"
            ))
            .in_field(at()));
        }
        if !printable(question, false) {
            return Err(ApiError::bad_request(
                "a question is one line of text, without control characters",
            )
            .in_field(at()));
        }
        if !out.iter().any(|q| q == question) {
            out.push(question.to_owned());
        }
    }
    if out.is_empty() || out.len() > QUESTIONS_MAX {
        return Err(
            ApiError::bad_request(format!("an entry has 1-{QUESTIONS_MAX} questions"))
                .in_field(field.to_owned()),
        );
    }
    Ok(out)
}

fn validate_answer(answer: &str, field: &str) -> Result<String, ApiError> {
    let answer = answer.trim();
    if answer.is_empty() || answer.chars().count() > ANSWER_MAX_CHARS {
        return Err(ApiError::bad_request(format!(
            "answer must be 1-{ANSWER_MAX_CHARS} characters"
        ))
        .in_field(field.to_owned()));
    }
    if !printable(answer, true) {
        return Err(
            ApiError::bad_request("answer must not contain control characters")
                .in_field(field.to_owned()),
        );
    }
    Ok(answer.to_owned())
}

fn validate_tags(tags: &[String], field: &str) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.trim();
        if tag.is_empty()
            || tag.chars().count() > TAG_MAX_CHARS
            || tag.contains(',')
            || !printable(tag, false)
        {
            return Err(ApiError::bad_request(format!(
                "a tag is 1-{TAG_MAX_CHARS} characters, without commas"
            ))
            .in_field(format!("{field}[{i}]")));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    if out.len() > TAGS_MAX {
        return Err(
            ApiError::bad_request(format!("at most {TAGS_MAX} tags")).in_field(field.to_owned())
        );
    }
    Ok(out)
}

fn json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

async fn app_exists<'e>(db: impl sqlx::SqliteExecutor<'e>, app: AppId) -> Result<(), ApiError> {
    match crate::apps::find(db, app).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("app").in_field("app_id")),
    }
}

/// One entry (404 for an unknown id).
pub async fn find<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    id: FaqEntryId,
) -> Result<FaqEntry, ApiError> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM faq_entries WHERE id = ?"))
            .bind(id)
            .fetch_optional(db)
            .await?;
    row.map(FaqEntry::from)
        .ok_or_else(|| ApiError::not_found("faq entry"))
}

/// The enabled entries of an app, for the index.
pub async fn enabled(
    db: &sqlx::SqlitePool,
    app: AppId,
) -> Result<Vec<super::retrieval::Entry>, ApiError> {
    let rows: Vec<(FaqEntryId, String, String)> = sqlx::query_as(
        "SELECT id, questions, answer FROM faq_entries WHERE app_id = ? AND enabled = 1 ORDER BY id",
    )
    .bind(app)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, questions, answer)| super::retrieval::Entry {
            id,
            questions: serde_json::from_str(&questions).unwrap_or_default(),
            answer,
        })
        .collect())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub app_id: Option<AppId>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The `app_id` every FAQ request names.
pub fn required_app(app: Option<AppId>) -> Result<AppId, ApiError> {
    app.ok_or_else(|| ApiError::bad_request("app_id is required").in_field("app_id"))
}

/// An app's entries in id (creation) order, paged: the page and the
/// cursor of the next one.
pub async fn list(
    db: &SqlitePool,
    limits: &Limits,
    query: ListQuery,
) -> Result<(Vec<FaqEntry>, Option<String>), ApiError> {
    let app = required_app(query.app_id)?;
    let limit = crate::http::extract::page_limit(limits, query.limit, 50)?;
    let after = match query.cursor.as_deref() {
        Some(cursor) => Some(
            cursor
                .parse::<FaqEntryId>()
                .map_err(|_| ApiError::bad_request("bad cursor").in_field("cursor"))?,
        ),
        None => None,
    };
    app_exists(db, app).await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM faq_entries WHERE app_id = ?1 AND (?2 IS NULL OR id > ?2)
         ORDER BY id LIMIT ?3"
    ))
    .bind(app)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(db)
    .await?;
    let mut faq_entries: Vec<FaqEntry> = rows.into_iter().map(FaqEntry::from).collect();
    let next_cursor = cut_page(&mut faq_entries, limit, |e| e.id.to_string());
    Ok((faq_entries, next_cursor))
}

/// A new entry, as an admin sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub app_id: AppId,
    pub questions: Vec<String>,
    pub answer: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn too_many() -> ApiError {
    ApiError::bad_request(format!(
        "an app has at most {ENTRIES_PER_APP_MAX} FAQ entries: delete some first"
    ))
}

/// An admin adds an entry: inserted and audited in one [`Change`]; once
/// committed the app's index is dropped.
pub async fn create(
    state: &AppState,
    admin: AgentId,
    input: NewEntry,
) -> Result<FaqEntry, ApiError> {
    let questions = validate_questions(&input.questions, "questions")?;
    let answer = validate_answer(&input.answer, "answer")?;
    let tags = validate_tags(&input.tags, "tags")?;
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    app_exists(&mut *change, input.app_id).await?;
    let id = FaqEntryId::new();
    let now = now_ms();
    // The count and the insert in one statement: the limit holds under races.
    let inserted = sqlx::query(
        "INSERT INTO faq_entries (id, app_id, questions, answer, tags, enabled, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7
         WHERE (SELECT COUNT(*) FROM faq_entries WHERE app_id = ?2) < ?8",
    )
    .bind(id)
    .bind(input.app_id)
    .bind(json(&questions))
    .bind(&answer)
    .bind(json(&tags))
    .bind(input.enabled)
    .bind(now)
    .bind(ENTRIES_PER_APP_MAX)
    .execute(&mut *change)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(too_many());
    }
    change
        .audit(
            "assist.faq.create",
            ("faq_entry", &id.to_string()),
            serde_json::json!({"app_id": input.app_id, "questions": questions.len()}),
        )
        .await?;
    change.then(After::Faq(input.app_id));
    change.commit(state).await?;
    find(&state.db, id).await
}

/// The fields of an entry an admin may change; absent ones stay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryUpdate {
    pub questions: Option<Vec<String>>,
    pub answer: Option<String>,
    pub tags: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// An admin changes an entry: written and audited in one [`Change`].
pub async fn update(
    state: &AppState,
    admin: AgentId,
    id: FaqEntryId,
    input: EntryUpdate,
) -> Result<FaqEntry, ApiError> {
    let entry = find(&state.db, id).await?;
    if input.questions.is_none()
        && input.answer.is_none()
        && input.tags.is_none()
        && input.enabled.is_none()
    {
        return Err(ApiError::bad_request("nothing to update"));
    }
    let questions = input
        .questions
        .as_deref()
        .map(|q| validate_questions(q, "questions"))
        .transpose()?;
    let answer = input
        .answer
        .as_deref()
        .map(|a| validate_answer(a, "answer"))
        .transpose()?;
    let tags = input
        .tags
        .as_deref()
        .map(|t| validate_tags(t, "tags"))
        .transpose()?;
    // Only the given fields: concurrent updates of different fields both stick.
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    sqlx::query(
        "UPDATE faq_entries SET questions = COALESCE(?, questions), answer = COALESCE(?, answer),
             tags = COALESCE(?, tags), enabled = COALESCE(?, enabled), updated_at = ? WHERE id = ?",
    )
    .bind(questions.as_deref().map(json))
    .bind(answer)
    .bind(tags.as_deref().map(json))
    .bind(input.enabled)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *change)
    .await?;
    change
        .audit(
            "assist.faq.update",
            ("faq_entry", &id.to_string()),
            serde_json::json!({"app_id": entry.app_id}),
        )
        .await?;
    change.then(After::Faq(entry.app_id));
    change.commit(state).await?;
    find(&state.db, id).await
}

/// An admin deletes an entry: deleted and audited in one [`Change`].
pub async fn delete(state: &AppState, admin: AgentId, id: FaqEntryId) -> Result<(), ApiError> {
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let entry = find(&mut *change, id).await?;
    sqlx::query("DELETE FROM faq_entries WHERE id = ?")
        .bind(id)
        .execute(&mut *change)
        .await?;
    change
        .audit(
            "assist.faq.delete",
            ("faq_entry", &id.to_string()),
            serde_json::json!({"app_id": entry.app_id}),
        )
        .await?;
    change.then(After::Faq(entry.app_id));
    change.commit(state).await?;
    Ok(())
}

// ---- CSV ----

/// Columns of the CSV format, in export order.
const CSV_COLUMNS: [&str; 5] = ["id", "questions", "answer", "tags", "enabled"];

/// A cell a spreadsheet would run as a formula gets a leading `'`
/// (OWASP's advice for CSV injection); import takes it off again.
fn defuse(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

fn refuse(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest)
            if matches!(
                rest.chars().next(),
                Some('=' | '+' | '-' | '@' | '\t' | '\r')
            ) =>
        {
            rest
        }
        _ => cell,
    }
}

/// Every entry of an app as CSV (UTF-8 with a byte-order mark, so that
/// spreadsheet programs read Chinese right): one row per entry, the
/// questions one per line inside their cell, tags comma-separated.
pub async fn export_csv(db: &SqlitePool, app: AppId) -> Result<Vec<u8>, ApiError> {
    app_exists(db, app).await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM faq_entries WHERE app_id = ? ORDER BY id LIMIT ?"
    ))
    .bind(app)
    .bind(ENTRIES_PER_APP_MAX)
    .fetch_all(db)
    .await?;
    let mut writer = csv::Writer::from_writer(Vec::from("\u{feff}".as_bytes()));
    let write = |writer: &mut csv::Writer<Vec<u8>>, record: [String; 5]| {
        writer.write_record(record).map_err(ApiError::internal)
    };
    write(&mut writer, CSV_COLUMNS.map(str::to_owned))?;
    for row in rows {
        let entry = FaqEntry::from(row);
        write(
            &mut writer,
            [
                entry.id.to_string(),
                defuse(&entry.questions.join("\n")),
                defuse(&entry.answer),
                defuse(&entry.tags.join(",")),
                entry.enabled.to_string(),
            ],
        )?;
    }
    writer.into_inner().map_err(ApiError::internal)
}

/// One parsed row of an import.
struct ImportRow {
    id: Option<FaqEntryId>,
    questions: Vec<String>,
    answer: String,
    tags: Vec<String>,
    enabled: bool,
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" | "y" | "是" => Some(true),
        "false" | "0" | "no" | "n" | "否" => Some(false),
        _ => None,
    }
}

/// Parses and validates a whole CSV file; the first bad row refuses it
/// all, its field named `rows[N].column` (N counts data rows from 1).
fn parse_csv(body: &[u8]) -> Result<Vec<ImportRow>, ApiError> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| ApiError::bad_request(format!("cannot read the CSV header: {e}")))?
        .clone();
    let mut index = [None; 5];
    for (i, name) in headers.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        match CSV_COLUMNS.iter().position(|c| *c == name) {
            Some(column) if index[column].is_none() => index[column] = Some(i),
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "column {name} appears twice"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "unknown column {name:?}: the columns are {}",
                    CSV_COLUMNS.join(", ")
                )));
            }
        }
    }
    if index[1].is_none() || index[2].is_none() {
        return Err(ApiError::bad_request(
            "the CSV needs at least the columns questions and answer",
        ));
    }
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let n = n + 1;
        let record = record.map_err(|e| {
            ApiError::bad_request(format!("row {n}: {e}")).in_field(format!("rows[{n}]"))
        })?;
        if rows.len() as i64 >= ENTRIES_PER_APP_MAX {
            return Err(too_many().in_field(format!("rows[{n}]")));
        }
        let cell = |column: usize| {
            index[column]
                .and_then(|i| record.get(i))
                .map(refuse)
                .unwrap_or("")
        };
        let at = |column: &str| format!("rows[{n}].{column}");
        let id = match cell(0).trim() {
            "" => None,
            text => Some(text.parse::<FaqEntryId>().map_err(|_| {
                ApiError::bad_request(format!("row {n}: id is not an entry id")).in_field(at("id"))
            })?),
        };
        let questions: Vec<String> = cell(1)
            .lines()
            .filter(|q| !q.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let questions = validate_questions(&questions, &at("questions"))?;
        let answer = validate_answer(cell(2), &at("answer"))?;
        let tags: Vec<String> = cell(3)
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let tags = validate_tags(&tags, &at("tags"))?;
        let enabled = parse_bool(cell(4)).ok_or_else(|| {
            ApiError::bad_request(format!("row {n}: enabled must be true or false"))
                .in_field(at("enabled"))
        })?;
        rows.push(ImportRow {
            id,
            questions,
            answer,
            tags,
            enabled,
        });
    }
    Ok(rows)
}

/// What an import did.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// An admin imports a CSV file (`body`) into an app: rows with an `id` of
/// this app update it, rows without one are new; with `replace` the
/// app's entries not in the file are deleted. All or nothing: one
/// [`Change`] with its audit row.
pub async fn import(
    state: &AppState,
    admin: AgentId,
    app: AppId,
    replace: bool,
    body: &[u8],
) -> Result<Imported, ApiError> {
    let rows = parse_csv(body)?;
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let tx = &mut *change;
    app_exists(&mut *tx, app).await?;
    let now = now_ms();
    let (mut created, mut updated) = (0u64, 0u64);
    let mut kept: Vec<FaqEntryId> = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let id = row.id.unwrap_or_default();
        let existed: Option<(AppId,)> =
            sqlx::query_as("SELECT app_id FROM faq_entries WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        match existed {
            Some((owner,)) if owner != app => {
                return Err(ApiError::bad_request(format!(
                    "row {}: the entry belongs to another app",
                    n + 1
                ))
                .in_field(format!("rows[{}].id", n + 1)));
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE faq_entries SET questions = ?, answer = ?, tags = ?, enabled = ?, updated_at = ?
                     WHERE id = ?",
                )
                .bind(json(&row.questions))
                .bind(&row.answer)
                .bind(json(&row.tags))
                .bind(row.enabled)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                updated += 1;
            }
            None => {
                sqlx::query(
                    "INSERT INTO faq_entries (id, app_id, questions, answer, tags, enabled, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id)
                .bind(app)
                .bind(json(&row.questions))
                .bind(&row.answer)
                .bind(json(&row.tags))
                .bind(row.enabled)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                created += 1;
            }
        }
        kept.push(id);
    }
    let mut deleted = 0;
    if replace {
        let kept_json = serde_json::to_string(&kept).map_err(ApiError::internal)?;
        deleted = sqlx::query(
            "DELETE FROM faq_entries WHERE app_id = ? AND id NOT IN (SELECT value FROM json_each(?))",
        )
        .bind(app)
        .bind(kept_json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM faq_entries WHERE app_id = ?")
        .bind(app)
        .fetch_one(&mut *tx)
        .await?;
    if count > ENTRIES_PER_APP_MAX {
        return Err(too_many());
    }
    change
        .audit(
            "assist.faq.import",
            ("app", &app.to_string()),
            serde_json::json!({"created": created, "updated": updated, "deleted": deleted}),
        )
        .await?;
    change.then(After::Faq(app));
    change.commit(state).await?;
    Ok(Imported {
        created,
        updated,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_parse_and_formulas_are_defused() {
        let csv = "\u{feff}questions,answer,tags,enabled\n\"怎么退货\n如何退货\",\"'=申请售后\",\"售后,退货\",\n运费,满99包邮,,no\n";
        let rows = parse_csv(csv.as_bytes()).expect("parse");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].questions, vec!["怎么退货", "如何退货"]);
        assert_eq!(rows[0].answer, "=申请售后");
        assert_eq!(rows[0].tags, vec!["售后", "退货"]);
        assert!(rows[0].enabled);
        assert!(!rows[1].enabled);
        assert_eq!(defuse("=1+1"), "'=1+1");
        assert_eq!(refuse(&defuse("=1+1")), "=1+1");
        assert_eq!(refuse("'plain"), "'plain");
    }

    #[test]
    fn a_bad_row_names_its_field() {
        let error = parse_csv(b"questions,answer\nok,fine\n,missing question\n")
            .err()
            .expect("refused");
        assert_eq!(error.field(), Some("rows[2].questions"));
        let error = parse_csv(b"questions,answer,colour\nq,a,red\n")
            .err()
            .expect("refused");
        assert_eq!(error.code(), "bad_request");
        let error = parse_csv(b"questions,answer,enabled\nq,a,maybe\n")
            .err()
            .expect("refused");
        assert_eq!(error.field(), Some("rows[1].enabled"));
    }
}
