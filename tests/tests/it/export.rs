//! Export (issue 19 item 2, docs/API.md 2.18): one conversation or a date
//! range as JSON Lines and CSV, messages and tickets; admins only,
//! audited, streamed (chunked, several log pages), bounded (range, slots).

use kefu_tests::{TestServer, assert_error, read};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn export(server: &TestServer, token: &str, query: &str) -> reqwest::Response {
    server
        .http
        .get(server.url(&format!("/api/v1/admin/export/{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("export")
}

fn jsonl(text: &str) -> Vec<Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "lines end with \\n"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON value per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_tickets_as_json_lines_and_csv() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let app = server.app(json!({})).await;
    let first = server.visitor(&app).await;
    let second = server.visitor(&app).await;
    let started = jiff::Timestamp::now().as_millisecond();
    let (status, _) = server.visitor_says(&first, "v1", "hello, \"shop\"").await;
    assert_eq!(status, StatusCode::CREATED);
    let tricky = "=HYPERLINK(\"http://evil.example\")\nsecond line";
    let (status, _) = server.visitor_says(&first, "v2", tricky).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server
        .agent_says(&amy, &first.conversation_id, "a1", "hi, how can I help?")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server
        .post(
            &format!("/api/v1/conversations/{}/messages", first.conversation_id),
            Some(&amy.token),
            json!({"client_msg_id": "n1", "content": "internal note", "private": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = server.visitor_says(&second, "w1", "other chat").await;
    assert_eq!(status, StatusCode::CREATED);

    // One conversation, JSON Lines: exactly the agent's transcript (notes
    // included), in order, as the API serves messages.
    let response = export(
        &server,
        &admin,
        &format!("messages?conversation_id={}", first.conversation_id),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment; filename=\"kefu-messages-")
    );
    let lines = jsonl(&response.text().await.expect("body"));
    let transcript = server.transcript(&admin, &first.conversation_id).await;
    assert_eq!(lines, transcript);
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().any(|m| m["kind"] == "note"));

    // The same as CSV: a header, one record per message, quoting and the
    // formula guard.
    let response = export(
        &server,
        &admin,
        &format!(
            "messages?conversation_id={}&format=csv",
            first.conversation_id
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let csv = response.text().await.expect("body");
    assert!(csv.starts_with("conversation_id,seq,id,created_at,created_at_utc,sender_type,sender_id,kind,content,attachment_name,attachment_url\r\n"));
    assert!(csv.contains(",\"hello, \"\"shop\"\"\","), "{csv}");
    assert!(
        csv.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\")\nsecond line\","),
        "{csv}"
    );
    assert_eq!(csv.matches("\r\n").count(), 5, "{csv}");

    // A date range: both conversations; a range before them: nothing.
    let now = jiff::Timestamp::now().as_millisecond();
    let response = export(
        &server,
        &admin,
        &format!("messages?from={}&to={}", started - 1000, now + 1000),
    )
    .await;
    let lines = jsonl(&response.text().await.expect("body"));
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().any(|m| m["content"] == "other chat"));
    let response = export(
        &server,
        &admin,
        &format!(
            "messages?from={}&to={}",
            started - 100_000,
            started - 50_000
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "");

    // Tickets, with their comments in JSON Lines.
    let (status, ticket) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "Parcel, missing", "conversation_id": first.conversation_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    let number = ticket["ticket"]["number"].as_i64().expect("number");
    let (status, _) = server
        .post(
            &format!("/api/v1/tickets/{number}/comments"),
            Some(&amy.token),
            json!({"body": "Asked the courier", "public": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "Invoice copy"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let response = export(
        &server,
        &admin,
        &format!("tickets?conversation_id={}", first.conversation_id),
    )
    .await;
    let tickets = jsonl(&response.text().await.expect("body"));
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["subject"], "Parcel, missing");
    assert_eq!(tickets[0]["comments"][0]["body"], "Asked the courier");
    let now = jiff::Timestamp::now().as_millisecond();
    let response = export(
        &server,
        &admin,
        &format!(
            "tickets?from={}&to={}&format=csv",
            started - 1000,
            now + 1000
        ),
    )
    .await;
    let csv = response.text().await.expect("body");
    assert!(csv.starts_with("number,subject,"), "{csv}");
    assert!(csv.contains(",\"Parcel, missing\","), "{csv}");
    assert!(csv.contains(",Invoice copy,"), "{csv}");
    assert_eq!(csv.matches("\r\n").count(), 3, "{csv}");

    // Every export is in the audit log, with what was asked.
    let (status, audit) = server
        .get("/api/v1/audit?action=export.messages", Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4, "{audit}");
    assert!(
        entries.iter().any(
            |e| e["details"]["conversation_id"] == first.conversation_id.as_str()
                && e["details"]["format"] == "csv"
        ),
        "{audit}"
    );
    let (_, audit) = server
        .get("/api/v1/audit?action=export.tickets", Some(&admin))
        .await;
    assert_eq!(audit["entries"].as_array().expect("entries").len(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_for_admins_and_refuses_bad_requests_without_auditing() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    let conversation = &visitor.conversation_id;

    let (status, body) = read(
        server
            .http
            .get(server.url(&format!(
                "/api/v1/admin/export/messages?conversation_id={conversation}"
            )))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_error(status, &body, 401, "unauthorized");
    for query in [
        format!("messages?conversation_id={conversation}"),
        "tickets?from=0&to=1".to_owned(),
    ] {
        let (status, body) = read(export(&server, &amy.token, &query).await).await;
        assert_error(status, &body, 403, "forbidden");
        let (status, body) = read(export(&server, &visitor.token, &query).await).await;
        assert_error(status, &body, 403, "forbidden");
    }
    let year_and_a_day = 367_i64 * 24 * 3600 * 1000;
    for (query, field) in [
        ("messages?format=xml&from=0&to=1".to_owned(), Some("format")),
        (format!("messages?from=0&to={year_and_a_day}"), Some("to")),
        ("messages?from=10&to=10".to_owned(), Some("to")),
        ("messages?from=10".to_owned(), None),
        ("messages".to_owned(), None),
        (
            "tickets?conversation_id=nope".to_owned(),
            Some("conversation_id"),
        ),
        (
            format!("messages?conversation_id={conversation}&from=0&to=1"),
            None,
        ),
        ("messages?from=abc&to=1".to_owned(), None),
    ] {
        let (status, body) = read(export(&server, &admin, &query).await).await;
        assert_error(status, &body, 400, "bad_request");
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{query}: {body}");
        }
    }
    let unknown = "01J9Z7A1B2C3D4E5F6G7H8J9K0";
    let (status, body) = read(
        export(
            &server,
            &admin,
            &format!("messages?conversation_id={unknown}"),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (_, audit) = server
        .get("/api/v1/audit?action=export.messages", Some(&admin))
        .await;
    assert_eq!(audit["entries"], json!([]), "refusals are not exports");
    let (_, audit) = server
        .get("/api/v1/audit?action=export.tickets", Some(&admin))
        .await;
    assert_eq!(audit["entries"], json!([]));
    server.shutdown().await;
}

/// A conversation longer than several log pages comes out whole, chunked
/// (no Content-Length: streamed); two downloads in progress hold both
/// slots, a third is 429 until one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_exports_stream_and_take_a_slot_each_until_their_download_ends() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let amy = server.agent("amy").await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    let (status, _) = server.visitor_says(&visitor, "v0", "start").await;
    assert_eq!(status, StatusCode::CREATED);
    // 1,500 × 14 KB: more than loopback's socket buffers hold, so a
    // download that is not read really stays in progress.
    let filler = "x".repeat(14_000);
    for i in 0..1_500 {
        let (status, _) = server
            .agent_says(
                &amy,
                &visitor.conversation_id,
                &format!("a{i}"),
                &format!("{i} {filler}"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let query = format!("messages?conversation_id={}", visitor.conversation_id);
    let response = export(&server, &admin, &query).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let lines = jsonl(&response.text().await.expect("body"));
    assert_eq!(lines.len(), 1_501);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=1_501).collect::<Vec<u64>>(),
        "gap-free, in order"
    );

    // Two downloads started and not read: both slots taken.
    let held_one = export(&server, &admin, &query).await;
    let held_two = export(&server, &admin, &query).await;
    assert_eq!(held_one.status(), StatusCode::OK);
    assert_eq!(held_two.status(), StatusCode::OK);
    let third = export(&server, &admin, &query).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = read(third).await;
    assert_error(status, &body, 429, "rate_limited");
    // One read to the end gives its slot back.
    let lines = jsonl(&held_one.text().await.expect("body"));
    assert_eq!(lines.len(), 1_501);
    let mut freed = false;
    for _ in 0..100 {
        let response = export(&server, &admin, &query).await;
        if response.status() == StatusCode::OK {
            assert_eq!(jsonl(&response.text().await.expect("body")).len(), 1_501);
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(freed, "the slot came back");
    drop(held_two);
    server.shutdown().await;
}
