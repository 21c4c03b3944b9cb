//! The web UI, compiled into the binary (build.rs builds `ui/`; rust-embed
//! embeds the result, in debug builds too): the agent workstation at `/`,
//! the widget's embed script at `/widget.js` and its iframe app at
//! `/widget/frame.html`; and a demo page with the widget of one app,
//! `/widget/demo.html?app_key=…`, where a new shop sends itself a test
//! message (the desktop's first start opens it).
//!
//! Each page gets a strict Content-Security-Policy: scripts and styles only
//! from this server, no inline scripts, no plugins. The workstation may not
//! be framed at all; the widget's frame may be framed by the sites in its
//! app's `allowed_origins` (the app is named by `?app_key=` in the frame's
//! URL), or by any site when that list is empty. That is how
//! `allowed_origins` holds for the widget, whose own requests are
//! same-origin (crate::http::cross_origin).
//!
//! Hashed files under `assets/` are cached for a year; the rest revalidate
//! by ETag (the embedded file's SHA-256). Text files are sent gzipped, from
//! the copies build.rs made, to clients that accept it.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "$EMBEDDED_UI_DIR"]
struct Assets;

/// The policy of every UI page; `frame-ancestors` is added per page.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' blob: data:; media-src 'self' blob:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'";

pub fn routes() -> Router<AppState> {
    workstation_routes()
        .route("/widget.js", get(widget_script))
        .route("/widget/frame.html", get(widget_frame))
        .route("/widget/assets/{*file}", get(widget_asset))
        .route("/widget/demo.html", get(widget_demo))
}

/// The agent workstation alone (no widget): what a LAN peer serves
/// (`lan::peer`), which has no shop data to serve the widget from.
pub fn workstation_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(workstation))
        .route("/index.html", get(workstation))
        .route("/assets/{*file}", get(asset))
}

async fn workstation(headers: HeaderMap) -> Response {
    let mut response = serve("index.html", &headers, Caching::Revalidate);
    set(
        &mut response,
        header::CONTENT_SECURITY_POLICY,
        &format!("{CSP}; frame-ancestors 'none'"),
    );
    set(&mut response, header::X_FRAME_OPTIONS, "DENY");
    set(&mut response, header::REFERRER_POLICY, "no-referrer");
    response
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("assets/{file}"), &headers, Caching::Immutable)
}

async fn widget_asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(
        &format!("widget/assets/{file}"),
        &headers,
        Caching::Immutable,
    )
}

async fn widget_script(headers: HeaderMap) -> Response {
    let mut response = serve("widget.js", &headers, Caching::Short);
    // Loaded by <script> from any site, including ones that isolate
    // themselves with Cross-Origin-Embedder-Policy.
    set(
        &mut response,
        "cross-origin-resource-policy",
        "cross-origin",
    );
    response
}

#[derive(Deserialize)]
struct FrameQuery {
    app_key: Option<String>,
}

async fn widget_frame(
    State(state): State<AppState>,
    Query(query): Query<FrameQuery>,
    headers: HeaderMap,
) -> Response {
    let ancestors = match query.app_key.as_deref() {
        Some(key) => match crate::apps::find_by_key(&state.db, key).await {
            Ok(Some(app)) if !app.allowed_origins.is_empty() => app.allowed_origins.join(" "),
            Ok(_) => "*".to_owned(),
            Err(error) => return error.into_response(),
        },
        None => "*".to_owned(),
    };
    let mut response = serve("widget/frame.html", &headers, Caching::Revalidate);
    set(
        &mut response,
        header::CONTENT_SECURITY_POLICY,
        &format!("{CSP}; frame-ancestors {ancestors}"),
    );
    // The frame reads the host page's origin from its URL fragment, never
    // from the Referer; and it sends none.
    set(&mut response, header::REFERRER_POLICY, "no-referrer");
    response
}

