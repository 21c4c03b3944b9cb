//! Full-text search over real sockets: Chinese 2-character and longer
//! terms, English case-insensitively, notes flagged, tickets (subject,
//! description, comments), paging, limits, who may search, and an index
//! rebuilt from the message log after it was wiped.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, assert_error};
use reqwest::StatusCode;

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn search(server: &TestServer, token: &str, query: &str) -> (StatusCode, Value) {
    server
        .get(&format!("/api/v1/search?{query}"), Some(token))
        .await
}

/// The `kind` hits for `q` once there are `count` of them (the index
/// follows the log a few milliseconds behind), or the last answer after ~5 s.
async fn hits_within(
    server: &TestServer,
    token: &str,
    kind: &str,
    q: &str,
    count: usize,
) -> Vec<Value> {
    let mut hits = Vec::new();
    for _ in 0..250 {
        let (status, body) = search(
            server,
            token,
            &format!("type={kind}&limit=50&q={}", encode(q)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        hits = body[kind].as_array().expect("hits").clone();
        if hits.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hits
}

/// The matched runs of a hit's snippet.
fn matched(hit: &Value) -> Vec<String> {
    hit["snippet"]
        .as_array()
        .expect("snippet")
        .iter()
        .filter(|s| s["match"] == true)
        .map(|s| s["text"].as_str().expect("text").to_owned())
        .collect()
}

/// The whole snippet as one string.
fn snippet_text(hit: &Value) -> String {
    hit["snippet"]
        .as_array()
        .expect("snippet")
        .iter()
        .map(|s| s["text"].as_str().expect("text"))
        .collect()
}

async fn note(server: &TestServer, agent: &AgentClient, conversation: &str, id: &str, text: &str) {
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&agent.token),
            json!({"client_msg_id": id, "content": text, "private": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn chinese_and_english_terms_find_messages_and_flag_notes() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let other = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server
        .visitor_says(&visitor, "v1", "我要退款，订单123")
        .await;
    server
        .agent_says(&amy, &conv, "a1", "好的，退款申请已提交")
        .await;
    note(&server, &amy, &conv, "n1", "VIP customer: Refund approved").await;
    server
        .visitor_says(&other, "v1", "Where is my parcel? No refund needed")
        .await;
    server.visitor_says(&other, "v2", "款到了吗").await;

    // Two Chinese characters: the bigram index.
    let hits = hits_within(&server, &amy.token, "messages", "退款", 2).await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    // Newest first.
    assert_eq!(hits[0]["seq"], 2);
    assert_eq!(hits[0]["sender"]["type"], "agent");
    assert_eq!(hits[0]["sender"]["id"], amy.id.as_str());
    assert_eq!(hits[1]["seq"], 1);
    assert_eq!(hits[1]["sender"]["type"], "visitor");
    for hit in &hits {
        assert_eq!(hit["conversation_id"], conv.as_str());
        assert_eq!(matched(hit), vec!["退款"]);
        assert_eq!(hit["note"], false);
    }
    assert_eq!(snippet_text(&hits[1]), "我要退款，订单123");
    // Each hit carries the whole protocol Message, read from the log.
    assert_eq!(hits[1]["message"]["content"], "我要退款，订单123");
    assert_eq!(hits[1]["message"]["seq"], 1);
    assert_eq!(hits[1]["message"]["conversation_id"], conv.as_str());
    assert!(hits[1]["message"]["id"].is_string());
    // "款到" is not "退款": no false positive from single characters.
    let hits = hits_within(&server, &amy.token, "messages", "款到", 1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["conversation_id"], other.conversation_id.as_str());

    // Four characters: the trigram index.
    let hits = hits_within(&server, &amy.token, "messages", "退款申请", 1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["seq"], 2);
    assert_eq!(matched(&hits[0]), vec!["退款申请"]);

    // English, any case; the note is found and flagged.
    let hits = hits_within(&server, &amy.token, "messages", "REFUND", 2).await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    let note_hit = hits
        .iter()
        .find(|h| h["note"] == true)
        .expect("the note is found");
    assert_eq!(note_hit["kind"], "note");
    assert_eq!(note_hit["seq"], 3);
    assert_eq!(matched(note_hit), vec!["Refund"]);
    let visitor_hit = hits.iter().find(|h| h["note"] == false).expect("visitor");
    assert_eq!(matched(visitor_hit), vec!["refund"]);

    // Several terms must all match.
    let hits = hits_within(&server, &amy.token, "messages", "refund vip", 1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["note"], true);
    let hits = hits_within(&server, &amy.token, "messages", "退款 订单", 1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["seq"], 1);
    let (_, body) = search(
        &server,
        &amy.token,
        &format!("q={}", encode("nothing-like-this")),
    )
    .await;
    assert_eq!(body["messages"], json!([]));
    assert_eq!(body["tickets"], json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn tickets_are_found_by_subject_description_and_comments() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "退款问题", "description": "Customer wants a REFUND for order 42", "priority": "high"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = body["ticket"]["number"].clone();
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "Broken parcel", "description": "box arrived crushed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["ticket"]["number"].clone();
    let (status, body) = server
        .post(
            &format!("/api/v1/tickets/{second}/comments"),
            Some(&amy.token),
            json!({"body": "发票已寄出, invoice sent", "public": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let hits = hits_within(&server, &amy.token, "tickets", "退款", 1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["number"], first);
    assert_eq!(hits[0]["matched"], "subject");
    assert_eq!(hits[0]["priority"], "high");
    assert_eq!(matched(&hits[0]), vec!["退款"]);

    let hits = hits_within(&server, &amy.token, "tickets", "refund", 1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["matched"], "description");
    assert_eq!(matched(&hits[0]), vec!["REFUND"]);

    // In a comment: English through trigram, Chinese 2 chars through bigram.
    for q in ["invoice", "发票"] {
        let hits = hits_within(&server, &amy.token, "tickets", q, 1).await;
        assert_eq!(hits.len(), 1, "{q}: {hits:?}");
        assert_eq!(hits[0]["number"], second, "{q}");
        assert_eq!(hits[0]["matched"], "comment", "{q}");
        assert_eq!(matched(&hits[0]), vec![q.to_owned()]);
    }

    // A changed subject is searched by its new words only.
    let (status, body) = server
        .patch(
            &format!("/api/v1/tickets/{first}"),
            Some(&amy.token),
            json!({"subject": "换货请求"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hits = hits_within(&server, &amy.token, "tickets", "换货", 1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["number"], first);
    let mut gone = Vec::new();
    for _ in 0..100 {
        gone = hits_within(&server, &amy.token, "tickets", "退款", 0).await;
        if gone.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gone,
        Vec::<Value>::new(),
        "the old subject is no longer indexed"
    );

    // type=all answers both lists.
    let (status, body) = search(&server, &amy.token, "q=parcel").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tickets"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["messages"], json!([]));
    assert_eq!(
        body["next_cursor"],
        json!({"messages": null, "tickets": null})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pages_follow_the_cursor_without_repeats() {
    // 25 messages in a row from one visitor: past the default burst.
    let mut server = TestServer::start_with(|c| c.limits.visitor_messages_per_second = 0).await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    for i in 1..=25 {
        server
            .visitor_says(
                &visitor,
                &format!("c{i}"),
                &format!("refund request number {i}"),
            )
            .await;
    }
    server.visitor_says(&visitor, "other", "unrelated").await;
    assert_eq!(
        hits_within(&server, &amy.token, "messages", "refund", 25)
            .await
            .len(),
        25
    );
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = "type=messages&limit=10&q=refund".to_owned();
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = search(&server, &amy.token, &query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("tickets").is_none(), "type=messages only: {body}");
        let page = body["messages"].as_array().expect("page");
        seqs.extend(page.iter().map(|h| h["seq"].as_u64().expect("seq")));
        pages += 1;
        match body["next_cursor"]["messages"].as_str() {
            Some(next) => {
                assert_eq!(page.len(), 10);
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seqs, (1..=25).rev().collect::<Vec<u64>>());
    server.shutdown().await;
}

#[tokio::test]
async fn bad_queries_and_wrong_callers_are_refused() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let long = "退".repeat(201);
    let nine = "abc ".repeat(9);
    for query in [
        "q=".to_owned(),
        "type=messages".to_owned(),
        format!("q={}", encode(&long)),
        format!("q={}", encode(&nine)),
        "q=ok".to_owned(),
        format!("q={}", encode("退")),
        format!("q={}", encode("退款 a")),
        "q=refund&limit=0".to_owned(),
        "q=refund&limit=51".to_owned(),
        "q=refund&limit=many".to_owned(),
        "q=refund&type=people".to_owned(),
        "q=refund&cursor=5".to_owned(),
        "q=refund&type=messages&cursor=abc".to_owned(),
        "q=refund&type=tickets&cursor=-3".to_owned(),
    ] {
        let (status, body) = search(&server, &amy.token, &query).await;
        assert_error(status, &body, 400, "bad_request");
    }
    // At the limits: accepted.
    let exactly = "退".repeat(200);
    let (status, body) = search(
        &server,
        &amy.token,
        &format!("q={}&limit=50", encode(&exactly)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let eight = "abc ".repeat(8);
    let (status, body) = search(&server, &amy.token, &format!("q={}", encode(eight.trim()))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = search(&server, &visitor.token, "q=refund").await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server.get("/api/v1/search?q=refund", None).await;
    assert_error(status, &body, 401, "unauthorized");
    server.shutdown().await;
}

#[tokio::test]
async fn index_is_rebuilt_from_the_log_after_a_wipe() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let first = server.visitor(&app).await;
    let second = server.visitor(&app).await;
    for i in 1..=5 {
        server
            .visitor_says(&first, &format!("c{i}"), &format!("退款 refund {i}"))
            .await;
    }
    server.visitor_says(&second, "c1", "退款 refund too").await;
    note(
        &server,
        &amy,
        &second.conversation_id,
        "n1",
        "退款 refund note",
    )
    .await;
    assert_eq!(
        hits_within(&server, &amy.token, "messages", "退款", 7)
            .await
            .len(),
        7
    );

    // Wipe the index entirely, and leave one conversation half-indexed.
    let db = server.state().db.clone();
    sqlx::query("DELETE FROM message_index WHERE conversation_id = ? AND seq > 2")
        .bind(&first.conversation_id)
        .execute(&db)
        .await
        .expect("partial wipe");
    sqlx::query("DELETE FROM message_index WHERE conversation_id = ?")
        .bind(&second.conversation_id)
        .execute(&db)
        .await
        .expect("wipe");
    for q in ["退款", "refund"] {
        let hits = hits_within(&server, &amy.token, "messages", q, 0).await;
        assert_eq!(hits.len(), 2, "{q}: what the wipe left");
    }

    let server = server.restart().await;
    for q in ["退款", "refund"] {
        let hits = hits_within(&server, &amy.token, "messages", q, 7).await;
        assert_eq!(hits.len(), 7, "{q}: {hits:?}");
    }
    // No message is indexed twice, and a second restart changes nothing.
    let server = server.restart().await;
    let hits = hits_within(&server, &amy.token, "messages", "refund", 7).await;
    assert_eq!(hits.len(), 7);
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT conversation_id || ':' || seq) FROM message_index",
    )
    .fetch_one(&server.state().db)
    .await
    .expect("count");
    assert_eq!((rows, distinct), (7, 7));
    // And it keeps following the log.
    server
        .visitor_says(&second, "c2", "退款 after restart")
        .await;
    assert_eq!(
        hits_within(&server, &amy.token, "messages", "退款", 8)
            .await
            .len(),
        8
    );
    server.shutdown().await;
}

#[tokio::test]
async fn chinese_terms_of_mixed_lengths_match_inside_one_run_only() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "c1", "退款，款到了").await;
    server
        .visitor_says(&visitor, "c2", "快递单号是多少？我要退款")
        .await;
    server.visitor_says(&visitor, "c3", "退款到账了").await;
    assert_eq!(
        hits_within(&server, &amy.token, "messages", "退款", 3)
            .await
            .len(),
        3
    );

    // A 2-character term with a longer one: both must match.
    let hits = hits_within(&server, &amy.token, "messages", "退款 快递单号", 1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["seq"], 2);
    assert_eq!(matched(&hits[0]), vec!["快递单号", "退款"]);
    // "退款到" is in c3 only: c1 has "退款" and "款到" on both sides of a comma.
    let hits = hits_within(&server, &amy.token, "messages", "款到 退款到", 1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["seq"], 3);
    server.shutdown().await;
}

/// Name, scheduling policy and niceness of every thread of this process
/// (Linux `/proc`).
#[cfg(target_os = "linux")]
fn threads() -> Vec<(String, u32, i64)> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // After the parenthesised name come fields 3…: nice is field
            // 19, policy field 41 (proc(5)).
            let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            let nice = fields.get(16)?.parse().ok()?;
            let policy = fields.get(38)?.parse().ok()?;
            Some((comm.trim().to_owned(), policy, nice))
        })
        .collect()
}

/// The nice value of this process's main thread (proc(5): field 19).
#[cfg(target_os = "linux")]
fn process_nice() -> i64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    fields[16].parse().expect("nice")
}

/// The indexer, and the SQLite worker thread of its connection, run under
/// `SCHED_IDLE` (only on CPU time serving does not want); serving (the
/// runtime's workers) and the pool's SQLite threads stay normal.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexer_and_its_sqlite_thread_run_at_idle_priority() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    kefu_tests::in_process_only(
        "reads the scheduling policy of the server's threads in this process",
    );
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "m1", "退款 refund").await;
    // Found by search: the indexer has connected and written.
    let hits = hits_within(&server, &amy.token, "messages", "退款", 1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");

    let threads = threads();
    let policies = |prefix: &str| -> Vec<u32> {
        threads
            .iter()
            .filter(|(name, _, _)| name.starts_with(prefix))
            .map(|(_, policy, _)| *policy)
            .collect()
    };
    let indexer = policies("kefu-indexer");
    assert!(!indexer.is_empty(), "no indexer thread: {threads:?}");
    assert!(indexer.iter().all(|&p| p == SCHED_IDLE), "{threads:?}");
    let sqlite = policies("sqlx-sqlite");
    assert!(
        sqlite.contains(&SCHED_IDLE),
        "the indexer's connection: {threads:?}"
    );
    assert!(
        sqlite.contains(&SCHED_OTHER),
        "the pool's connections: {threads:?}"
    );
    // This test's runtime has two workers ("tokio-rt-worker", as Linux
    // cuts the name); the indexer's own blocking thread, which reads the
    // log for it, shares the name and is idle-priority like the indexer.
    // "Normal" is the nice value the test process was started with (a CI
    // run may be reniced as a whole), read from its main thread.
    let base_nice = process_nice();
    let normal_workers = threads
        .iter()
        .filter(|(name, policy, nice)| {
            name.starts_with("tokio-rt-worker") && *policy == SCHED_OTHER && *nice == base_nice
        })
        .count();
    assert!(normal_workers >= 2, "{threads:?}");
    server.shutdown().await;
}
