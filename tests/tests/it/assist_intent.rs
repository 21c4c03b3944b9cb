//! Kefu Assist intents, language and urgency over real sockets: an intent
//! rule routes a chat to its team once the app's model has enough
//! examples (and not before); the model learns from resolved chats and
//! transfers; each conversation shows its intent, language and urgency,
//! and urgent chats leave the queue first; the intent routes are
//! admin-only, refuse bad input without storing anything, and enforce
//! their limits.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error};
use reqwest::StatusCode;

const REFUND: &[&str] = &[
    "我要退款",
    "怎么申请退款",
    "退款什么时候到账",
    "钱能退回来吗",
    "退款进度怎么查",
    "不想要了，把钱退给我",
    "退款失败了怎么办",
    "能退钱吗",
    "refund please",
    "我申请的退款还没到",
];
const SHIPPING: &[&str] = &[
    "什么时候发货",
    "快递到哪了",
    "物流信息怎么查",
    "怎么还没发货",
    "帮我查一下快递",
    "where is my parcel",
    "发什么快递",
    "物流太慢了",
    "几天能到",
    "包裹一直没动",
];
const INVOICE: &[&str] = &[
    "怎么开发票",
    "能开增值税专用发票吗",
    "发票抬头写错了",
    "电子发票在哪下载",
    "发票什么时候寄出",
    "可以开公司抬头的发票吗",
    "发票税号怎么填",
    "补开发票",
    "invoice please",
    "我要纸质发票",
];

