//! Attachments: upload (`multipart/form-data`, streamed to disk), storage
//! under the data dir, sending with a message, download.
//!
//! Invariants:
//! - A file's bytes live at `DATA_DIR/attachments/<stored_name>`, a name of
//!   128 random bits: the client's file name never reaches a path. An upload
//!   is written to `attachments/.incoming/` first and renamed into place
//!   only when it is complete and accepted; every failure removes it.
//! - The type is detected from the bytes (`infer`), never from the name or
//!   the client's `Content-Type`. Only raster images on a short list become
//!   kind `image`; any type not on the safe list is served as
//!   `application/octet-stream` (SVG and HTML, which can carry script, are
//!   never on it).
//! - The download URL carries its own random key (a capability, compared in
//!   constant time): no bearer token in a URL, and without the key the file
//!   does not exist (404).
//! - An attachment may only be sent by its uploader: a visitor's into its own
//!   conversation, an agent's into any conversation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use crate::auth::{AgentAuth, VisitorAuth};
use crate::conversations::Author;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiQuery;
use crate::ids::{AgentId, AttachmentId, ConversationId, VisitorId};
use crate::message::MessageKind;
use crate::state::AppState;
use crate::time::now_ms;

/// Directory of attachments inside the data dir.
pub const DIR: &str = "attachments";
/// Uploads in progress, inside [`DIR`].
const INCOMING: &str = ".incoming";
/// Room for the multipart framing (boundaries, part headers) on top of
/// `limits.attachment_bytes`; a body larger than both is refused as it
/// streams in.
const FRAMING_BYTES: usize = 16 * 1024;
/// Bytes kept from the start of a file for type detection.
const SNIFF_BYTES: usize = 8 * 1024;
/// Display names are cut to this many characters.
const NAME_MAX_CHARS: usize = 200;

/// Raster image types a browser may show inline: kind `image`.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Other detected types served as themselves (always as a download).
/// Anything else is served as `application/octet-stream`.
const DOWNLOAD_TYPES: [&str; 11] = [
    "application/pdf",
    "application/zip",
    "application/gzip",
    "audio/mpeg",
    "audio/ogg",
    "video/mp4",
    "video/webm",
    "video/quicktime",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
];

const OCTET_STREAM: &str = "application/octet-stream";

pub fn routes() -> Router<AppState> {
    // The global 64 KiB body limit is lifted for the two upload routes only;
    // they enforce `limits.attachment_bytes` themselves while streaming.
    Router::new()
        .route(
            "/visitor/attachments",
            post(upload_visitor).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/attachments",
            post(upload_agent).layer(DefaultBodyLimit::disable()),
        )
        .route("/attachments/{id}/{key}", get(download))
}

/// The protocol's attachment object, as in uploads and `Message.attachment`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "Attachment"))]
pub struct AttachmentObject {
    pub id: AttachmentId,
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub url: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: AttachmentId,
    stored_name: String,
    url_key: String,
    name: String,
    size: i64,
    mime: String,
    kind: String,
    uploader_agent_id: Option<AgentId>,
    uploader_visitor_id: Option<VisitorId>,
}

impl Row {
    fn object(&self) -> AttachmentObject {
        AttachmentObject {
            id: self.id,
            name: self.name.clone(),
            size: u64::try_from(self.size).unwrap_or(0),
            mime: self.mime.clone(),
            url: url(self.id, &self.url_key),
        }
    }
}

fn url(id: AttachmentId, key: &str) -> String {
    format!("/api/v1/attachments/{id}/{key}")
}

async fn find(state: &AppState, id: AttachmentId) -> Result<Option<Row>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT id, stored_name, url_key, name, size, mime, kind, uploader_agent_id, uploader_visitor_id
         FROM attachments WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?)
}

