//! docs/PROTOCOL.md's REST core over real sockets: apps, visitors, messages,
//! agents, conversations, and every error case with its code.

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{TestServer, assert_error};

#[tokio::test]
async fn service_routes() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/metrics", None).await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text");
    for name in [
        "kefu_ws_connections",
        "kefu_write_batch_size",
        "kefu_http_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let (status, body) = server.get("/api/v1/nope", None).await;
    assert_error(status, &body, 404, "not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn a_whole_chat_over_rest() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    assert!(app["app_key"].as_str().expect("key").starts_with("ak_"));
    assert!(app["secret"].as_str().expect("secret").len() >= 32);
    let amy = server.agent("amy").await;
    let visitor = server
        .visitor_with(
            &app,
            json!({"name": "Li Lei", "email": "li@example.com", "attributes": {"plan": "pro"}}),
        )
        .await;

    // A conversation is not in the agents' lists before its first message.
    let (_, list) = server.get("/api/v1/conversations", Some(&amy.token)).await;
    assert_eq!(list["conversations"].as_array().expect("list").len(), 0);

    let (status, first) = server
        .visitor_says(&visitor, "c1", "你好, I need help")
        .await;
    assert_eq!(status, 201);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["kind"], "text");
    assert_eq!(first["sender"]["type"], "visitor");
    assert_eq!(first["sender"]["id"], visitor.visitor_id.as_str());
    assert_eq!(first["conversation_id"], visitor.conversation_id.as_str());
    assert_eq!(first["client_msg_id"], "c1");
    assert!(first["created_at"].as_i64().expect("created_at") > 1_600_000_000_000);
    assert_eq!(first["meta"], json!({}));
    assert_eq!(first["attachment"], Value::Null);

    // Resend: 200 and the same stored message.
    let (status, again) = server
        .visitor_says(&visitor, "c1", "你好, I need help")
        .await;
    assert_eq!(status, 200);
    assert_eq!(again, first);

    let (status, list) = server
        .get("/api/v1/conversations?status=queued", Some(&amy.token))
        .await;
    assert_eq!(status, 200);
    let conversations = list["conversations"].as_array().expect("list");
    assert_eq!(conversations.len(), 1);
    let conversation = &conversations[0];
    assert_eq!(conversation["id"], visitor.conversation_id.as_str());
    assert_eq!(conversation["status"], "queued");
    assert_eq!(conversation["last_seq"], 1);
    assert_eq!(conversation["visitor"]["name"], "Li Lei");
    assert_eq!(conversation["visitor"]["attributes"]["plan"], "pro");
    assert_eq!(conversation["app_id"], app["id"]);
    assert!(list["next_cursor"].is_null());

    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/assign", visitor.conversation_id),
            Some(&amy.token),
            json!({"agent_id": amy.id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["status"], "open");
    assert_eq!(body["conversation"]["assignee_id"], amy.id.as_str());
    let (_, mine) = server
        .get("/api/v1/conversations?assignee=me", Some(&amy.token))
        .await;
    assert_eq!(mine["conversations"].as_array().expect("list").len(), 1);
    let (_, none) = server
        .get("/api/v1/conversations?assignee=none", Some(&amy.token))
        .await;
    assert_eq!(none["conversations"].as_array().expect("list").len(), 0);

    let (status, reply) = server
        .agent_says(&amy, &visitor.conversation_id, "a1", "Hello Li Lei")
        .await;
    assert_eq!(status, 201);
    assert_eq!(reply["seq"], 2);
    assert_eq!(reply["sender"]["type"], "agent");
    assert_eq!(reply["sender"]["name"], "AMY");

    let (status, note) = server
        .post(
            &format!("/api/v1/conversations/{}/messages", visitor.conversation_id),
            Some(&amy.token),
            json!({"client_msg_id": "n1", "content": "VIP, be nice", "private": true}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(note["message"]["kind"], "note");
    assert_eq!(note["message"]["seq"], 3);
    server.visitor_says(&visitor, "c2", "thanks").await;

    // The visitor reads its conversation without the note: seq 3 is skipped.
    let (status, page) = server
        .get("/api/v1/visitor/messages?after=0", Some(&visitor.token))
        .await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![1, 2, 4]);
    let (_, page) = server
        .get(
            "/api/v1/visitor/messages?after=2&limit=1",
            Some(&visitor.token),
        )
        .await;
    assert_eq!(page["messages"][0]["seq"], 4);

    // The agent sees everything, and can page.
    let all = server
        .transcript(&amy.token, &visitor.conversation_id)
        .await;
    assert_eq!(
        all.iter()
            .map(|m| m["seq"].as_u64().expect("seq"))
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let (_, page) = server
        .get(
            &format!(
                "/api/v1/conversations/{}/messages?after=1&limit=2",
                visitor.conversation_id
            ),
            Some(&amy.token),
        )
        .await;
    assert_eq!(page["messages"].as_array().expect("page").len(), 2);
    let (_, page) = server
        .get(
            &format!(
                "/api/v1/conversations/{}/messages?before=4&limit=2",
                visitor.conversation_id
            ),
            Some(&amy.token),
        )
        .await;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .expect("page")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![2, 3]);

    // Resolve; a new visitor message reopens it (assignee kept → open).
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/status", visitor.conversation_id),
            Some(&amy.token),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["conversation"]["status"], "resolved");
    server.visitor_says(&visitor, "c3", "one more thing").await;
    let (_, body) = server
        .get(
            &format!("/api/v1/conversations/{}", visitor.conversation_id),
            Some(&amy.token),
        )
        .await;
    assert_eq!(body["conversation"]["status"], "open");
    assert_eq!(body["conversation"]["last_seq"], 5);

    // Unassigning puts it back in the queue.
    let (_, body) = server
        .post(
            &format!("/api/v1/conversations/{}/assign", visitor.conversation_id),
            Some(&amy.token),
            json!({"agent_id": null}),
        )
        .await;
    assert_eq!(body["conversation"]["status"], "queued");
    assert_eq!(body["conversation"]["assignee_id"], Value::Null);
    server.shutdown().await;
}

#[tokio::test]
async fn visitor_sessions() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;

    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": "ak_nope"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");

    // Anonymous, then resumed with its token.
    let anon = server.visitor(&app).await;
    let resumed = server
        .visitor_with(&app, json!({"token": anon.token}))
        .await;
    assert_eq!(resumed.visitor_id, anon.visitor_id);
    assert_eq!(resumed.conversation_id, anon.conversation_id);
    // A token that is not ours (or not valid) gets a new visitor, never someone else's.
    let fresh = server
        .visitor_with(
            &app,
            json!({"token": "kf_00000000000000000000000000000000"}),
        )
        .await;
    assert_ne!(fresh.visitor_id, anon.visitor_id);

    // An APP user: the same visitor and conversation on every device.
    let phone = server
        .visitor_with(&app, json!({"user_id": "user-42", "name": "Han Meimei"}))
        .await;
    let laptop = server
        .visitor_with(&app, json!({"user_id": "user-42"}))
        .await;
    assert_eq!(phone.visitor_id, laptop.visitor_id);
    assert_eq!(phone.conversation_id, laptop.conversation_id);
    assert_ne!(phone.token, laptop.token);
    // The same device sending its token back keeps it.
    let again = server
        .visitor_with(&app, json!({"user_id": "user-42", "token": phone.token}))
        .await;
    assert_eq!(again.token, phone.token);
    assert_eq!(again.visitor_id, phone.visitor_id);
    // Another user's token does not carry over to this user.
    let other = server
        .visitor_with(&app, json!({"user_id": "user-43"}))
        .await;
    let swapped = server
        .visitor_with(&app, json!({"user_id": "user-42", "token": other.token}))
        .await;
    assert_eq!(swapped.visitor_id, phone.visitor_id);
    assert_ne!(swapped.token, other.token);
    assert_ne!(other.visitor_id, phone.visitor_id);

    // Same user id in another app is another visitor.
    let app2 = server.app(json!({"name": "Other shop"})).await;
    let elsewhere = server
        .visitor_with(&app2, json!({"user_id": "user-42"}))
        .await;
    assert_ne!(elsewhere.visitor_id, phone.visitor_id);

    // Bad profile input is refused and creates nothing.
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "attributes": ["not", "an", "object"]}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let big = "x".repeat(5000);
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "attributes": {"big": big}}),
        )
        .await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "email": "nope"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "user_id": ""}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    server.shutdown().await;
}

