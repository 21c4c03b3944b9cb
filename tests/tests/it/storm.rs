//! Issue 24, the 双十一 storm: a visitor's first message is acked once it
//! is durable, and the conversation's start (status, queue, routing, the
//! report event, the agents' `conversation` frame) follows off the ack
//! path, batched, crash-safe: derivable from the log's `conv_start`
//! markers and completed at restart.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kefu_server::config::Durability;
use kefu_server::ids::{ConversationId, VisitorId};
use kefu_server::message::{MessageKind, Sender, SenderType};
use kefu_server::store::messages::{Draft, LogMetrics, MessageLog};
use kefu_tests::serde_json::{Value, json};
use kefu_tests::{TestServer, Ws};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Many first messages at once, from WebSocket visitors, while an agent
/// watches: each is acked, each conversation is started once (its status,
/// `queued_at`, one report event), and the agent gets a `conversation`
/// frame for each.
#[tokio::test]
async fn a_burst_of_first_messages_is_acked_and_every_chat_starts_once() {
    let mut server = TestServer::start_with(|config| {
        config.limits.visitor_messages_per_second = 0;
    })
    .await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let mut agent_ws = server.ws(&admin, json!({})).await;
    let count = 60;
    let mut visitors = Vec::new();
    for _ in 0..count {
        visitors.push(server.visitor(&app).await);
    }
    let mut sockets = Vec::new();
    for visitor in &visitors {
        sockets.push(server.ws(&visitor.token, json!({})).await);
    }
    for (ws, visitor) in sockets.iter_mut().zip(&visitors) {
        ws.send(json!({"type": "send", "client_msg_id": "first", "conversation_id": visitor.conversation_id, "content": "在吗"}))
            .await;
    }
    for ws in sockets.iter_mut() {
        let ack = ws.next_of("ack").await;
        assert_eq!(ack["message"]["seq"], 1, "{ack}");
    }
    // The agent learns of every new chat.
    let wanted: HashSet<String> = visitors.iter().map(|v| v.conversation_id.clone()).collect();
    let mut seen = HashSet::new();
    while seen.len() < wanted.len() {
        let frame = agent_ws.next_of("conversation").await;
        let id = frame["conversation"]["id"].as_str().expect("id").to_owned();
        assert!(wanted.contains(&id), "{frame}");
        assert_eq!(frame["conversation"]["status"], "queued", "{frame}");
        seen.insert(id);
    }
    // Lists, the queue and reports read every start acked before them.
    let (status, list) = server
        .get("/api/v1/conversations?limit=100", Some(&admin))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["conversations"].as_array().expect("list").len(), count);
    let (_, queue) = server.get("/api/v1/queue", Some(&admin)).await;
    assert_eq!(queue["total"], count, "{queue}");
    let opened = opened_events(&server).await;
    assert_eq!(opened.len(), count);
    assert!(opened.values().all(|n| *n == 1), "{opened:?}");
    server.shutdown().await;
}

/// Report events per conversation, read from SQLite.
async fn opened_events(server: &TestServer) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT conversation_id, COUNT(*) FROM reporting_events
         WHERE name = 'conversation_opened' GROUP BY conversation_id",
    )
    .fetch_all(&server.state().db)
    .await
    .expect("events");
    rows.into_iter().collect()
}

struct NoMetrics;
impl LogMetrics for NoMetrics {
    fn batch_written(&self, _: usize, _: usize, _: f64) {}
}