/// For a send naming `attachment_id`: checks that `author` uploaded it and
/// returns the message kind (`image` or `file`; a note stays a note) and the
/// `Message.attachment` value. Without an attachment: `kind` and `None`.
pub async fn attach(
    state: &AppState,
    author: &Author,
    attachment_id: Option<&str>,
    kind: MessageKind,
) -> Result<(MessageKind, Option<Value>), ApiError> {
    let Some(text) = attachment_id else {
        return Ok((kind, None));
    };
    let id: AttachmentId = text.parse().map_err(|_| {
        ApiError::bad_request("attachment_id is not a valid id").in_field("attachment_id")
    })?;
    let row = find(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("attachment"))?;
    let owned = match author {
        Author::Visitor(visitor) => row.uploader_visitor_id == Some(visitor.visitor_id),
        Author::Agent(agent) => row.uploader_agent_id == Some(agent.id),
    };
    if !owned {
        return Err(ApiError::forbidden(
            "an attachment can only be sent by its uploader",
        ));
    }
    let kind = match (kind, row.kind.as_str()) {
        (MessageKind::Note, _) => MessageKind::Note,
        (_, "image") => MessageKind::Image,
        _ => MessageKind::File,
    };
    let value = serde_json::to_value(row.object()).map_err(ApiError::internal)?;
    Ok((kind, Some(value)))
}

// ---- upload ---------------------------------------------------------------

/// Removes uploads a previous process left half-written (it stopped
/// mid-upload). Called at start, before any upload can be in progress.
pub fn clean_incoming(data_dir: &Path) {
    let dir = data_dir.join(DIR).join(INCOMING);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        if let Err(error) = std::fs::remove_file(entry.path()) {
            tracing::warn!(%error, "cannot remove a stale upload");
        }
    }
}

/// Who is uploading: decides the owner columns (and a visitor's limit).
enum Uploader {
    Visitor {
        visitor: VisitorId,
        conversation: ConversationId,
        /// `limits.visitor_uploads_per_hour` (0 = unlimited).
        per_hour: u32,
        /// The upload's place among the visitor's uploads in flight.
        reservation: Option<Reservation>,
    },
    Agent(AgentId),
}

/// One hour, the window of `limits.visitor_uploads_per_hour`.
const HOUR_MS: i64 = 3_600_000;

/// Visitor uploads admitted but not yet recorded, per visitor. An upload
/// is counted here from the moment it passes the hourly check until just
/// before its row is written, so that 90 uploads started at once cannot
/// all pass the check before any of them is recorded (they did: ~78 of 90
/// against a limit of 60). The row's own `INSERT` counts again, in the
/// same statement (see [`store`]): that one is exact, this one only saves
/// receiving uploads that would be refused. Process-wide, since visitor
/// ids are unique; an entry lives only while that visitor has uploads in
/// flight, so the map is bounded by the uploads in progress.
static IN_FLIGHT: std::sync::LazyLock<parking_lot::Mutex<HashMap<VisitorId, u32>>> =
    std::sync::LazyLock::new(Default::default);

/// A visitor upload counted in [`IN_FLIGHT`]; released when dropped.
struct Reservation {
    visitor: VisitorId,
}