#[tokio::test]
async fn raw_user_ids_are_never_stored() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let user_id = "very-distinctive-user-id-9f8e7d";
    let visitor = server.visitor_with(&app, json!({"user_id": user_id})).await;
    server.visitor_says(&visitor, "c1", "hello").await;
    let dir = server.data_dir().to_path_buf();
    let restarted = server.restart().await;
    let _guard = restarted.stop().await;
    let mut found = Vec::new();
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).expect("read");
        if bytes
            .windows(user_id.len())
            .any(|w| w == user_id.as_bytes())
        {
            found.push(entry);
        }
    }
    assert!(found.is_empty(), "raw user id found in {found:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn identity_verification() {
    use hmac::{Hmac, Mac};
    let mut server = TestServer::start().await;
    let app = server
        .app(json!({"identity_verification": "required"}))
        .await;
    assert_eq!(app["identity_verification"], "required");
    let secret = app["secret"].as_str().expect("secret");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(b"user-7");
    let good = hex::encode(mac.finalize().into_bytes());

    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "user_id": "user-7"}),
        )
        .await;
    assert_error(status, &body, 401, "identity_required");
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "user_id": "user-8", "user_hash": good}),
        )
        .await;
    assert_error(status, &body, 401, "invalid_identity");
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "user_id": "user-7", "user_hash": "zz"}),
        )
        .await;
    assert_error(status, &body, 401, "invalid_identity");
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "user_id": "user-7", "user_hash": good}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn agents_auth_and_admin_routes() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;

    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "amy", "password": "wrong-password"}),
        )
        .await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "nobody", "password": "wrong-password"}),
        )
        .await;
    assert_error(status, &body, 401, "unauthorized");

    let (status, body) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["agent"]["username"], "amy");
    assert_eq!(body["agent"]["role"], "agent");
    assert_eq!(body["agent"]["status"], "offline");
    assert!(body["agent"].get("password_hash").is_none());

    let (status, body) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "online"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["agent"]["status"], "online");
    let (status, body) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "busy"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");

    // Admin only.
    let (status, body) = server
        .post("/api/v1/apps", Some(&amy.token), json!({"name": "x"}))
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .post(
            "/api/v1/agents",
            Some(&amy.token),
            json!({"username": "bo", "password": "password123"}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .post("/api/v1/apps", None, json!({"name": "x"}))
        .await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = server
        .post("/api/v1/apps", Some("kf_garbage"), json!({"name": "x"}))
        .await;
    assert_error(status, &body, 401, "unauthorized");

    // Taken usernames (case-insensitively) are a conflict.
    let (status, body) = server
        .post(
            "/api/v1/agents",
            Some(&admin),
            json!({"username": "AMY", "password": "password123"}),
        )
        .await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = server
        .post(
            "/api/v1/agents",
            Some(&admin),
            json!({"username": "bo", "password": "short"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/agents",
            Some(&admin),
            json!({"username": "bo", "password": "password123", "role": "root"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/agents",
            Some(&admin),
            json!({"username": "bo", "password": "password123", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["agent"]["role"], "admin");
    let (_, body) = server.get("/api/v1/agents", Some(&amy.token)).await;
    assert_eq!(body["agents"].as_array().expect("agents").len(), 3);

    // Logout revokes the token.
    let (status, _) = server
        .post("/api/v1/auth/logout", Some(&amy.token), json!({}))
        .await;
    assert!(status.is_success());
    let (status, body) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_error(status, &body, 401, "unauthorized");

    // Bad app input.
    let (status, body) = server
        .post(
            "/api/v1/apps",
            Some(&admin),
            json!({"name": "x", "allowed_origins": ["not an origin"]}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post("/api/v1/apps", Some(&admin), json!({"name": ""}))
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/apps",
            Some(&admin),
            json!({"name": "x", "identity_verification": "maybe"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    server.shutdown().await;
}

#[tokio::test]
async fn login_is_rate_limited() {
    let mut server = TestServer::start_with(|c| c.limits.login_per_minute = 3).await;
    server.agent("amy").await; // one login for the owner, one for amy
    let mut limited = false;
    for _ in 0..5 {
        let (status, body) = server
            .post(
                "/api/v1/auth/login",
                None,
                json!({"username": "amy", "password": "wrong-password"}),
            )
            .await;
        if status == 429 {
            assert_error(status, &body, 429, "rate_limited");
            limited = true;
            break;
        }
    }
    assert!(limited, "no 429 after repeated failed logins");
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_and_oversized_input_changes_nothing() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "ok1", "first").await;
    let path = "/api/v1/visitor/messages";
    let token = Some(visitor.token.as_str());

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "bad_request"),
        (
            br#"{"client_msg_id": 5, "content": "x"}"#.to_vec(),
            400,
            "bad_request",
        ),
        (br#"{"content": "no id"}"#.to_vec(), 400, "bad_request"),
        (
            br#"{"client_msg_id": "has space", "content": "x"}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            format!(
                r#"{{"client_msg_id": "{}", "content": "x"}}"#,
                "a".repeat(65)
            )
            .into_bytes(),
            400,
            "bad_request",
        ),
        (
            br#"{"client_msg_id": "m1", "content": "x", "meta": [1]}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            br#"{"client_msg_id": "m1", "content": ""}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            format!(
                r#"{{"client_msg_id": "m2", "content": "{}"}}"#,
                "x".repeat(16 * 1024 + 1)
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            format!(
                r#"{{"client_msg_id": "m3", "content": "x", "meta": {{"k": "{}"}}}}"#,
                "y".repeat(4 * 1024)
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            format!(
                r#"{{"client_msg_id": "m4", "content": "{}"}}"#,
                "x".repeat(200 * 1024)
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let (got, response) = server.post_raw(path, token, body).await;
        assert_error(got, &response, status, code);
    }
    // Exactly at the limits is fine: 16 KiB of CJK text counts bytes.
    let at_limit = "退".repeat(16 * 1024 / 3);
    let (status, message) = server.visitor_says(&visitor, "edge", &at_limit).await;
    assert_eq!(status, 201, "{message}");

    let transcript = server
        .transcript(&amy.token, &visitor.conversation_id)
        .await;
    assert_eq!(
        transcript.len(),
        2,
        "only the two valid messages are stored"
    );
    let (_, body) = server
        .get(
            &format!("/api/v1/conversations/{}", visitor.conversation_id),
            Some(&amy.token),
        )
        .await;
    assert_eq!(body["conversation"]["last_seq"], 2);

    // Bad query parameters and ids.
    let (status, body) = server.get("/api/v1/visitor/messages?after=-1", token).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .get("/api/v1/visitor/messages?limit=100000", token)
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .get("/api/v1/conversations?status=weird", Some(&amy.token))
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .get("/api/v1/conversations?cursor=garbage", Some(&amy.token))
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .get("/api/v1/conversations/not-an-id/messages", Some(&amy.token))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/status", visitor.conversation_id),
            Some(&amy.token),
            json!({"status": "queued"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/assign", visitor.conversation_id),
            Some(&amy.token),
            json!({"agent_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn conversation_list_pages_with_a_cursor() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let visitor = server.visitor(&app).await;
        server
            .visitor_says(&visitor, "c1", &format!("hello {i}"))
            .await;
        ids.push(visitor.conversation_id);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations?limit=3&cursor={c}"),
            None => "/api/v1/conversations?limit=3".to_owned(),
        };
        let (status, body) = server.get(&path, Some(&amy.token)).await;
        assert_eq!(status, 200, "{body}");
        for c in body["conversations"].as_array().expect("list") {
            seen.push(c["id"].as_str().expect("id").to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    sorted_seen.dedup();
    assert_eq!(
        sorted_seen.len(),
        7,
        "every conversation exactly once: {seen:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn allowed_origins_hold_for_browsers_only() {
    let mut server = TestServer::start().await;
    let app = server
        .app(json!({"allowed_origins": ["https://shop.example"]}))
        .await;
    let session = |origin: Option<&'static str>| {
        let mut request = server
            .http
            .post(server.url("/api/v1/visitor/sessions"))
            .json(&json!({"app_key": app["app_key"]}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request
    };
    let (status, body) = kefu_tests::read(
        session(Some("https://evil.example"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = kefu_tests::read(
        session(Some("https://shop.example"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = kefu_tests::read(session(None).send().await.expect("send")).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();

    // The visitor's own routes check it too.
    let response = server
        .http
        .post(server.url("/api/v1/visitor/messages"))
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .json(&json!({"client_msg_id": "c1", "content": "hi"}))
        .send()
        .await
        .expect("send");
    let (status, body) = kefu_tests::read(response).await;
    assert_error(status, &body, 403, "forbidden");

    // CORS preflight answers for the browser.
    let response = server
        .http
        .request(
            reqwest::Method::OPTIONS,
            server.url("/api/v1/visitor/messages"),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(response.status().is_success());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn message_pages_default_to_the_page_maximum() {
    // 120 messages in a row from one visitor: past the default burst.
    let mut server = TestServer::start_with(|c| c.limits.visitor_messages_per_second = 0).await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    for i in 0..120 {
        let (status, _) = server
            .visitor_says(&visitor, &format!("c{i}"), "hello")
            .await;
        assert_eq!(status, 201);
    }
    let (_, page) = server
        .get("/api/v1/visitor/messages", Some(&visitor.token))
        .await;
    assert_eq!(page["messages"].as_array().expect("messages").len(), 120);
    let (_, page) = server
        .get(
            &format!("/api/v1/conversations/{}/messages", visitor.conversation_id),
            Some(&amy.token),
        )
        .await;
    assert_eq!(page["messages"].as_array().expect("messages").len(), 120);
    server.shutdown().await;
}

#[tokio::test]
async fn an_agent_changes_their_own_name_and_password() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let me = Some(amy.token.as_str());
    // A second session of Amy's, which a password change signs out.
    let (_, other) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "amy", "password": "agent-password"}),
        )
        .await;
    let other = other["token"].as_str().expect("token").to_owned();

    let (status, body) = server
        .patch(
            "/api/v1/agents/me",
            me,
            json!({"display_name": "  Amy Li "}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent"]["display_name"], "Amy Li");

    // Bad input changes nothing.
    for (bad, code) in [
        (json!({"display_name": ""}), 400),
        (json!({"role": "admin"}), 400),
        (json!({"password": "new-password-1"}), 400),
        (
            json!({"password": "x", "current_password": "agent-password"}),
            400,
        ),
    ] {
        let (status, body) = server.patch("/api/v1/agents/me", me, bad).await;
        assert_error(status, &body, code, "bad_request");
    }
    let (status, body) = server
        .patch(
            "/api/v1/agents/me",
            me,
            json!({"password": "new-password-1", "current_password": "wrong"}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (_, body) = server.get("/api/v1/agents/me", me).await;
    assert_eq!(body["agent"]["role"], "agent");
    assert_eq!(body["agent"]["display_name"], "Amy Li");

    let (status, body) = server
        .patch(
            "/api/v1/agents/me",
            me,
            json!({"password": "new-password-1", "current_password": "agent-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // This session stays, the other one is revoked; the new password works.
    assert_eq!(server.get("/api/v1/agents/me", me).await.0, 200);
    assert_eq!(server.get("/api/v1/agents/me", Some(&other)).await.0, 401);
    let (status, _) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "amy", "password": "new-password-1"}),
        )
        .await;
    assert_eq!(status, 200);
}
