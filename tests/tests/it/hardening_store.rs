//! Hardening of the stores (issue 23): free text that breaks SQLite's FTS5
//! syntax is a 400, never a 500; per-visitor limits hold under concurrent
//! requests; concurrent admin writes queue instead of failing ("database is
//! locked"), and their invariants ("the last admin", "at most 200 teams")
//! hold. The fault tests (full disk, torn WAL tail) are in `store_faults`.

use std::future::Future;

use futures_util::future::join_all;
use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

// ---- helpers ------------------------------------------------------------

/// Runs `count` requests at once (one future each, polled together over
/// as many connections) and returns their answers in order.
async fn at_once<F, Fut>(count: usize, request: F) -> Vec<(StatusCode, Value)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = (StatusCode, Value)>,
{
    join_all((0..count).map(request)).await
}

/// Asserts that no answer is a 5xx, with the bodies of any that are.
fn assert_no_server_error(answers: &[(StatusCode, Value)], what: &str) {
    let failed: Vec<String> = answers
        .iter()
        .filter(|(status, _)| status.is_server_error())
        .map(|(status, body)| format!("{status} {body}"))
        .collect();
    assert!(failed.is_empty(), "{what}: server errors {failed:?}");
}

/// PATCH with an owned path, for requests built inside closures.
async fn patch(server: &TestServer, path: String, token: &str, body: Value) -> (StatusCode, Value) {
    server.patch(&path, Some(token), body).await
}

/// The statuses of `answers`, for assertion messages.
fn statuses(answers: &[(StatusCode, Value)]) -> Vec<u16> {
    answers.iter().map(|(status, _)| status.as_u16()).collect()
}

fn count_status(answers: &[(StatusCode, Value)], status: u16) -> usize {
    answers.iter().filter(|(s, _)| s.as_u16() == status).count()
}

async fn delete(server: &TestServer, path: String, token: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .delete(server.url(&path))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete");
    kefu_tests::read(response).await
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---- item 3: free text into SQL/FTS ---------------------------------------

/// Strings that break FTS5 query syntax, LIKE, or naive escaping, as text
/// (percent-encoded when sent).
fn nasty_strings() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "a\0bcd",
        "退款\0",
        "abc\0",
        "\0",
        "\0\0\0",
        "\0abc def",
        "\"",
        "\"\"\"",
        "abc\"def",
        "\"abc",
        "abc\" OR \"x",
        "(",
        ")",
        "((((abc",
        "abc))))",
        "(abc OR def",
        "abc AND",
        "NOT abc",
        "abc NEAR(def)",
        "NEAR(abc def, 1)",
        "abc*",
        "*abc",
        "^abc",
        "text:abc",
        "{text}:abc",
        "- abc",
        "+abc",
        "OR OR OR",
        "AND AND AND",
        "\x01\x02\x03",
        "abc\x1bdef",
        "\x7f\x7f\x7f",
        "abc\u{85}def",
        "abc\tdef\nghi\rjkl",
        "\t\n\r",
        "\u{200b}\u{200b}\u{200b}",
        "\u{feff}abc",
        "🙂🙂🙂",
        "退",
        "退款",
        "𠀀𠀀",
        "\u{fffd}\u{fffd}\u{fffd}",
        "'; DROP TABLE tickets; --",
        "abc' OR '1'='1",
        "%%%",
        "___",
        "\\\\\\",
        "%_\\",
        "abc abc abc abc abc abc abc abc abc",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    corpus.push("a".repeat(200));
    corpus.push("a".repeat(201));
    corpus.push("a".repeat(10_000));
    corpus.push("退".repeat(300));
    corpus.push(format!("{}\0", "退款".repeat(50)));
    corpus
}

/// Raw query-string values: invalid UTF-8 (lone surrogates, overlong NUL,
/// truncated sequences) and broken percent-encoding, sent as they are.
const RAW_VALUES: [&str; 10] = [
    "%ED%A0%80",
    "abc%ED%B0%80def",
    "%FF%FE%FD",
    "%C0%80abc",
    "abc%E9%80",
    "%",
    "%G0abc",
    "abc%0",
    "abc%00",
    "%00%00%00",
];

