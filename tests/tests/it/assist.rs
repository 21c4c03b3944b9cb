//! Kefu Assist over real sockets: the FAQ bot answers above its threshold,
//! offers choices in the middle, hands off below it, on 人工 and on a 👎,
//! never answers in mode `off`; FAQ and settings routes are admin-only,
//! refuse bad input without storing anything, and enforce their limits.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error, read};
use reqwest::StatusCode;

/// Polls an agent's view of the conversation until `done` holds.
async fn wait_for(
    server: &TestServer,
    agent: &str,
    conversation: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + kefu_tests::WAIT;
    loop {
        let messages = server.transcript(agent, conversation).await;
        if done(&messages) {
            return messages;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; thread: {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bot_turns(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["sender"]["id"] == "assist")
        .collect()
}

/// Polls until the conversation has `status` (a hand-off commits just
/// after the bot's turn is written).
async fn wait_status(server: &TestServer, token: &str, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + kefu_tests::WAIT;
    loop {
        let chat = conversation(server, token, id).await;
        if chat["status"] == status {
            return chat;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {chat}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn conversation(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, body) = server
        .get(&format!("/api/v1/conversations/{id}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["conversation"].clone()
}

/// A shop with three FAQ entries and the bot in `mode`.
async fn shop(server: &mut TestServer, mode: &str) -> (Value, String) {
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let app_id = app["id"].as_str().expect("id").to_owned();
    for (questions, answer) in [
        (
            json!(["怎么退货", "如何申请退货", "How do I return an item"]),
            "在订单页点“申请售后”即可退货。",
        ),
        (json!(["运费多少", "包邮吗"]), "满 99 元包邮。"),
        (json!(["退款多久到账"]), "原路退回，1-3 个工作日到账。"),
    ] {
        let (status, body) = server
            .post(
                "/api/v1/faq_entries",
                Some(&admin),
                json!({"app_id": app_id, "questions": questions, "answer": answer, "tags": ["售后"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = server
        .patch(
            &format!("/api/v1/apps/{app_id}/assist"),
            Some(&admin),
            json!({"mode": mode}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assist"]["mode"], mode);
    (app, admin)
}

async fn says(server: &TestServer, visitor: &VisitorClient, id: &str, text: &str) -> Value {
    let (status, message) = server.visitor_says(visitor, id, text).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    message
}

#[tokio::test]
async fn the_bot_answers_above_its_threshold_and_keeps_the_chat_out_of_the_queue() {
    let mut server = TestServer::start().await;
    let (app, admin) = shop(&mut server, "always").await;
    let amy: AgentClient = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    // Traditional characters, a full-width question mark: still the entry.
    says(&server, &visitor, "q1", "請問怎麼退貨？").await;
    let thread = wait_for(&server, &admin, &conv, |m| !bot_turns(m).is_empty()).await;
    let answer = bot_turns(&thread)[0];
    assert_eq!(answer["sender"]["type"], "system");
    assert_eq!(answer["kind"], "text");
    assert_eq!(answer["content"], "在订单页点“申请售后”即可退货。");
    let meta = &answer["meta"]["assist"];
    assert_eq!(meta["kind"], "answer");
    assert!(meta["entry_id"].is_string(), "{meta}");
    assert!(
        meta["confidence"].as_f64().expect("confidence") >= 0.4,
        "{meta}"
    );
    assert_eq!(meta["reply_to"], 1);
    // The visitor sees it too.
    let (status, page) = server
        .get("/api/v1/visitor/messages?after=0", Some(&visitor.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["meta"]["assist"]["kind"] == "answer"),
        "{page}"
    );
    // Held by the bot: pending, not queued, not given to the agent.
    let _ = amy;
    let chat = conversation(&server, &admin, &conv).await;
    assert_eq!(chat["status"], "pending", "{chat}");
    assert_eq!(chat["assignee_id"], Value::Null);
    let (status, queue) = server.get("/api/v1/queue", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !queue.to_string().contains(&conv),
        "a bot chat is not in the queue: {queue}"
    );

    // 👍 is recorded and keeps the bot; 👎 hands the chat to people.
    let seq = answer["seq"].as_u64().expect("seq");
    let (status, body) = server
        .post(
            "/api/v1/visitor/assist/rating",
            Some(&visitor.token),
            json!({"seq": seq, "rating": "up"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["handed_off"], false);
    assert_eq!(
        conversation(&server, &admin, &conv).await["status"],
        "pending"
    );
    // Only a bot answer can be rated; a bad body changes nothing.
    let (status, body) = server
        .post(
            "/api/v1/visitor/assist/rating",
            Some(&visitor.token),
            json!({"seq": 1, "rating": "down"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    assert_eq!(body["error"]["field"], "seq");
    let (status, body) = server
        .post(
            "/api/v1/visitor/assist/rating",
            Some(&visitor.token),
            json!({"seq": seq, "rating": "meh"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/visitor/assist/rating",
            Some(&amy.token),
            json!({"seq": seq, "rating": "down"}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    assert_eq!(
        conversation(&server, &admin, &conv).await["status"],
        "pending"
    );

    let (status, body) = server
        .post(
            "/api/v1/visitor/assist/rating",
            Some(&visitor.token),
            json!({"seq": seq, "rating": "down"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["handed_off"], true);
    let chat = conversation(&server, &admin, &conv).await;
    assert_eq!(chat["status"], "queued", "{chat}");
    let thread = server.transcript(&admin, &conv).await;
    let last = bot_turns(&thread).last().copied().cloned().expect("turn");
    assert_eq!(last["meta"]["assist"]["kind"], "handoff");
    assert_eq!(last["meta"]["assist"]["reason"], "rating");
    // Handed off: the bot says nothing more.
    says(&server, &visitor, "q2", "运费多少").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let thread = server.transcript(&admin, &conv).await;
    assert_eq!(bot_turns(&thread).len(), 2, "{thread:#?}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_bot_hands_off_below_its_threshold_and_on_a_request_for_a_person() {
    let mut server = TestServer::start().await;
    let (app, admin) = shop(&mut server, "always").await;

    // Nothing the FAQ knows: straight to the queue.
    let visitor = server.visitor(&app).await;
    says(&server, &visitor, "q1", "你们老板叫什么名字").await;
    let conv = visitor.conversation_id.clone();
    let thread = wait_for(&server, &admin, &conv, |m| !bot_turns(m).is_empty()).await;
    let turn = bot_turns(&thread)[0];
    assert_eq!(turn["meta"]["assist"]["kind"], "handoff", "{turn}");
    assert_eq!(turn["meta"]["assist"]["reason"], "unsure");
    wait_status(&server, &admin, &conv, "queued").await;

    // 人工 (Traditional 轉人工 too), even with a FAQ word in it.
    for (n, text) in ["退货转人工", "轉人工", "can I talk to a human"]
        .iter()
        .enumerate()
    {
        let visitor = server.visitor(&app).await;
        says(&server, &visitor, "q1", text).await;
        let conv = visitor.conversation_id.clone();
        let thread = wait_for(&server, &admin, &conv, |m| !bot_turns(m).is_empty()).await;
        let turn = bot_turns(&thread)[0];
        assert_eq!(turn["meta"]["assist"]["kind"], "handoff", "{n}: {turn}");
        assert_eq!(turn["meta"]["assist"]["reason"], "requested", "{n}");
        wait_status(&server, &admin, &conv, "queued").await;
    }

    // A complaint goes to a person at once.
    let visitor = server.visitor(&app).await;
    says(&server, &visitor, "q1", "退货这么慢，我要投诉").await;
    let conv = visitor.conversation_id.clone();
    let thread = wait_for(&server, &admin, &conv, |m| !bot_turns(m).is_empty()).await;
    assert_eq!(bot_turns(&thread)[0]["meta"]["assist"]["reason"], "urgent");
    server.shutdown().await;
}

#[tokio::test]
async fn choices_in_the_middle_band_and_a_pick_answers() {
    let mut server = TestServer::start().await;
    let (app, admin) = shop(&mut server, "always").await;
    // A wider middle band (admins tune it per app).
    let app_id = app["id"].as_str().expect("id");
    let (status, body) = server
        .patch(
            &format!("/api/v1/apps/{app_id}/assist"),
            Some(&admin),
            json!({"suggest_threshold": 0.2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assist"]["suggest_threshold"], 0.2);
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    says(&server, &visitor, "q1", "退货退款").await;
    let thread = wait_for(&server, &admin, &conv, |m| !bot_turns(m).is_empty()).await;
    let turn = bot_turns(&thread)[0].clone();
    let meta = &turn["meta"]["assist"];
    assert_eq!(meta["kind"], "choices", "{turn}");
    let choices = meta["choices"].as_array().expect("choices");
    assert!(choices.len() >= 2, "{meta}");
    // Plain text for API clients: numbered questions.
    let content = turn["content"].as_str().expect("content");
    assert!(
        content.contains("1. ") && content.contains("2. "),
        "{content}"
    );
    assert_eq!(
        conversation(&server, &admin, &conv).await["status"],
        "pending"
    );
    // An API client answers with the number.
    says(&server, &visitor, "q2", "2").await;
    let thread = wait_for(&server, &admin, &conv, |m| bot_turns(m).len() >= 2).await;
    let answer = bot_turns(&thread)[1];
    assert_eq!(answer["meta"]["assist"]["kind"], "answer", "{answer}");
    assert_eq!(answer["meta"]["assist"]["entry_id"], choices[1]["entry_id"]);
    assert_eq!(answer["meta"]["assist"]["matched_by"], "choice");
    server.shutdown().await;
}

#[tokio::test]
async fn the_bot_never_answers_in_mode_off_and_when_unavailable_only_then() {
    let mut server = TestServer::start().await;
    let (app, admin) = shop(&mut server, "off").await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    says(&server, &visitor, "q1", "怎么退货").await;
    // The chat is queued as without Assist, and no bot turn follows.
    let chat = loop {
        let chat = conversation(&server, &admin, &conv).await;
        if chat["status"] == "queued" {
            break chat;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(chat["status"], "queued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bot_turns(&server.transcript(&admin, &conv).await).is_empty());

    // when_unavailable: an agent online means people answer.
    let app_id = app["id"].as_str().expect("id");
    let (status, _) = server
        .patch(
            &format!("/api/v1/apps/{app_id}/assist"),
            Some(&admin),
            json!({"mode": "when_unavailable"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let amy = server.agent("amy").await;
    let (status, body) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "online"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let online_visitor = server.visitor(&app).await;
    says(&server, &online_visitor, "q1", "怎么退货").await;
    let conv = online_visitor.conversation_id.clone();
    let thread = wait_for(&server, &admin, &conv, |m| {
        m.iter().any(|m| m["kind"] == "event")
    })
    .await;
    assert!(bot_turns(&thread).is_empty(), "{thread:#?}");
    assert_eq!(
        conversation(&server, &admin, &conv).await["assignee_id"],
        amy.id
    );
    // Nobody online: the bot answers.
    let (status, _) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "offline"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let late_visitor = server.visitor(&app).await;
    says(&server, &late_visitor, "q1", "怎么退货").await;
    let conv = late_visitor.conversation_id.clone();
    let thread = wait_for(&server, &admin, &conv, |m| !bot_turns(m).is_empty()).await;
    assert_eq!(bot_turns(&thread)[0]["meta"]["assist"]["kind"], "answer");
    server.shutdown().await;
}

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

async fn count(server: &TestServer, admin: &str, app_id: &str) -> usize {
    let (status, body) = server
        .get(
            &format!("/api/v1/faq_entries?app_id={app_id}&limit=200"),
            Some(admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["faq_entries"].as_array().expect("entries").len()
}

#[tokio::test]
async fn faq_and_settings_routes_are_admin_only_and_refuse_bad_input() {
    let mut server = TestServer::start().await;
    let (app, admin) = shop(&mut server, "off").await;
    let app_id = app["id"].as_str().expect("id").to_owned();
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let (status, body) = server
        .get(
            &format!("/api/v1/faq_entries?app_id={app_id}"),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let entry = body["faq_entries"][0].clone();
    let entry_path = format!("/api/v1/faq_entries/{}", entry["id"].as_str().expect("id"));
    let settings_path = format!("/api/v1/apps/{app_id}/assist");

    // Every route: agents and visitors 403, no token 401.
    let create = json!({"app_id": app_id, "questions": ["x"], "answer": "y"});
    for token in [Some(amy.token.as_str()), Some(visitor.token.as_str()), None] {
        let expected = if token.is_some() { 403 } else { 401 };
        let code = if token.is_some() {
            "forbidden"
        } else {
            "unauthorized"
        };
        for (status, body) in [
            server
                .get(&format!("/api/v1/faq_entries?app_id={app_id}"), token)
                .await,
            server
                .post("/api/v1/faq_entries", token, create.clone())
                .await,
            server.get(&entry_path, token).await,
            server
                .patch(&entry_path, token, json!({"answer": "hijacked"}))
                .await,
            server
                .get(
                    &format!("/api/v1/faq_entries/export?app_id={app_id}"),
                    token,
                )
                .await,
            server.get(&settings_path, token).await,
            server
                .patch(&settings_path, token, json!({"mode": "always"}))
                .await,
        ] {
            assert_error(status, &body, expected, code);
        }
        if let Some(token) = token {
            let (status, body) = delete(&server, &entry_path, token).await;
            assert_error(status, &body, 403, "forbidden");
        }
    }
    let mut import = server
        .http
        .post(server.url(&format!("/api/v1/faq_entries/import?app_id={app_id}")))
        .header("content-type", "text/csv")
        .body("questions,answer\nq,a\n");
    import = import.bearer_auth(&amy.token);
    let (status, body) = read(import.send().await.expect("import")).await;
    assert_error(status, &body, 403, "forbidden");
    assert_eq!(count(&server, &admin, &app_id).await, 3);
    let (_, fetched) = server.get(&entry_path, Some(&admin)).await;
    assert_eq!(fetched["faq_entry"], entry, "unchanged");

    // Bad input: the protocol's error body, the field, nothing stored.
    let long_question = "问".repeat(201);
    let long_answer = "答".repeat(4001);
    let too_many_questions: Vec<String> = (0..21).map(|i| format!("q{i}")).collect();
    let too_many_tags: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    for (body, field) in [
        (
            json!({"app_id": app_id, "questions": [], "answer": "a"}),
            "questions",
        ),
        (
            json!({"app_id": app_id, "questions": ["  "], "answer": "a"}),
            "questions[0]",
        ),
        (
            json!({"app_id": app_id, "questions": [long_question], "answer": "a"}),
            "questions[0]",
        ),
        (
            json!({"app_id": app_id, "questions": too_many_questions, "answer": "a"}),
            "questions",
        ),
        (
            json!({"app_id": app_id, "questions": ["a\nb"], "answer": "a"}),
            "questions[0]",
        ),
        (
            json!({"app_id": app_id, "questions": ["q"], "answer": long_answer}),
            "answer",
        ),
        (
            json!({"app_id": app_id, "questions": ["q"], "answer": ""}),
            "answer",
        ),
        (
            json!({"app_id": app_id, "questions": ["q"], "answer": "a", "tags": too_many_tags}),
            "tags",
        ),
        (
            json!({"app_id": app_id, "questions": ["q"], "answer": "a", "tags": ["a,b"]}),
            "tags[0]",
        ),
        (
            json!({"app_id": "nope", "questions": ["q"], "answer": "a"}),
            "app_id",
        ),
    ] {
        let (status, error) = server
            .post("/api/v1/faq_entries", Some(&admin), body.clone())
            .await;
        assert_error(status, &error, 400, "bad_request");
        assert_eq!(error["error"]["field"], field, "{body} → {error}");
    }
    let (status, error) = server
        .post(
            "/api/v1/faq_entries",
            Some(&admin),
            json!({"app_id": "01J9Z8C0NV0000000000000000", "questions": ["q"], "answer": "a"}),
        )
        .await;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = server
        .patch(&entry_path, Some(&admin), json!({"questions": []}))
        .await;
    assert_error(status, &error, 400, "bad_request");
    for (body, field) in [
        (json!({"mode": "sometimes"}), "mode"),
        (json!({"answer_threshold": 1.5}), "answer_threshold"),
        (json!({"margin": -0.1}), "margin"),
        (json!({"suggest_threshold": 0.9}), "suggest_threshold"),
    ] {
        let (status, error) = server
            .patch(&settings_path, Some(&admin), body.clone())
            .await;
        assert_error(status, &error, 400, "bad_request");
        assert_eq!(error["error"]["field"], field, "{body} → {error}");
    }
    let (_, settings) = server.get(&settings_path, Some(&admin)).await;
    assert_eq!(settings["assist"]["mode"], "off");
    assert_eq!(count(&server, &admin, &app_id).await, 3);
    let (_, fetched) = server.get(&entry_path, Some(&admin)).await;
    assert_eq!(fetched["faq_entry"], entry, "unchanged");

    // Update and delete work for the admin.
    let (status, body) = server
        .patch(
            &entry_path,
            Some(&admin),
            json!({"enabled": false, "tags": ["退货"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["faq_entry"]["enabled"], false);
    assert_eq!(body["faq_entry"]["answer"], entry["answer"]);
    let (status, _) = delete(&server, &entry_path, &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.get(&entry_path, Some(&admin)).await;
    assert_error(status, &body, 404, "not_found");
    server.shutdown().await;
}

async fn import(
    server: &TestServer,
    admin: &str,
    app_id: &str,
    query: &str,
    csv: Vec<u8>,
) -> (StatusCode, Value) {
    let request = server
        .http
        .post(server.url(&format!(
            "/api/v1/faq_entries/import?app_id={app_id}{query}"
        )))
        .header("content-type", "text/csv; charset=utf-8")
        .bearer_auth(admin)
        .body(csv);
    read(request.send().await.expect("import")).await
}

#[tokio::test]
async fn csv_export_and_import_round_trip_and_a_bad_file_stores_nothing() {
    let mut server = TestServer::start().await;
    let (app, admin) = shop(&mut server, "off").await;
    let app_id = app["id"].as_str().expect("id").to_owned();
    let response = server
        .http
        .get(server.url(&format!("/api/v1/faq_entries/export?app_id={app_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let exported = response.bytes().await.expect("body").to_vec();
    assert!(exported.starts_with("\u{feff}id,questions,answer,tags,enabled".as_bytes()));

    // Into a second app: three new entries, the same questions.
    let other = server.app(json!({"name": "Other"})).await;
    let other_id = other["id"].as_str().expect("id").to_owned();
    // The ids belong to the first app: refused, nothing stored.
    let (status, body) = import(&server, &admin, &other_id, "", exported.clone()).await;
    assert_error(status, &body, 400, "bad_request");
    assert_eq!(body["error"]["field"], "rows[1].id");
    assert_eq!(count(&server, &admin, &other_id).await, 0);
    // Re-imported into its own app: updates, nothing new.
    let (status, body) = import(&server, &admin, &app_id, "", exported.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"created": 0, "updated": 3, "deleted": 0}));
    assert_eq!(count(&server, &admin, &app_id).await, 3);

    // A new file replacing everything: one good row, then a bad one → nothing.
    let bad = "questions,answer,tags\n\"=cmd\n发票怎么开\",下单时填写抬头,发票\n,no question,\n";
    let (status, body) = import(&server, &admin, &app_id, "&replace=true", bad.into()).await;
    assert_error(status, &body, 400, "bad_request");
    assert_eq!(body["error"]["field"], "rows[2].questions");
    assert_eq!(count(&server, &admin, &app_id).await, 3);
    let good = "questions,answer,tags\n\"'=cmd\n发票怎么开\",下单时填写抬头,发票\n";
    let (status, body) = import(&server, &admin, &app_id, "&replace=true", good.into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"created": 1, "updated": 0, "deleted": 3}));
    let (_, list) = server
        .get(
            &format!("/api/v1/faq_entries?app_id={app_id}"),
            Some(&admin),
        )
        .await;
    assert_eq!(
        list["faq_entries"][0]["questions"],
        json!(["=cmd", "发票怎么开"])
    );
    // Exported again, the formula is defused for spreadsheets.
    let response = server
        .http
        .get(server.url(&format!("/api/v1/faq_entries/export?app_id={app_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("export");
    let text = response.text().await.expect("text");
    assert!(text.contains("\"'=cmd\n发票怎么开\""), "{text}");

    // Not CSV, an unknown column, too large: refused.
    let response = server
        .http
        .post(server.url(&format!("/api/v1/faq_entries/import?app_id={app_id}")))
        .header("content-type", "application/json")
        .bearer_auth(&admin)
        .body("{}")
        .send()
        .await
        .expect("import");
    let (status, body) = read(response).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = import(
        &server,
        &admin,
        &app_id,
        "",
        "question,answer\nq,a\n".into(),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    let mut huge = b"questions,answer\n".to_vec();
    while huge.len() <= 2 * 1024 * 1024 {
        huge.extend_from_slice("怎么退货,在订单页申请售后\n".as_bytes());
    }
    let (status, body) = import(&server, &admin, &app_id, "", huge).await;
    assert_error(status, &body, 413, "payload_too_large");
    // More rows than an app may hold.
    let mut many = b"questions,answer\n".to_vec();
    for i in 0..10_001 {
        many.extend_from_slice(format!("q{i},a\n").as_bytes());
    }
    let (status, body) = import(&server, &admin, &app_id, "", many).await;
    assert_error(status, &body, 400, "bad_request");
    assert_eq!(count(&server, &admin, &app_id).await, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_agent_taking_a_held_chat_ends_the_bots_turn_and_held_chats_survive_a_restart() {
    let mut server = TestServer::start().await;
    let (app, admin) = shop(&mut server, "always").await;
    let amy = server.agent("amy").await;

    // Assigned by an agent: the bot says nothing more.
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    says(&server, &visitor, "q1", "运费多少").await;
    wait_for(&server, &admin, &conv, |m| !bot_turns(m).is_empty()).await;
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{conv}/assign"),
            Some(&admin),
            json!({"agent_id": amy.id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    says(&server, &visitor, "q2", "怎么退货").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let thread = server.transcript(&admin, &conv).await;
    assert_eq!(bot_turns(&thread).len(), 1, "{thread:#?}");

    // A held chat is still the bot's after a restart.
    let held = server.visitor(&app).await;
    let held_conv = held.conversation_id.clone();
    says(&server, &held, "q1", "运费多少").await;
    wait_for(&server, &admin, &held_conv, |m| !bot_turns(m).is_empty()).await;
    let mut server = server.restart().await;
    let admin = server.admin().await;
    says(&server, &held, "q2", "怎么退货").await;
    let thread = wait_for(&server, &admin, &held_conv, |m| bot_turns(m).len() >= 2).await;
    let turns = bot_turns(&thread);
    assert_eq!(turns[1]["meta"]["assist"]["kind"], "answer", "{thread:#?}");
    assert_eq!(turns[1]["content"], "在订单页点“申请售后”即可退货。");
    server.shutdown().await;
}
