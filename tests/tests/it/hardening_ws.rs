//! Issue 23, the sessions and WebSocket half, against the real server over
//! real sockets: revoked sessions lose their sockets at once (4401), the
//! WebSocket parser refuses what REST refuses (types, `meta` depth and
//! size), visitors' message rate (REST and WebSocket share one bucket), a
//! client that never reads is closed and released, and close codes 1009,
//! 1002 and 1007 reach the client every time, followed by a clean TCP
//! close rather than a reset.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, Closed, TestServer, WAIT, Ws};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn shop_with(
    adjust: impl FnOnce(&mut kefu_server::Config),
) -> (TestServer, Value, AgentClient) {
    let mut server = TestServer::start_with(adjust).await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    (server, app, amy)
}

async fn shop() -> (TestServer, Value, AgentClient) {
    shop_with(|_| {}).await
}

async fn login(server: &TestServer, username: &str, password: &str) -> String {
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": username, "password": password}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

fn send_frame(id: &str, content: &str) -> Value {
    json!({"type": "send", "client_msg_id": id, "content": content})
}

/// `levels` objects nested in each other: `{"a":{"a":…{}…}}`.
fn nested(levels: usize) -> String {
    format!(
        "{}{{}}{}",
        "{\"a\":".repeat(levels - 1),
        "}".repeat(levels - 1)
    )
}

/// Waits until `check` holds, polling; panics after `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- 1, 2: every revocation closes the matching sockets -----------------

#[tokio::test]
async fn logout_closes_that_tokens_sockets_at_once_and_no_others() {
    let (server, app, amy) = shop().await;
    let other = login(&server, "amy", "agent-password").await;
    let mut first = server.ws(&amy.token, json!({})).await;
    let mut second = server.ws(&amy.token, json!({})).await;
    let mut kept = server.ws(&other, json!({})).await;
    let (status, _) = server
        .post("/api/v1/auth/logout", Some(&amy.token), json!({}))
        .await;
    assert_eq!(status, 200);
    // Both sockets of the logged-out token end with 4401, now: not at the
    // next message, not at the next ping.
    assert_eq!(first.closed().await, Closed::Code(4401));
    assert_eq!(second.closed().await, Closed::Code(4401));
    // The same agent's other session keeps streaming.
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "v1", "still there?").await;
    assert_eq!(
        kept.next_of("message").await["message"]["content"],
        "still there?"
    );
    // And the revoked token authenticates no later hello.
    let mut again = Ws::connect(&server.ws_url()).await;
    again
        .send(json!({"type": "hello", "token": amy.token}))
        .await;
    assert_eq!(again.closed().await, Closed::Code(4401));
    server.shutdown().await;
}

