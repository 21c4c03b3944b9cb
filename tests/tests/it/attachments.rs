//! Attachments over real sockets: multipart upload by visitors and agents,
//! sending with a message over REST and WebSocket, download with its
//! headers, every bad upload, and who may use which attachment.

use std::path::Path;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

const VISITOR_UPLOAD: &str = "/api/v1/visitor/attachments";
const AGENT_UPLOAD: &str = "/api/v1/attachments";

/// A file that starts like a PNG (type detection reads the magic bytes).
fn png(len: usize) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    bytes.resize(len.max(8), 0x42);
    bytes
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n".to_vec()
}

fn file_part(name: &str, bytes: Vec<u8>, content_type: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(content_type)
        .expect("mime")
}

async fn upload_form(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    form: Form,
) -> (StatusCode, Value) {
    let mut request = server.http.post(server.url(path)).multipart(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    kefu_tests::read(request.send().await.expect("upload")).await
}

/// Uploads one file; returns the status and the `attachment` object.
async fn upload(
    server: &TestServer,
    path: &str,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> (StatusCode, Value) {
    let form = Form::new().part("file", file_part(name, bytes, content_type));
    let (status, body) = upload_form(server, path, Some(token), form).await;
    let attachment = if status.is_success() {
        body["attachment"].clone()
    } else {
        body
    };
    (status, attachment)
}

async fn download(server: &TestServer, url: &str) -> reqwest::Response {
    server
        .http
        .get(server.url(url))
        .send()
        .await
        .expect("download")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Files stored under `data_dir/attachments`, in-progress dir excluded.
fn stored_files(data_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = data_dir.join("attachments");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

fn incoming_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("attachments").join(".incoming"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

async fn send_with(
    server: &TestServer,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    server.post(path, Some(token), body).await
}

async fn shop() -> (TestServer, Value, AgentClient, AgentClient) {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    (server, app, amy, bo)
}

fn visitor_send(client_msg_id: &str, attachment: &Value, caption: Option<&str>) -> Value {
    let mut body = json!({"client_msg_id": client_msg_id, "attachment_id": attachment["id"]});
    if let Some(caption) = caption {
        body["content"] = json!(caption);
    }
    body
}

#[tokio::test]
async fn visitor_uploads_sends_and_downloads_over_rest() {
    let (server, app, amy, _) = shop().await;
    let visitor = server.visitor(&app).await;
    let bytes = png(5_000);
    // The client's Content-Type is not believed; the bytes are.
    let (status, attachment) = upload(
        &server,
        VISITOR_UPLOAD,
        &visitor.token,
        "photo.png",
        bytes.clone(),
        "text/html",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{attachment}");
    assert_eq!(attachment["name"], "photo.png");
    assert_eq!(attachment["size"], 5_000);
    assert_eq!(attachment["mime"], "image/png");
    let id = attachment["id"].as_str().expect("id");
    let url = attachment["url"].as_str().expect("url");
    let key = url
        .strip_prefix(&format!("/api/v1/attachments/{id}/"))
        .expect("url shape");
    assert_eq!(key.len(), 32, "a 128-bit key: {url}");

    // On disk under the data dir, with a random name, nothing left behind.
    let files = stored_files(server.data_dir());
    assert_eq!(files.len(), 1, "{files:?}");
    let (name, content) = &files[0];
    assert!(
        name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
        "random name, got {name}"
    );
    assert_eq!(content, &bytes);
    assert_eq!(incoming_files(server.data_dir()), 0);

    // Sent with a caption: kind image, the attachment object as uploaded.
    let (status, body) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &visitor.token,
        visitor_send("v1", &attachment, Some("my receipt")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let message = &body["message"];
    assert_eq!(message["kind"], "image");
    assert_eq!(message["content"], "my receipt");
    assert_eq!(message["attachment"], attachment);
    // Dedup still holds.
    let (status, again) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &visitor.token,
        visitor_send("v1", &attachment, Some("my receipt")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["message"], *message);
    let transcript = server
        .transcript(&amy.token, &visitor.conversation_id)
        .await;
    assert_eq!(transcript.len(), 1);
    assert_eq!(transcript[0]["attachment"], attachment);

    // Download: the bytes, as a download, inert.
    let response = download(&server, url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(
        header(&response, "content-disposition"),
        "attachment; filename=\"photo.png\"; filename*=UTF-8''photo.png"
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(header(&response, "content-security-policy").contains("sandbox"));
    assert!(header(&response, "content-security-policy").contains("default-src 'none'"));
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), bytes);
    // Images may be shown inline, still nosniff and sandboxed.
    let response = download(&server, &format!("{url}?inline=1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-disposition").starts_with("inline;"));
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(header(&response, "content-security-policy").contains("sandbox"));

    // HEAD: the headers only.
    let response = server
        .http
        .head(server.url(url))
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), "5000");
    assert_eq!(header(&response, "content-type"), "image/png");

    // Without the key, or with another one, the file does not exist.
    let (status, body) = server.get(&format!("/api/v1/attachments/{id}"), None).await;
    assert_error(status, &body, 404, "not_found");
    let wrong = format!("/api/v1/attachments/{id}/{}", "0".repeat(32));
    let (status, body) = server.get(&wrong, None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, _) = server
        .get(&format!("/api/v1/attachments/{id}/{key}"), Some(&amy.token))
        .await;
    assert_eq!(status, StatusCode::OK, "the key alone is the capability");
    server.shutdown().await;
}

#[tokio::test]
async fn agent_sends_a_file_over_websocket_and_the_visitor_gets_it() {
    let (server, app, amy, _) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server
        .visitor_says(&visitor, "v1", "send me the invoice")
        .await;
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;
    let mut amy_ws = server.ws(&amy.token, json!({})).await;

    let (status, attachment) = upload(
        &server,
        AGENT_UPLOAD,
        &amy.token,
        "发票 2024.pdf",
        pdf(),
        "application/octet-stream",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{attachment}");
    assert_eq!(attachment["mime"], "application/pdf");
    assert_eq!(attachment["name"], "发票 2024.pdf");

    // No caption: content may be left out when an attachment is sent.
    amy_ws
        .send(json!({"type": "send", "client_msg_id": "a1", "conversation_id": conv, "attachment_id": attachment["id"]}))
        .await;
    let ack = amy_ws.next_of("ack").await;
    assert_eq!(ack["message"]["kind"], "file", "{ack}");
    assert_eq!(ack["message"]["content"], "");
    assert_eq!(ack["message"]["attachment"], attachment);
    let delivered = visitor_ws.next_of("message").await;
    assert_eq!(delivered["message"], ack["message"]);

    // The visitor downloads it through the url it was given.
    let url = delivered["message"]["attachment"]["url"]
        .as_str()
        .expect("url");
    let response = download(&server, url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/pdf");
    assert_eq!(
        header(&response, "content-disposition"),
        "attachment; filename=\"__ 2024.pdf\"; filename*=UTF-8''%E5%8F%91%E7%A5%A8%202024.pdf"
    );
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), pdf());
    // Not an image: never inline.
    let (status, body) = server.get(&format!("{url}?inline=1"), None).await;
    assert_error(status, &body, 400, "bad_request");

    // A visitor sends one over its WebSocket too; a private note may carry one.
    let (_, photo) = upload(
        &server,
        VISITOR_UPLOAD,
        &visitor.token,
        "cat.gif",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
        "image/gif",
    )
    .await;
    visitor_ws
        .send(json!({"type": "send", "client_msg_id": "v2", "attachment_id": photo["id"], "content": "look"}))
        .await;
    let ack = visitor_ws.next_of("ack").await;
    assert_eq!(ack["message"]["kind"], "image", "{ack}");
    assert_eq!(ack["message"]["attachment"]["mime"], "image/gif");
    assert_eq!(amy_ws.next_of("message").await["message"], ack["message"]);

    let (_, internal) = upload(&server, AGENT_UPLOAD, &amy.token, "log.pdf", pdf(), "x/y").await;
    let (status, body) = send_with(
        &server,
        &format!("/api/v1/conversations/{conv}/messages"),
        &amy.token,
        json!({"client_msg_id": "n1", "attachment_id": internal["id"], "private": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"]["kind"], "note");
    assert_eq!(body["message"]["attachment"], internal);
    let (_, page) = server
        .get("/api/v1/visitor/messages", Some(&visitor.token))
        .await;
    let kinds: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["text", "file", "image"],
        "notes never reach visitors"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn over_the_default_limit_is_413_and_leaves_nothing() {
    let (server, app, amy, _) = shop().await;
    let visitor = server.visitor(&app).await;
    let limit = server.config().limits.attachment_bytes;
    assert_eq!(limit, 10 * 1024 * 1024);
    let (status, body) = upload(
        &server,
        VISITOR_UPLOAD,
        &visitor.token,
        "big.png",
        png(limit + 1),
        "image/png",
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = upload(
        &server,
        AGENT_UPLOAD,
        &amy.token,
        "big.png",
        png(limit + 1),
        "image/png",
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
    assert!(stored_files(server.data_dir()).is_empty());
    assert_eq!(incoming_files(server.data_dir()), 0);
    // Exactly at the limit is fine.
    let (status, body) = upload(
        &server,
        VISITOR_UPLOAD,
        &visitor.token,
        "ok.png",
        png(limit),
        "image/png",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["size"], limit);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_uploads_are_refused_or_made_inert() {
    let mut server = TestServer::start_with(|c| c.limits.attachment_bytes = 1024).await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let token = visitor.token.as_str();

    // Over a configured limit, by one byte; a much larger body is refused
    // by its declared length.
    let (status, body) = upload(
        &server,
        VISITOR_UPLOAD,
        token,
        "a.png",
        png(1025),
        "image/png",
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = upload(
        &server,
        VISITOR_UPLOAD,
        token,
        "a.png",
        png(1024),
        "image/png",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = upload(
        &server,
        VISITOR_UPLOAD,
        token,
        "a.png",
        png(64 * 1024),
        "image/png",
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
    let before = stored_files(server.data_dir());
    assert_eq!(before.len(), 1);

    // Empty file.
    let (status, body) = upload(
        &server,
        VISITOR_UPLOAD,
        token,
        "e.txt",
        Vec::new(),
        "text/plain",
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    // No `file` part: another part only, or nothing at all.
    let form = Form::new().text("other", "x");
    let (status, body) = upload_form(&server, VISITOR_UPLOAD, Some(token), form).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = upload_form(&server, VISITOR_UPLOAD, Some(token), Form::new()).await;
    assert_error(status, &body, 400, "bad_request");
    // Two files.
    let form = Form::new()
        .part("file", file_part("a.png", png(100), "image/png"))
        .part("file", file_part("b.png", png(100), "image/png"));
    let (status, body) = upload_form(&server, VISITOR_UPLOAD, Some(token), form).await;
    assert_error(status, &body, 400, "bad_request");
    // A file plus an extra field.
    let form = Form::new()
        .part("file", file_part("a.png", png(100), "image/png"))
        .text("note", "x");
    let (status, body) = upload_form(&server, VISITOR_UPLOAD, Some(token), form).await;
    assert_error(status, &body, 400, "bad_request");
    // Not multipart at all.
    let (status, body) = server
        .post(VISITOR_UPLOAD, Some(token), json!({"file": "x"}))
        .await;
    assert_error(status, &body, 400, "bad_request");
    // None of that stored anything.
    assert_eq!(stored_files(server.data_dir()), before);
    assert_eq!(incoming_files(server.data_dir()), 0);

    // Who may upload.
    let form = || Form::new().part("file", file_part("a.png", png(10), "image/png"));
    let (status, body) = upload_form(&server, VISITOR_UPLOAD, None, form()).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = upload_form(&server, VISITOR_UPLOAD, Some(&amy.token), form()).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = upload_form(&server, AGENT_UPLOAD, Some(token), form()).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = upload_form(&server, AGENT_UPLOAD, None, form()).await;
    assert_error(status, &body, 401, "unauthorized");
    assert_eq!(stored_files(server.data_dir()), before);

    // SVG and HTML dressed up as images: accepted as inert files, served as
    // octet-stream, never inline, sent as kind file.
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>"#;
    let html = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>";
    for (index, name, bytes) in [(1, "logo.png", &svg[..]), (2, "photo.jpg", &html[..])] {
        let (status, attachment) = upload(
            &server,
            VISITOR_UPLOAD,
            token,
            name,
            bytes.to_vec(),
            "image/png",
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{attachment}");
        assert_eq!(attachment["mime"], "application/octet-stream", "{name}");
        let url = attachment["url"].as_str().expect("url");
        let response = download(&server, url).await;
        assert_eq!(
            header(&response, "content-type"),
            "application/octet-stream"
        );
        assert!(header(&response, "content-disposition").starts_with("attachment;"));
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert!(header(&response, "content-security-policy").contains("sandbox"));
        let (status, body) = server.get(&format!("{url}?inline=1"), None).await;
        assert_error(status, &body, 400, "bad_request");
        let (status, body) = send_with(
            &server,
            "/api/v1/visitor/messages",
            token,
            visitor_send(&format!("inert-{index}"), &attachment, None),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["message"]["kind"], "file");
    }

    // Path tricks in the name are made inert; the file still lands under
    // the data dir with a random name.
    let before = stored_files(server.data_dir()).len();
    for (given, kept) in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("..", "file"),
        ("a\tb.png", "ab.png"),
        ("invoice\u{202E}gpj.exe", "invoicegpj.exe"),
    ] {
        let (status, attachment) =
            upload(&server, VISITOR_UPLOAD, token, given, png(20), "image/png").await;
        assert_eq!(status, StatusCode::CREATED, "{attachment}");
        assert_eq!(attachment["name"], kept, "from {given:?}");
    }
    // Other control characters cannot even pass the part's header parser.
    let (status, body) = upload(
        &server,
        VISITOR_UPLOAD,
        token,
        "a\u{7}\u{1b}[31m.png",
        png(20),
        "image/png",
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    let files = stored_files(server.data_dir());
    assert_eq!(files.len(), before + 5);
    assert!(
        files
            .iter()
            .all(|(name, _)| name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    assert!(!server.data_dir().join("etc").exists());

    // A half-written upload left by a stopped process is removed at start;
    // stored attachments are not.
    let stale = server
        .data_dir()
        .join("attachments")
        .join(".incoming")
        .join("0123.part");
    std::fs::write(&stale, b"half").expect("write");
    let server = server.restart().await;
    assert!(!stale.exists());
    assert_eq!(stored_files(server.data_dir()), files);
    server.shutdown().await;
}

#[tokio::test]
async fn visitor_uploads_are_rate_limited_and_origin_checked() {
    let mut server = TestServer::start_with(|c| c.limits.visitor_uploads_per_hour = 2).await;
    let app = server
        .app(json!({"allowed_origins": ["https://shop.example"]}))
        .await;
    let visitor = server.visitor(&app).await;
    let form = || Form::new().part("file", file_part("a.png", png(10), "image/png"));
    let request = |origin: &str| {
        server
            .http
            .post(server.url(VISITOR_UPLOAD))
            .bearer_auth(&visitor.token)
            .header("origin", origin)
            .multipart(form())
    };
    let (status, body) =
        kefu_tests::read(request("https://evil.example").send().await.expect("send")).await;
    assert_error(status, &body, 403, "forbidden");
    for _ in 0..2 {
        let (status, body) =
            kefu_tests::read(request("https://shop.example").send().await.expect("send")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) =
        kefu_tests::read(request("https://shop.example").send().await.expect("send")).await;
    assert_error(status, &body, 429, "rate_limited");
    assert_eq!(stored_files(server.data_dir()).len(), 2);
    server.shutdown().await;
}

async fn own_attachment(server: &TestServer, visitor: &VisitorClient) -> Value {
    let (status, attachment) = upload(
        server,
        VISITOR_UPLOAD,
        &visitor.token,
        "mine.png",
        png(50),
        "image/png",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{attachment}");
    attachment
}

#[tokio::test]
async fn only_the_uploader_may_send_an_attachment() {
    let (server, app, amy, bo) = shop().await;
    let alice = server.visitor(&app).await;
    let bob = server.visitor(&app).await;
    let alices = own_attachment(&server, &alice).await;
    let (_, amys) = upload(
        &server,
        AGENT_UPLOAD,
        &amy.token,
        "a.pdf",
        pdf(),
        "application/pdf",
    )
    .await;

    // Bob cannot send Alice's, by REST or WebSocket.
    let (status, body) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &bob.token,
        visitor_send("b1", &alices, Some("stolen")),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let mut bob_ws = server.ws(&bob.token, json!({})).await;
    bob_ws
        .send(json!({"type": "send", "client_msg_id": "b2", "attachment_id": alices["id"], "content": "x"}))
        .await;
    let error = bob_ws.next_of("error").await;
    assert_eq!(error["code"], "forbidden");
    assert_eq!(error["client_msg_id"], "b2");
    // Nor an agent's.
    let (status, body) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &bob.token,
        visitor_send("b3", &amys, None),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    // An agent cannot send a visitor's, nor a colleague's.
    for (agent, attachment) in [(&amy, &alices), (&bo, &amys)] {
        let (status, body) = send_with(
            &server,
            &format!("/api/v1/conversations/{}/messages", bob.conversation_id),
            &agent.token,
            json!({"client_msg_id": "x1", "attachment_id": attachment["id"]}),
        )
        .await;
        assert_error(status, &body, 403, "forbidden");
    }
    // Unknown and malformed ids.
    let (status, body) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &bob.token,
        json!({"client_msg_id": "b4", "attachment_id": "01J9Z8C0NV0000000000000000"}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &bob.token,
        json!({"client_msg_id": "b5", "attachment_id": "../x"}),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    bob_ws
        .send(json!({"type": "send", "client_msg_id": "b6", "attachment_id": 7}))
        .await;
    assert_eq!(bob_ws.next_of("error").await["code"], "bad_request");
    // An agent's attachment into a conversation that does not exist.
    let (status, body) = send_with(
        &server,
        "/api/v1/conversations/01J9Z8C0NV0000000000000000/messages",
        &amy.token,
        json!({"client_msg_id": "x2", "attachment_id": amys["id"]}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    // Without an attachment, content is still required.
    let (status, body) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &bob.token,
        json!({"client_msg_id": "b7"}),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");

    // Nothing of that was stored.
    assert!(
        server
            .transcript(&amy.token, &bob.conversation_id)
            .await
            .is_empty()
    );
    assert!(
        server
            .transcript(&amy.token, &alice.conversation_id)
            .await
            .is_empty()
    );
    // The owners can.
    let (status, body) = send_with(
        &server,
        "/api/v1/visitor/messages",
        &alice.token,
        visitor_send("a1", &alices, None),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send_with(
        &server,
        &format!("/api/v1/conversations/{}/messages", alice.conversation_id),
        &amy.token,
        json!({"client_msg_id": "x3", "attachment_id": amys["id"], "content": "here"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"]["kind"], "file");
    server.shutdown().await;
}