/// A visitor message written to the log with its start marker while the
/// server is down stands for a crash between the ack and the start's
/// commit: the next start completes it before serving.
#[tokio::test]
async fn a_start_left_in_the_log_is_completed_before_serving() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    server.halt().await;

    let conversation: ConversationId = visitor.conversation_id.parse().expect("conversation id");
    let visitor_id: VisitorId = visitor.visitor_id.parse().expect("visitor id");
    let log = MessageLog::open(
        &server.data_dir.join(kefu_server::LOG_DIR),
        Durability::Fsync,
        16,
        16,
        Arc::new(NoMetrics),
        Box::new(|_| {}),
    )
    .expect("open the log");
    let appended = log
        .append(
            Draft {
                conversation_id: conversation,
                sender: Sender {
                    kind: SenderType::Visitor,
                    id: visitor.visitor_id.clone(),
                    name: String::new(),
                },
                sender_key: visitor_id.to_bytes(),
                client_msg_id: Some("c1".into()),
                kind: MessageKind::Text,
                content: "acked, then the power went".into(),
                meta: json!({}),
                attachment: None,
                start: true,
            },
            None,
        )
        .await
        .expect("append");
    assert_eq!(appended.message.seq, 1);
    assert_eq!(log.pending_starts().expect("markers"), [(conversation, 1)]);
    log.close().await;
    drop(log);

    server.resume().await;
    let (status, body) = server
        .get(
            &format!("/api/v1/conversations/{}", visitor.conversation_id),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["status"], "queued", "{body}");
    assert!(body["conversation"]["queued_at"].is_i64(), "{body}");
    assert!(body["conversation"]["opened_at"].is_i64(), "{body}");
    let (_, queue) = server.get("/api/v1/queue", Some(&admin)).await;
    assert_eq!(queue["total"], 1, "{queue}");
    assert_eq!(
        queue["queue"][0]["conversation"]["id"],
        visitor.conversation_id.as_str()
    );
    assert_eq!(opened_events(&server).await.len(), 1);
    // The marker is gone, and a restart starts nothing again.
    server.halt().await;
    server.resume().await;
    assert_eq!(
        opened_events(&server).await.get(&visitor.conversation_id),
        Some(&1)
    );
    server.shutdown().await;
}

// ---- kill -9 in the middle of a storm ------------------------------------

fn binary() -> std::ffi::OsString {
    kefu_tests::server_bin(env!("CARGO_BIN_EXE_kefu-server-under-test"))
}

struct Process {
    child: Child,
    base: String,
}

