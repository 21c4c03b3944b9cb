//! Reply suggestions over real sockets (docs/API.md 2.19): they come from
//! canned replies (also learnt through `meta.canned_id`) and from replies
//! agents sent in at least two resolved conversations, masked; a reply
//! sent in one conversation only, and any visitor's words, never show in
//! another chat; agents only, and only the canned replies they may see.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error};
use reqwest::StatusCode;

/// A visitor (named `name`) says `question`; `agent` answers each of
/// `replies` (text, optional canned id); the chat is resolved.
async fn resolved_chat(
    server: &TestServer,
    app: &Value,
    agent: &AgentClient,
    name: &str,
    question: &str,
    replies: &[(&str, Option<&str>)],
) -> VisitorClient {
    let visitor = server
        .visitor_with(app, json!({"name": name, "user_id": name}))
        .await;
    let (status, body) = server.visitor_says(&visitor, "q1", question).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (n, (reply, canned)) in replies.iter().enumerate() {
        let mut message = json!({"client_msg_id": format!("r{n}"), "content": reply});
        if let Some(canned) = canned {
            message["meta"] = json!({"canned_id": canned});
        }
        let (status, body) = server
            .post(
                &format!("/api/v1/conversations/{}/messages", visitor.conversation_id),
                Some(&agent.token),
                message,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if canned.is_some() {
            assert_eq!(body["message"]["meta"]["canned_id"], json!(canned));
        }
    }
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/status", visitor.conversation_id),
            Some(&agent.token),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    visitor
}

async fn suggestions(server: &TestServer, token: &str, conversation: &str) -> Vec<Value> {
    let (status, body) = server
        .get(
            &format!("/api/v1/conversations/{conversation}/suggestions"),
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["suggestions"].as_array().expect("suggestions").clone()
}

/// Polls until `done` holds for the conversation's suggestions (the
/// learner reads resolved chats off the request path).
async fn wait_suggestions(
    server: &TestServer,
    token: &str,
    conversation: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + kefu_tests::WAIT_IDLE;
    loop {
        let found = suggestions(server, token, conversation).await;
        if done(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; suggestions: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn canned(server: &TestServer, token: &str, body: Value) -> String {
    let (status, reply) = server
        .post("/api/v1/canned_replies", Some(token), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    reply["canned_reply"]["id"].as_str().expect("id").to_owned()
}

fn contents(found: &[Value]) -> String {
    found
        .iter()
        .map(|s| s["content"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn suggestions_are_canned_or_seen_in_two_chats_masked_and_never_leak() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let app = server.app(json!({})).await;
    let invoice = canned(
        &server,
        &admin,
        json!({"shortcut": "invoice", "title": "开发票", "shared": true,
               "body": "{visitor.name|您}好，下单时在发票一栏填写抬头和税号即可开发票。"}),
    )
    .await;
    let returns = canned(
        &server,
        &admin,
        json!({"shortcut": "return", "title": "售后流程", "shared": true,
               "body": "在“我的订单”点击“申请售后”，按提示寄回即可。"}),
    )
    .await;

    // Two customers got the same answer, each with their own phone number;
    // a third got a personal code once.
    resolved_chat(
        &server,
        &app,
        &amy,
        "王芳",
        "钱什么时候能退回来",
        &[(
            "退款原路返回，1-3 个工作日到账，有问题请拨打 13800138000",
            None,
        )],
    )
    .await;
    resolved_chat(
        &server,
        &app,
        &amy,
        "李雷",
        "我的钱什么时候退回来啊",
        &[(
            "退款原路返回，1-3 个工作日到账，有问题请拨打 13912345678",
            None,
        )],
    )
    .await;
    resolved_chat(
        &server,
        &app,
        &amy,
        "张伟",
        "钱什么时候退回来，急用",
        &[(
            "张伟您好，您的专属补偿码是 VIP-ZHANGWEI，仅限本人使用",
            None,
        )],
    )
    .await;
    // A canned reply inserted by an agent teaches its own question.
    resolved_chat(
        &server,
        &app,
        &amy,
        "赵敏",
        "这件衣服我不想要了",
        &[(
            "在“我的订单”点击“申请售后”，按提示寄回即可。",
            Some(&returns),
        )],
    )
    .await;

    let visitor = server
        .visitor_with(&app, json!({"name": "陈静", "user_id": "chen"}))
        .await;
    let (status, _) = server
        .visitor_says(&visitor, "d1", "请问钱什么时候能退回来？")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let chat = visitor.conversation_id.as_str();
    let masked = "退款原路返回，1-3 个工作日到账，有问题请拨打 [电话]";
    let found = wait_suggestions(&server, &amy.token, chat, |found| {
        found.iter().any(|s| s["content"] == masked)
    })
    .await;
    let learnt = found
        .iter()
        .find(|s| s["content"] == masked)
        .expect("learnt");
    assert_eq!(learnt["source"], "learnt");
    assert_eq!(learnt["conversations"], 2);
    assert_eq!(learnt["canned_id"], Value::Null);
    assert!(found.len() <= 3);
    let text = contents(&found);
    for secret in [
        "13800138000",
        "13912345678",
        "VIP-ZHANGWEI",
        "张伟",
        "补偿码",
        "钱什么时候",
        "急用",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {found:#?}");
    }

    // A canned reply matched by its own words, rendered for this chat
    // (after an agent's answer: the visitor's next turn is asked about).
    server
        .agent_says(&amy, chat, "a1", "稍等，我帮您看一下")
        .await;
    let (status, _) = server.visitor_says(&visitor, "d2", "可以开发票吗").await;
    assert_eq!(status, StatusCode::CREATED);
    let found = suggestions(&server, &amy.token, chat).await;
    let first = &found[0];
    assert_eq!(first["source"], "canned", "{found:#?}");
    assert_eq!(first["canned_id"], invoice.as_str());
    assert_eq!(first["shortcut"], "invoice");
    assert_eq!(
        first["content"],
        "陈静好，下单时在发票一栏填写抬头和税号即可开发票。"
    );

    // A canned reply learnt through meta.canned_id: few words in common.
    server.agent_says(&amy, chat, "a2", "好的").await;
    let (status, _) = server
        .visitor_says(&visitor, "d3", "衣服不想要了怎么办")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The learner may still be reading the last resolved chat (it runs off
    // the request path, at idle priority).
    let found = wait_suggestions(&server, &amy.token, chat, |found| {
        found.iter().any(|s| s["canned_id"] == returns.as_str())
    })
    .await;
    assert_eq!(found[0]["canned_id"], returns.as_str(), "{found:#?}");

    // Deleted: no longer suggested.
    let status = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/canned_replies/{returns}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete")
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let found = suggestions(&server, &amy.token, chat).await;
    assert!(
        found.iter().all(|s| s["canned_id"] != returns.as_str()),
        "{found:#?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn suggestions_are_for_agents_and_their_own_canned_replies() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let bob = server.agent("bob").await;
    let app = server.app(json!({})).await;
    let private = canned(
        &server,
        &bob.token,
        json!({"shortcut": "mine", "title": "我的发票话术", "body": "发票请找财务小刘，微信 liu-finance"}),
    )
    .await;
    let visitor = server.visitor(&app).await;
    let (status, _) = server.visitor_says(&visitor, "v1", "发票怎么开").await;
    assert_eq!(status, StatusCode::CREATED);
    let chat = visitor.conversation_id.as_str();

    // Bob sees his personal reply; Amy never does.
    let found = suggestions(&server, &bob.token, chat).await;
    assert_eq!(found[0]["canned_id"], private.as_str(), "{found:#?}");
    let found = suggestions(&server, &amy.token, chat).await;
    assert!(found.is_empty(), "{found:#?}");

    let path = format!("/api/v1/conversations/{chat}/suggestions");
    let (status, body) = server.get(&path, Some(&visitor.token)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server.get(&path, None).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = server
        .get(
            "/api/v1/conversations/01J0000000000000000000000X/suggestions",
            Some(&amy.token),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .get("/api/v1/conversations/nope/suggestions", Some(&amy.token))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.post(&path, Some(&amy.token), json!({})).await;
    assert_error(status, &body, 405, "method_not_allowed");

    // A chat where the visitor said nothing yet has no suggestions.
    let quiet = server.visitor(&app).await;
    assert!(
        suggestions(&server, &amy.token, &quiet.conversation_id)
            .await
            .is_empty()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn learnt_suggestions_are_learnt_again_after_a_restart() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let app = server.app(json!({})).await;
    for (name, question) in [("a", "支持货到付款吗"), ("b", "可以货到付款吗")] {
        resolved_chat(
            &server,
            &app,
            &amy,
            name,
            question,
            &[("暂不支持货到付款，可用微信或支付宝付款。", None)],
        )
        .await;
    }
    let server_again = server.restart().await;
    let visitor = server_again.visitor(&app).await;
    let (status, _) = server_again
        .visitor_says(&visitor, "v1", "货到付款行不行")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    wait_suggestions(
        &server_again,
        &amy.token,
        &visitor.conversation_id,
        |found| {
            found
                .iter()
                .any(|s| s["content"] == "暂不支持货到付款，可用微信或支付宝付款。")
        },
    )
    .await;
    server_again.shutdown().await;
}