async fn delete(server: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = server.http.delete(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    kefu_tests::read(request.send().await.expect("request")).await
}

async fn conversation(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, body) = server
        .get(&format!("/api/v1/conversations/{id}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["conversation"].clone()
}

async fn new_chat(server: &TestServer, app: &Value, token: &str, text: &str) -> Value {
    let visitor = server.visitor(app).await;
    let (status, message) = server.visitor_says(&visitor, "first", text).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    conversation(server, token, &visitor.conversation_id).await
}

async fn create_intent(server: &TestServer, admin: &str, body: Value) -> Value {
    let (status, body) = server.post("/api/v1/intents", Some(admin), body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["intent"].clone()
}

/// Polls the app's model until it is trained (not pending) after `after`.
async fn trained(server: &TestServer, admin: &str, app_id: &str, after: i64) -> Value {
    let deadline = tokio::time::Instant::now() + kefu_tests::WAIT_IDLE;
    loop {
        let (status, body) = server
            .get(
                &format!("/api/v1/intents/model?app_id={app_id}"),
                Some(admin),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let model = body["model"].clone();
        if model["pending"] == false && model["trained_at"].as_i64().is_some_and(|t| t >= after) {
            return model;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not trained: {model}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn create_team(
    server: &TestServer,
    admin: &str,
    name: &str,
    members: &[&AgentClient],
) -> Value {
    let ids: Vec<&str> = members.iter().map(|a| a.id.as_str()).collect();
    let (status, body) = server
        .post(
            "/api/v1/teams",
            Some(admin),
            json!({"name": name, "agent_ids": ids}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["team"].clone()
}

async fn online(server: &TestServer, agent: &AgentClient) {
    let (status, body) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&agent.token),
            json!({"status": "online"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_intent_rule_routes_to_its_team_once_the_model_has_enough_examples() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let app_id = app["id"].as_str().expect("id").to_owned();
    let bo = server.agent("bo").await;
    let dee = server.agent("dee").await;
    let amy = server.agent("amy").await;
    let billing = create_team(&server, &admin, "Billing", &[&bo]).await;
    let logistics = create_team(&server, &admin, "Logistics", &[&dee]).await;
    for agent in [&bo, &dee, &amy] {
        online(&server, agent).await;
    }
    // Seven examples each: one short of the minimum, so no model.
    let started = now_ms();
    let mut intents = Vec::new();
    for (name, examples) in [
        ("refund", REFUND),
        ("shipping", SHIPPING),
        ("invoice", INVOICE),
    ] {
        intents.push(
            create_intent(
                &server,
                &admin,
                json!({"app_id": app_id, "name": name, "examples": &examples[..7]}),
            )
            .await,
        );
    }
    let presales = create_intent(
        &server,
        &admin,
        json!({"app_id": app_id, "name": "presales", "examples": ["有现货吗", "这个多大尺码"]}),
    )
    .await;
    let model = trained(&server, &admin, &app_id, started).await;
    assert_eq!(model["ready"], false, "{model}");
    assert_eq!(model["per_intent"]["refund"], 7, "{model}");
    assert_eq!(model["min_examples_per_intent"], 8, "{model}");
    for (intent, team) in [
        ("refund", &billing),
        ("shipping", &logistics),
        ("presales", &billing),
    ] {
        let (status, body) = server
            .post(
                "/api/v1/routing/rules",
                Some(&admin),
                json!({"name": intent, "app_id": app_id, "intent": intent,
                       "intent_confidence": 0.6, "team_id": team["id"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["rule"]["intent"], intent);
        assert_eq!(body["rule"]["intent_confidence"], 0.6);
    }
    let chat = new_chat(&server, &app, &admin, "我的退款怎么还没到账").await;
    assert_eq!(chat["assist"]["intent"], Value::Null, "{chat}");
    assert_eq!(chat["team_id"], Value::Null, "{chat}");

    // Ten examples each: ready (presales, with two, stays out of it).
    let started = now_ms();
    for (intent, examples) in intents.iter().zip([REFUND, SHIPPING, INVOICE]) {
        let (status, body) = server
            .patch(
                &format!("/api/v1/intents/{}", intent["id"].as_str().expect("id")),
                Some(&admin),
                json!({"examples": examples}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["intent"]["examples"].as_array().map(Vec::len),
            Some(10)
        );
    }
    let model = trained(&server, &admin, &app_id, started).await;
    assert_eq!(model["ready"], true, "{model}");
    assert_eq!(
        model["intents"],
        json!(["invoice", "refund", "shipping"]),
        "{model}"
    );
    assert_eq!(model["per_intent"]["presales"], 2, "{model}");

    // Words the examples do not use verbatim, Traditional characters.
    let chat = new_chat(&server, &app, &admin, "我的退款怎麼還沒到賬").await;
    assert_eq!(chat["assist"]["intent"]["name"], "refund", "{chat}");
    assert!(
        chat["assist"]["intent"]["confidence"]
            .as_f64()
            .expect("confidence")
            >= 0.6
    );
    assert_eq!(chat["team_id"], billing["id"], "{chat}");
    assert_eq!(chat["assignee_id"], bo.id.as_str(), "{chat}");
    let chat = new_chat(&server, &app, &admin, "快递几天能到啊").await;
    assert_eq!(chat["assist"]["intent"]["name"], "shipping", "{chat}");
    assert_eq!(chat["team_id"], logistics["id"], "{chat}");
    assert_eq!(chat["assignee_id"], dee.id.as_str(), "{chat}");
    // An invoice question: no intent rule for it, so nobody in particular.
    let chat = new_chat(&server, &app, &admin, "发票抬头能改吗").await;
    assert_eq!(chat["assist"]["intent"]["name"], "invoice", "{chat}");
    assert_eq!(chat["team_id"], Value::Null, "{chat}");
    // Nothing the model knows: low confidence, no intent rule matches.
    let chat = new_chat(&server, &app, &admin, "你好").await;
    assert!(
        chat["assist"]["intent"]["confidence"]
            .as_f64()
            .expect("confidence")
            < 0.6,
        "{chat}"
    );
    assert_eq!(chat["team_id"], Value::Null, "{chat}");

    // A keyword rule placed first wins over the intent rule (rule order).
    let (status, body) = server
        .post(
            "/api/v1/routing/rules",
            Some(&admin),
            json!({"name": "refund words", "keywords": ["退款"], "team_id": logistics["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, rules) = server.get("/api/v1/routing/rules", Some(&admin)).await;
    let mut ids: Vec<Value> = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    ids.rotate_right(1);
    let (status, body) = server
        .post(
            "/api/v1/routing/rules/reorder",
            Some(&admin),
            json!({"ids": ids}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chat = new_chat(&server, &app, &admin, "我要退款").await;
    assert_eq!(chat["assist"]["intent"]["name"], "refund", "{chat}");
    assert_eq!(chat["team_id"], logistics["id"], "{chat}");

    // An intent a rule uses can be neither deleted nor renamed.
    let refund_id = intents[0]["id"].as_str().expect("id");
    let (status, body) = delete(
        &server,
        &format!("/api/v1/intents/{refund_id}"),
        Some(&admin),
    )
    .await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = server
        .patch(
            &format!("/api/v1/intents/{refund_id}"),
            Some(&admin),
            json!({"name": "refunds"}),
        )
        .await;
    assert_error(status, &body, 409, "conflict");
    let _ = presales;
}

#[tokio::test]
async fn the_model_learns_from_resolved_chats_and_transfers() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let app_id = app["id"].as_str().expect("id").to_owned();
    let bo = server.agent("bo").await;
    online(&server, &bo).await;
    let billing = create_team(&server, &admin, "Billing", &[&bo]).await;
    // Refund has no example of its own: only its team's history.
    let started = now_ms();
    create_intent(
        &server,
        &admin,
        json!({"app_id": app_id, "name": "refund", "team_id": billing["id"]}),
    )
    .await;
    create_intent(
        &server,
        &admin,
        json!({"app_id": app_id, "name": "shipping", "examples": SHIPPING}),
    )
    .await;
    let model = trained(&server, &admin, &app_id, started).await;
    assert_eq!(model["ready"], false, "{model}");
    // Eight refund chats reach nobody in particular; the agent transfers
    // each to Billing (the correction) and resolves it.
    for text in &REFUND[..8] {
        let chat = new_chat(&server, &app, &admin, text).await;
        let id = chat["id"].as_str().expect("id");
        assert_eq!(chat["team_id"], Value::Null);
        let (status, body) = server
            .post(
                &format!("/api/v1/conversations/{id}/transfer"),
                Some(&bo.token),
                json!({"team_id": billing["id"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = server
            .post(
                &format!("/api/v1/conversations/{id}/status"),
                Some(&bo.token),
                json!({"status": "resolved"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // One more, resolved by nobody's team: not an example.
    let chat = new_chat(&server, &app, &admin, "随便问问").await;
    let (status, body) = server
        .post(
            &format!(
                "/api/v1/conversations/{}/status",
                chat["id"].as_str().expect("id")
            ),
            Some(&bo.token),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = now_ms();
    let (status, body) = server
        .post(
            "/api/v1/intents/train",
            Some(&admin),
            json!({"app_id": app_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let model = trained(&server, &admin, &app_id, started).await;
    assert_eq!(model["ready"], true, "{model}");
    assert_eq!(model["from_history"], 8, "{model}");
    assert_eq!(model["per_intent"]["refund"], 8, "{model}");
    let chat = new_chat(&server, &app, &admin, "退款到账了吗").await;
    assert_eq!(chat["assist"]["intent"]["name"], "refund", "{chat}");
}

/// Sends `text` as the visitor; the message is created.
async fn says(server: &TestServer, visitor: &VisitorClient, id: &str, text: &str) {
    let (status, message) = server.visitor_says(visitor, id, text).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
}

/// Polls until the conversation's priority is `priority`.
async fn wait_priority(server: &TestServer, token: &str, id: &str, priority: &str) -> Value {
    let deadline = tokio::time::Instant::now() + kefu_tests::WAIT;
    loop {
        let chat = conversation(server, token, id).await;
        if chat["priority"] == priority {
            return chat;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {chat}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn language_and_urgency_show_and_urgent_chats_leave_the_queue_first() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    // Nobody online: every chat waits in the queue.
    let calm = server.visitor(&app).await;
    says(&server, &calm, "c1", "你好，请问这件有货吗").await;
    let chat = conversation(&server, &admin, &calm.conversation_id).await;
    assert_eq!(chat["status"], "queued");
    assert_eq!(chat["priority"], "normal", "{chat}");
    assert_eq!(chat["assist"]["language"], "zh-Hans", "{chat}");
    assert_eq!(chat["assist"]["urgency"], json!([]), "{chat}");
    assert_eq!(chat["assist"]["intent"], Value::Null, "{chat}");

    let angry = server.visitor(&app).await;
    says(&server, &angry, "a1", "再不處理我就投訴，打12315！").await;
    let chat = conversation(&server, &admin, &angry.conversation_id).await;
    assert_eq!(chat["priority"], "urgent", "{chat}");
    assert_eq!(chat["assist"]["language"], "zh-Hant", "{chat}");
    assert_eq!(chat["assist"]["urgency"], json!(["complaint"]), "{chat}");

    let english = server.visitor(&app).await;
    says(
        &server,
        &english,
        "e1",
        "Hello, where is my order? It has not arrived yet.",
    )
    .await;
    let chat = conversation(&server, &admin, &english.conversation_id).await;
    assert_eq!(chat["assist"]["language"], "en", "{chat}");
    assert_eq!(chat["priority"], "normal", "{chat}");

    // Three messages in a row with no reply: urgent, "repeated".
    let waiting = server.visitor(&app).await;
    says(&server, &waiting, "w1", "在吗").await;
    says(&server, &waiting, "w2", "在吗？").await;
    assert_eq!(
        conversation(&server, &admin, &waiting.conversation_id).await["priority"],
        "normal"
    );
    says(&server, &waiting, "w3", "有人吗").await;
    let chat = wait_priority(&server, &admin, &waiting.conversation_id, "urgent").await;
    assert_eq!(chat["assist"]["urgency"], json!(["repeated"]), "{chat}");
    // A complaint later in a chat adds its reason.
    says(
        &server,
        &english,
        "e2",
        "This is unacceptable, I will file a complaint",
    )
    .await;
    let chat = wait_priority(&server, &admin, &english.conversation_id, "urgent").await;
    assert_eq!(chat["assist"]["urgency"], json!(["complaint"]), "{chat}");

    // The queue: urgent chats first, each group in arrival order.
    let (status, body) = server.get("/api/v1/queue", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let order: Vec<&str> = body["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .map(|e| e["conversation"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        order,
        vec![
            angry.conversation_id.as_str(),
            english.conversation_id.as_str(),
            waiting.conversation_id.as_str(),
            calm.conversation_id.as_str(),
        ]
    );
    // An agent coming online takes the urgent head first.
    let (status, body) = server
        .patch(
            &format!("/api/v1/agents/{}", amy.id),
            Some(&admin),
            json!({"max_concurrent": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    online(&server, &amy).await;
    let deadline = tokio::time::Instant::now() + kefu_tests::WAIT;
    loop {
        let chat = conversation(&server, &admin, &angry.conversation_id).await;
        if chat["assignee_id"] == amy.id.as_str() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{chat}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        conversation(&server, &admin, &calm.conversation_id).await["status"],
        "queued"
    );

    // A reply ends a run: two more messages after it are not "repeated".
    let (status, body) = server
        .agent_says(&amy, &angry.conversation_id, "r1", "您好，马上为您处理")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let replied = server.visitor(&app).await;
    says(&server, &replied, "p1", "你好").await;
    says(&server, &replied, "p2", "这件衣服").await;
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/claim", replied.conversation_id),
            Some(&amy.token),
            json!({}),
        )
        .await;
    assert!(
        status == StatusCode::OK || status == StatusCode::CONFLICT,
        "{body}"
    );
    let (status, body) = server
        .agent_says(&amy, &replied.conversation_id, "r2", "在的")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    says(&server, &replied, "p3", "有 M 码吗").await;
    // Another chat's later message proves the watcher has passed p3.
    says(&server, &calm, "c2", "我要投诉").await;
    wait_priority(&server, &admin, &calm.conversation_id, "urgent").await;
    assert_eq!(
        conversation(&server, &admin, &replied.conversation_id).await["priority"],
        "normal"
    );
}

#[tokio::test]
async fn a_chat_queued_over_five_minutes_becomes_urgent() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let mut ids = Vec::new();
    // Queued 4:50 and 5:10 ago (the clock moved back in SQLite; the sweep
    // itself is the server's, called here rather than waited for).
    for (i, ago_ms) in [290_000i64, 310_000].into_iter().enumerate() {
        let visitor = server.visitor(&app).await;
        says(&server, &visitor, &format!("m{i}"), "有人吗").await;
        assert_eq!(
            conversation(&server, &admin, &visitor.conversation_id).await["status"],
            "queued"
        );
        sqlx::query("UPDATE conversations SET queued_at = ? WHERE id = ?")
            .bind(now_ms() - ago_ms)
            .bind(&visitor.conversation_id)
            .execute(&server.state().db)
            .await
            .expect("update");
        ids.push(visitor.conversation_id.clone());
    }
    kefu_server::assist::insight::sweep_long_waits(server.state())
        .await
        .expect("sweep");
    let fresh = conversation(&server, &admin, &ids[0]).await;
    assert_eq!(fresh["priority"], "normal", "{fresh}");
    let long = conversation(&server, &admin, &ids[1]).await;
    assert_eq!(long["priority"], "urgent", "{long}");
    assert_eq!(long["assist"]["urgency"], json!(["long_wait"]), "{long}");
    // A second sweep adds nothing twice.
    kefu_server::assist::insight::sweep_long_waits(server.state())
        .await
        .expect("sweep");
    let again = conversation(&server, &admin, &ids[1]).await;
    assert_eq!(again["assist"]["urgency"], json!(["long_wait"]), "{again}");
}

#[tokio::test]
async fn intent_routes_are_admin_only_and_refuse_bad_input() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let app_id = app["id"].as_str().expect("id").to_owned();
    let amy = server.agent("amy").await;
    let intent = create_intent(
        &server,
        &admin,
        json!({"app_id": app_id, "name": "退款", "examples": ["我要退款"], "tags": ["refund"]}),
    )
    .await;
    let id = intent["id"].as_str().expect("id").to_owned();
    assert_eq!(intent["name"], "退款");
    assert_eq!(intent["tags"], json!(["refund"]));
    assert_eq!(intent["team_id"], Value::Null);

    // Authz: agents get 403, nobody gets 401, on every route.
    let list = format!("/api/v1/intents?app_id={app_id}");
    let model = format!("/api/v1/intents/model?app_id={app_id}");
    let one = format!("/api/v1/intents/{id}");
    for token in [Some(amy.token.as_str()), None] {
        let expected = if token.is_some() { 403 } else { 401 };
        let code = if token.is_some() {
            "forbidden"
        } else {
            "unauthorized"
        };
        for path in [&list, &model, &one] {
            let (status, body) = server.get(path, token).await;
            assert_error(status, &body, expected, code);
        }
        let (status, body) = server
            .post(
                "/api/v1/intents",
                token,
                json!({"app_id": app_id, "name": "x"}),
            )
            .await;
        assert_error(status, &body, expected, code);
        let (status, body) = server
            .post("/api/v1/intents/train", token, json!({"app_id": app_id}))
            .await;
        assert_error(status, &body, expected, code);
        let (status, body) = server.patch(&one, token, json!({"name": "y"})).await;
        assert_error(status, &body, expected, code);
        let (status, body) = delete(&server, &one, token).await;
        assert_error(status, &body, expected, code);
    }

    // Bad input: the error body, and nothing stored.
    let long_example = "退".repeat(201);
    let many: Vec<String> = (0..201).map(|i| format!("例子{i}")).collect();
    for (body, field) in [
        (json!({"app_id": app_id, "name": ""}), "name"),
        (json!({"app_id": app_id, "name": "x".repeat(41)}), "name"),
        (json!({"app_id": app_id, "name": "a\nb"}), "name"),
        (
            json!({"app_id": app_id, "name": "x", "examples": [long_example]}),
            "examples[0]",
        ),
        (
            json!({"app_id": app_id, "name": "x", "examples": ["ok", " "]}),
            "examples[1]",
        ),
        (
            json!({"app_id": app_id, "name": "x", "examples": many}),
            "examples",
        ),
        (
            json!({"app_id": app_id, "name": "x", "tags": (0..11).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "tags",
        ),
        (
            json!({"app_id": app_id, "name": "x", "colour": 1}),
            "colour",
        ),
    ] {
        let (status, reply) = server
            .post("/api/v1/intents", Some(&admin), body.clone())
            .await;
        assert_error(status, &reply, 400, "bad_request");
        assert_eq!(reply["error"]["field"], field, "{body} → {reply}");
    }
    let (status, reply) = server
        .post(
            "/api/v1/intents",
            Some(&admin),
            json!({"app_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "name": "x"}),
        )
        .await;
    assert_error(status, &reply, 404, "not_found");
    let (status, reply) = server
        .post(
            "/api/v1/intents",
            Some(&admin),
            json!({"app_id": app_id, "name": "x", "team_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        )
        .await;
    assert_error(status, &reply, 404, "not_found");
    let (status, reply) = server
        .post(
            "/api/v1/intents",
            Some(&admin),
            json!({"app_id": app_id, "name": " 退款 "}),
        )
        .await;
    assert_error(status, &reply, 409, "conflict");
    let (status, reply) = server
        .patch(&one, Some(&admin), json!({"examples": ["ok", "\u{7}"]}))
        .await;
    assert_error(status, &reply, 400, "bad_request");
    let (status, reply) = server.get("/api/v1/intents", Some(&admin)).await;
    assert_error(status, &reply, 400, "bad_request");
    let (status, reply) = server.get(&list, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["intents"], json!([intent]), "nothing else was stored");

    // Rules: an unknown intent, a confidence out of range or without an
    // intent are refused.
    let team = create_team(&server, &admin, "T", &[&amy]).await;
    for (body, status_code, field) in [
        (
            json!({"name": "r", "intent": "nope", "team_id": team["id"]}),
            404,
            "intent",
        ),
        (
            json!({"name": "r", "intent": "退款", "intent_confidence": 1.5, "team_id": team["id"]}),
            400,
            "intent_confidence",
        ),
        (
            json!({"name": "r", "intent_confidence": 0.5, "team_id": team["id"]}),
            400,
            "intent_confidence",
        ),
    ] {
        let (status, reply) = server
            .post("/api/v1/routing/rules", Some(&admin), body.clone())
            .await;
        assert_eq!(status.as_u16(), status_code, "{body} → {reply}");
        assert_eq!(reply["error"]["field"], field, "{body} → {reply}");
    }
    let (_, rules) = server.get("/api/v1/routing/rules", Some(&admin)).await;
    assert_eq!(rules["rules"], json!([]));
    // Default confidence when none is given; `null` removes the condition.
    let (status, reply) = server
        .post(
            "/api/v1/routing/rules",
            Some(&admin),
            json!({"name": "r", "intent": "退款", "team_id": team["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["rule"]["intent_confidence"], 0.6);
    let rule_id = reply["rule"]["id"].as_str().expect("id").to_owned();
    let (status, reply) = server
        .patch(
            &format!("/api/v1/routing/rules/{rule_id}"),
            Some(&admin),
            json!({"intent": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["rule"]["intent"], Value::Null);
    assert_eq!(reply["rule"]["intent_confidence"], Value::Null);

    // The limit: 50 intents per app; the 51st is refused.
    for i in 1..50 {
        create_intent(
            &server,
            &admin,
            json!({"app_id": app_id, "name": format!("i{i}")}),
        )
        .await;
    }
    let (status, reply) = server
        .post(
            "/api/v1/intents",
            Some(&admin),
            json!({"app_id": app_id, "name": "one too many"}),
        )
        .await;
    assert_error(status, &reply, 400, "bad_request");
    let (_, reply) = server.get(&list, Some(&admin)).await;
    assert_eq!(reply["intents"].as_array().map(Vec::len), Some(50));
    // Another app has its own 50.
    let other = server.app(json!({})).await;
    create_intent(
        &server,
        &admin,
        json!({"app_id": other["id"], "name": "退款"}),
    )
    .await;

    // Delete, then it is gone.
    let (status, reply) = delete(&server, &one, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = server.get(&one, Some(&admin)).await;
    assert_error(status, &reply, 404, "not_found");
}