/// A page of this server with the app's widget on it, as the embed snippet
/// puts it on a shop's site: a visitor's view to send a test message from.
/// Only a known app key; the key and the name are HTML-escaped. The widget's
/// frame obeys the app's `allowed_origins` here as anywhere.
async fn widget_demo(State(state): State<AppState>, Query(query): Query<FrameQuery>) -> Response {
    let Some(key) = query.app_key.as_deref() else {
        return ApiError::BadRequest("app_key is required".into()).into_response();
    };
    let app = match crate::apps::find_by_key(&state.db, key).await {
        Ok(Some(app)) => app,
        Ok(None) => return ApiError::NotFound("no such app".into()).into_response(),
        Err(error) => return error.into_response(),
    };
    let name = escape_html(&app.name);
    let key = escape_html(&app.app_key);
    let page = format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{name} · Kefu demo</title></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem\">\
         <h1>{name}</h1>\
         <p>这是一个演示页面：点击右下角的聊天按钮，发送一条测试消息，它会出现在客服工作台的队列里。</p>\
         <p lang=\"en\">A demo page: open the chat button at the bottom right and send a test message; \
         it arrives in the workstation's queue.</p>\
         <script src=\"/widget.js\" data-app-key=\"{key}\" async></script>\
         </body></html>\n"
    );
    let mut response = page.into_response();
    set(
        &mut response,
        header::CONTENT_TYPE,
        "text/html; charset=utf-8",
    );
    set(
        &mut response,
        header::CONTENT_SECURITY_POLICY,
        &format!("{CSP}; frame-ancestors 'none'"),
    );
    set(&mut response, header::CACHE_CONTROL, "no-store");
    set(&mut response, header::REFERRER_POLICY, "no-referrer");
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Caching {
    /// Content-hashed file names: never changes.
    Immutable,
    /// A fixed URL embedded on other sites: a few minutes.
    Short,
    /// Pages: always ask (cheap with the ETag).
    Revalidate,
}

fn serve(path: &str, headers: &HeaderMap, caching: Caching) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::NotFound("no such file".into()).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let cache = match caching {
        Caching::Immutable => "public, max-age=31536000, immutable",
        Caching::Short => "public, max-age=300",
        Caching::Revalidate => "no-cache",
    };
    let matches_etag = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut response = if matches_etag {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let gzip = accepts_gzip(headers)
            .then(|| Assets::get(&format!("{path}.gz")))
            .flatten();
        let mut response = match gzip {
            Some(zipped) => {
                let mut r = body(zipped.data).into_response();
                set(&mut r, header::CONTENT_ENCODING, "gzip");
                r
            }
            None => body(file.data).into_response(),
        };
        set(&mut response, header::CONTENT_TYPE, content_type(path));
        response
    };
    set(&mut response, header::ETAG, &etag);
    set(&mut response, header::CACHE_CONTROL, cache);
    set(&mut response, header::VARY, "Accept-Encoding");
    response
}

/// The embedded bytes without a copy (they are `'static` in the binary).
fn body(data: std::borrow::Cow<'static, [u8]>) -> bytes::Bytes {
    match data {
        std::borrow::Cow::Borrowed(bytes) => bytes::Bytes::from_static(bytes),
        std::borrow::Cow::Owned(bytes) => bytes::Bytes::from(bytes),
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                let refused = it.any(|p| p.trim().replace(' ', "") == "q=0");
                coding.eq_ignore_ascii_case("gzip") && !refused
            })
        })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        _ => "application/octet-stream",
    }
}

fn set(response: &mut Response, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_embedded_every_entry_point() {
        for path in ["index.html", "widget.js", "widget/frame.html"] {
            assert!(Assets::get(path).is_some(), "{path} is not embedded");
        }
        assert!(Assets::get("index.html.gz").is_some(), "no gzipped copy");
    }

    #[test]
    fn gzip_negotiation() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&headers));
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=1, gzip;q=0"),
        );
        assert!(!accepts_gzip(&headers));
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&headers));
    }
}
