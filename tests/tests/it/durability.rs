//! Nothing acked is ever lost or stored twice: across a graceful restart,
//! and across `kill -9` of a real server process right after its acks.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{TestServer, Ws};

#[tokio::test]
async fn resend_after_restart_returns_the_original() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let (status, original) = server.visitor_says(&visitor, "c1", "before restart").await;
    assert_eq!(status, 201);
    server
        .agent_says(&amy, &visitor.conversation_id, "a1", "reply")
        .await;

    let server = server.restart().await;
    let (status, again) = server.visitor_says(&visitor, "c1", "before restart").await;
    assert_eq!(status, 200);
    assert_eq!(again, original);
    let (status, next) = server.visitor_says(&visitor, "c2", "after restart").await;
    assert_eq!(status, 201);
    assert_eq!(next["seq"], 3, "seq continues without a gap after restart");
    // Tokens and derived columns survive too.
    let (status, body) = server
        .get(
            &format!("/api/v1/conversations/{}", visitor.conversation_id),
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["last_seq"], 3);
    server.shutdown().await;
}

fn binary() -> std::ffi::OsString {
    kefu_tests::server_bin(env!("CARGO_BIN_EXE_kefu-server-under-test"))
}

struct Process {
    child: Child,
    base: String,
}

impl Process {
    async fn start(data_dir: &std::path::Path, durability: &str) -> Process {
        let port = free_port();
        let child = Command::new(binary())
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args([
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--durability",
                durability,
            ])
            .env("RUST_LOG", "warn")
            // The kill -9 test's visitor sends hundreds of messages at
            // once: not what the per-visitor message rate is about.
            .env("KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        // Owned by `Process` at once, so it is killed and reaped on every path.
        let process = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn create_admin(data_dir: &std::path::Path) {
    let status = Command::new(binary())
        .args(["admin", "create", "--data-dir"])
        .arg(data_dir)
        .args(["--username", "owner", "--password", "owner-password"])
        .stdout(Stdio::null())
        .status()
        .expect("admin create");
    assert!(status.success());
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("post");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

/// Pipelines `total` sends `m0…` without waiting for acks.
async fn send_numbered(ws: &mut Ws, conv: &str, total: usize) {
    for i in 0..total {
        let frame = json!({"type": "send", "client_msg_id": format!("m{i}"), "conversation_id": conv,
                           "content": format!("message {i}")});
        ws.send(frame).await;
    }
}

async fn login_owner(http: &reqwest::Client, base: &str) -> String {
    let login = post(
        http,
        format!("{base}/api/v1/auth/login"),
        None,
        json!({"username": "owner", "password": "owner-password"}),
    )
    .await;
    login["token"].as_str().expect("token").to_owned()
}

async fn kill_9_loses_nothing_acked(durability: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    create_admin(dir.path());
    let mut process = Process::start(dir.path(), durability).await;
    let http = reqwest::Client::new();
    let base = process.base.clone();
    let admin = login_owner(&http, &base).await;
    let app = post(
        &http,
        format!("{base}/api/v1/apps"),
        Some(&admin),
        json!({"name": "Shop"}),
    )
    .await;
    let session = post(
        &http,
        format!("{base}/api/v1/visitor/sessions"),
        None,
        json!({"app_key": app["app"]["app_key"]}),
    )
    .await;
    let token = session["token"].as_str().expect("token");
    let conv = session["conversation_id"]
        .as_str()
        .expect("conv")
        .to_owned();

    let mut ws = Ws::connect(&format!("{}/api/v1/ws", base.replace("http", "ws"))).await;
    ws.send(json!({"type": "hello", "token": token})).await;
    ws.next_of("welcome").await;
    // Keep sends in flight and kill the process the moment the 300th ack
    // arrives, while later sends are still being written.
    let total = 400;
    send_numbered(&mut ws, &conv, total).await;
    let mut acked: Vec<Value> = Vec::new();
    while acked.len() < 300 {
        let frame = ws.next().await;
        if frame["type"] == "ack" {
            acked.push(frame["message"].clone());
        }
    }
    process.child.kill().expect("kill -9");
    process.child.wait().expect("wait");
    drop(process);

    let process = Process::start(dir.path(), durability).await;
    let base = process.base.clone();
    let admin = login_owner(&http, &base).await;
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let response = http
            .get(format!(
                "{base}/api/v1/conversations/{conv}/messages?after={after}&limit=200"
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("get");
        let page: Value = response.json().await.expect("json");
        let messages = page["messages"].as_array().expect("messages").clone();
        if messages.is_empty() {
            break;
        }
        after = messages.last().expect("last")["seq"].as_u64().expect("seq");
        stored.extend(messages);
    }
    // Every acked message is there, identical; seqs are gap-free.
    for message in &acked {
        let seq = message["seq"].as_u64().expect("seq") as usize;
        assert_eq!(
            &stored[seq - 1],
            message,
            "acked message {seq} differs after kill -9"
        );
    }
    let seqs: Vec<u64> = stored
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // Resending everything stores nothing twice.
    let mut ws = Ws::connect(&format!("{}/api/v1/ws", base.replace("http", "ws"))).await;
    ws.send(json!({"type": "hello", "token": token})).await;
    ws.next_of("welcome").await;
    send_numbered(&mut ws, &conv, total).await;
    let mut max_seq = 0;
    for _ in 0..total {
        let frame = ws.next_of("ack").await;
        max_seq = max_seq.max(frame["message"]["seq"].as_u64().expect("seq"));
    }
    assert_eq!(max_seq, total as u64, "every message stored exactly once");
}

#[tokio::test]
async fn kill_9_after_acks_loses_nothing_os() {
    kill_9_loses_nothing_acked("os").await;
}

#[tokio::test]
async fn kill_9_after_acks_loses_nothing_fsync() {
    kill_9_loses_nothing_acked("fsync").await;
}

/// SQLite's derived columns (what orders the conversation list) are rebuilt
/// from the log at start, e.g. after a crash before the deriver flushed.
#[tokio::test]
async fn derived_columns_are_rebuilt_from_the_log_at_start() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let older = server.visitor(&app).await;
    let newer = server.visitor(&app).await;
    server.visitor_says(&newer, "c1", "first chat").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    server.visitor_says(&older, "c1", "latest message").await;
    let expected = vec![older.conversation_id.clone(), newer.conversation_id.clone()];
    // Wait for the deriver, then forget everything it wrote.
    let listed = list_order_within(&server, &amy.token, &expected).await;
    assert_eq!(listed, expected);
    sqlx::query(
        "UPDATE conversations SET last_seq = 0, last_message_at = NULL, activity_at = created_at",
    )
    .execute(&server.state().db)
    .await
    .expect("reset derived columns");
    assert_eq!(
        list_order(&server, &amy.token).await,
        vec![newer.conversation_id.clone(), older.conversation_id.clone()],
        "reset took"
    );

    let server = server.restart().await;
    let listed = list_order_within(&server, &amy.token, &expected).await;
    assert_eq!(listed, expected, "rebuilt order follows the log");
    server.shutdown().await;
}

/// Conversation ids in the agent list's order.
async fn list_order(server: &TestServer, token: &str) -> Vec<String> {
    let (_, body) = server.get("/api/v1/conversations", Some(token)).await;
    body["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The list order once it equals `expected`, or the last seen after ~2 s
/// (derived columns follow the log asynchronously).
async fn list_order_within(server: &TestServer, token: &str, expected: &[String]) -> Vec<String> {
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = list_order(server, token).await;
        if listed == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listed
}

async fn get_json(http: &reqwest::Client, url: String, token: &str) -> Value {
    let response = http.get(url).bearer_auth(token).send().await.expect("get");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

/// Seqs of the message hits for `q`.
async fn found_at(http: &reqwest::Client, base: &str, token: &str, q: &str) -> Vec<u64> {
    let body = get_json(
        http,
        format!("{base}/api/v1/search?type=messages&q={q}"),
        token,
    )
    .await;
    body["messages"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| hit["seq"].as_u64().expect("seq"))
        .collect()
}

/// Waits (up to ~10 s) until searching `q` finds exactly `seqs`.
async fn search_until(http: &reqwest::Client, base: &str, token: &str, q: &str, seqs: &[u64]) {
    let mut last = Vec::new();
    for _ in 0..500 {
        last = found_at(http, base, token, q).await;
        if last == seqs {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("search {q}: {last:?}, expected {seqs:?}");
}

/// The newest WAL file of a RocksDB directory (`NNNNNN.log`).
fn newest_wal(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("log dir")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|x| x == "log"))
        .max_by_key(|path| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .expect("a WAL file")
}

/// A torn WAL tail (kill -9 with durability `os`, then the newest WAL's
/// last record cut short, as a power cut leaves it): the log loses that
/// message and gives its seq to the next one, and SQLite keeps nothing of
/// the lost one. Its search hit is gone and the new message is indexed at
/// that seq; the read marker, the chat ticket's transcript and the derived
/// columns are back at the log's head.
#[tokio::test]
async fn a_torn_wal_tail_leaves_nothing_of_the_lost_message_in_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_admin(dir.path());
    let mut process = Process::start(dir.path(), "os").await;
    let http = reqwest::Client::new();
    let base = process.base.clone();
    let admin = login_owner(&http, &base).await;
    let app = post(
        &http,
        format!("{base}/api/v1/apps"),
        Some(&admin),
        json!({"name": "Shop"}),
    )
    .await;
    let session = post(
        &http,
        format!("{base}/api/v1/visitor/sessions"),
        None,
        json!({"app_key": app["app"]["app_key"]}),
    )
    .await;
    let token = session["token"].as_str().expect("token").to_owned();
    let conv = session["conversation_id"]
        .as_str()
        .expect("conv")
        .to_owned();
    let say = |id: &'static str, text: &'static str| {
        let http = http.clone();
        let url = format!("{base}/api/v1/visitor/messages");
        let token = token.clone();
        async move {
            post(
                &http,
                url,
                Some(&token),
                json!({"client_msg_id": id, "content": text}),
            )
            .await["message"]
                .clone()
        }
    };
    say("c1", "hello alpha-one").await;
    say("c2", "order bravo-two").await;
    let kept = say("c3", "thanks charlie-three").await;
    let lost = say("c4", "the lost zebra-text").await;
    let lost_seq = lost["seq"].as_u64().expect("seq");
    assert_eq!(kept["seq"].as_u64(), Some(lost_seq - 1));
    // Everything SQLite copies of the lost message, in place before the crash.
    search_until(&http, &base, &admin, "zebra-text", &[lost_seq]).await;
    post(
        &http,
        format!("{base}/api/v1/conversations/{conv}/read"),
        Some(&admin),
        json!({"seq": lost_seq}),
    )
    .await;
    let ticket = post(
        &http,
        format!("{base}/api/v1/tickets"),
        Some(&admin),
        json!({"conversation_id": conv, "subject": "From the chat"}),
    )
    .await;
    let number = ticket["ticket"]["number"].as_u64().expect("number");
    assert_eq!(ticket["ticket"]["transcript_seq"].as_u64(), Some(lost_seq));
    let sqlite = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("kefu.sqlite3").display()
    );
    let derived = |sqlite: String, conv: String| async move {
        let db = sqlx::SqlitePool::connect(&sqlite).await.expect("sqlite");
        let (last_seq,): (i64,) = sqlx::query_as("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(&conv)
            .fetch_one(&db)
            .await
            .expect("last_seq");
        db.close().await;
        last_seq
    };
    for _ in 0..500 {
        if derived(sqlite.clone(), conv.clone()).await == lost_seq as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(derived(sqlite.clone(), conv.clone()).await, lost_seq as i64);

    // kill -9, then tear the WAL's last record (the lost message's batch).
    process.child.kill().expect("kill -9");
    process.child.wait().expect("wait");
    drop(process);
    let wal = newest_wal(&dir.path().join("messages"));
    let len = std::fs::metadata(&wal).expect("wal").len();
    assert!(len > 64, "the WAL holds the messages ({len} bytes)");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .expect("open wal")
        .set_len(len - 8)
        .expect("truncate");

    let process = Process::start(dir.path(), "os").await;
    let base = process.base.clone();
    let admin = login_owner(&http, &base).await;
    let page = get_json(
        &http,
        format!("{base}/api/v1/conversations/{conv}/messages?limit=200"),
        &admin,
    )
    .await;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..lost_seq).collect::<Vec<_>>(),
        "the torn record is gone"
    );
    // SQLite was brought back before anything was served.
    assert_eq!(
        derived(sqlite.clone(), conv.clone()).await,
        lost_seq as i64 - 1
    );
    assert_eq!(
        found_at(&http, &base, &admin, "zebra-text").await,
        Vec::<u64>::new()
    );
    let conversation = get_json(&http, format!("{base}/api/v1/conversations/{conv}"), &admin).await;
    assert_eq!(
        conversation["conversation"]["read_seq"].as_u64(),
        Some(lost_seq - 1)
    );

    // The next message takes the lost seq, and is what search finds there.
    let fresh = post(
        &http,
        format!("{base}/api/v1/visitor/messages"),
        Some(&token),
        json!({"client_msg_id": "c5", "content": "a fresh yak-text"}),
    )
    .await;
    assert_eq!(fresh["message"]["seq"].as_u64(), Some(lost_seq));
    search_until(&http, &base, &admin, "yak-text", &[lost_seq]).await;
    assert_eq!(
        found_at(&http, &base, &admin, "zebra-text").await,
        Vec::<u64>::new()
    );
    // Unread again for the agent; the ticket's transcript ends where the
    // log's head was, so the new message is not in it.
    let conversation = get_json(&http, format!("{base}/api/v1/conversations/{conv}"), &admin).await;
    assert_eq!(
        conversation["conversation"]["unread_count"].as_u64(),
        Some(1)
    );
    let transcript = get_json(
        &http,
        format!("{base}/api/v1/tickets/{number}/transcript"),
        &admin,
    )
    .await;
    assert_eq!(transcript["transcript_seq"].as_u64(), Some(lost_seq - 1));
    assert_eq!(
        transcript["messages"].as_array().map(Vec::len),
        Some(lost_seq as usize - 1)
    );
    // The lost send, resent by its client, is stored once, after it.
    let resent = post(
        &http,
        format!("{base}/api/v1/visitor/messages"),
        Some(&token),
        json!({"client_msg_id": "c4", "content": "the lost zebra-text"}),
    )
    .await;
    assert_eq!(resent["message"]["seq"].as_u64(), Some(lost_seq + 1));
    search_until(&http, &base, &admin, "zebra-text", &[lost_seq + 1]).await;
}
