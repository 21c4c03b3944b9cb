//! Attachments: upload (`multipart/form-data`, streamed to disk), storage
//! under the data dir, sending with a message, download. The doors
//! (multipart parsing, the download's headers) are in [`routes`]; the
//! files, their rows and every check are here.
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

pub mod routes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use crate::conversations::Author;
use crate::error::ApiError;
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
pub const FRAMING_BYTES: usize = 16 * 1024;
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

/// An attachment's row.
#[derive(sqlx::FromRow)]
pub struct Row {
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
    /// The protocol's object for this attachment.
    pub fn object(&self) -> AttachmentObject {
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
pub enum Uploader {
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
pub struct Reservation {
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

impl Uploader {
    /// A visitor's upload into its conversation, admitted by its hourly
    /// limit (429 beyond it) before anything is received: the place is
    /// reserved (see [`IN_FLIGHT`]) until the row is written or the upload
    /// fails.
    pub async fn visitor(
        state: &AppState,
        visitor: VisitorId,
        conversation: ConversationId,
    ) -> Result<Uploader, ApiError> {
        let per_hour = state.config.limits.visitor_uploads_per_hour;
        let reservation = if per_hour > 0 {
            let (recent,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM attachments WHERE uploader_visitor_id = ? AND created_at > ?",
            )
            .bind(visitor)
            .bind(now_ms() - HOUR_MS)
            .fetch_one(&state.db)
            .await?;
            Some(Reservation::take(visitor, recent, per_hour)?)
        } else {
            None
        };
        Ok(Uploader::Visitor {
            visitor,
            conversation,
            per_hour,
            reservation,
        })
    }
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
pub struct Incoming {
    temp: TempFile,
    size: u64,
    head: Vec<u8>,
    name: String,
}

/// `attachments/.incoming` under the data dir, made if missing: where
/// uploads are written while they arrive.
pub async fn incoming_dir(data_dir: &Path) -> Result<PathBuf, ApiError> {
    let dir = data_dir.join(DIR).join(INCOMING);
    tokio::fs::create_dir_all(&dir).await.map_err(io_error)?;
    Ok(dir)
}

/// A `file` part being received: written to a temp file in
/// `.incoming` as its chunks arrive, removed if it is not finished.
pub struct Receiving {
    // Closed before the temp file is removed (fields drop in order): a
    // file still open cannot be removed on Windows.
    writer: tokio::io::BufWriter<tokio::fs::File>,
    temp: TempFile,
    size: u64,
    head: Vec<u8>,
    name: String,
    limit: usize,
}

impl Receiving {
    /// Starts a part named `file_name` by the client (sanitized: it never
    /// reaches a path) of at most `limit` bytes.
    pub async fn start(
        incoming_dir: &Path,
        file_name: Option<&str>,
        limit: usize,
    ) -> Result<Receiving, ApiError> {
        let name = sanitize_name(file_name);
        let temp = TempFile {
            path: incoming_dir.join(format!("{}.part", random_hex())),
            keep: false,
        };
        let file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(io_error)?;
        Ok(Receiving {
            temp,
            writer: tokio::io::BufWriter::with_capacity(64 * 1024, file),
            size: 0,
            head: Vec::new(),
            name,
            limit,
        })
    }

    /// The next chunk (413 past the limit).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit as u64 {
            return Err(too_large(self.limit));
        }
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.writer.write_all(chunk).await.map_err(io_error)
    }

    /// The part is complete: flushed and synced (durable before the row
    /// that points at it is committed); an empty file is refused.
    pub async fn finish(mut self) -> Result<Incoming, ApiError> {
        self.writer.flush().await.map_err(io_error)?;
        self.writer
            .into_inner()
            .sync_all()
            .await
            .map_err(io_error)?;
        if self.size == 0 {
            return Err(ApiError::bad_request("the file is empty"));
        }
        Ok(Incoming {
            temp: self.temp,
            size: self.size,
            head: self.head,
            name: self.name,
        })
    }
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

/// The answer to an upload over `limits.attachment_bytes` (413).
pub fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!("an attachment may be at most {limit} bytes"))
}

/// Moves an accepted upload into place and records it (429 when a
/// visitor's hourly limit was reached meanwhile: nothing is kept).
pub async fn store(
    state: &AppState,
    uploader: Uploader,
    mut incoming: Incoming,
) -> Result<Row, ApiError> {
    let dir = state.config.data_dir.join(DIR);
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

/// A file to send, found by its id and its URL key.
pub struct Download {
    pub file: tokio::fs::File,
    /// The served type: the stored one if on the lists, else
    /// `application/octet-stream`.
    pub mime: &'static str,
    pub size: u64,
    /// The `Content-Disposition` value (`inline` for an image asked so).
    pub disposition: String,
}

/// Opens attachment `id` for whoever holds its URL `key` (404 for an
/// unknown id, a wrong key or a missing file); `inline` (`1`/`true`,
/// `0`/`false`) only for images.
pub async fn open(
    state: &AppState,
    id: &str,
    key: &str,
    inline: Option<&str>,
) -> Result<Download, ApiError> {
    let not_found = || ApiError::not_found("attachment");
    let id: AttachmentId = id.parse().map_err(|_| not_found())?;
    let row = find(state, id).await?.ok_or_else(not_found)?;
    let key_ok: bool = row.url_key.as_bytes().ct_eq(key.as_bytes()).into();
    if !key_ok {
        return Err(not_found());
    }
    let inline = match inline {
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
    let mime = if IMAGE_TYPES.contains(&row.mime.as_str())
        || DOWNLOAD_TYPES.contains(&row.mime.as_str())
    {
        row.mime.as_str()
    } else {
        OCTET_STREAM
    };
    Ok(Download {
        file,
        mime: static_mime(mime),
        size: row.size.max(0) as u64,
        disposition,
    })
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