/// Every route whose free text reaches SQL or FTS, as a path with `{}`
/// where the value goes.
const FREE_TEXT_ROUTES: [&str; 8] = [
    "/api/v1/search?q={}",
    "/api/v1/search?type=messages&q={}",
    "/api/v1/search?type=tickets&q={}",
    "/api/v1/tickets?q={}",
    "/api/v1/tickets?sort=updated&q={}",
    "/api/v1/tickets?status=open,pending&q={}",
    "/api/v1/canned_replies?q={}",
    "/api/v1/audit?action={}",
];

#[tokio::test]
async fn nasty_search_terms_are_answered_200_or_400_never_500() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    // Something to find in every index, so the queries really run.
    let (status, _) = server
        .visitor_says(&visitor, "c1", "我要退款 refund abcdef")
        .await;
    assert_eq!(status, 201);
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&admin),
            json!({"subject": "退款 abcdef", "description": "refund please"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .post(
            "/api/v1/canned_replies",
            Some(&admin),
            json!({"shortcut": "refund", "title": "Refund abcdef", "body": "退款 abcdef"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let mut values: Vec<String> = nasty_strings().iter().map(|s| encode(s)).collect();
    values.extend(RAW_VALUES.iter().map(|s| (*s).to_owned()));
    let mut bad_requests = 0;
    for route in FREE_TEXT_ROUTES {
        for value in &values {
            let path = route.replace("{}", value);
            let (status, body) = server.get(&path, Some(&admin)).await;
            match status.as_u16() {
                200 => {}
                400 => {
                    assert_error(status, &body, 400, "bad_request");
                    bad_requests += 1;
                }
                other => panic!("{path}: {other} {body}"),
            }
        }
    }
    assert!(bad_requests > 0, "the corpus has refused strings");
    // The issue's requests, exactly.
    for path in [
        "/api/v1/search?q=a%00bcd",
        "/api/v1/search?q=%E9%80%80%E6%AC%BE%00",
        "/api/v1/tickets?q=abc%00",
    ] {
        let (status, body) = server.get(path, Some(&admin)).await;
        assert_error(status, &body, 400, "bad_request");
    }
    // And the indexes still answer.
    let mut found = Value::Null;
    for _ in 0..250 {
        let (status, body) = server
            .get("/api/v1/search?type=messages&q=abcdef", Some(&admin))
            .await;
        assert_eq!(status, 200, "{body}");
        if body["messages"].as_array().is_some_and(|m| m.len() == 1) {
            found = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(found["messages"][0]["seq"], 1, "{found}");
    // A 2-character Chinese term reads the ticket bigrams, which the
    // indexer fills after the ticket's commit: wait for it as above.
    let mut tickets = Value::Null;
    for _ in 0..250 {
        let (status, body) = server.get("/api/v1/tickets?q=退款", Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
        tickets = body;
        if tickets["tickets"].as_array().is_some_and(|t| !t.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        tickets["tickets"].as_array().map(Vec::len),
        Some(1),
        "{tickets}"
    );
    server.shutdown().await;
}

// ---- item 5: per-visitor limits under concurrency -------------------------

fn png(len: usize) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    bytes.resize(len.max(8), 0x42);
    bytes
}

async fn upload(server: &TestServer, visitor: &VisitorClient, index: usize) -> (StatusCode, Value) {
    let part = Part::bytes(png(2_000 + index))
        .file_name(format!("shot-{index}.png"))
        .mime_str("image/png")
        .expect("mime");
    let response = server
        .http
        .post(server.url("/api/v1/visitor/attachments"))
        .bearer_auth(&visitor.token)
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    kefu_tests::read(response).await
}

fn stored_files(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir().join("attachments"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .count()
        })
        .unwrap_or(0)
}

/// `limits.visitor_uploads_per_hour` (60 by default) holds when a new
/// visitor starts 90 uploads at once: exactly 60 are stored, the rest are
/// 429, and no refused upload leaves a file or a row.
#[tokio::test]
async fn ninety_concurrent_uploads_store_exactly_the_hourly_limit() {
    let mut server = TestServer::start().await;
    assert_eq!(server.config().limits.visitor_uploads_per_hour, 60);
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    let answers = at_once(90, |i| upload(&server, &visitor, i)).await;
    assert_no_server_error(&answers, "uploads");
    assert_eq!(count_status(&answers, 201), 60, "accepted");
    assert_eq!(count_status(&answers, 429), 30, "refused");
    for (status, body) in &answers {
        if status.as_u16() == 429 {
            assert_error(*status, body, 429, "rate_limited");
        }
    }
    let (rows,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM attachments WHERE uploader_visitor_id = ?")
            .bind(&visitor.visitor_id)
            .fetch_one(&server.state().db)
            .await
            .expect("count");
    assert_eq!(rows, 60);
    assert_eq!(stored_files(&server), 60, "one file per row, no strays");
    // Still 429 afterwards, one at a time too.
    let (status, body) = upload(&server, &visitor, 90).await;
    assert_error(status, &body, 429, "rate_limited");
    server.shutdown().await;
}

async fn offline_form(
    server: &TestServer,
    visitor: &VisitorClient,
    index: usize,
) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.url("/api/v1/visitor/tickets"))
        .bearer_auth(&visitor.token)
        .json(&json!({"email": "li@example.com", "content": format!("form {index}: where is my order?"),
                      "client_msg_id": format!("form-{index}")}))
        .send()
        .await
        .expect("form");
    kefu_tests::read(response).await
}

/// Five offline forms per visitor per hour, also when 20 come at once;
/// a refused form stores nothing (no message, no ticket).
#[tokio::test]
async fn twenty_concurrent_offline_forms_make_exactly_five_tickets() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let answers = at_once(20, |i| offline_form(&server, &visitor, i)).await;
    assert_no_server_error(&answers, "forms");
    assert_eq!(count_status(&answers, 201), 5, "{:?}", statuses(&answers));
    assert_eq!(count_status(&answers, 429), 15, "{:?}", statuses(&answers));
    let (tickets,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM tickets WHERE requester_visitor_id = ? AND via = 'form'",
    )
    .bind(&visitor.visitor_id)
    .fetch_one(&server.state().db)
    .await
    .expect("count");
    assert_eq!(tickets, 5);
    let messages = server
        .transcript(&amy.token, &visitor.conversation_id)
        .await;
    let forms: Vec<&Value> = messages
        .iter()
        .filter(|m| m["meta"]["offline_form"] == true)
        .collect();
    assert_eq!(forms.len(), 5, "refused forms store no message");
    // A retry of an accepted form is still answered (200), over the limit.
    let accepted = answers
        .iter()
        .position(|(status, _)| status.as_u16() == 201)
        .expect("one accepted");
    let (status, body) = offline_form(&server, &visitor, accepted).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["ticket"]["number"],
        answers[accepted].1["ticket"]["number"]
    );
    server.shutdown().await;
}

// ---- item 7: concurrent admin writes --------------------------------------

#[tokio::test]
async fn concurrent_rule_creates_and_reorders_never_fail() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let answers = at_once(16, |i| {
        server.post(
            "/api/v1/routing/rules",
            Some(&admin),
            json!({"name": format!("rule {i}"), "keywords": [format!("word{i}")], "agent_id": amy.id}),
        )
    })
    .await;
    assert_no_server_error(&answers, "rule creates");
    assert_eq!(count_status(&answers, 201), 16, "{:?}", statuses(&answers));
    let (status, body) = server.get("/api/v1/routing/rules", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let rules = body["rules"].as_array().expect("rules").clone();
    let mut positions: Vec<i64> = rules
        .iter()
        .map(|r| r["position"].as_i64().expect("position"))
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=16).collect::<Vec<_>>(),
        "distinct positions"
    );
    let ids: Vec<Value> = rules.iter().map(|r| r["id"].clone()).collect();

    // Reorders (each a rotation of the list) and updates at once.
    let answers = at_once(16, |i| {
        let mut order = ids.clone();
        order.rotate_left(i);
        let server = &server;
        let admin = &admin;
        let id = ids[i].clone();
        async move {
            if i % 2 == 0 {
                server
                    .post(
                        "/api/v1/routing/rules/reorder",
                        Some(admin),
                        json!({"ids": order}),
                    )
                    .await
            } else {
                patch(
                    server,
                    format!("/api/v1/routing/rules/{}", id.as_str().expect("id")),
                    admin,
                    json!({"name": format!("renamed {i}")}),
                )
                .await
            }
        }
    })
    .await;
    assert_no_server_error(&answers, "reorders and updates");
    assert_eq!(count_status(&answers, 200), 16, "{:?}", statuses(&answers));
    let (_, body) = server.get("/api/v1/routing/rules", Some(&admin)).await;
    let mut positions: Vec<i64> = body["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["position"].as_i64().expect("position"))
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=16).collect::<Vec<_>>(),
        "still a permutation"
    );
    // Concurrent deletes of one rule: one 200, the rest 404.
    let target = ids[0].as_str().expect("id").to_owned();
    let answers = at_once(12, |_| {
        delete(&server, format!("/api/v1/routing/rules/{target}"), &admin)
    })
    .await;
    assert_no_server_error(&answers, "rule deletes");
    assert_eq!(count_status(&answers, 200), 1, "{:?}", statuses(&answers));
    assert_eq!(count_status(&answers, 404), 11, "{:?}", statuses(&answers));
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_team_writes_never_fail_and_the_team_limit_holds() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let answers = at_once(16, |i| {
        server.post(
            "/api/v1/teams",
            Some(&admin),
            json!({"name": format!("team {i}"), "agent_ids": [amy.id]}),
        )
    })
    .await;
    assert_no_server_error(&answers, "team creates");
    assert_eq!(count_status(&answers, 201), 16, "{:?}", statuses(&answers));
    let team_ids: Vec<String> = answers
        .iter()
        .map(|(_, body)| body["team"]["id"].as_str().expect("id").to_owned())
        .collect();

    // Updates and deletes at once, rules pointing at some teams meanwhile.
    let answers = at_once(16, |i| {
        let server = &server;
        let admin = &admin;
        let team = team_ids[i].clone();
        let amy = amy.id.clone();
        async move {
            match i % 3 {
                0 => delete(server, format!("/api/v1/teams/{team}"), admin).await,
                1 => {
                    patch(
                        server,
                        format!("/api/v1/teams/{team}"),
                        admin,
                        json!({"name": format!("renamed {i}"), "agent_ids": [amy]}),
                    )
                    .await
                }
                _ => {
                    server
                        .post(
                            "/api/v1/routing/rules",
                            Some(admin),
                            json!({"name": format!("to team {i}"), "team_id": team}),
                        )
                        .await
                }
            }
        }
    })
    .await;
    assert_no_server_error(&answers, "team updates, deletes and rules");
    assert!(
        answers.iter().all(|(s, _)| s.is_success()),
        "{:?}",
        statuses(&answers)
    );
    // A team and a rule to it, deleted and created at once: either the
    // rule is refused (the team is gone) or the delete is (409).
    for round in 0..6 {
        let (_, body) = server
            .post(
                "/api/v1/teams",
                Some(&admin),
                json!({"name": format!("race {round}")}),
            )
            .await;
        let team = body["team"]["id"].as_str().expect("id").to_owned();
        let (deleted, created) = tokio::join!(
            delete(&server, format!("/api/v1/teams/{team}"), &admin),
            server.post(
                "/api/v1/routing/rules",
                Some(&admin),
                json!({"name": format!("race {round}"), "team_id": team}),
            )
        );
        assert!(!deleted.0.is_server_error(), "{deleted:?}");
        assert!(!created.0.is_server_error(), "{created:?}");
        assert!(
            (deleted.0 == 200) != (created.0 == 201),
            "exactly one wins: {deleted:?} {created:?}"
        );
    }
    // At most 200 teams, however many ask at once.
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM teams")
        .fetch_one(&server.state().db)
        .await
        .expect("count");
    for i in count..195 {
        let (status, body) = server
            .post(
                "/api/v1/teams",
                Some(&admin),
                json!({"name": format!("filler {i}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let answers = at_once(12, |i| {
        server.post(
            "/api/v1/teams",
            Some(&admin),
            json!({"name": format!("last {i}")}),
        )
    })
    .await;
    assert_no_server_error(&answers, "teams at the limit");
    assert_eq!(count_status(&answers, 201), 5, "{:?}", statuses(&answers));
    assert_eq!(count_status(&answers, 409), 7, "{:?}", statuses(&answers));
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM teams")
        .fetch_one(&server.state().db)
        .await
        .expect("count");
    assert_eq!(count, 200);
    server.shutdown().await;
}

async fn promote(server: &TestServer, by: &str, agent: &AgentClient) {
    let (status, body) = patch(
        server,
        format!("/api/v1/agents/{}", agent.id),
        by,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn admins(agents: &Value) -> Vec<String> {
    agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter(|a| a["role"] == "admin" && a["active"] != false)
        .map(|a| a["username"].as_str().expect("username").to_owned())
        .collect()
}

/// Two admins demoting each other at once: one wins (200), the other is
/// refused (403: no longer an admin, or 409: the last admin), never a 500,
/// and one admin always remains. Plus concurrent PATCHes of one agent.
#[tokio::test]
async fn admins_demoting_each_other_at_once_leave_one_admin() {
    let mut server = TestServer::start().await;
    let owner = server.admin().await;
    let owner_id = {
        let (_, me) = server.get("/api/v1/agents/me", Some(&owner)).await;
        me["agent"]["id"].as_str().expect("id").to_owned()
    };
    let boss = server.agent("boss").await;
    for round in 0..8 {
        // The owner is an admin at the start of every round.
        let (_, agents) = server.get("/api/v1/agents", Some(&owner)).await;
        if admins(&agents).contains(&"owner".to_owned()) {
            promote(&server, &owner, &boss).await;
        } else {
            promote(
                &server,
                &boss.token,
                &AgentClient {
                    id: owner_id.clone(),
                    username: "owner".into(),
                    token: owner.clone(),
                },
            )
            .await;
            promote(&server, &owner, &boss).await;
        }
        let (a, b) = tokio::join!(
            patch(
                &server,
                format!("/api/v1/agents/{}", boss.id),
                &owner,
                json!({"role": "agent"})
            ),
            patch(
                &server,
                format!("/api/v1/agents/{owner_id}"),
                &boss.token,
                json!({"role": "agent"})
            ),
        );
        for answer in [&a, &b] {
            assert!(
                [200, 403, 409].contains(&answer.0.as_u16()),
                "round {round}: {answer:?}"
            );
        }
        assert_eq!(
            [&a, &b].iter().filter(|x| x.0 == 200).count(),
            1,
            "round {round}: one wins: {a:?} {b:?}"
        );
        let (_, agents) = server.get("/api/v1/agents", Some(&owner)).await;
        assert_eq!(admins(&agents).len(), 1, "round {round}: {agents}");
        // Put the owner back in charge for the next round.
        if !admins(&agents).contains(&"owner".to_owned()) {
            promote(
                &server,
                &boss.token,
                &AgentClient {
                    id: owner_id.clone(),
                    username: "owner".into(),
                    token: owner.clone(),
                },
            )
            .await;
            let (status, _) = patch(
                &server,
                format!("/api/v1/agents/{}", boss.id),
                &owner,
                json!({"role": "agent"}),
            )
            .await;
            assert_eq!(status, 200);
        }
    }
    // Concurrent PATCHes of one agent's fields.
    let amy = server.agent("amy").await;
    let answers = at_once(16, |i| {
        let body = if i % 2 == 0 {
            json!({"display_name": format!("Amy {i}")})
        } else {
            json!({"max_concurrent": i})
        };
        patch(&server, format!("/api/v1/agents/{}", amy.id), &owner, body)
    })
    .await;
    assert_no_server_error(&answers, "agent patches");
    assert_eq!(count_status(&answers, 200), 16, "{:?}", statuses(&answers));
    server.shutdown().await;
}

/// Canned replies, apps, routing settings, tickets and visitor profiles
/// written by many requests at once: no 500, and no update undoes
/// another's field.
#[tokio::test]
async fn concurrent_writes_everywhere_else_never_fail_or_lose_fields() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let app_id = app["id"].as_str().expect("id").to_owned();

    // Canned replies: creates, then title and body edits of one reply.
    let answers = at_once(16, |i| {
        server.post(
            "/api/v1/canned_replies",
            Some(&admin),
            json!({"shortcut": format!("s{i}"), "title": format!("T{i}"), "body": format!("B{i}"), "shared": true}),
        )
    })
    .await;
    assert_no_server_error(&answers, "canned creates");
    assert_eq!(count_status(&answers, 201), 16, "{:?}", statuses(&answers));
    let reply = answers[0].1["canned_reply"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let answers = at_once(16, |i| {
        let body = if i % 2 == 0 {
            json!({"title": format!("title {i}")})
        } else {
            json!({"body": format!("body {i}")})
        };
        patch(
            &server,
            format!("/api/v1/canned_replies/{reply}"),
            &admin,
            body,
        )
    })
    .await;
    assert_no_server_error(&answers, "canned updates");
    assert_eq!(count_status(&answers, 200), 16, "{:?}", statuses(&answers));
    let (_, body) = server
        .get(&format!("/api/v1/canned_replies/{reply}"), Some(&admin))
        .await;
    assert!(
        body["canned_reply"]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("title ")),
        "{body}"
    );
    assert!(
        body["canned_reply"]["body"]
            .as_str()
            .is_some_and(|t| t.starts_with("body ")),
        "{body}"
    );

    // Apps: name and welcome message edited at once.
    let answers = at_once(16, |i| {
        let body = if i % 2 == 0 {
            json!({"name": format!("Shop {i}")})
        } else {
            json!({"welcome_message": format!("Welcome {i}")})
        };
        patch(&server, format!("/api/v1/apps/{app_id}"), &admin, body)
    })
    .await;
    assert_no_server_error(&answers, "app updates");
    assert_eq!(count_status(&answers, 200), 16, "{:?}", statuses(&answers));
    let (_, body) = server
        .get(&format!("/api/v1/apps/{app_id}"), Some(&admin))
        .await;
    assert!(
        body["app"]["name"]
            .as_str()
            .is_some_and(|t| t.starts_with("Shop ")),
        "{body}"
    );
    assert!(
        body["app"]["welcome_message"]
            .as_str()
            .is_some_and(|t| t.starts_with("Welcome ")),
        "{body}"
    );

    // Routing settings.
    let answers = at_once(16, |i| {
        let policy = if i % 2 == 0 {
            "round_robin"
        } else {
            "least_busy"
        };
        server.patch(
            "/api/v1/routing",
            Some(&admin),
            json!({"policy": policy, "auto_assign": i % 3 != 0}),
        )
    })
    .await;
    assert_no_server_error(&answers, "routing settings");
    assert_eq!(count_status(&answers, 200), 16, "{:?}", statuses(&answers));

    // Tickets: field edits and comments on one ticket.
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&admin),
            json!({"subject": "Broken", "description": "d"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let number = body["ticket"]["number"].as_u64().expect("number");
    let answers = at_once(16, |i| {
        let server = &server;
        let admin = &admin;
        async move {
            match i % 3 {
                0 => {
                    patch(
                        server,
                        format!("/api/v1/tickets/{number}"),
                        admin,
                        json!({"priority": "high", "tags": [format!("t{i}")]}),
                    )
                    .await
                }
                1 => {
                    patch(
                        server,
                        format!("/api/v1/tickets/{number}"),
                        admin,
                        json!({"status": "pending"}),
                    )
                    .await
                }
                _ => {
                    server
                        .post(
                            &format!("/api/v1/tickets/{number}/comments"),
                            Some(admin),
                            json!({"body": format!("note {i}")}),
                        )
                        .await
                }
            }
        }
    })
    .await;
    assert_no_server_error(&answers, "ticket writes");
    assert!(
        answers.iter().all(|(s, _)| s.is_success()),
        "{:?}",
        statuses(&answers)
    );

    // Visitor profiles: one visitor resuming with attributes from many tabs.
    let visitor = server.visitor(&app).await;
    let answers = at_once(16, |i| {
        let mut attributes = serde_json_map();
        attributes.insert(format!("k{i}"), json!(i));
        server.post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "token": visitor.token, "attributes": attributes}),
        )
    })
    .await;
    assert_no_server_error(&answers, "visitor sessions");
    assert_eq!(count_status(&answers, 201), 16, "{:?}", statuses(&answers));
    let (attributes,): (String,) = sqlx::query_as("SELECT attributes FROM visitors WHERE id = ?")
        .bind(&visitor.visitor_id)
        .fetch_one(&server.state().db)
        .await
        .expect("attributes");
    let attributes: Value = kefu_tests::serde_json::from_str(&attributes).expect("json");
    assert_eq!(
        attributes.as_object().map(|a| a.len()),
        Some(16),
        "every tab's attribute merged: {attributes}"
    );
    server.shutdown().await;
}

fn serde_json_map() -> kefu_tests::serde_json::Map<String, Value> {
    kefu_tests::serde_json::Map::new()
}
