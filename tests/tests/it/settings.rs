//! App settings (welcome/offline messages, business hours), the visitor's
//! view of them, canned replies and the audit log, over real sockets.

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{TestServer, assert_error, read};
use reqwest::StatusCode;

async fn delete(server: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .delete(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete");
    read(response).await
}

/// Hours open all week long, or never (no interval on any day).
fn hours(always_open: bool) -> Value {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let weekly: serde_json::Map<String, Value> = if always_open {
        days.iter()
            .map(|d| (d.to_string(), json!([{"start": "00:00", "end": "24:00"}])))
            .collect()
    } else {
        Default::default()
    };
    json!({"timezone": "Asia/Shanghai", "weekly": weekly})
}

#[tokio::test]
async fn admins_edit_app_settings_and_every_change_is_audited() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let app = server
        .app(json!({"welcome_message": "  你好！有什么可以帮您？ "}))
        .await;
    assert_eq!(app["welcome_message"], "你好！有什么可以帮您？");
    assert_eq!(app["offline_message"], "");
    assert_eq!(app["business_hours"], Value::Null);
    let id = app["id"].as_str().expect("id");
    let path = format!("/api/v1/apps/{id}");

    let (status, body) = server
        .patch(
            &path,
            Some(&admin),
            json!({"name": "Shop CN", "offline_message": "We reply within a day.",
                   "business_hours": {"timezone": "Asia/Shanghai",
                       "weekly": {"mon": [{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "18:00"}]},
                       "closed_dates": ["2026-10-01"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["app"]["name"], "Shop CN");
    assert_eq!(body["app"]["offline_message"], "We reply within a day.");
    assert_eq!(
        body["app"]["business_hours"]["weekly"]["mon"][1]["start"],
        "13:00"
    );
    assert_eq!(body["app"]["welcome_message"], "你好！有什么可以帮您？");
    let (status, fetched) = server.get(&path, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["app"], body["app"]);

    // Agents may not; nothing changes.
    let (status, body) = server
        .patch(&path, Some(&amy.token), json!({"name": "Hijacked"}))
        .await;
    assert_error(status, &body, 403, "forbidden");

    // Every bad value is refused with the reason, and nothing is stored.
    for (bad, code, status_code) in [
        (
            json!({"business_hours": {"timezone": "Mars/Olympus", "weekly": {}}}),
            "bad_request",
            400,
        ),
        (
            json!({"business_hours": {"timezone": "UTC", "weekly": {"funday": []}}}),
            "bad_request",
            400,
        ),
        (
            json!({"business_hours": {"timezone": "UTC", "weekly": {"mon": [{"start": "18:00", "end": "09:00"}]}}}),
            "bad_request",
            400,
        ),
        (
            json!({"business_hours": {"timezone": "UTC", "weekly": {"mon": [{"start": "9:00", "end": "10:00"}]}}}),
            "bad_request",
            400,
        ),
        (
            json!({"business_hours": {"timezone": "UTC", "weekly": {"mon": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]}}}),
            "bad_request",
            400,
        ),
        (
            json!({"business_hours": {"timezone": "UTC", "closed_dates": ["tomorrow"]}}),
            "bad_request",
            400,
        ),
        (
            json!({"welcome_message": "字".repeat(2_001)}),
            "payload_too_large",
            413,
        ),
        (json!({"name": ""}), "bad_request", 400),
        (
            json!({"allowed_origins": ["not an origin"]}),
            "bad_request",
            400,
        ),
        (json!({"colour": "red"}), "bad_request", 400),
        (json!({}), "bad_request", 400),
    ] {
        let (status, body) = server.patch(&path, Some(&admin), bad.clone()).await;
        assert_error(status, &body, status_code, code);
    }
    let (_, after) = server.get(&path, Some(&admin)).await;
    assert_eq!(after["app"], fetched["app"], "bad updates changed nothing");

    // `null` removes the hours: always open again.
    let (status, body) = server
        .patch(&path, Some(&admin), json!({"business_hours": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["app"]["business_hours"], Value::Null);

    let (status, missing) = server
        .patch(
            "/api/v1/apps/01JAAAAAAAAAAAAAAAAAAAAAAA",
            Some(&admin),
            json!({"name": "x"}),
        )
        .await;
    assert_error(status, &missing, 404, "not_found");

    // The audit log tells who did what, newest first, and pages.
    let (status, audit) = server.get("/api/v1/audit", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    // An external server's owner was made by `admin create`, which is
    // audited too: the oldest entry there.
    let ours = if kefu_tests::external_server().is_some() {
        assert_eq!(actions.last(), Some(&"agent.create"), "{actions:?}");
        &actions[..actions.len() - 1]
    } else {
        &actions[..]
    };
    assert_eq!(
        ours,
        ["app.update", "app.update", "app.create", "agent.create"]
    );
    let update = &audit["entries"][1];
    assert_eq!(update["target_type"], "app");
    assert_eq!(update["target_id"], id);
    assert_eq!(update["details"]["name"], "Shop CN");
    let (_, admin_me) = server.get("/api/v1/agents/me", Some(&admin)).await;
    assert_eq!(update["actor_id"], admin_me["agent"]["id"]);
    let (_, first_page) = server.get("/api/v1/audit?limit=3", Some(&admin)).await;
    assert_eq!(first_page["entries"].as_array().map(Vec::len), Some(3));
    let cursor = first_page["next_cursor"].as_str().expect("cursor");
    let (_, second) = server
        .get(
            &format!("/api/v1/audit?limit=3&cursor={cursor}"),
            Some(&admin),
        )
        .await;
    assert_eq!(second["entries"][0]["action"], "agent.create");
    assert_eq!(second["next_cursor"], Value::Null);
    let (_, apps_only) = server.get("/api/v1/audit?action=app.", Some(&admin)).await;
    assert_eq!(apps_only["entries"].as_array().map(Vec::len), Some(3));
    let (status, body) = server.get("/api/v1/audit", Some(&amy.token)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server.get("/api/v1/audit?cursor=x", Some(&admin)).await;
    assert_error(status, &body, 400, "bad_request");
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_at_once() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server
        .app(json!({"identity_verification": "required"}))
        .await;
    let old_secret = app["secret"].as_str().expect("secret").to_owned();
    let hash = |secret: &str| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(b"user-1");
        hex::encode(mac.finalize().into_bytes())
    };
    let (status, body) = server
        .post(
            &format!(
                "/api/v1/apps/{}/rotate_secret",
                app["id"].as_str().expect("id")
            ),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_secret = body["app"]["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, old_secret);
    assert_eq!(body["app"]["app_key"], app["app_key"], "the key stays");
    let session =
        |hash: String| json!({"app_key": app["app_key"], "user_id": "user-1", "user_hash": hash});
    let (status, body) = server
        .post("/api/v1/visitor/sessions", None, session(hash(&old_secret)))
        .await;
    assert_error(status, &body, 401, "invalid_identity");
    let (status, body) = server
        .post("/api/v1/visitor/sessions", None, session(hash(&new_secret)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, audit) = server
        .get("/api/v1/audit?action=app.rotate_secret", Some(&admin))
        .await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "app.rotate_secret");
    assert!(
        !entry.to_string().contains(&new_secret),
        "secrets never reach the audit log"
    );
}

#[tokio::test]
async fn the_visitor_config_says_when_the_shop_is_available() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let app = server
        .app(
            json!({"welcome_message": "Hi!", "offline_message": "Leave us your email.",
                     "business_hours": hours(true), "allowed_origins": ["https://shop.example"]}),
        )
        .await;
    let key = app["app_key"].as_str().expect("key");
    let config_path = format!("/api/v1/visitor/config?app_key={key}");

    // Open hours, but nobody online: not available.
    let (status, config) = server.get(&config_path, None).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["app_name"], "Shop");
    assert_eq!(config["welcome_message"], "Hi!");
    assert_eq!(config["offline_message"], "Leave us your email.");
    assert_eq!(config["open"], true);
    assert_eq!(config["agents_online"], false);
    assert_eq!(config["available"], false);

    let (status, _) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "online"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, config) = server.get(&config_path, None).await;
    assert_eq!(config["agents_online"], true);
    assert_eq!(config["available"], true);

    // Closed hours: not available although Amy is online.
    let (status, _) = server
        .patch(
            &format!("/api/v1/apps/{}", app["id"].as_str().expect("id")),
            Some(&admin),
            json!({"business_hours": hours(false)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The visitor's own token names the app too.
    let visitor = server.visitor(&app).await;
    let (status, config) = server
        .get("/api/v1/visitor/config", Some(&visitor.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["open"], false);
    assert_eq!(config["available"], false);
    assert_eq!(config["business_hours"]["timezone"], "Asia/Shanghai");
    assert!(config.get("secret").is_none() && !config.to_string().contains("sk_"));

    // The app's allowed origins hold here too.
    let response = server
        .http
        .get(server.url(&config_path))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("get");
    let (status, body) = read(response).await;
    assert_error(status, &body, 403, "forbidden");
    let response = server
        .http
        .get(server.url(&config_path))
        .header("Origin", "https://shop.example")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);

    let (status, body) = server
        .get("/api/v1/visitor/config?app_key=ak_nope", None)
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.get("/api/v1/visitor/config", None).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server.get("/api/v1/visitor/config", Some(&amy.token)).await;
    assert_error(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn canned_replies_are_shared_by_admins_or_personal_and_fill_placeholders() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let app = server.app(json!({})).await;

    // Shared replies are the admins'.
    let (status, body) = server
        .post(
            "/api/v1/canned_replies",
            Some(&amy.token),
            json!({"shortcut": "refund", "title": "Refund", "body": "x", "shared": true}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, shared) = server
        .post(
            "/api/v1/canned_replies",
            Some(&admin),
            json!({"shortcut": "/refund", "title": "退款流程",
                   "body": "您好 {visitor.name|顾客}，退款会在 3 个工作日内到账。— {agent.name}, {app.name}",
                   "shared": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{shared}");
    let shared = shared["canned_reply"].clone();
    assert_eq!(
        shared["shortcut"], "refund",
        "the leading / is not part of it"
    );
    assert_eq!(shared["shared"], true);
    assert_eq!(shared["owner_id"], Value::Null);

    // Personal ones are the agent's own; the same shortcut in another scope is fine.
    let (status, mine) = server
        .post(
            "/api/v1/canned_replies",
            Some(&amy.token),
            json!({"shortcut": "hi", "title": "Greeting", "body": "Hi {visitor.first_name|there}, I'm {agent.name}. Plan: {visitor.attributes.plan}."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let mine = mine["canned_reply"].clone();
    let (status, body) = server
        .post(
            "/api/v1/canned_replies",
            Some(&amy.token),
            json!({"shortcut": "HI", "title": "Again", "body": "x"}),
        )
        .await;
    assert_error(status, &body, 409, "conflict");
    let (status, _) = server
        .post(
            "/api/v1/canned_replies",
            Some(&bo.token),
            json!({"shortcut": "hi", "title": "Bo's", "body": "Yo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Amy sees the shared one and hers, not Bo's.
    let (_, list) = server.get("/api/v1/canned_replies", Some(&amy.token)).await;
    let titles: Vec<&str> = list["canned_replies"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["title"].as_str().expect("title"))
        .collect();
    assert_eq!(titles, ["Greeting", "退款流程"]);
    let (_, found) = server
        .get("/api/v1/canned_replies?q=/ref", Some(&amy.token))
        .await;
    assert_eq!(found["canned_replies"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["canned_replies"][0]["shortcut"], "refund");
    let (_, found) = server
        .get(
            "/api/v1/canned_replies?q=%E9%80%80%E6%AC%BE",
            Some(&amy.token),
        )
        .await;
    assert_eq!(
        found["canned_replies"].as_array().map(Vec::len),
        Some(1),
        "退款 matches the title"
    );
    let (_, found) = server
        .get("/api/v1/canned_replies?q=%25", Some(&amy.token))
        .await;
    assert_eq!(
        found["canned_replies"].as_array().map(Vec::len),
        Some(0),
        "% is not a wildcard"
    );
    let (_, only_mine) = server
        .get("/api/v1/canned_replies?scope=mine", Some(&amy.token))
        .await;
    assert_eq!(
        only_mine["canned_replies"].as_array().map(Vec::len),
        Some(1)
    );
    let bos_id = {
        let (_, list) = server
            .get("/api/v1/canned_replies?scope=mine", Some(&bo.token))
            .await;
        list["canned_replies"][0]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let (status, body) = server
        .get(
            &format!("/api/v1/canned_replies/{bos_id}"),
            Some(&amy.token),
        )
        .await;
    assert_error(status, &body, 404, "not_found");

    // Placeholders filled from a conversation.
    let visitor = server
        .visitor_with(
            &app,
            json!({"name": "Li Lei", "attributes": {"plan": "pro"}}),
        )
        .await;
    let (status, rendered) = server
        .post(
            &format!(
                "/api/v1/canned_replies/{}/render",
                mine["id"].as_str().expect("id")
            ),
            Some(&amy.token),
            json!({"conversation_id": visitor.conversation_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rendered}");
    assert_eq!(rendered["content"], "Hi Li, I'm AMY. Plan: pro.");
    let anonymous = server.visitor(&app).await;
    let (_, rendered) = server
        .post(
            &format!(
                "/api/v1/canned_replies/{}/render",
                shared["id"].as_str().expect("id")
            ),
            Some(&amy.token),
            json!({"conversation_id": anonymous.conversation_id}),
        )
        .await;
    assert_eq!(
        rendered["content"],
        "您好 顾客，退款会在 3 个工作日内到账。— AMY, Shop"
    );
    let (status, body) = server
        .post(
            &format!(
                "/api/v1/canned_replies/{}/render",
                shared["id"].as_str().expect("id")
            ),
            Some(&amy.token),
            json!({"conversation_id": "01JAAAAAAAAAAAAAAAAAAAAAAA"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    // Visitors never reach canned replies.
    let (status, body) = server
        .get("/api/v1/canned_replies", Some(&visitor.token))
        .await;
    assert_error(status, &body, 403, "forbidden");

    // Agents cannot change or delete shared ones; admins can.
    let shared_path = format!(
        "/api/v1/canned_replies/{}",
        shared["id"].as_str().expect("id")
    );
    let (status, body) = server
        .patch(&shared_path, Some(&amy.token), json!({"title": "Mine now"}))
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = delete(&server, &shared_path, &amy.token).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .patch(&shared_path, Some(&admin), json!({"title": "Refunds"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["canned_reply"]["title"], "Refunds");
    assert_eq!(body["canned_reply"]["shortcut"], "refund");

    // Bad input: refused, nothing stored.
    let too_long = "长".repeat(6_000);
    for (bad, status_code, code) in [
        (
            json!({"shortcut": "has space", "title": "t", "body": "b"}),
            400,
            "bad_request",
        ),
        (
            json!({"shortcut": "", "title": "t", "body": "b"}),
            400,
            "bad_request",
        ),
        (
            json!({"shortcut": "x".repeat(33), "title": "t", "body": "b"}),
            400,
            "bad_request",
        ),
        (
            json!({"shortcut": "ok", "title": "", "body": "b"}),
            400,
            "bad_request",
        ),
        (
            json!({"shortcut": "ok", "title": "t", "body": "  "}),
            400,
            "bad_request",
        ),
        (
            json!({"shortcut": "ok", "title": "t", "body": too_long}),
            413,
            "payload_too_large",
        ),
        (json!({"shortcut": "ok", "title": "t"}), 400, "bad_request"),
        (
            json!({"shortcut": "ok", "title": "t", "body": "b", "owner": "x"}),
            400,
            "bad_request",
        ),
    ] {
        let (status, body) = server
            .post("/api/v1/canned_replies", Some(&amy.token), bad.clone())
            .await;
        assert_error(status, &body, status_code, code);
    }
    let (_, only_mine) = server
        .get("/api/v1/canned_replies?scope=mine", Some(&amy.token))
        .await;
    assert_eq!(
        only_mine["canned_replies"].as_array().map(Vec::len),
        Some(1)
    );
    let (status, body) = server
        .get("/api/v1/canned_replies?scope=everyone", Some(&amy.token))
        .await;
    assert_error(status, &body, 400, "bad_request");

    // Delete: gone for good.
    let mine_path = format!(
        "/api/v1/canned_replies/{}",
        mine["id"].as_str().expect("id")
    );
    let (status, _) = delete(&server, &mine_path, &amy.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.get(&mine_path, Some(&amy.token)).await;
    assert_error(status, &body, 404, "not_found");

    // Shared changes are audited; personal ones are the agent's business.
    let (_, audit) = server
        .get("/api/v1/audit?action=canned.", Some(&admin))
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["canned.update", "canned.create"]);
}

#[tokio::test]
async fn canned_replies_are_limited_per_scope() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    // Fill the scope directly in the store, then the API refuses one more.
    let agent_id = amy.id.clone();
    let db = &server.state().db;
    for n in 0..1_000 {
        sqlx::query(
            "INSERT INTO canned_replies (id, owner_id, shortcut, title, body, created_at, updated_at)
             VALUES (?, ?, ?, 't', 'b', 0, 0)",
        )
        .bind(format!("seed{n}"))
        .bind(&agent_id)
        .bind(format!("s{n}"))
        .execute(db)
        .await
        .expect("seed");
    }
    let (status, body) = server
        .post(
            "/api/v1/canned_replies",
            Some(&amy.token),
            json!({"shortcut": "one-more", "title": "t", "body": "b"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let bo = server.agent("bo").await;
    let (status, _) = server
        .post(
            "/api/v1/canned_replies",
            Some(&bo.token),
            json!({"shortcut": "one-more", "title": "t", "body": "b"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "another agent's scope is its own"
    );
}

#[tokio::test]
async fn an_unavailable_shop_answers_a_new_chat_once_with_its_offline_message() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let app = server
        .app(json!({"offline_message": "我们现在不在线，请留下邮箱。"}))
        .await;
    let visitor = server.visitor(&app).await;
    let mut ws = server
        .ws(&visitor.token, json!({visitor.conversation_id.clone(): 0}))
        .await;

    // Nobody online: the first message gets the offline message, once.
    server.visitor_says(&visitor, "v1", "在吗？").await;
    server.visitor_says(&visitor, "v2", "有人吗？").await;
    let (status, body) = server
        .get("/api/v1/visitor/messages", Some(&visitor.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let messages = body["messages"].as_array().expect("messages");
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(
        texts,
        ["在吗？", "我们现在不在线，请留下邮箱。", "有人吗？"]
    );
    let auto = &messages[1];
    assert_eq!(auto["sender"]["type"], "system");
    assert_eq!(auto["sender"]["name"], "Shop");
    assert_eq!(auto["kind"], "text");
    assert_eq!(auto["meta"]["auto_reply"], "offline");
    // It reaches the visitor live too.
    let mut live = Vec::new();
    while live.len() < 3 {
        let frame = ws.next_of("message").await;
        live.push(
            frame["message"]["content"]
                .as_str()
                .expect("content")
                .to_owned(),
        );
    }
    assert_eq!(live[1], "我们现在不在线，请留下邮箱。");

    // Resolved, then reopened while Amy is online: no auto-reply.
    let (status, _) = server
        .post(
            &format!("/api/v1/conversations/{}/status", visitor.conversation_id),
            Some(&admin),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "online"}),
        )
        .await;
    server.visitor_says(&visitor, "v3", "我又来了").await;
    let transcript = server.transcript(&admin, &visitor.conversation_id).await;
    let autos = transcript
        .iter()
        .filter(|m| m["meta"]["auto_reply"] == "offline")
        .count();
    assert_eq!(autos, 1, "{transcript:?}");
    // Amy was online, so routing gave her the reopened chat.
    let last = transcript.last().expect("messages");
    assert_eq!(last["kind"], "event");
    assert_eq!(last["meta"]["event"], "assigned");
}

/// The offline auto-reply reads the app from the auth cache: a change of
/// the app's offline message reaches the next new chat at once.
#[tokio::test]
async fn a_changed_offline_message_answers_the_next_new_chat() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({"offline_message": "旧的离线消息"})).await;
    let first = server.visitor(&app).await;
    server.visitor_says(&first, "v1", "在吗？").await;
    let transcript = server.transcript(&admin, &first.conversation_id).await;
    let autos: Vec<&str> = transcript
        .iter()
        .filter(|m| m["meta"]["auto_reply"] == "offline")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(autos, ["旧的离线消息"], "{transcript:?}");

    let (status, body) = server
        .patch(
            &format!("/api/v1/apps/{}", app["id"].as_str().expect("id")),
            Some(&admin),
            json!({"offline_message": "新的离线消息"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = server.visitor(&app).await;
    server.visitor_says(&second, "v1", "有人吗？").await;
    let transcript = server.transcript(&admin, &second.conversation_id).await;
    let autos: Vec<&str> = transcript
        .iter()
        .filter(|m| m["meta"]["auto_reply"] == "offline")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(autos, ["新的离线消息"], "{transcript:?}");

    // Emptied: no auto-reply at all.
    let (status, body) = server
        .patch(
            &format!("/api/v1/apps/{}", app["id"].as_str().expect("id")),
            Some(&admin),
            json!({"offline_message": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = server.visitor(&app).await;
    server.visitor_says(&third, "v1", "hello").await;
    let transcript = server.transcript(&admin, &third.conversation_id).await;
    assert!(
        transcript
            .iter()
            .all(|m| m["meta"]["auto_reply"] != "offline"),
        "{transcript:?}"
    );
    server.shutdown().await;
}
