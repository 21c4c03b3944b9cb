//! Read markers, unread counts and typing over real sockets: forward-only
//! markers per reader, unread counts per agent and for the visitor, `read`
//! frames relayed to the other side and the reader's other connections,
//! markers that survive a restart, typing coalesced and never stored.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error};
use reqwest::StatusCode;

async fn shop() -> (TestServer, Value, AgentClient, AgentClient) {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    (server, app, amy, bo)
}

async fn agent_reads(
    server: &TestServer,
    agent: &AgentClient,
    conversation: &str,
    seq: Value,
) -> (StatusCode, Value) {
    server
        .post(
            &format!("/api/v1/conversations/{conversation}/read"),
            Some(&agent.token),
            json!({"seq": seq}),
        )
        .await
}

async fn visitor_reads(server: &TestServer, visitor: &VisitorClient, seq: u64) -> Value {
    let (status, body) = server
        .post(
            "/api/v1/visitor/read",
            Some(&visitor.token),
            json!({"seq": seq}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["read"].clone()
}

/// `unread_count` per conversation id in the agent's list.
async fn unread_in_list(server: &TestServer, agent: &AgentClient) -> Vec<(String, u64)> {
    let (status, body) = server
        .get("/api/v1/conversations", Some(&agent.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut out: Vec<(String, u64)> = body["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_owned(),
                c["unread_count"].as_u64().expect("unread_count"),
            )
        })
        .collect();
    out.sort();
    out
}

async fn unread_of(server: &TestServer, agent: &AgentClient, conversation: &str) -> u64 {
    let (status, body) = server
        .get(
            &format!("/api/v1/conversations/{conversation}"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["conversation"]["unread_count"]
        .as_u64()
        .expect("unread_count")
}

async fn visitor_state(server: &TestServer, visitor: &VisitorClient) -> Value {
    let (status, body) = server
        .get("/api/v1/visitor/read", Some(&visitor.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["read"].clone()
}

#[tokio::test]
async fn markers_only_move_forward_and_stop_at_the_head() {
    let (server, app, amy, _) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    for i in 1..=3 {
        server
            .visitor_says(&visitor, &format!("v{i}"), "hello")
            .await;
    }
    let (status, body) = agent_reads(&server, &amy, &conv, json!(2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["read"],
        json!({"conversation_id": conv, "read_seq": 2, "last_seq": 3, "unread_count": 1, "visitor_read_seq": 0})
    );
    // Backwards: ignored, the marker stays.
    let (_, body) = agent_reads(&server, &amy, &conv, json!(1)).await;
    assert_eq!(body["read"]["read_seq"], 2);
    let (_, body) = agent_reads(&server, &amy, &conv, json!(0)).await;
    assert_eq!(body["read"]["read_seq"], 2);
    // Beyond the head: clamped to it.
    let (_, body) = agent_reads(&server, &amy, &conv, json!(99)).await;
    assert_eq!(body["read"]["read_seq"], 3);
    assert_eq!(body["read"]["unread_count"], 0);
    // A later message is not covered by the clamped marker.
    server.visitor_says(&visitor, "v4", "again").await;
    assert_eq!(unread_of(&server, &amy, &conv).await, 1);
    // The same over the WebSocket: backwards does nothing.
    let mut ws = server.ws(&amy.token, json!({})).await;
    ws.send(json!({"type": "read", "conversation_id": conv, "seq": 1}))
        .await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_of("pong").await["type"], "pong");
    assert_eq!(unread_of(&server, &amy, &conv).await, 1);

    // Bad input changes nothing.
    for bad in [json!(-1), json!("4"), json!(null), json!(1.5)] {
        let (status, body) = agent_reads(&server, &amy, &conv, bad.clone()).await;
        assert_error(status, &body, 400, "bad_request");
    }
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{conv}/read"),
            Some(&amy.token),
            json!({"seq": 4, "extra": true}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    ws.send(json!({"type": "read", "conversation_id": conv, "seq": "4"}))
        .await;
    assert_eq!(ws.next_of("error").await["code"], "bad_request");
    assert_eq!(unread_of(&server, &amy, &conv).await, 1);

    // Who may mark what.
    let (status, body) = agent_reads(&server, &amy, "01J9Z8C0NV0000000000000000", json!(1)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{conv}/read"),
            Some(&visitor.token),
            json!({"seq": 4}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .post("/api/v1/visitor/read", Some(&amy.token), json!({"seq": 4}))
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .post("/api/v1/visitor/read", None, json!({"seq": 4}))
        .await;
    assert_error(status, &body, 401, "unauthorized");
    let other = server.visitor(&app).await;
    let mut other_ws = server.ws(&other.token, json!({})).await;
    other_ws
        .send(json!({"type": "read", "conversation_id": conv, "seq": 4}))
        .await;
    assert_eq!(other_ws.next_of("error").await["code"], "forbidden");
    // The visitor's own marker did not move through any of that.
    assert_eq!(visitor_state(&server, &visitor).await["read_seq"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn unread_counts_are_per_agent_and_follow_reads() {
    let (server, app, amy, bo) = shop().await;
    let one = server.visitor(&app).await;
    let two = server.visitor(&app).await;
    for i in 0..3 {
        server.visitor_says(&one, &format!("o{i}"), "hi").await;
    }
    for i in 0..2 {
        server.visitor_says(&two, &format!("t{i}"), "hi").await;
    }
    let (c1, c2) = (one.conversation_id.clone(), two.conversation_id.clone());
    let mut expected = vec![(c1.clone(), 3), (c2.clone(), 2)];
    expected.sort();
    assert_eq!(unread_in_list(&server, &amy).await, expected);
    assert_eq!(unread_in_list(&server, &bo).await, expected);

    // Amy reads conversation one over her WebSocket: only her count drops.
    let mut amy_ws = server.ws(&amy.token, json!({})).await;
    amy_ws
        .send(json!({"type": "read", "conversation_id": c1, "seq": 3}))
        .await;
    amy_ws.send(json!({"type": "ping"})).await;
    amy_ws.next_of("pong").await;
    assert_eq!(unread_of(&server, &amy, &c1).await, 0);
    assert_eq!(unread_of(&server, &bo, &c1).await, 3);
    assert_eq!(unread_of(&server, &amy, &c2).await, 2);

    // Amy's own reply is not unread for her; it is for Bo.
    server.agent_says(&amy, &c1, "a1", "hello").await;
    assert_eq!(unread_of(&server, &amy, &c1).await, 0);
    assert_eq!(unread_of(&server, &bo, &c1).await, 4);
    // A new visitor message is unread for both.
    server.visitor_says(&one, "o9", "still there?").await;
    assert_eq!(unread_of(&server, &amy, &c1).await, 1);
    assert_eq!(unread_of(&server, &bo, &c1).await, 5);

    // The badge: conversations assigned to the agent, not resolved.
    let (status, body) = server
        .get("/api/v1/agents/me/unread", Some(&amy.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"total": 0, "conversations": []}));
    for conv in [&c1, &c2] {
        let (status, body) = server
            .post(
                &format!("/api/v1/conversations/{conv}/assign"),
                Some(&amy.token),
                json!({"agent_id": amy.id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, body) = server
        .get("/api/v1/agents/me/unread", Some(&amy.token))
        .await;
    assert_eq!(body["total"], 3, "{body}");
    let (_, body) = server
        .get("/api/v1/agents/me/unread", Some(&bo.token))
        .await;
    assert_eq!(body["total"], 0, "Bo has no chats: {body}");
    agent_reads(&server, &amy, &c2, json!(2)).await;
    let (_, body) = server
        .get("/api/v1/agents/me/unread", Some(&amy.token))
        .await;
    assert_eq!(
        body,
        json!({"total": 1, "conversations": [{"conversation_id": c1, "unread_count": 1}]})
    );
    // Resolved chats leave the badge.
    server
        .post(
            &format!("/api/v1/conversations/{c1}/status"),
            Some(&amy.token),
            json!({"status": "resolved"}),
        )
        .await;
    let (_, body) = server
        .get("/api/v1/agents/me/unread", Some(&amy.token))
        .await;
    assert_eq!(body["total"], 0, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn event_lines_are_never_unread() {
    let (server, app, amy, bo) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server.visitor_says(&visitor, "v1", "hello").await;
    // Amy claims the chat: the log gets "Amy joined the conversation".
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{conv}/claim"),
            Some(&amy.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = server
        .get(
            &format!("/api/v1/conversations/{conv}/messages?after=0&limit=50"),
            Some(&amy.token),
        )
        .await;
    let kinds: Vec<&str> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["kind"].as_str().expect("kind"))
        .collect();
    assert!(
        kinds.contains(&"event"),
        "the claim left an event: {kinds:?}"
    );
    // One visitor message is one unread message, for every agent.
    assert_eq!(unread_of(&server, &amy, &conv).await, 1);
    assert_eq!(unread_of(&server, &bo, &conv).await, 1);
    let (_, body) = server
        .get("/api/v1/agents/me/unread", Some(&amy.token))
        .await;
    assert_eq!(body["total"], 1, "{body}");
    // The visitor has nothing unread: the event is no agent's message.
    assert_eq!(visitor_state(&server, &visitor).await["unread_count"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_visitor_side_has_its_own_unread_and_seen() {
    let (server, app, amy, bo) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server.visitor_says(&visitor, "v1", "hi").await;
    server.agent_says(&amy, &conv, "a1", "hello").await;
    server
        .agent_says(&amy, &conv, "a2", "how can I help?")
        .await;
    let (status, _) = server
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&bo.token),
            json!({"client_msg_id": "n1", "content": "VIP", "private": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Notes are not unread for the visitor; its own message is not either.
    let state = visitor_state(&server, &visitor).await;
    assert_eq!(
        state,
        json!({"conversation_id": conv, "read_seq": 0, "last_seq": 4, "unread_count": 2, "seen_seq": 0})
    );
    let read = visitor_reads(&server, &visitor, 3).await;
    assert_eq!(read["read_seq"], 3);
    assert_eq!(read["unread_count"], 0);
    // Agents see how far the visitor read; the visitor sees "seen".
    let (_, body) = server
        .get(&format!("/api/v1/conversations/{conv}"), Some(&amy.token))
        .await;
    assert_eq!(body["conversation"]["visitor_read_seq"], 3);
    agent_reads(&server, &bo, &conv, json!(1)).await;
    agent_reads(&server, &amy, &conv, json!(4)).await;
    assert_eq!(visitor_state(&server, &visitor).await["seen_seq"], 4);
    // Bo still has Amy's replies and nothing of his own note unread.
    assert_eq!(unread_of(&server, &bo, &conv).await, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn read_frames_reach_the_other_side_and_the_readers_other_connections() {
    let (server, app, amy, bo) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server.visitor_says(&visitor, "v1", "hi").await;
    server.agent_says(&amy, &conv, "a1", "hello").await;
    let mut amy_desk = server.ws(&amy.token, json!({})).await;
    let mut amy_laptop = server.ws(&amy.token, json!({})).await;
    let mut bo_ws = server.ws(&bo.token, json!({})).await;
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;
    let mut visitor_tab = server.ws(&visitor.token, json!({})).await;

    // The visitor read Amy's reply: every agent connection hears it.
    visitor_ws
        .send(json!({"type": "read", "conversation_id": conv, "seq": 2}))
        .await;
    for ws in [&mut amy_desk, &mut amy_laptop, &mut bo_ws] {
        let read = ws.next_of("read").await;
        assert_eq!(read["conversation_id"], conv.as_str());
        assert_eq!(read["seq"], 2);
        assert_eq!(read["sender"]["type"], "visitor");
        assert_eq!(read["sender"]["id"], visitor.visitor_id.as_str());
    }
    // Visitors never get visitors' read frames.
    visitor_tab.silent(Duration::from_millis(200)).await;

    // Amy reads on her desk: the visitor sees "seen", her laptop and Bo
    // clear their badges; the desk itself gets nothing back.
    amy_desk
        .send(json!({"type": "read", "conversation_id": conv, "seq": 1}))
        .await;
    for ws in [
        &mut visitor_ws,
        &mut visitor_tab,
        &mut amy_laptop,
        &mut bo_ws,
    ] {
        let read = ws.next_of("read").await;
        assert_eq!(read["seq"], 1);
        assert_eq!(read["sender"]["type"], "agent");
        assert_eq!(read["sender"]["id"], amy.id.as_str());
    }
    amy_desk.silent(Duration::from_millis(200)).await;

    // A repeat, or a step back, moves nothing and is not relayed.
    amy_desk
        .send(json!({"type": "read", "conversation_id": conv, "seq": 1}))
        .await;
    amy_laptop
        .send(json!({"type": "read", "conversation_id": conv, "seq": 0}))
        .await;
    visitor_ws.silent(Duration::from_millis(300)).await;

    // Over REST too: the marker is relayed with the clamped value.
    let (status, body) = agent_reads(&server, &amy, &conv, json!(50)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for ws in [&mut visitor_ws, &mut amy_desk, &mut amy_laptop, &mut bo_ws] {
        assert_eq!(ws.next_of("read").await["seq"], 2);
    }
    // The visitor's marker is already at 2: nothing moves, nothing relayed.
    visitor_reads(&server, &visitor, 2).await;
    amy_desk.silent(Duration::from_millis(200)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn markers_survive_a_restart() {
    let (server, app, amy, bo) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    for i in 0..4 {
        server.visitor_says(&visitor, &format!("v{i}"), "hi").await;
    }
    server.agent_says(&bo, &conv, "b1", "hello").await;
    agent_reads(&server, &amy, &conv, json!(3)).await;
    visitor_reads(&server, &visitor, 5).await;

    let server = server.restart().await;
    assert_eq!(unread_of(&server, &amy, &conv).await, 2);
    assert_eq!(unread_of(&server, &bo, &conv).await, 4);
    let state = visitor_state(&server, &visitor).await;
    assert_eq!(state["read_seq"], 5);
    assert_eq!(state["unread_count"], 0);
    assert_eq!(state["seen_seq"], 3);
    // Still forward-only after the restart.
    let (_, body) = agent_reads(&server, &amy, &conv, json!(1)).await;
    assert_eq!(body["read"]["read_seq"], 3);
    server.shutdown().await;
}

#[tokio::test]
async fn typing_is_coalesced_and_never_stored() {
    let (server, app, amy, _) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut agent_ws = server.ws(&amy.token, json!({})).await;
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;

    // A keystroke each: the agent hears "typing" once.
    for _ in 0..5 {
        visitor_ws
            .send(json!({"type": "typing", "conversation_id": conv, "on": true}))
            .await;
    }
    let typing = agent_ws.next_of("typing").await;
    assert_eq!(typing["on"], true);
    assert_eq!(typing["sender"]["type"], "visitor");
    // Stopping is a change: relayed at once, and only once.
    visitor_ws
        .send(json!({"type": "typing", "conversation_id": conv, "on": false}))
        .await;
    visitor_ws
        .send(json!({"type": "typing", "conversation_id": conv, "on": false}))
        .await;
    assert_eq!(agent_ws.next_of("typing").await["on"], false);
    agent_ws.silent(Duration::from_millis(300)).await;
    // Nothing stored, no unread.
    assert!(server.transcript(&amy.token, &conv).await.is_empty());
    assert_eq!(visitor_state(&server, &visitor).await["last_seq"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_agents_list_carries_each_conversations_last_message() {
    let (server, app, amy, _) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server.visitor_says(&visitor, "v1", "first").await;
    server
        .visitor_says(&visitor, "v2", "where is my tea?")
        .await;
    let (status, body) = server.get("/api/v1/conversations", Some(&amy.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = &body["conversations"][0];
    assert_eq!(listed["id"], json!(conv));
    assert_eq!(listed["last_message"]["seq"], listed["last_seq"]);
    assert_eq!(listed["last_message"]["content"], "where is my tea?");
    assert_eq!(listed["last_message"]["sender"]["type"], "visitor");
    assert_eq!(listed["read_seq"], 0);
    // The queue shows it too (the chat waits: nobody is online).
    let (_, body) = server.get("/api/v1/queue", Some(&amy.token)).await;
    assert_eq!(
        body["queue"][0]["conversation"]["last_message"]["content"],
        "where is my tea?"
    );
    agent_reads(&server, &amy, &conv, json!(2)).await;
    // An internal note is the last message an agent sees, in the list too.
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&amy.token),
            json!({"client_msg_id": "n1", "content": "VIP customer", "private": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = server
        .get(&format!("/api/v1/conversations/{conv}"), Some(&amy.token))
        .await;
    assert_eq!(body["conversation"]["last_message"]["kind"], "note");
    assert_eq!(body["conversation"]["read_seq"], 2);
    assert_eq!(
        body["conversation"]["last_message"]["content"],
        "VIP customer"
    );
    assert!(body["conversation"].get("last_said").is_none(), "{body}");
}

/// A chat list previews what a person said, not an event line: when the
/// last message is "Amy joined", `last_said` is the message before it.
#[tokio::test]
async fn an_event_line_at_the_end_comes_with_the_last_thing_a_person_said() {
    let (server, app, amy, _) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server
        .visitor_says(&visitor, "v1", "where is my tea?")
        .await;
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{conv}/claim"),
            Some(&amy.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for path in [
        "/api/v1/conversations".to_owned(),
        format!("/api/v1/conversations/{conv}"),
    ] {
        let (status, body) = server.get(&path, Some(&amy.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let listed = body
            .get("conversation")
            .cloned()
            .unwrap_or_else(|| body["conversations"][0].clone());
        assert_eq!(listed["last_message"]["kind"], "event", "{listed}");
        assert_eq!(listed["last_message"]["meta"]["event"], "assigned");
        assert_eq!(
            listed["last_said"]["content"], "where is my tea?",
            "{listed}"
        );
        assert_eq!(listed["last_said"]["sender"]["type"], "visitor");
    }
    // A person speaks again: the head is theirs, no `last_said`.
    server.agent_says(&amy, &conv, "a1", "on its way").await;
    let (_, body) = server
        .get(&format!("/api/v1/conversations/{conv}"), Some(&amy.token))
        .await;
    assert_eq!(
        body["conversation"]["last_message"]["content"],
        "on its way"
    );
    assert!(body["conversation"].get("last_said").is_none(), "{body}");
    server.shutdown().await;
}