impl Reservation {
    /// Admits one more upload of `visitor`, who has `recorded` uploads in
    /// the last hour, or refuses it (429). Released *before* the row is
    /// written (see [`store`]): a check running meanwhile may then miss
    /// it, which the exact count in the `INSERT` catches, but can never
    /// count one upload twice and refuse an upload within the limit.
    fn take(visitor: VisitorId, recorded: i64, per_hour: u32) -> Result<Reservation, ApiError> {
        let mut in_flight = IN_FLIGHT.lock();
        let count = in_flight.entry(visitor).or_insert(0);
        if recorded.saturating_add(i64::from(*count)) >= i64::from(per_hour) {
            if *count == 0 {
                in_flight.remove(&visitor);
            }
            return Err(ApiError::RateLimited);
        }
        *count += 1;
        Ok(Reservation { visitor })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_flight = IN_FLIGHT.lock();
        if let Some(count) = in_flight.get_mut(&self.visitor) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.visitor);
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct UploadResponse {
    attachment: AttachmentObject,
}

async fn upload_visitor(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let per_hour = state.config.limits.visitor_uploads_per_hour;
    // Reserve before receiving anything (see `IN_FLIGHT`).
    let reservation = if per_hour > 0 {
        let (recent,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM attachments WHERE uploader_visitor_id = ? AND created_at > ?",
        )
        .bind(visitor.visitor_id)
        .bind(now_ms() - HOUR_MS)
        .fetch_one(&state.db)
        .await?;
        Some(Reservation::take(visitor.visitor_id, recent, per_hour)?)
    } else {
        None
    };
    let uploader = Uploader::Visitor {
        visitor: visitor.visitor_id,
        conversation: visitor.conversation_id,
        per_hour,
        reservation,
    };
    upload(&state, uploader, request).await
}

async fn upload_agent(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    upload(&state, Uploader::Agent(agent.id), request).await
}

/// A temp file that is removed when dropped, unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One received `file` part, on disk in `.incoming`.
struct Incoming {
    temp: TempFile,
    size: u64,
    head: Vec<u8>,
    name: String,
}

async fn upload(
    state: &AppState,
    uploader: Uploader,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let limit = state.config.limits.attachment_bytes;
    let body_cap = limit.saturating_add(FRAMING_BYTES);
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > body_cap as u64) {
        // Read the rest first when it is not much more (the client is
        // still sending: an early answer would reach it as a reset).
        if declared <= (body_cap + crate::http::extract::DRAIN_BYTES_MAX) as u64 {
            crate::http::extract::discard(body, crate::http::extract::DRAIN_BYTES_MAX + body_cap)
                .await;
        }
        return Err(too_large(limit));
    }
    // Counts the body as it streams and cuts it off past the cap, so that
    // neither a lying Content-Length nor a chunked body can go beyond it.
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&exceeded);
    let mut seen = 0usize;
    let limited = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len());
        if seen > body_cap {
            flag.store(true, Ordering::Release);
            return Err(axum::Error::new(std::io::Error::other("body too large")));
        }
        Ok(chunk)
    });
    let request = Request::from_parts(parts, Body::from_stream(limited));
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::bad_request(format!(
                "expected multipart/form-data with one part named file: {}",
                rejection.body_text()
            ))
        })?;

    let dir = state.config.data_dir.join(DIR);
    let incoming_dir = dir.join(INCOMING);
    tokio::fs::create_dir_all(&incoming_dir)
        .await
        .map_err(io_error)?;

    let received = receive(&mut multipart, &incoming_dir, limit).await;
    let incoming = match received {
        Ok(incoming) => incoming,
        Err(error) => {
            // Read what is left (bounded by the cap) so the client, still
            // sending, reads our answer instead of a reset connection.
            drain(&mut multipart).await;
            if exceeded.load(Ordering::Acquire) {
                return Err(too_large(limit));
            }
            return Err(error);
        }
    };
    let stored = store(state, uploader, incoming, &dir).await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadResponse {
            attachment: stored.object(),
        }),
    ))
}

/// A file system error of an upload: 503 when the disk is full (the
/// client may retry once there is room), otherwise internal.
fn io_error(error: std::io::Error) -> ApiError {
    if error.kind() == std::io::ErrorKind::StorageFull {
        ApiError::disk_full()
    } else {
        ApiError::internal(error)
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!("an attachment may be at most {limit} bytes"))
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("malformed multipart body: {}", error.body_text()))
}

/// Reads the whole multipart body: exactly one part, named `file`, written
/// to a temp file as it arrives.
async fn receive(
    multipart: &mut Multipart,
    incoming_dir: &Path,
    limit: usize,
) -> Result<Incoming, ApiError> {
    let mut received: Option<Incoming> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            return Err(ApiError::bad_request(
                "unexpected part: send exactly one part, named file",
            ));
        }
        if received.is_some() {
            return Err(ApiError::bad_request("send exactly one file per upload"));
        }
        let name = sanitize_name(field.file_name());
        let temp = TempFile {
            path: incoming_dir.join(format!("{}.part", random_hex())),
            keep: false,
        };
        let file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(io_error)?;
        let mut writer = tokio::io::BufWriter::with_capacity(64 * 1024, file);
        let mut size: u64 = 0;
        let mut head = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            size += chunk.len() as u64;
            if size > limit as u64 {
                return Err(too_large(limit));
            }
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            writer.write_all(&chunk).await.map_err(io_error)?;
        }
        writer.flush().await.map_err(io_error)?;
        // Durable before the row that points at it is committed.
        writer.into_inner().sync_all().await.map_err(io_error)?;
        if size == 0 {
            return Err(ApiError::bad_request("the file is empty"));
        }
        received = Some(Incoming {
            temp,
            size,
            head,
            name,
        });
    }
    received.ok_or_else(|| ApiError::bad_request("missing the part named file"))
}