#[tokio::test]
async fn a_password_change_closes_the_other_sessions_sockets_but_not_its_own() {
    let (server, app, amy) = shop().await;
    let other = login(&server, "amy", "agent-password").await;
    let mut own = server.ws(&amy.token, json!({})).await;
    let mut elsewhere = server.ws(&other, json!({})).await;
    let (status, body) = server
        .patch(
            "/api/v1/agents/me",
            Some(&amy.token),
            json!({"password": "a-new-password", "current_password": "agent-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(elsewhere.closed().await, Closed::Code(4401));
    assert_eq!(server.get("/api/v1/agents/me", Some(&other)).await.0, 401);
    // The session that made the change keeps its socket and its token.
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "v1", "hello").await;
    assert_eq!(own.next_of("message").await["message"]["content"], "hello");
    assert_eq!(
        server.get("/api/v1/agents/me", Some(&amy.token)).await.0,
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_admin_reset_and_a_deactivation_close_sockets_with_4401() {
    let (mut server, _app, amy) = shop().await;
    let bob = server.agent("bob").await;
    let admin = server.admin().await;
    let mut amy_ws = server.ws(&amy.token, json!({})).await;
    let mut bob_ws = server.ws(&bob.token, json!({})).await;
    let (status, body) = server
        .patch(
            &format!("/api/v1/agents/{}", amy.id),
            Some(&admin),
            json!({"password": "reset-by-admin"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // 4401, final: the client must sign in again (1013 would make it retry).
    assert_eq!(amy_ws.closed().await, Closed::Code(4401));
    let (status, body) = server
        .patch(
            &format!("/api/v1/agents/{}", bob.id),
            Some(&admin),
            json!({"active": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bob_ws.closed().await, Closed::Code(4401));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_racing_a_logout_never_outlives_it() {
    // Twenty sign-ins in a row: past the password-attempt budgets.
    let (server, _app, _amy) = shop_with(|c| {
        c.limits.login_per_minute = 0;
        c.limits.password_attempts_per_account_per_hour = 0;
    })
    .await;
    for round in 0..20 {
        let token = login(&server, "amy", "agent-password").await;
        let mut ws = Ws::connect(&server.ws_url()).await;
        let hello = ws.send(json!({"type": "hello", "token": token}));
        let logout = server.post("/api/v1/auth/logout", Some(&token), json!({}));
        let ((), (status, _)) = tokio::join!(hello, logout);
        assert_eq!(status, 200);
        // Refused, or welcomed and then closed: either way 4401, and never
        // a socket that stays open on a revoked token.
        assert_eq!(ws.closed().await, Closed::Code(4401), "round {round}");
    }
    eventually(WAIT, "every socket gone", || {
        server.state().hub.connection_count() == 0
    })
    .await;
    server.shutdown().await;
}

// ---- 4, 19: the WebSocket refuses what REST refuses -------------------

#[tokio::test]
async fn websocket_frames_are_checked_as_rest_checks_a_body() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut ws = server.ws(&visitor.token, json!({})).await;
    let mut agent_ws = server.ws(&amy.token, json!({})).await;

    // Each frame is refused with its code, echoing `client_msg_id` when it
    // is a string; nothing is stored.
    let refused = [
        (
            format!(
                r#"{{"type":"send","client_msg_id":"d200","content":"x","meta":{}}}"#,
                nested(200)
            ),
            "bad_request",
        ),
        (
            format!(
                r#"{{"type":"send","client_msg_id":"d127","content":"x","meta":{}}}"#,
                nested(127)
            ),
            "bad_request",
        ),
        (
            format!(
                r#"{{"type":"send","client_msg_id":"d33","content":"x","meta":{}}}"#,
                nested(33)
            ),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"m1","content":"x","meta":5}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"m2","content":"x","meta":[]}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"m3","content":"x","meta":"{}"}"#.to_owned(),
            "bad_request",
        ),
        (
            format!(
                r#"{{"type":"send","client_msg_id":"big","content":"x","meta":{{"a":{{"b":"{}"}}}}}}"#,
                "y".repeat(5_000)
            ),
            "payload_too_large",
        ),
        (
            r#"{"type":"send","client_msg_id":"c1","conversation_id":5,"content":"x"}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"c2","conversation_id":true,"content":"x"}"#
                .to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"c3","conversation_id":[],"content":"x"}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"c4","conversation_id":{},"content":"x"}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":7,"content":"x"}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"p1","content":"x","private":"no"}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"t1","content":["x"]}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"type":"send","client_msg_id":"r1","content":"x","content":"y"}"#.to_owned(),
            "bad_request",
        ),
    ];
    for (frame, code) in &refused {
        ws.send_text(frame.clone()).await;
        let error = ws.next().await;
        assert_eq!(error["type"], "error", "{frame}");
        assert_eq!(error["code"], *code, "{frame}: {error}");
        let echoed = kefu_tests::serde_json::from_str::<Value>(frame)
            .ok()
            .and_then(|f| f["client_msg_id"].as_str().map(str::to_owned));
        if let Some(id) = echoed {
            assert_eq!(error["client_msg_id"], id.as_str(), "{frame}");
        }
    }
    // `read` and `typing` with a conversation id or a value of the wrong
    // type: refused, nothing marked, nothing relayed.
    for frame in [
        r#"{"type":"typing","conversation_id":5,"on":true}"#,
        r#"{"type":"typing","conversation_id":[],"on":true}"#,
        r#"{"type":"typing","on":"yes"}"#,
        r#"{"type":"read","conversation_id":true,"seq":1}"#,
        r#"{"type":"read","conversation_id":{},"seq":1}"#,
        r#"{"type":"read","seq":"1"}"#,
    ] {
        ws.send_text(frame.to_owned()).await;
        assert_eq!(ws.next().await["code"], "bad_request", "{frame}");
    }
    agent_ws.silent(Duration::from_millis(300)).await;
    assert!(server.transcript(&amy.token, &conv).await.is_empty());

    // 32 levels is the limit: stored, and read back on every path.
    let deepest = format!(
        r#"{{"type":"send","client_msg_id":"d32","content":"deep","meta":{}}}"#,
        nested(32)
    );
    ws.send_text(deepest).await;
    let ack = ws.next_of("ack").await;
    assert_eq!(ack["message"]["seq"], 1, "{ack}");
    let transcript = server.transcript(&amy.token, &conv).await;
    assert_eq!(transcript.len(), 1);
    assert_eq!(
        transcript[0]["meta"],
        kefu_tests::serde_json::from_str::<Value>(&nested(32)).expect("json")
    );
    let (status, page) = server
        .get("/api/v1/visitor/messages", Some(&visitor.token))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["content"], "deep");
    let mut resumed = server.ws(&visitor.token, json!({ conv.clone(): 0 })).await;
    assert_eq!(resumed.next_of("message").await["message"]["seq"], 1);
    // The connection stayed open through all of it.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await["type"], "pong");
    server.shutdown().await;
}

#[tokio::test]
async fn rest_applies_the_same_meta_depth() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    for (levels, status) in [(33, 400), (127, 400), (200, 400), (32, 201)] {
        let body = format!(
            r#"{{"client_msg_id":"d{levels}","content":"x","meta":{}}}"#,
            nested(levels)
        );
        let (got, answer) = server
            .post_raw(
                "/api/v1/visitor/messages",
                Some(&visitor.token),
                body.clone().into_bytes(),
            )
            .await;
        assert_eq!(got.as_u16(), status, "{levels}: {answer}");
        let path = format!("/api/v1/conversations/{}/messages", visitor.conversation_id);
        let (got, answer) = server
            .post_raw(
                &path,
                Some(&amy.token),
                body.replace("\"d", "\"a").into_bytes(),
            )
            .await;
        assert_eq!(got.as_u16(), status, "agent, {levels}: {answer}");
    }
    let transcript = server
        .transcript(&amy.token, &visitor.conversation_id)
        .await;
    assert_eq!(transcript.len(), 2);
    server.shutdown().await;
}

// ---- 9: visitors' message rate ---------------------------------------

#[tokio::test]
async fn a_visitor_flood_is_refused_over_rest_and_websocket_alike() {
    let (server, app, amy) = shop_with(|c| {
        c.limits.visitor_messages_per_second = 1;
        c.limits.visitor_message_burst = 3;
    })
    .await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..10 {
        let response = server
            .http
            .post(server.url("/api/v1/visitor/messages"))
            .bearer_auth(&visitor.token)
            .json(&json!({"client_msg_id": format!("r{i}"), "content": "spam"}))
            .send()
            .await
            .expect("request");
        match response.status().as_u16() {
            201 => accepted += 1,
            429 => {
                let retry_after: u64 = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("Retry-After in whole seconds");
                let (_, body) = kefu_tests::read(response).await;
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                assert!(retry_after >= 1, "{retry_after}");
                refusal.get_or_insert(retry_after);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refusal.is_some(), "10 sends in a row, a burst of 3");
    assert_eq!(
        server.transcript(&amy.token, &conv).await.len(),
        accepted,
        "refused sends store nothing"
    );
    // The WebSocket spends the same bucket: refused, and still open.
    let mut ws = server.ws(&visitor.token, json!({})).await;
    let mut refused_frame = None;
    for i in 0..5 {
        ws.send(send_frame(&format!("w{i}"), "spam")).await;
        let answer = ws.next().await;
        if answer["type"] == "error" {
            refused_frame = Some(answer);
            break;
        }
        assert_eq!(answer["type"], "ack", "{answer}");
        accepted += 1;
    }
    let refused_frame = refused_frame.expect("the shared bucket is empty");
    assert_eq!(refused_frame["code"], "rate_limited");
    assert!(refused_frame["client_msg_id"].as_str().is_some());
    let wait = refused_frame["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms");
    assert!(wait >= 1, "{refused_frame}");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await["type"], "pong");
    assert_eq!(server.transcript(&amy.token, &conv).await.len(), accepted);
    // Once the wait is over, the next one goes through.
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    ws.send(send_frame("after-wait", "calm")).await;
    assert_eq!(ws.next().await["type"], "ack");
    // Agents are not limited.
    for i in 0..15 {
        let (status, _) = server
            .agent_says(&amy, &conv, &format!("a{i}"), "bulk")
            .await;
        assert_eq!(status, 201);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_rate_lets_a_burst_of_twenty_through_then_refuses() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let mut ws = server.ws(&visitor.token, json!({})).await;
    // Pipelined, as a client flushing its outbox after a reconnect does.
    for i in 0..40 {
        ws.send(send_frame(&format!("b{i}"), "queued while offline"))
            .await;
    }
    let (mut acks, mut refused) = (0, 0);
    while acks + refused < 40 {
        let frame = ws.next().await;
        match frame["type"].as_str() {
            Some("ack") => acks += 1,
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                refused += 1;
            }
            _ => panic!("{frame}"),
        }
    }
    assert!(acks >= 20, "the burst of 20 passes: {acks}");
    assert!(refused > 0, "40 at once is more than the burst");
    assert_eq!(
        server
            .transcript(&amy.token, &visitor.conversation_id)
            .await
            .len(),
        acks
    );
    server.shutdown().await;
}

// ---- 16: a client that never reads -------------------------------------

/// A server where only the condition under test can drop a client: no
/// message rate, and the given queue bound and write deadline.
async fn flood_shop(queue: usize, write_timeout_secs: u64) -> (TestServer, Value, AgentClient) {
    shop_with(|c| {
        c.limits.visitor_messages_per_second = 0;
        c.limits.ws_outbound_queue = queue;
        c.ws.write_timeout_secs = write_timeout_secs;
    })
    .await
}

/// An agent connection with a tiny receive buffer that never reads.
async fn stalled_agent(server: &TestServer, agent: &AgentClient) -> Ws {
    let mut ws = Ws::connect_with_small_buffer(&server.ws_url()).await;
    ws.send(json!({"type": "hello", "token": agent.token}))
        .await;
    ws
}

/// A visitor sends `total` messages of 16 KB, reading its acks.
async fn flood(server: &TestServer, app: &Value, total: usize) {
    let visitor = server.visitor(app).await;
    let sender = server.ws(&visitor.token, json!({})).await;
    let (mut sink, mut stream) = sender.stream.split();
    let acks = tokio::spawn(async move {
        let mut acks = 0;
        while acks < total {
            match stream.next().await {
                Some(Ok(WsMessage::Text(text))) if text.as_str().contains(r#""type":"ack""#) => {
                    acks += 1
                }
                Some(Ok(_)) => {}
                other => panic!("sender ended: {other:?}"),
            }
        }
    });
    let content = "x".repeat(16 * 1024 - 100);
    for i in 0..total {
        let frame = send_frame(&format!("f{i}"), &content).to_string();
        sink.send(WsMessage::Text(frame.into()))
            .await
            .expect("send");
    }
    tokio::time::timeout(Duration::from_secs(120), acks)
        .await
        .expect("acks in time")
        .expect("acks");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_when_a_write_times_out() {
    // The queue (4,096) never fills with 600 frames: only the write
    // deadline can end the stalled connection.
    let (server, app, amy) = flood_shop(4_096, 2).await;
    let mut stalled = stalled_agent(&server, &amy).await;
    eventually(WAIT, "the stalled agent is connected", || {
        server
            .state()
            .hub
            .agent_connections(amy.id.parse().expect("agent id"))
            == 1
    })
    .await;
    // ~10 MB: more than the kernel buffers on both sides and tungstenite's.
    flood(&server, &app, 600).await;
    eventually(
        Duration::from_secs(60),
        "the stalled connection closed",
        || {
            server
                .state()
                .hub
                .agent_connections(amy.id.parse().expect("agent id"))
                == 0
        },
    )
    .await;
    let (_, metrics) = server.get("/metrics", None).await;
    let metrics = metrics.as_str().expect("text").to_owned();
    assert_eq!(
        metric(&metrics, "kefu_ws_connections{role=\"agent\"}"),
        0,
        "{metrics}"
    );
    assert!(metric(&metrics, "kefu_ws_slow_clients_dropped_total") >= 1);
    // Once it reads, the client sees what was buffered, then the end.
    let end = stalled.closed().await;
    assert!(
        matches!(end, Closed::Code(1013) | Closed::NoCode),
        "{end:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_when_its_queue_overflows() {
    // A write deadline far away: only the queue bound can end it, and it
    // must, although the connection's task is stuck in a write.
    let (server, app, amy) = flood_shop(64, 3_600).await;
    let mut stalled = stalled_agent(&server, &amy).await;
    eventually(WAIT, "the stalled agent is connected", || {
        server
            .state()
            .hub
            .agent_connections(amy.id.parse().expect("agent id"))
            == 1
    })
    .await;
    flood(&server, &app, 600).await;
    eventually(
        Duration::from_secs(60),
        "the stalled connection closed",
        || {
            server
                .state()
                .hub
                .agent_connections(amy.id.parse().expect("agent id"))
                == 0
        },
    )
    .await;
    let (_, metrics) = server.get("/metrics", None).await;
    let metrics = metrics.as_str().expect("text").to_owned();
    assert_eq!(
        metric(&metrics, "kefu_ws_connections{role=\"agent\"}"),
        0,
        "{metrics}"
    );
    let end = stalled.closed().await;
    assert!(
        matches!(end, Closed::Code(1013) | Closed::NoCode),
        "{end:?}"
    );
    server.shutdown().await;
}

// ---- 18: close codes that arrive --------------------------------------

/// A visitor's socket past its hello.
async fn visitor_socket(server: &TestServer, app: &Value) -> Ws {
    let visitor = server.visitor(app).await;
    server.ws(&visitor.token, json!({})).await
}

/// Writes raw bytes on the client's TCP stream, under the WebSocket layer.
async fn write_raw(ws: &mut Ws, bytes: &[u8]) {
    match ws.stream.get_mut() {
        MaybeTlsStream::Plain(tcp) => tcp.write_all(bytes).await.expect("raw write"),
        _ => panic!("plain TCP expected"),
    }
}

/// How the server ended the connection: its close frame, then what the raw
/// TCP stream gives after it, `"fin"` (a clean close) or `"reset"`. A RST
/// is what loses close frames: a client still writing gets the reset on
/// its write and gives up (browsers report 1006), and some systems discard
/// the unread receive queue on a RST.
async fn closed_with(ws: &mut Ws) -> (Closed, &'static str) {
    use tokio::io::AsyncReadExt;
    let code = ws.closed().await;
    let MaybeTlsStream::Plain(tcp) = ws.stream.get_mut() else {
        panic!("plain TCP expected");
    };
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buffer)).await {
            Err(_) => panic!("the server neither closed nor reset within {WAIT:?}"),
            Ok(Ok(0)) => return (code, "fin"),
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => return (code, "reset"),
        }
    }
}

/// A client frame (masked with a zero key, so the payload reads as is)
/// with the given first byte (FIN, RSV and opcode).
fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn an_oversized_frame_always_ends_with_1009() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    let limit = server.config().limits.ws_frame_bytes;
    // One byte over the limit, written at once as a browser does.
    let oversized = "x".repeat(limit + 1);
    for attempt in 0..50 {
        let mut ws = server.ws(&visitor.token, json!({})).await;
        let _ = ws
            .stream
            .send(WsMessage::Text(oversized.clone().into()))
            .await;
        assert_eq!(
            closed_with(&mut ws).await,
            (Closed::Code(1009), "fin"),
            "attempt {attempt}"
        );
    }
    // As the first frame too, before any hello.
    for attempt in 0..10 {
        let mut ws = Ws::connect(&server.ws_url()).await;
        let _ = ws
            .stream
            .send(WsMessage::Text(oversized.clone().into()))
            .await;
        assert_eq!(
            closed_with(&mut ws).await,
            (Closed::Code(1009), "fin"),
            "hello {attempt}"
        );
    }
    assert!(
        server
            .transcript(&amy.token, &visitor.conversation_id)
            .await
            .is_empty()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_violations_end_with_1002_and_bad_utf8_with_1007() {
    let (server, app, _amy) = shop().await;
    let cases: [(&str, Vec<u8>, u16); 5] = [
        // A client frame without a mask.
        ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002),
        // RSV1 set with no extension negotiated.
        ("reserved bit", raw_frame(0xC1, b"hi"), 1002),
        // Opcode 3 is reserved.
        ("reserved opcode", raw_frame(0x83, b""), 1002),
        // A continuation with nothing to continue.
        ("stray continuation", raw_frame(0x80, b"hi"), 1002),
        // Text that is not UTF-8.
        ("not UTF-8", raw_frame(0x81, &[0xff, 0xfe, 0xfd]), 1007),
    ];
    for (what, bytes, code) in &cases {
        for attempt in 0..10 {
            let mut ws = visitor_socket(&server, &app).await;
            write_raw(&mut ws, bytes).await;
            assert_eq!(
                closed_with(&mut ws).await,
                (Closed::Code(*code), "fin"),
                "{what}, attempt {attempt}"
            );
        }
    }
    // Before the hello as well.
    let mut ws = Ws::connect(&server.ws_url()).await;
    write_raw(&mut ws, &raw_frame(0x81, &[0xc3, 0x28])).await;
    assert_eq!(closed_with(&mut ws).await, (Closed::Code(1007), "fin"));
    server.shutdown().await;
}
