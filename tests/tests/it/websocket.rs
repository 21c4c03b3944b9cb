//! The WebSocket half of docs/PROTOCOL.md: hello/welcome, send/ack, fan-out,
//! resume, typing/read, errors and limits, over real sockets.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::SinkExt;
use kefu_tests::serde_json::{self as serde_json, Value, json};
use kefu_tests::{Closed, TestServer, Ws};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn shop() -> (TestServer, Value, kefu_tests::AgentClient) {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    (server, app, amy)
}

fn send_frame(conversation: &str, id: &str, content: &str) -> Value {
    json!({"type": "send", "client_msg_id": id, "conversation_id": conversation, "content": content, "meta": {}})
}

#[tokio::test]
async fn hello_is_required_and_checked() {
    let (server, app, amy) = shop().await;
    // Bad token.
    let mut ws = Ws::connect(&server.ws_url()).await;
    ws.send(json!({"type": "hello", "token": "kf_bad"})).await;
    assert_eq!(ws.closed().await, Closed::Code(4401));
    // First frame not a hello.
    let mut ws = Ws::connect(&server.ws_url()).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.closed().await, Closed::Code(4401));
    // Good tokens get a welcome with role and id.
    let mut ws = Ws::connect(&server.ws_url()).await;
    ws.send(json!({"type": "hello", "token": amy.token})).await;
    let welcome = ws.next().await;
    assert_eq!(
        welcome,
        json!({"type": "welcome", "role": "agent", "id": amy.id})
    );
    let visitor = server.visitor(&app).await;
    let mut ws = Ws::connect(&server.ws_url()).await;
    ws.send(json!({"type": "hello", "token": visitor.token, "resume": {}}))
        .await;
    let welcome = ws.next().await;
    assert_eq!(
        welcome,
        json!({"type": "welcome", "role": "visitor", "id": visitor.visitor_id})
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await, json!({"type": "pong"}));
    server.shutdown().await;
}

#[tokio::test]
async fn no_hello_in_time_closes_4401() {
    let server = TestServer::start_with(|c| c.ws.hello_timeout_secs = 1).await;
    let mut ws = Ws::connect(&server.ws_url()).await;
    assert_eq!(ws.closed().await, Closed::Code(4401));
    server.shutdown().await;
}

#[tokio::test]
async fn messages_flow_both_ways_once_each() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut agent_ws = server.ws(&amy.token, json!({})).await;
    let mut agent_tab2 = server.ws(&amy.token, json!({})).await;
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;

    visitor_ws
        .send(send_frame(&conv, "v1", "hello from the widget"))
        .await;
    let ack = visitor_ws.next().await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["client_msg_id"], "v1");
    assert_eq!(ack["message"]["seq"], 1);
    let got = agent_ws.next_of("message").await;
    assert_eq!(got["message"], ack["message"]);

    // The reply: the sending connection gets the ack, the agent's other
    // tab and the visitor get the message.
    agent_ws
        .send(send_frame(&conv, "a1", "hi, how can I help?"))
        .await;
    let ack = agent_ws.next_of("ack").await;
    assert_eq!(ack["message"]["seq"], 2);
    assert_eq!(
        visitor_ws.next_of("message").await["message"],
        ack["message"]
    );
    let mut tab2_seqs = Vec::new();
    for _ in 0..2 {
        tab2_seqs.push(
            agent_tab2.next_of("message").await["message"]["seq"]
                .as_u64()
                .expect("seq"),
        );
    }
    assert_eq!(tab2_seqs, vec![1, 2]);

    // A resend acks with the original and delivers nothing new.
    visitor_ws
        .send(send_frame(&conv, "v1", "hello from the widget"))
        .await;
    let ack = visitor_ws.next().await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["message"]["seq"], 1);
    agent_ws.silent(Duration::from_millis(300)).await;

    // Notes reach agents, never visitors.
    agent_ws.send(json!({"type": "send", "client_msg_id": "n1", "conversation_id": conv, "content": "internal", "private": true})).await;
    let ack = agent_ws.next_of("ack").await;
    assert_eq!(ack["message"]["kind"], "note");
    assert_eq!(
        agent_tab2.next_of("message").await["message"]["kind"],
        "note"
    );
    visitor_ws.silent(Duration::from_millis(300)).await;

    // REST sends fan out too.
    server.agent_says(&amy, &conv, "a2", "via REST").await;
    assert_eq!(visitor_ws.next_of("message").await["message"]["seq"], 4);
    assert_eq!(agent_ws.next_of("message").await["message"]["seq"], 4);
    server.shutdown().await;
}

