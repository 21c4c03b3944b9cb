//! Reports over real traffic: visitors write, agents answer after known
//! delays, conversations are resolved and reopened, and the counts,
//! medians and p90s come out exactly as the stored times say.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error};
use reqwest::StatusCode;

fn today_utc() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Session start of a conversation, as the server stored it.
async fn opened_at(server: &TestServer, conversation: &str) -> i64 {
    sqlx::query_scalar("SELECT opened_at FROM conversations WHERE id = ?")
        .bind(conversation)
        .fetch_one(&server.state().db)
        .await
        .expect("opened_at")
}

async fn resolved_at(server: &TestServer, conversation: &str) -> i64 {
    sqlx::query_scalar("SELECT resolved_at FROM conversations WHERE id = ?")
        .bind(conversation)
        .fetch_one(&server.state().db)
        .await
        .expect("resolved_at")
}

async fn assign(server: &TestServer, admin: &str, visitor: &VisitorClient, agent: &AgentClient) {
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/assign", visitor.conversation_id),
            Some(admin),
            json!({"agent_id": agent.id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn resolve(server: &TestServer, agent: &AgentClient, visitor: &VisitorClient) {
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/status", visitor.conversation_id),
            Some(&agent.token),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An agent reply; returns its `created_at`.
async fn reply(server: &TestServer, agent: &AgentClient, visitor: &VisitorClient, id: &str) -> i64 {
    let (status, message) = server
        .agent_says(agent, &visitor.conversation_id, id, "answer")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    message["created_at"].as_i64().expect("created_at")
}

fn range(from: jiff::civil::Date, to: jiff::civil::Date, tz: &str) -> String {
    format!("from={from}&to={to}&tz={tz}")
}

/// The summary once its first-response count is `count` (the indexer
/// records first responses a few milliseconds after the reply).
async fn summary_within(server: &TestServer, token: &str, query: &str, count: u64) -> Value {
    let mut body = Value::Null;
    for _ in 0..250 {
        let (status, answer) = server
            .get(&format!("/api/v1/reports/summary?{query}"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        body = answer;
        if body["first_response"]["count"] == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    body
}

#[tokio::test]
async fn figures_match_the_traffic_exactly() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let v1 = server.visitor(&app).await;
    let v2 = server.visitor(&app).await;
    let v3 = server.visitor(&app).await;

    // v1: a note first (not a response), amy answers after ~60 ms, twice.
    let (_, first) = server.visitor_says(&v1, "m1", "hello").await;
    assign(&server, &admin, &v1, &amy).await;
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/messages", v1.conversation_id),
            Some(&amy.token),
            json!({"client_msg_id": "note", "content": "checking", "private": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let r1 = reply(&server, &amy, &v1, "r1").await;
    reply(&server, &amy, &v1, "r1b").await;
    // v2: bo after ~150 ms. v3: amy after ~250 ms.
    server.visitor_says(&v2, "m1", "hi").await;
    assign(&server, &admin, &v2, &bo).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r2 = reply(&server, &bo, &v2, "r2").await;
    server.visitor_says(&v3, "m1", "hey").await;
    assign(&server, &admin, &v3, &amy).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r3 = reply(&server, &amy, &v3, "r3").await;

    // The session opened when the visitor wrote (the start itself runs
    // off the ack path, a little later).
    assert_eq!(
        opened_at(&server, &v1.conversation_id).await,
        first["created_at"].as_i64().expect("created_at")
    );
    let first_responses = [
        r1 - opened_at(&server, &v1.conversation_id).await,
        r2 - opened_at(&server, &v2.conversation_id).await,
        r3 - opened_at(&server, &v3.conversation_id).await,
    ];
    // Each first response came after its wait (the order between them
    // depends on the machine's load, the figures below do not).
    for (response, waited) in first_responses.iter().zip([60, 150, 250]) {
        assert!(*response >= waited, "{first_responses:?}");
    }

    // Wait for the indexer before resolving (a reply indexed after the
    // resolve would still count: its time is before it).
    let today = today_utc();
    let day = range(today, today, "UTC");
    summary_within(&server, &admin, &day, 3).await;
    resolve(&server, &amy, &v1).await;
    resolve(&server, &bo, &v2).await;
    let resolutions = [
        resolved_at(&server, &v1.conversation_id).await
            - opened_at(&server, &v1.conversation_id).await,
        resolved_at(&server, &v2.conversation_id).await
            - opened_at(&server, &v2.conversation_id).await,
    ];

    // Tickets record their own facts (tickets.rs); two opened, one solved.
    for (name, agent) in [
        (kefu_server::reports::EventName::TicketOpened, None),
        (kefu_server::reports::EventName::TicketOpened, None),
        (kefu_server::reports::EventName::TicketSolved, Some(&bo)),
    ] {
        kefu_server::reports::record(
            &server.state().db,
            name,
            kefu_server::reports::Event {
                agent_id: agent.map(|a| a.id.parse().expect("agent id")),
                ..Default::default()
            },
        )
        .await
        .expect("record");
    }

    let summary = summary_within(&server, &admin, &day, 3).await;
    assert_eq!(summary["range"]["from"], today.to_string());
    assert_eq!(
        summary["conversations"],
        json!({"opened": 3, "resolved": 2})
    );
    // Visitors 3, agents 4 replies; the note is not traffic.
    assert_eq!(summary["messages"], json!({"visitor": 3, "agent": 4}));
    let mut sorted = first_responses;
    sorted.sort_unstable();
    assert_eq!(
        summary["first_response"],
        json!({"count": 3, "median_ms": sorted[1], "p90_ms": sorted[2]})
    );
    let mut res = resolutions;
    res.sort_unstable();
    assert_eq!(
        summary["resolution"],
        json!({"count": 2, "median_ms": res[0], "p90_ms": res[1]})
    );
    assert_eq!(summary["tickets"], json!({"opened": 2, "solved": 1}));

    // A reopened conversation is a new session with its own first response.
    server.visitor_says(&v1, "m2", "one more thing").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let r4 = reply(&server, &amy, &v1, "r4").await;
    let fourth = r4 - opened_at(&server, &v1.conversation_id).await;
    let summary = summary_within(&server, &admin, &day, 4).await;
    assert_eq!(summary["conversations"]["opened"], 4);
    let mut all = [
        first_responses[0],
        first_responses[1],
        first_responses[2],
        fourth,
    ];
    all.sort_unstable();
    assert_eq!(
        summary["first_response"],
        json!({"count": 4, "median_ms": all[1], "p90_ms": all[3]})
    );

    // Daily: the days of a wider range add up to the summary; all of it
    // falls on today.
    let yesterday = today.yesterday().expect("date");
    let tomorrow = today.tomorrow().expect("date");
    let (status, daily) = server
        .get(
            &format!(
                "/api/v1/reports/daily?{}",
                range(yesterday, tomorrow, "UTC")
            ),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{daily}");
    let days = daily["days"].as_array().expect("days");
    assert_eq!(days.len(), 3);
    assert_eq!(days[1]["date"], today.to_string());
    assert_eq!(
        days[0]["conversations"],
        json!({"opened": 0, "resolved": 0})
    );
    assert_eq!(
        days[1]["conversations"],
        json!({"opened": 4, "resolved": 2})
    );
    assert_eq!(days[1]["messages"], json!({"visitor": 4, "agent": 5}));
    assert_eq!(days[1]["first_response"], summary["first_response"]);
    assert_eq!(days[2]["messages"], json!({"visitor": 0, "agent": 0}));
    assert_eq!(
        days[1]["start_ms"].as_i64().expect("start") + 86_400_000,
        days[2]["start_ms"].as_i64().expect("start")
    );

    // Per agent: amy answered v1 twice, v3, and v1 again; bo answered v2.
    let (status, agents) = server
        .get(&format!("/api/v1/reports/agents?{day}"), Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    let row = |id: &str| -> Value {
        agents["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .find(|a| a["agent_id"] == id)
            .cloned()
            .expect("agent row")
    };
    let amy_row = row(&amy.id);
    assert_eq!(amy_row["display_name"], "AMY");
    assert_eq!(amy_row["messages"]["agent"], 4);
    let mut amy_times = [first_responses[0], first_responses[2], fourth];
    amy_times.sort_unstable();
    assert_eq!(
        amy_row["first_response"],
        json!({"count": 3, "median_ms": amy_times[1], "p90_ms": amy_times[2]})
    );
    assert_eq!(amy_row["conversations"]["resolved"], 1);
    assert_eq!(amy_row["resolution"]["median_ms"], resolutions[0]);
    let bo_row = row(&bo.id);
    assert_eq!(bo_row["messages"]["agent"], 1);
    assert_eq!(bo_row["first_response"]["median_ms"], first_responses[1]);
    assert_eq!(bo_row["conversations"]["resolved"], 1);
    assert_eq!(bo_row["tickets"]["solved"], 1);
    // The admin sees every agent, idle ones too.
    assert_eq!(agents["agents"].as_array().map(Vec::len), Some(3));

    // An agent sees only their own row, and no shop-wide figures.
    let (status, own) = server
        .get(&format!("/api/v1/reports/agents?{day}"), Some(&bo.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["agents"].as_array().map(Vec::len), Some(1));
    assert_eq!(own["agents"][0], bo_row);
    for path in ["summary", "daily"] {
        let (status, body) = server
            .get(&format!("/api/v1/reports/{path}?{day}"), Some(&bo.token))
            .await;
        assert_error(status, &body, 403, "forbidden");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn ranges_and_callers_are_checked() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    for query in [
        "",
        "from=2026-01-01",
        "to=2026-01-01",
        "from=2026-1-1&to=2026-01-02",
        "from=2026-01-32&to=2026-02-01",
        "from=yesterday&to=2026-02-01",
        "from=2026-02-02&to=2026-02-01",
        "from=2025-01-01&to=2026-01-02",
        "from=2026-01-01&to=2026-01-02&tz=Mars/Olympus",
    ] {
        let (status, body) = server
            .get(&format!("/api/v1/reports/summary?{query}"), Some(&admin))
            .await;
        assert_error(status, &body, 400, "bad_request");
    }
    // 366 days is the longest range.
    let (status, body) = server
        .get(
            "/api/v1/reports/daily?from=2024-01-01&to=2024-12-31&tz=Asia/Shanghai",
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let days = body["days"].as_array().expect("days");
    assert_eq!(days.len(), 366);
    // Local midnight in Shanghai is 16:00 UTC the day before.
    assert_eq!(days[0]["start_ms"], 1_704_038_400_000_i64);
    assert_eq!(body["range"]["tz"], "Asia/Shanghai");

    let (status, body) = server
        .get(
            "/api/v1/reports/agents?from=2026-01-01&to=2026-01-01",
            Some(&visitor.token),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .get(
            "/api/v1/reports/summary?from=2026-01-01&to=2026-01-01",
            None,
        )
        .await;
    assert_error(status, &body, 401, "unauthorized");
    server.shutdown().await;
}