async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// Moves an accepted upload into place and records it.
async fn store(
    state: &AppState,
    uploader: Uploader,
    mut incoming: Incoming,
    dir: &Path,
) -> Result<Row, ApiError> {
    let (mime, kind) = classify(&incoming.head);
    let stored_name = random_hex();
    let path = dir.join(&stored_name);
    tokio::fs::rename(&incoming.temp.path, &path)
        .await
        .map_err(io_error)?;
    incoming.temp.keep = true;
    // Removed again if recording it fails.
    let mut placed = TempFile { path, keep: false };
    let (agent, visitor, conversation, per_hour) = match uploader {
        Uploader::Visitor {
            visitor,
            conversation,
            per_hour,
            reservation,
        } => {
            // Released before the row is written: see `Reservation::take`.
            drop(reservation);
            (None, Some(visitor), Some(conversation), per_hour)
        }
        Uploader::Agent(agent) => (Some(agent), None, None, 0),
    };
    let row = Row {
        id: AttachmentId::new(),
        stored_name,
        url_key: random_hex(),
        name: incoming.name,
        size: i64::try_from(incoming.size).unwrap_or(i64::MAX),
        mime: mime.to_owned(),
        kind: kind.to_owned(),
        uploader_agent_id: agent,
        uploader_visitor_id: visitor,
    };
    let now = now_ms();
    // The visitor's hourly count and the insert in one statement, which
    // SQLite runs under its single writer: however many uploads finish at
    // once, no more than `per_hour` rows are written in an hour.
    let inserted = sqlx::query(
        "INSERT INTO attachments (id, stored_name, url_key, name, size, mime, kind,
             uploader_agent_id, uploader_visitor_id, conversation_id, created_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
         WHERE ?9 IS NULL OR ?12 = 0
            OR (SELECT COUNT(*) FROM attachments
                WHERE uploader_visitor_id = ?9 AND created_at > ?11 - ?13) < ?12",
    )
    .bind(row.id)
    .bind(&row.stored_name)
    .bind(&row.url_key)
    .bind(&row.name)
    .bind(row.size)
    .bind(&row.mime)
    .bind(&row.kind)
    .bind(row.uploader_agent_id)
    .bind(row.uploader_visitor_id)
    .bind(conversation)
    .bind(now)
    .bind(i64::from(per_hour))
    .bind(HOUR_MS)
    .execute(&state.db)
    .await?;
    if inserted.rows_affected() == 0 {
        // Over the limit: `placed` removes the file.
        return Err(ApiError::RateLimited);
    }
    placed.keep = true;
    Ok(row)
}

/// The served type and the kind, from the first bytes of the file.
fn classify(head: &[u8]) -> (&'static str, &'static str) {
    let detected = infer::get(head).map(|t| t.mime_type());
    match detected {
        Some(mime) => {
            if let Some(image) = IMAGE_TYPES.iter().find(|t| **t == mime) {
                (image, "image")
            } else if let Some(safe) = DOWNLOAD_TYPES.iter().find(|t| **t == mime) {
                (safe, "file")
            } else {
                (OCTET_STREAM, "file")
            }
        }
        None => (OCTET_STREAM, "file"),
    }
}