#[tokio::test]
async fn typing_and_read_are_relayed() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server.visitor_says(&visitor, "v1", "hi").await;
    let mut agent_ws = server.ws(&amy.token, json!({})).await;
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;

    visitor_ws
        .send(json!({"type": "typing", "conversation_id": conv, "on": true}))
        .await;
    let typing = agent_ws.next_of("typing").await;
    assert_eq!(typing["conversation_id"], conv.as_str());
    assert_eq!(typing["on"], true);
    assert_eq!(typing["sender"]["type"], "visitor");
    agent_ws
        .send(json!({"type": "typing", "conversation_id": conv, "on": true}))
        .await;
    assert_eq!(
        visitor_ws.next_of("typing").await["sender"]["type"],
        "agent"
    );
    agent_ws
        .send(json!({"type": "read", "conversation_id": conv, "seq": 1}))
        .await;
    let read = visitor_ws.next_of("read").await;
    assert_eq!(read["seq"], 1);
    // Typing is never stored (read markers are, see tests/reads.rs).
    assert_eq!(server.transcript(&amy.token, &conv).await.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn resume_delivers_exactly_what_was_missed_then_live() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;
    visitor_ws.send(send_frame(&conv, "v1", "first")).await;
    assert_eq!(visitor_ws.next_of("ack").await["message"]["seq"], 1);
    drop(visitor_ws);

    // Missed while offline: replies and a note (not for the visitor).
    for i in 0..5 {
        server
            .agent_says(&amy, &conv, &format!("a{i}"), &format!("reply {i}"))
            .await;
    }
    server
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&amy.token),
            json!({"client_msg_id": "n", "content": "note", "private": true}),
        )
        .await;
    server.agent_says(&amy, &conv, "a5", "after the note").await;

    let mut visitor_ws = server.ws(&visitor.token, json!({ conv.clone(): 1 })).await;
    let mut seqs = Vec::new();
    for _ in 0..6 {
        let frame = visitor_ws.next_of("message").await;
        seqs.push(frame["message"]["seq"].as_u64().expect("seq"));
    }
    assert_eq!(seqs, vec![2, 3, 4, 5, 6, 8]);
    visitor_ws.silent(Duration::from_millis(300)).await;
    server.agent_says(&amy, &conv, "a6", "live").await;
    assert_eq!(visitor_ws.next_of("message").await["message"]["seq"], 9);

    // An agent resuming gets notes too.
    let mut agent_ws = server.ws(&amy.token, json!({ conv.clone(): 5 })).await;
    let mut seqs = Vec::new();
    for _ in 0..4 {
        seqs.push(
            agent_ws.next_of("message").await["message"]["seq"]
                .as_u64()
                .expect("seq"),
        );
    }
    assert_eq!(seqs, vec![6, 7, 8, 9]);
    server.shutdown().await;
}