impl Process {
    async fn start(data_dir: &std::path::Path) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(binary())
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args([
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--durability",
                "fsync",
            ])
            .env("RUST_LOG", "warn")
            .env("KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let process = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(response) = http.get(format!("{}/readyz", process.base)).send().await
                && response.status() == 200
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become ready");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let (status, body) = call(http, reqwest::Method::POST, url, token, Some(body)).await;
    assert!((200..300).contains(&status), "{status} {body}");
    body
}

async fn get(http: &reqwest::Client, url: String, token: &str) -> Value {
    let (status, body) = call(http, reqwest::Method::GET, url, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// kill -9 while hundreds of chats start at once: after the restart every
/// acked message is stored, and every conversation holding a visitor
/// message is started (status, queue position, exactly one report event),
/// whether its start had been committed before the kill or not.
#[tokio::test]
async fn kill_9_in_a_storm_loses_no_acked_message_and_no_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(binary())
        .args(["admin", "create", "--data-dir"])
        .arg(dir.path())
        .args(["--username", "owner", "--password", "owner-password"])
        .stdout(Stdio::null())
        .status()
        .expect("admin create");
    assert!(status.success());
    let mut process = Process::start(dir.path()).await;
    let http = reqwest::Client::new();
    let base = process.base.clone();
    let login = post(
        &http,
        format!("{base}/api/v1/auth/login"),
        None,
        json!({"username": "owner", "password": "owner-password"}),
    )
    .await;
    let admin = login["token"].as_str().expect("token").to_owned();
    // Online, so routing assigns some of the new chats in the same passes.
    post(
        &http,
        format!("{base}/api/v1/agents/me/status"),
        Some(&admin),
        json!({"status": "online"}),
    )
    .await;
    let app = post(
        &http,
        format!("{base}/api/v1/apps"),
        Some(&admin),
        json!({"name": "Shop"}),
    )
    .await;
    let count = 200;
    let mut visitors: Vec<(String, String)> = Vec::new();
    for _ in 0..count {
        let session = post(
            &http,
            format!("{base}/api/v1/visitor/sessions"),
            None,
            json!({"app_key": app["app"]["app_key"]}),
        )
        .await;
        visitors.push((
            session["token"].as_str().expect("token").to_owned(),
            session["conversation_id"]
                .as_str()
                .expect("conv")
                .to_owned(),
        ));
    }
    let ws_url = format!("{}/api/v1/ws", base.replace("http", "ws"));
    let mut sockets = Vec::new();
    for (token, _) in &visitors {
        let mut ws = Ws::connect(&ws_url).await;
        ws.send(json!({"type": "hello", "token": token})).await;
        ws.next_of("welcome").await;
        sockets.push(ws);
    }
    // Every visitor sends two messages at once; acks come back through
    // one channel, and the process is killed at the 150th.
    let (acks, mut acked_rx) = tokio::sync::mpsc::channel::<(String, Value)>(4 * count);
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();
    for (ws, (_, conversation)) in sockets.into_iter().zip(&visitors) {
        let acks = acks.clone();
        let mut go = go.subscribe();
        let conversation = conversation.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = ws.stream;
            let _ = go.recv().await;
            for n in 0..2 {
                let frame = json!({"type": "send", "client_msg_id": format!("m{n}"),
                    "conversation_id": conversation, "content": format!("storm {n}")});
                if stream
                    .send(WsMessage::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            while let Some(Ok(frame)) = stream.next().await {
                let WsMessage::Text(text) = frame else {
                    continue;
                };
                let Ok(frame) = kefu_tests::serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if frame["type"] == "ack"
                    && acks
                        .send((conversation.clone(), frame["message"].clone()))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }));
    }
    drop(acks);
    go.send(()).expect("go");
    let mut acked: Vec<(String, Value)> = Vec::new();
    while acked.len() < 150 {
        acked.push(acked_rx.recv().await.expect("an ack"));
    }
    process.child.kill().expect("kill -9");
    process.child.wait().expect("wait");
    drop(process);
    // Acks that were on their way when the process died count too.
    while let Ok(Some(ack)) =
        tokio::time::timeout(Duration::from_millis(200), acked_rx.recv()).await
    {
        acked.push(ack);
    }
    for task in tasks {
        task.abort();
    }

    let process = Process::start(dir.path()).await;
    let base = process.base.clone();
    let login = post(
        &http,
        format!("{base}/api/v1/auth/login"),
        None,
        json!({"username": "owner", "password": "owner-password"}),
    )
    .await;
    let admin = login["token"].as_str().expect("token").to_owned();
    // Every acked message is stored, identical.
    let mut stored: HashMap<String, Vec<Value>> = HashMap::new();
    for (_, conversation) in &visitors {
        let page = get(
            &http,
            format!("{base}/api/v1/conversations/{conversation}/messages?limit=200"),
            &admin,
        )
        .await;
        stored.insert(
            conversation.clone(),
            page["messages"].as_array().expect("messages").clone(),
        );
    }
    for (conversation, message) in &acked {
        let seq = message["seq"].as_u64().expect("seq") as usize;
        assert_eq!(
            stored[conversation].get(seq - 1),
            Some(message),
            "acked message lost or changed after kill -9"
        );
    }
    // Every conversation holding a visitor message is started: a status,
    // a queue position when queued, exactly one report event.
    let database = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.path().join("kefu.sqlite3").display()
    ))
    .await
    .expect("sqlite");
    let events: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT conversation_id, COUNT(*) FROM reporting_events
         WHERE name = 'conversation_opened' GROUP BY conversation_id",
    )
    .fetch_all(&database)
    .await
    .expect("events")
    .into_iter()
    .collect();
    let mut queued = 0;
    let mut started = 0;
    for (_, conversation) in &visitors {
        let has_visitor_message = stored[conversation]
            .iter()
            .any(|m| m["sender"]["type"] == "visitor");
        let body = get(
            &http,
            format!("{base}/api/v1/conversations/{conversation}"),
            &admin,
        )
        .await;
        let chat = &body["conversation"];
        if !has_visitor_message {
            assert!(
                chat["opened_at"].is_null(),
                "started without a message: {chat}"
            );
            assert!(!events.contains_key(conversation));
            continue;
        }
        started += 1;
        assert!(
            chat["opened_at"].is_i64(),
            "not started after restart: {chat}"
        );
        match chat["status"].as_str() {
            Some("queued") => {
                queued += 1;
                assert!(chat["queued_at"].is_i64(), "{chat}");
            }
            Some("open") => assert!(chat["assignee_id"].is_string(), "{chat}"),
            other => panic!("status {other:?} after a start: {chat}"),
        }
        assert_eq!(
            events.get(conversation),
            Some(&1),
            "one report event per start: {conversation}"
        );
    }
    assert!(
        started >= 75,
        "the storm was cut too early: {started} started"
    );
    let queue = get(&http, format!("{base}/api/v1/queue?limit=1"), &admin).await;
    assert_eq!(queue["total"], queued, "{queue}");
    drop(process);
}