/// 128 random bits as 32 hex digits.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// A display name that is inert everywhere it is shown or sent: the last
/// path component only (no `../`, no `/` or `\`), no control or bidi
/// override characters, no leading dots, at most [`NAME_MAX_CHARS`]
/// characters; `file` when nothing is left.
pub fn sanitize_name(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or("");
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let name: String = trimmed.chars().take(NAME_MAX_CHARS).collect();
    let name = name.trim_end().to_owned();
    if name.is_empty() {
        "file".to_owned()
    } else {
        name
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

// ---- download -------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    #[serde(default)]
    inline: Option<String>,
}

async fn download(
    State(state): State<AppState>,
    UrlPath((id, key)): UrlPath<(String, String)>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("attachment");
    let id: AttachmentId = id.parse().map_err(|_| not_found())?;
    let row = find(&state, id).await?.ok_or_else(not_found)?;
    let key_ok: bool = row.url_key.as_bytes().ct_eq(key.as_bytes()).into();
    if !key_ok {
        return Err(not_found());
    }
    let inline = match query.inline.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("inline must be 1 or 0").in_field("inline")),
    };
    if inline && row.kind != "image" {
        return Err(ApiError::bad_request(
            "only images can be shown inline; download the file instead",
        ));
    }
    let path = state.config.data_dir.join(DIR).join(&row.stored_name);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::error!(attachment = %row.id, "attachment file is missing");
            return Err(not_found());
        }
        Err(error) => return Err(ApiError::internal(error)),
    };
    let disposition = content_disposition(if inline { "inline" } else { "attachment" }, &row.name);
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let mime = if IMAGE_TYPES.contains(&row.mime.as_str())
        || DOWNLOAD_TYPES.contains(&row.mime.as_str())
    {
        row.mime.as_str()
    } else {
        OCTET_STREAM
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(static_mime(mime)),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(row.size.max(0) as u64),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The bytes behind a URL never change; the URL is a capability, so only
    // private caches may keep it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(response)
}

/// The `&'static str` of a type on the lists (they are the only ones served).
fn static_mime(mime: &str) -> &'static str {
    IMAGE_TYPES
        .iter()
        .chain(DOWNLOAD_TYPES.iter())
        .find(|t| **t == mime)
        .copied()
        .unwrap_or(OCTET_STREAM)
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`
/// (RFC 6266 / RFC 8187): the ASCII fallback replaces anything that could
/// break out of the quotes.
pub fn content_disposition(disposition: &str, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%' | ';') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        if keep {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_inert() {
        assert_eq!(sanitize_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(sanitize_name(Some("..\\..\\boot.ini")), "boot.ini");
        assert_eq!(sanitize_name(Some("..")), "file");
        assert_eq!(sanitize_name(Some(".htaccess")), "htaccess");
        assert_eq!(sanitize_name(Some("a\u{0}b\r\nc.txt")), "abc.txt");
        assert_eq!(sanitize_name(Some("evil\u{202E}gpj.exe")), "evilgpj.exe");
        assert_eq!(sanitize_name(None), "file");
        assert_eq!(sanitize_name(Some("发票.pdf")), "发票.pdf");
        assert_eq!(
            sanitize_name(Some(&"x".repeat(500))).chars().count(),
            NAME_MAX_CHARS
        );
    }

    #[test]
    fn disposition_is_quoted_and_encoded() {
        assert_eq!(
            content_disposition("attachment", "a b\".pdf"),
            "attachment; filename=\"a b_.pdf\"; filename*=UTF-8''a%20b%22.pdf"
        );
        assert_eq!(
            content_disposition("inline", "图.png"),
            "inline; filename=\"_.png\"; filename*=UTF-8''%E5%9B%BE.png"
        );
    }

    #[test]
    fn types_come_from_the_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0];
        assert_eq!(classify(&png), ("image/png", "image"));
        assert_eq!(classify(b"%PDF-1.7\n"), ("application/pdf", "file"));
        assert_eq!(
            classify(b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>x</script></svg>"),
            (OCTET_STREAM, "file")
        );
        assert_eq!(
            classify(b"<!DOCTYPE html><html><script>alert(1)</script>"),
            (OCTET_STREAM, "file")
        );
        assert_eq!(classify(b"hello"), (OCTET_STREAM, "file"));
    }
}