/// Messages keep coming while clients reconnect with resume: each client
/// must end with every seq exactly once, in order.
#[tokio::test]
async fn resume_under_concurrent_sends_misses_and_doubles_nothing() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let total = 300u64;
    let sender = {
        let http = server.http.clone();
        let url = server.url(&format!("/api/v1/conversations/{conv}/messages"));
        let token = amy.token.clone();
        tokio::spawn(async move {
            for i in 0..total {
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"client_msg_id": format!("m{i}"), "content": format!("message {i}")}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 201);
            }
        })
    };
    let mut last = 0u64;
    let mut received = Vec::new();
    while last < total {
        let mut ws = server
            .ws(&visitor.token, json!({ conv.clone(): last }))
            .await;
        // Read a few, then drop the connection mid-stream.
        for _ in 0..25 {
            let Some(frame) = ws.try_next(Duration::from_secs(5)).await else {
                break;
            };
            if frame["type"] != "message" {
                continue;
            }
            let seq = frame["message"]["seq"].as_u64().expect("seq");
            assert_eq!(seq, last + 1, "gap or duplicate after {last}");
            last = seq;
            received.push(seq);
            if last == total {
                break;
            }
        }
    }
    sender.await.expect("sender");
    assert_eq!(received, (1..=total).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_senders_get_gap_free_seqs() {
    // 100 pipelined sends from one visitor: past the default burst.
    let mut server = TestServer::start_with(|c| c.limits.visitor_messages_per_second = 0).await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut tasks = Vec::new();
    for (who, token) in [
        ("v", visitor.token.clone()),
        ("a", amy.token.clone()),
        ("b", bo.token.clone()),
    ] {
        let url = server.ws_url();
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = Ws::connect(&url).await;
            ws.send(json!({"type": "hello", "token": token})).await;
            ws.next_of("welcome").await;
            // Pipelined: all sends first, then the acks.
            for i in 0..100 {
                ws.send(send_frame(&conv, &format!("{who}{i}"), "x")).await;
            }
            let mut seqs = Vec::new();
            while seqs.len() < 100 {
                let frame = ws.next().await;
                if frame["type"] == "ack" {
                    seqs.push(frame["message"]["seq"].as_u64().expect("seq"));
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=300).collect::<Vec<_>>());
    let transcript = server.transcript(&amy.token, &conv).await;
    assert_eq!(transcript.len(), 200); // a page; the rest is after 200
    let (_, rest) = server
        .get(
            &format!("/api/v1/conversations/{conv}/messages?after=200&limit=200"),
            Some(&amy.token),
        )
        .await;
    assert_eq!(rest["messages"].as_array().expect("rest").len(), 100);
    server.shutdown().await;
}

#[tokio::test]
async fn twenty_concurrent_identical_sends_store_one_message() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = server.http.clone();
        let url = server.url("/api/v1/visitor/messages");
        let token = visitor.token.clone();
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"client_msg_id": "same", "content": "once"}))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("json");
            (
                status,
                body["message"]["id"].as_str().expect("id").to_owned(),
            )
        }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for task in tasks {
        let (status, id) = task.await.expect("task");
        assert!(status == 200 || status == 201);
        if status == 201 {
            created += 1;
        }
        ids.insert(id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        server
            .transcript(&amy.token, &visitor.conversation_id)
            .await
            .len(),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_store_nothing() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let other = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut ws = server.ws(&visitor.token, json!({})).await;

    ws.send_text("not json".into()).await;
    assert_eq!(ws.next().await["code"], "bad_request");
    ws.send(json!({"type": "teleport"})).await;
    assert_eq!(ws.next().await["code"], "bad_request");
    ws.send(json!({"type": "send", "conversation_id": conv, "content": "no id"}))
        .await;
    assert_eq!(ws.next().await["code"], "bad_request");
    ws.send(send_frame(&conv, "bad id!", "x")).await;
    assert_eq!(ws.next().await["code"], "bad_request");
    ws.send(send_frame(&conv, "big", &"x".repeat(16 * 1024 + 1)))
        .await;
    let error = ws.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "payload_too_large");
    assert_eq!(error["client_msg_id"], "big");
    ws.send(json!({"type": "send", "client_msg_id": "m", "conversation_id": conv, "content": "x", "meta": "str"})).await;
    assert_eq!(ws.next().await["code"], "bad_request");
    // Someone else's conversation.
    ws.send(send_frame(&other.conversation_id, "steal", "x"))
        .await;
    let error = ws.next().await;
    assert_eq!(error["code"], "forbidden");
    assert_eq!(error["client_msg_id"], "steal");
    // Visitors cannot write notes.
    ws.send(json!({"type": "send", "client_msg_id": "n", "conversation_id": conv, "content": "x", "private": true})).await;
    assert_eq!(ws.next().await["code"], "forbidden");

    // Still open and working.
    ws.send(send_frame(&conv, "good", "fine")).await;
    assert_eq!(ws.next().await["message"]["seq"], 1);
    assert_eq!(server.transcript(&amy.token, &conv).await.len(), 1);
    assert!(
        server
            .transcript(&amy.token, &other.conversation_id)
            .await
            .is_empty()
    );

    // Agents must name an existing conversation.
    let mut agent_ws = server.ws(&amy.token, json!({})).await;
    agent_ws
        .send(json!({"type": "send", "client_msg_id": "x", "content": "x"}))
        .await;
    assert_eq!(agent_ws.next_of("error").await["code"], "bad_request");
    agent_ws
        .send(send_frame("01ARZ3NDEKTSV4RRFFQ69G5FAV", "x", "x"))
        .await;
    assert_eq!(agent_ws.next_of("error").await["code"], "not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut ws = server.ws(&visitor.token, json!({})).await;
    let huge = send_frame(&conv, "huge", &"x".repeat(70 * 1024)).to_string();
    let _ = ws.stream.send(WsMessage::Text(huge.into())).await;
    assert_eq!(ws.closed().await, Closed::Code(1009));
    assert!(server.transcript(&amy.token, &conv).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn visitors_only_ever_see_their_own_conversation() {
    let (server, app, amy) = shop().await;
    let alice = server.visitor(&app).await;
    let bob = server.visitor(&app).await;
    let mut alice_ws = server
        .ws(&alice.token, json!({ bob.conversation_id.clone(): 0 }))
        .await;
    // Resuming someone else's conversation is refused.
    assert_eq!(alice_ws.next().await["code"], "forbidden");
    let mut bob_ws = server.ws(&bob.token, json!({})).await;
    server.visitor_says(&bob, "b1", "bob's secret").await;
    server
        .agent_says(&amy, &bob.conversation_id, "a1", "reply to bob")
        .await;
    // Bob's socket gets his own REST send (another device of his) and the reply.
    assert_eq!(
        bob_ws.next_of("message").await["message"]["content"],
        "bob's secret"
    );
    assert_eq!(
        bob_ws.next_of("message").await["message"]["content"],
        "reply to bob"
    );
    alice_ws.silent(Duration::from_millis(300)).await;

    // No REST route gives Alice anything of Bob's, or any agent data.
    let (_, page) = server
        .get("/api/v1/visitor/messages", Some(&alice.token))
        .await;
    assert!(page["messages"].as_array().expect("messages").is_empty());
    for path in [
        format!("/api/v1/conversations/{}/messages", bob.conversation_id),
        format!("/api/v1/conversations/{}", bob.conversation_id),
        "/api/v1/conversations".to_owned(),
        "/api/v1/tickets".to_owned(),
        "/api/v1/agents".to_owned(),
    ] {
        let (status, body) = server.get(&path, Some(&alice.token)).await;
        kefu_tests::assert_error(status, &body, 403, "forbidden");
    }
    let (status, body) = server
        .agent_says(
            &kefu_tests::AgentClient {
                id: String::new(),
                username: String::new(),
                token: alice.token.clone(),
            },
            &bob.conversation_id,
            "x",
            "x",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // Typing into Bob's conversation is refused too.
    alice_ws
        .send(json!({"type": "typing", "conversation_id": bob.conversation_id, "on": true}))
        .await;
    assert_eq!(alice_ws.next().await["code"], "forbidden");
    bob_ws.silent(Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_dropped_without_stalling_others() {
    let mut server = TestServer::start_with(|c| {
        c.limits.ws_outbound_queue = 256;
        c.limits.visitor_messages_per_second = 0;
    })
    .await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    // Amy's connection never reads; Bo reads everything.
    let mut stalled = Ws::connect_with_small_buffer(&server.ws_url()).await;
    stalled
        .send(json!({"type": "hello", "token": amy.token}))
        .await;
    let mut reader = server.ws(&bo.token, json!({})).await;
    let sender = server.ws(&visitor.token, json!({})).await;
    let content = "x".repeat(16 * 1024 - 100);
    let total = 1000;
    let read_all = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < total {
            let frame = reader.next().await;
            if frame["type"] == "message" {
                seqs.push(frame["message"]["seq"].as_u64().expect("seq"));
            }
        }
        seqs
    });
    // Send and read acks at the same time, as a real client would.
    let (mut sink, mut stream) = futures_util::StreamExt::split(sender.stream);
    let acks = tokio::spawn(async move {
        let mut acks = 0;
        while acks < total {
            match futures_util::StreamExt::next(&mut stream).await {
                Some(Ok(WsMessage::Text(text)))
                    if text.as_str().starts_with(r#"{"type":"ack""#) =>
                {
                    acks += 1
                }
                Some(Ok(_)) => {}
                other => panic!("sender stream ended: {other:?}"),
            }
        }
    });
    for i in 0..total {
        let frame = send_frame(&conv, &format!("m{i}"), &content).to_string();
        sink.send(WsMessage::Text(frame.into()))
            .await
            .expect("send");
    }
    tokio::time::timeout(Duration::from_secs(60), acks)
        .await
        .expect("acks in time")
        .expect("acks");
    let seqs = tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("reader kept up")
        .expect("task");
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
    // The stalled client was cut off: what it finally reads ends (with a
    // 1013 close frame if the server could still get one through).
    let end = stalled.closed().await;
    assert!(
        matches!(end, Closed::Code(1013) | Closed::NoCode),
        "{end:?}"
    );
    let (_, metrics) = server.get("/metrics", None).await;
    let line = metrics
        .as_str()
        .expect("text")
        .lines()
        .find(|l| l.starts_with("kefu_ws_slow_clients_dropped_total"))
        .expect("metric")
        .to_owned();
    assert!(!line.ends_with(" 0"), "{line}");
    server.shutdown().await;
}

#[tokio::test]
async fn origin_is_checked_for_visitor_websockets() {
    let mut server = TestServer::start().await;
    let app = server
        .app(json!({"allowed_origins": ["https://shop.example"]}))
        .await;
    let visitor = server.visitor(&app).await;
    let url = server.ws_url();
    let request = |origin: &str, query: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("{url}{query}")
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header"));
        request
    };
    // With ?app_key the handshake itself is refused.
    let refused = tokio_tungstenite::connect_async(request(
        "https://evil.example",
        &format!("?app_key={}", app["app_key"].as_str().expect("key")),
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // Without it, the hello is refused with 4403.
    let (stream, _) = tokio_tungstenite::connect_async(request("https://evil.example", ""))
        .await
        .expect("connect");
    let mut ws = Ws { stream };
    ws.send(json!({"type": "hello", "token": visitor.token}))
        .await;
    assert_eq!(ws.closed().await, Closed::Code(4403));
    // The allowed origin works.
    let (stream, _) = tokio_tungstenite::connect_async(request("https://shop.example", ""))
        .await
        .expect("connect");
    let mut ws = Ws { stream };
    ws.send(json!({"type": "hello", "token": visitor.token}))
        .await;
    assert_eq!(ws.next().await["type"], "welcome");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let (server, _app, amy) = shop().await;
    let mut ws = server.ws(&amy.token, json!({})).await;
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(ws.closed().await, Closed::Code(1001));
    stopping.await.expect("shutdown");
}

#[tokio::test]
async fn conversation_and_ticket_frames_reach_agents() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let mut ws = server.ws(&amy.token, json!({})).await;
    server.visitor_says(&visitor, "c1", "hi").await;
    let frame = ws.next_of("conversation").await;
    assert_eq!(frame["conversation"]["status"], "queued");
    server
        .post(
            &format!("/api/v1/conversations/{}/assign", visitor.conversation_id),
            Some(&amy.token),
            json!({"agent_id": amy.id}),
        )
        .await;
    let frame = ws.next_of("conversation").await;
    assert_eq!(frame["conversation"]["assignee_id"], amy.id.as_str());
    let (status, _) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "Refund", "conversation_id": visitor.conversation_id}),
        )
        .await;
    assert_eq!(status, 201);
    let frame = ws.next_of("ticket").await;
    assert_eq!(frame["ticket"]["subject"], "Refund");
    server.shutdown().await;
}

#[tokio::test]
async fn connection_and_resume_limits_are_enforced() {
    let mut server = TestServer::start_with(|c| {
        c.limits.max_connections = 2;
        c.limits.resume_conversations = 3;
    })
    .await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let _first = server.ws(&amy.token, json!({})).await;
    let mut second = Ws::connect(&server.ws_url()).await;
    // A third connection is refused at the handshake with 503.
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // Resume names at most 3 conversations.
    let too_many: Value = (0..4)
        .map(|i| (format!("01ARZ3NDEKTSV4RRFFQ69G5FA{i}"), json!(0)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    second
        .send(json!({"type": "hello", "token": visitor.token, "resume": too_many}))
        .await;
    assert_eq!(second.closed().await, Closed::Code(1009));
    // Its slot is free again.
    let mut third = server.ws(&visitor.token, json!({})).await;
    third.send(json!({"type": "ping"})).await;
    assert_eq!(third.next().await["type"], "pong");
    server.shutdown().await;
}

#[tokio::test]
async fn pings_keep_a_reading_client_and_silence_closes_4408() {
    let mut server = TestServer::start_with(|c| {
        c.ws.ping_interval_secs = 1;
        c.ws.idle_timeout_secs = 3;
    })
    .await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;

    // A visitor that keeps reading answers every ping (the client library
    // pongs as it reads) and outlives the idle timeout twice over.
    let mut live = server.ws(&visitor.token, json!({})).await;
    let mut silent = server.ws(&amy.token, json!({})).await;
    assert_eq!(server.state().hub.connection_count(), 2);
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(6_500);
    while let Ok(Some(message)) =
        tokio::time::timeout_at(until, futures_util::StreamExt::next(&mut live.stream)).await
    {
        match message.expect("frame") {
            WsMessage::Ping(_) => pings += 1,
            WsMessage::Close(frame) => panic!("a reading client was closed: {frame:?}"),
            _ => {}
        }
    }
    assert!(pings >= 5, "one ping a second, got {pings} in 6.5 s");

    // The agent's socket was never read, so it never answered: the server
    // dropped it as idle (after 3 s). Reading it now gives its queued pings,
    // then the 4408 close frame, unless the client library's late pongs
    // meet the closed socket first and the reset discards the frame.
    assert_eq!(
        server.state().hub.connection_count(),
        1,
        "only the reader is left"
    );
    let end = silent.closed().await;
    assert!(
        matches!(end, Closed::Code(4408) | Closed::NoCode),
        "{end:?}"
    );

    // The live one still works.
    live.send(send_frame(&visitor.conversation_id, "late", "still there?"))
        .await;
    assert_eq!(live.next_of("ack").await["client_msg_id"], "late");
}
