//! Tickets as a workflow: numbering, tags, requesters, tickets made from a
//! chat with its transcript, public replies that reach the visitor (once)
//! and internal comments that do not, the history of changes, filters and
//! pagination, `ticket` frames, the visitor's offline form and own tickets,
//! reporting events, and bad input that stores nothing.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, assert_error};
use reqwest::StatusCode;

// ---- helpers -------------------------------------------------------------

async fn create(server: &TestServer, agent: &AgentClient, body: Value) -> Value {
    let (status, body) = server
        .post("/api/v1/tickets", Some(&agent.token), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["ticket"].clone()
}

fn numbers(body: &Value) -> Vec<u64> {
    body["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|t| t["number"].as_u64().expect("number"))
        .collect()
}

async fn ticket_count(server: &TestServer) -> i64 {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tickets")
        .fetch_one(&server.state().db)
        .await
        .expect("count");
    count
}

async fn history(server: &TestServer, agent: &AgentClient, number: u64) -> Vec<Value> {
    let (status, body) = server
        .get(
            &format!("/api/v1/tickets/{number}/history"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["events"].as_array().expect("events").clone()
}

/// Every ticket of a list, following `next_cursor` page by page.
async fn all_pages(server: &TestServer, agent: &AgentClient, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tickets?{query}&cursor={c}"),
            None => format!("/api/v1/tickets?{query}"),
        };
        let (status, body) = server.get(&path, Some(&agent.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        out.extend(body["tickets"].as_array().expect("tickets").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

async fn visitor_messages(server: &TestServer, visitor: &VisitorClient) -> Vec<Value> {
    let (status, body) = server
        .get("/api/v1/visitor/messages", Some(&visitor.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["messages"].as_array().expect("messages").clone()
}

async fn form(
    server: &TestServer,
    visitor: &VisitorClient,
    body: Value,
    origin: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = server
        .http
        .post(server.url("/api/v1/visitor/tickets"))
        .bearer_auth(&visitor.token)
        .json(&body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    kefu_tests::read(request.send().await.expect("send")).await
}

/// A `reporting_events` row: name, ticket number, agent id, app id.
type ReportRow = (String, Option<i64>, Option<String>, Option<String>);

const QUIET: Duration = Duration::from_millis(300);

// ---- tests ---------------------------------------------------------------

#[tokio::test]
async fn numbers_tags_and_requesters() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let one = create(
        &server,
        &amy,
        json!({"subject": "Refund", "tags": [" VIP ", "vip", "退款"], "requester_email": " li@example.com "}),
    )
    .await;
    assert_eq!(one["number"], 1);
    assert_eq!(one["tags"], json!(["vip", "退款"]));
    assert_eq!(one["requester"], json!({"email": "li@example.com"}));
    assert_eq!(one["via"], "agent");
    assert_eq!(one["transcript_seq"], Value::Null);
    let two = create(
        &server,
        &amy,
        json!({"subject": "Invoice", "tags": ["billing"]}),
    )
    .await;
    assert_eq!(two["number"], 2);
    assert_eq!(two["requester"], json!({}));
    let three = create(&server, &amy, json!({"subject": "Other", "tags": ["VIP"]})).await;
    assert_eq!(three["number"], 3);

    // Tag filter: exact, case-insensitive, through the tag rows.
    let (_, body) = server
        .get("/api/v1/tickets?tag=Vip", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body), vec![3, 1]);
    let (_, body) = server
        .get("/api/v1/tickets?tag=%E9%80%80%E6%AC%BE", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body), vec![1]);
    // Retagging moves the ticket between tag filters.
    let (status, body) = server
        .patch(
            "/api/v1/tickets/1",
            Some(&amy.token),
            json!({"tags": ["billing"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = server
        .get("/api/v1/tickets?tag=vip", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body), vec![3]);
    let (_, body) = server
        .get("/api/v1/tickets?tag=billing", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body), vec![2, 1]);
    // Requester filter by email, any case.
    let (_, body) = server
        .get("/api/v1/tickets?requester=LI@example.com", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body), vec![1]);

    // Bad input: 400/413/404, nothing stored, numbers not used up.
    let bad: Vec<(Value, u16, &str)> = vec![
        (
            json!({"subject": "x", "requester_email": "li"}),
            400,
            "bad_request",
        ),
        (
            json!({"subject": "x", "requester_email": "li@localhost"}),
            400,
            "bad_request",
        ),
        (
            json!({"subject": "x", "requester_email": "a b@example.com"}),
            400,
            "bad_request",
        ),
        (
            json!({"subject": "x", "requester_email": "li@@example.com"}),
            400,
            "bad_request",
        ),
        (
            json!({"subject": "x", "tags": ["x".repeat(51)]}),
            400,
            "bad_request",
        ),
        (json!({"subject": "x", "tags": [""]}), 400, "bad_request"),
        (json!({"subject": "x", "tags": ["a,b"]}), 400, "bad_request"),
        (
            json!({"subject": "x", "tags": (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            400,
            "bad_request",
        ),
        (json!({"subject": "x", "tags": "vip"}), 400, "bad_request"),
        (json!({"subject": "s".repeat(201)}), 400, "bad_request"),
        (json!({"subject": "a\u{0007}b"}), 400, "bad_request"),
        (json!({}), 400, "bad_request"),
        (json!({"subject": "x", "surprise": 1}), 400, "bad_request"),
        (
            json!({"subject": "x", "assignee_id": "not-a-ulid"}),
            400,
            "bad_request",
        ),
        (
            json!({"subject": "x", "assignee_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
            404,
            "not_found",
        ),
        (
            json!({"subject": "x", "description": "d".repeat(16 * 1024 + 1)}),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in bad {
        let (got, answer) = server
            .post("/api/v1/tickets", Some(&amy.token), body.clone())
            .await;
        assert_error(got, &answer, status, code);
    }
    // At the limits exactly: accepted.
    let edge = create(
        &server,
        &amy,
        json!({"subject": "s".repeat(200), "description": "d".repeat(16 * 1024),
               "tags": (0..20).map(|i| format!("{i}{}", "t".repeat(48))).collect::<Vec<_>>()}),
    )
    .await;
    assert_eq!(edge["number"], 4, "refused requests used no number");
    assert_eq!(ticket_count(&server).await, 4);
    let (tag_rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ticket_tags")
        .fetch_one(&server.state().db)
        .await
        .expect("count");
    assert_eq!(tag_rows, 1 + 1 + 1 + 20, "the tag rows follow the tags");
    server.shutdown().await;
}

#[tokio::test]
async fn a_ticket_made_from_a_chat_attaches_its_transcript() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server
        .visitor_with(&app, json!({"name": "Li Lei", "email": "li@example.com"}))
        .await;
    let conv = visitor.conversation_id.clone();
    server
        .visitor_says(&visitor, "v1", "  \nMy parcel never came\nOrder 1234")
        .await;
    server.agent_says(&amy, &conv, "a1", "Let me check").await;
    let (status, _) = server
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&amy.token),
            json!({"client_msg_id": "n1", "content": "courier is DHL", "private": true}),
        )
        .await;
    assert_eq!(status, 201);
    server.visitor_says(&visitor, "v2", "thanks").await;

    let ticket = create(&server, &amy, json!({"conversation_id": conv})).await;
    assert_eq!(ticket["subject"], "My parcel never came");
    assert_eq!(ticket["via"], "chat");
    assert_eq!(ticket["conversation_id"], conv.as_str());
    assert_eq!(
        ticket["requester"],
        json!({"visitor_id": visitor.visitor_id, "email": "li@example.com"})
    );
    assert_eq!(ticket["transcript_seq"], 4);
    let number = ticket["number"].as_u64().expect("number");

    // The chat goes on; the transcript stays as it was.
    server.visitor_says(&visitor, "v3", "anything new?").await;
    let (status, body) = server
        .get(
            &format!("/api/v1/tickets/{number}/transcript"),
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation_id"], conv.as_str());
    assert_eq!(body["transcript_seq"], 4);
    let messages = body["messages"].as_array().expect("messages");
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(
        contents,
        vec![
            "  \nMy parcel never came\nOrder 1234",
            "Let me check",
            "courier is DHL",
            "thanks"
        ]
    );
    assert_eq!(messages[2]["kind"], "note", "agents see notes in it");
    // Paged.
    let (_, body) = server
        .get(
            &format!("/api/v1/tickets/{number}/transcript?after=1&limit=2"),
            Some(&amy.token),
        )
        .await;
    let seqs: Vec<u64> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    let (_, body) = server
        .get(
            &format!("/api/v1/tickets/{number}/transcript?after=4"),
            Some(&amy.token),
        )
        .await;
    assert_eq!(body["messages"], json!([]));

    // A subject given wins; a chat without visitor text gets a generic one.
    let other = server.visitor_with(&app, json!({"name": "Bo"})).await;
    let ticket = create(
        &server,
        &amy,
        json!({"conversation_id": other.conversation_id}),
    )
    .await;
    assert_eq!(ticket["subject"], "Chat with Bo");
    assert_eq!(ticket["transcript_seq"], Value::Null);
    let (_, body) = server
        .get(
            &format!("/api/v1/tickets/{}/transcript", ticket["number"]),
            Some(&amy.token),
        )
        .await;
    assert_eq!(body["messages"], json!([]));
    // A ticket without a conversation has an empty transcript.
    let plain = create(&server, &amy, json!({"subject": "plain"})).await;
    let (status, body) = server
        .get(
            &format!("/api/v1/tickets/{}/transcript", plain["number"]),
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["conversation_id"], Value::Null);
    assert_eq!(body["messages"], json!([]));

    // The transcript is for agents only; unknown tickets are 404.
    let (status, body) = server
        .get(
            &format!("/api/v1/tickets/{number}/transcript"),
            Some(&visitor.token),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .get("/api/v1/tickets/999/transcript", Some(&amy.token))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .get(
            &format!("/api/v1/tickets/{number}/transcript?limit=0"),
            Some(&amy.token),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    server.shutdown().await;
}

#[tokio::test]
async fn a_public_reply_reaches_the_visitor_once_and_an_internal_one_never() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let conv = visitor.conversation_id.clone();
    server
        .visitor_says(&visitor, "v1", "where is my parcel")
        .await;
    let ticket = create(
        &server,
        &amy,
        json!({"subject": "Parcel", "conversation_id": conv}),
    )
    .await;
    let number = ticket["number"].as_u64().expect("number");
    let mut resume = json!({});
    resume[conv.as_str()] = json!(1);
    let mut visitor_ws = server.ws(&visitor.token, resume).await;
    let mut agent_ws = server.ws(&amy.token, json!({})).await;

    // Internal: stored on the ticket, never sent to the visitor.
    let (status, body) = server
        .post(
            &format!("/api/v1/tickets/{number}/comments"),
            Some(&amy.token),
            json!({"body": "courier says lost", "public": false}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["comment"]["message_seq"], Value::Null);
    let frame = agent_ws.next_of("ticket").await;
    assert_eq!(frame["ticket"]["number"], number);
    visitor_ws.silent(QUIET).await;
    assert_eq!(visitor_messages(&server, &visitor).await.len(), 1);

    // Public: a message in the conversation, live and by REST.
    let (status, body) = server
        .post(
            &format!("/api/v1/tickets/{number}/comments"),
            Some(&amy.token),
            json!({"body": "We are sending a new one", "public": true, "client_msg_id": "r1"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let comment = body["comment"].clone();
    assert_eq!(comment["public"], true);
    assert_eq!(comment["client_msg_id"], "r1");
    assert_eq!(comment["message_seq"], 2);
    let live = visitor_ws.next_of("message").await;
    assert_eq!(live["message"]["content"], "We are sending a new one");
    assert_eq!(live["message"]["sender"]["type"], "agent");
    assert_eq!(live["message"]["sender"]["id"], amy.id.as_str());
    assert_eq!(live["message"]["kind"], "text");
    assert_eq!(live["message"]["seq"], 2);
    assert_eq!(live["message"]["meta"]["ticket_number"], number);

    // The same post again (a client retry): the same comment, no second message.
    let (status, body) = server
        .post(
            &format!("/api/v1/tickets/{number}/comments"),
            Some(&amy.token),
            json!({"body": "We are sending a new one", "public": true, "client_msg_id": "r1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["comment"], comment);
    visitor_ws.silent(QUIET).await;
    let messages = visitor_messages(&server, &visitor).await;
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(
        contents,
        vec!["where is my parcel", "We are sending a new one"]
    );
    let (_, body) = server
        .get(
            &format!("/api/v1/tickets/{number}/comments"),
            Some(&amy.token),
        )
        .await;
    assert_eq!(body["comments"].as_array().expect("comments").len(), 2);
    // The agent's view of the conversation has the reply once too.
    let transcript = server.transcript(&amy.token, &conv).await;
    assert_eq!(transcript.len(), 2);

    // The visitor's own view of the ticket: the public reply only.
    let (status, body) = server
        .get(
            &format!("/api/v1/visitor/tickets/{number}"),
            Some(&visitor.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let replies = body["ticket"]["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["body"], "We are sending a new one");
    assert_eq!(replies[0]["author_name"], "AMY");
    assert!(body["ticket"].get("tags").is_none());
    assert!(body["ticket"].get("assignee_id").is_none());
    assert_eq!(
        body["ticket"]["description"],
        Value::Null,
        "an agent's description is not shown"
    );

    // An email-only ticket keeps its public reply on the ticket.
    let mail = create(
        &server,
        &amy,
        json!({"subject": "By mail", "requester_email": "li@example.com"}),
    )
    .await;
    let (status, body) = server
        .post(
            &format!("/api/v1/tickets/{}/comments", mail["number"]),
            Some(&amy.token),
            json!({"body": "Reply by mail", "public": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["comment"]["public"], true);
    assert_eq!(body["comment"]["message_seq"], Value::Null);
    visitor_ws.silent(QUIET).await;

    // Bad comments: nothing stored.
    let path = format!("/api/v1/tickets/{number}/comments");
    for (body, status, code) in [
        (json!({"body": "  "}), 400, "bad_request"),
        (
            json!({"body": "x", "client_msg_id": "bad id"}),
            400,
            "bad_request",
        ),
        (json!({"body": "x", "public": "yes"}), 400, "bad_request"),
        (json!({"body": "x", "extra": 1}), 400, "bad_request"),
        (
            json!({"body": "b".repeat(16 * 1024 + 1)}),
            413,
            "payload_too_large",
        ),
    ] {
        let (got, answer) = server.post(&path, Some(&amy.token), body).await;
        assert_error(got, &answer, status, code);
    }
    let (status, body) = server
        .post(
            "/api/v1/tickets/999/comments",
            Some(&amy.token),
            json!({"body": "x"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .post(
            &path,
            Some(&visitor.token),
            json!({"body": "x", "public": true}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (_, body) = server.get(&path, Some(&amy.token)).await;
    assert_eq!(body["comments"].as_array().expect("comments").len(), 2);
    visitor_ws.silent(QUIET).await;
    server.shutdown().await;
}

#[tokio::test]
async fn history_records_every_change_with_from_and_to() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    create(
        &server,
        &amy,
        json!({"subject": "Broken lamp", "priority": "low"}),
    )
    .await;
    let mut agent_ws = server.ws(&bo.token, json!({})).await;
    let changes = [
        json!({"status": "pending"}),
        json!({"priority": "urgent", "assignee_id": bo.id}),
        json!({"subject": "Broken lamp, shop 2", "tags": ["Lamp"]}),
        json!({"description": "Arrived cracked"}),
        json!({"assignee_id": null, "status": "solved"}),
    ];
    for change in changes {
        let (status, body) = server
            .patch("/api/v1/tickets/1", Some(&bo.token), change)
            .await;
        assert_eq!(status, 200, "{body}");
        let frame = agent_ws.next_of("ticket").await;
        assert_eq!(
            frame["ticket"], body["ticket"],
            "the frame is the new ticket"
        );
    }
    server
        .post(
            "/api/v1/tickets/1/comments",
            Some(&amy.token),
            json!({"body": "noted"}),
        )
        .await;
    agent_ws.next_of("ticket").await;

    // A PATCH that changes nothing records nothing and sends nothing.
    let (_, before) = server.get("/api/v1/tickets/1", Some(&amy.token)).await;
    let (status, body) = server
        .patch(
            "/api/v1/tickets/1",
            Some(&amy.token),
            json!({"status": "solved", "tags": ["lamp"], "subject": " Broken lamp, shop 2 "}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket"], before["ticket"], "updated_at unchanged");
    agent_ws.silent(QUIET).await;
    // Refused changes record nothing either.
    for bad in [
        json!({"status": "exploded"}),
        json!({"assignee_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        json!({"subject": ""}),
        json!({"tags": ["x".repeat(51)]}),
        json!({"description": "d".repeat(16 * 1024 + 1)}),
    ] {
        let (status, body) = server
            .patch("/api/v1/tickets/1", Some(&amy.token), bad)
            .await;
        assert!(status.is_client_error(), "{body}");
    }
    let (status, body) = server
        .patch(
            "/api/v1/tickets/9",
            Some(&amy.token),
            json!({"status": "open"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");

    let events = history(&server, &amy, 1).await;
    let summary: Vec<(String, String, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind").to_owned(),
                e["actor"]["id"].as_str().expect("actor").to_owned(),
                e["from"].clone(),
                e["to"].clone(),
            )
        })
        .collect();
    let created = &events[0];
    assert_eq!(created["kind"], "created");
    assert_eq!(created["actor"]["type"], "agent");
    assert_eq!(created["to"]["subject"], "Broken lamp");
    assert_eq!(created["to"]["priority"], "low");
    let (a, b) = (amy.id.clone(), bo.id.clone());
    assert_eq!(
        summary[1..].to_vec(),
        vec![
            ("status".into(), b.clone(), json!("open"), json!("pending")),
            ("priority".into(), b.clone(), json!("low"), json!("urgent")),
            ("assignee".into(), b.clone(), Value::Null, json!(bo.id)),
            (
                "subject".into(),
                b.clone(),
                json!("Broken lamp"),
                json!("Broken lamp, shop 2")
            ),
            ("tags".into(), b.clone(), json!([]), json!(["lamp"])),
            (
                "description".into(),
                b.clone(),
                json!(""),
                json!("Arrived cracked")
            ),
            (
                "status".into(),
                b.clone(),
                json!("pending"),
                json!("solved")
            ),
            ("assignee".into(), b.clone(), json!(bo.id), Value::Null),
            (
                "comment".into(),
                a.clone(),
                Value::Null,
                events[9]["to"].clone()
            ),
        ]
    );
    assert_eq!(events[9]["to"]["public"], false);
    assert!(events[9]["to"]["comment_id"].is_string());
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["created_at"].as_i64().expect("created_at"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Paged, oldest first.
    let (_, page) = server
        .get("/api/v1/tickets/1/history?limit=4", Some(&amy.token))
        .await;
    assert_eq!(page["events"].as_array().expect("events").len(), 4);
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, rest) = server
        .get(
            &format!("/api/v1/tickets/1/history?limit=100&cursor={cursor}"),
            Some(&amy.token),
        )
        .await;
    assert_eq!(rest["events"].as_array().expect("events").len(), 6);
    assert_eq!(rest["events"][0], events[4]);
    assert!(rest["next_cursor"].is_null());
    let (status, body) = server
        .get("/api/v1/tickets/1/history?cursor=zz", Some(&amy.token))
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .get("/api/v1/tickets/5/history", Some(&amy.token))
        .await;
    assert_error(status, &body, 404, "not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn filters_sorts_and_pages_without_gaps_or_doubles() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "v1", "hello").await;
    let statuses = ["open", "pending", "solved", "closed"];
    let priorities = ["low", "normal", "high", "urgent"];
    for i in 0..30usize {
        let mut body = json!({
            "subject": format!("ticket {i}"),
            "priority": priorities[i % 4],
            "tags": if i % 3 == 0 { json!(["vip"]) } else { json!([]) },
        });
        if i % 2 == 0 {
            body["assignee_id"] = json!(amy.id);
        } else if i % 5 == 0 {
            body["assignee_id"] = json!(bo.id);
        }
        if i == 7 || i == 21 {
            body["conversation_id"] = json!(visitor.conversation_id);
        }
        let ticket = create(&server, &amy, body).await;
        let status = statuses[i % 4];
        if status != "open" {
            server
                .patch(
                    &format!("/api/v1/tickets/{}", ticket["number"]),
                    Some(&amy.token),
                    json!({"status": status}),
                )
                .await;
        }
    }
    // Ticket i has number i + 1.
    let expect = |keep: &dyn Fn(usize) -> bool| -> Vec<u64> {
        (0..30usize)
            .rev()
            .filter(|i| keep(*i))
            .map(|i| i as u64 + 1)
            .collect()
    };
    let cases: Vec<(String, Vec<u64>)> = vec![
        ("".to_owned(), expect(&|_| true)),
        ("status=pending".to_owned(), expect(&|i| i % 4 == 1)),
        ("status=open,pending".to_owned(), expect(&|i| i % 4 < 2)),
        (
            "status=solved,closed,solved".to_owned(),
            expect(&|i| i % 4 >= 2),
        ),
        ("priority=urgent".to_owned(), expect(&|i| i % 4 == 3)),
        ("assignee=me".to_owned(), expect(&|i| i % 2 == 0)),
        (
            "assignee=none".to_owned(),
            expect(&|i| i % 2 == 1 && i % 5 != 0),
        ),
        (
            format!("assignee={}", bo.id),
            expect(&|i| i % 2 == 1 && i % 5 == 0),
        ),
        (
            "assignee=me&status=open".to_owned(),
            expect(&|i| i % 4 == 0),
        ),
        (
            "assignee=me&status=open,solved".to_owned(),
            expect(&|i| i % 2 == 0),
        ),
        ("tag=vip".to_owned(), expect(&|i| i % 3 == 0)),
        ("tag=vip&status=open".to_owned(), expect(&|i| i % 12 == 0)),
        (
            "tag=vip&assignee=me&priority=low".to_owned(),
            expect(&|i| i % 12 == 0),
        ),
        (format!("requester={}", visitor.visitor_id), vec![22, 8]),
        (
            format!("conversation_id={}", visitor.conversation_id),
            vec![22, 8],
        ),
        (
            "q=ticket%201".to_owned(),
            expect(&|i| i == 1 || (10..20).contains(&i)),
        ),
        ("tag=nothing".to_owned(), vec![]),
    ];
    let number_of = |t: &Value| t["number"].as_u64().expect("number");
    for (query, expected) in &cases {
        for limit in [1, 4, 50] {
            let got = all_pages(&server, &amy, &format!("{query}&limit={limit}")).await;
            let got: Vec<u64> = got.iter().map(number_of).collect();
            assert_eq!(&got, expected, "?{query}&limit={limit}");
            // By last update: the same tickets, each once, newest update first.
            let got = all_pages(
                &server,
                &amy,
                &format!("{query}&limit={limit}&sort=updated"),
            )
            .await;
            let keys: Vec<(i64, u64)> = got
                .iter()
                .map(|t| (t["updated_at"].as_i64().expect("updated_at"), number_of(t)))
                .collect();
            assert!(
                keys.windows(2).all(|w| w[0] > w[1]),
                "sort=updated ?{query}&limit={limit}: {keys:?}"
            );
            let mut numbers: Vec<u64> = got.iter().map(number_of).collect();
            numbers.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(&numbers, expected, "sort=updated ?{query}&limit={limit}");
        }
    }
    // sort=updated: most recently updated first.
    server
        .patch(
            "/api/v1/tickets/3",
            Some(&amy.token),
            json!({"priority": "urgent"}),
        )
        .await;
    let (_, body) = server
        .get("/api/v1/tickets?sort=updated&limit=2", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body)[0], 3);
    let all = all_pages(&server, &amy, "sort=updated&limit=7").await;
    assert_eq!(all.len(), 30);
    assert_eq!(all[0]["number"], 3);

    // Bad parameters: 400.
    for query in [
        "status=exploded",
        "status=open,exploded",
        "priority=meh",
        "assignee=someone",
        "requester=not-an-id",
        "conversation_id=nope",
        "sort=random",
        "cursor=abc",
        "sort=updated&cursor=12",
        "cursor=u1_2",
        "limit=0",
        "limit=201",
    ] {
        let (status, body) = server
            .get(&format!("/api/v1/tickets?{query}"), Some(&amy.token))
            .await;
        assert_error(status, &body, 400, "bad_request");
    }
    let (status, body) = server
        .get(
            &format!("/api/v1/tickets?q={}", "x".repeat(201)),
            Some(&amy.token),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    server.shutdown().await;
}

#[tokio::test]
async fn the_offline_form_makes_a_ticket_from_a_visitor_message() {
    let mut server = TestServer::start().await;
    let app = server
        .app(json!({"allowed_origins": ["https://shop.example"]}))
        .await;
    let amy = server.agent("amy").await;
    let li = server.visitor(&app).await;
    let bo = server.visitor(&app).await;
    let mut agent_ws = server.ws(&amy.token, json!({})).await;

    let (status, body) = form(
        &server,
        &li,
        json!({"email": "li@example.com", "name": "Li Lei", "client_msg_id": "f1",
               "content": "Refund please\nOrder 1234 arrived broken"}),
        Some("https://shop.example"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ticket = body["ticket"].clone();
    assert_eq!(ticket["subject"], "Refund please");
    assert_eq!(ticket["status"], "open");
    assert_eq!(
        ticket["description"],
        "Refund please\nOrder 1234 arrived broken"
    );
    assert_eq!(body["message"]["client_msg_id"], "f1");
    assert_eq!(body["message"]["sender"]["name"], "Li Lei");
    assert_eq!(body["message"]["meta"]["offline_form"], true);
    let number = ticket["number"].as_u64().expect("number");

    // Agents: a ticket frame, the full ticket, the message in the chat.
    let frame = agent_ws.next_of("ticket").await;
    assert_eq!(frame["ticket"]["number"], number);
    let (_, full) = server
        .get(&format!("/api/v1/tickets/{number}"), Some(&amy.token))
        .await;
    let full = &full["ticket"];
    assert_eq!(full["via"], "form");
    assert_eq!(
        full["requester"],
        json!({"visitor_id": li.visitor_id, "email": "li@example.com"})
    );
    assert_eq!(full["conversation_id"], li.conversation_id.as_str());
    assert_eq!(full["transcript_seq"], 1);
    let (_, conversation) = server
        .get(
            &format!("/api/v1/conversations/{}", li.conversation_id),
            Some(&amy.token),
        )
        .await;
    assert_eq!(
        conversation["conversation"]["visitor"]["email"], "li@example.com",
        "the email is stored on the visitor"
    );
    assert_eq!(conversation["conversation"]["visitor"]["name"], "Li Lei");
    let events = history(&server, &amy, number).await;
    assert_eq!(
        events[0]["actor"],
        json!({"type": "visitor", "id": li.visitor_id})
    );
    let messages = visitor_messages(&server, &li).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0]["content"],
        "Refund please\nOrder 1234 arrived broken"
    );

    // A retry of the same form: the same ticket and message, nothing new.
    let (status, again) = form(
        &server,
        &li,
        json!({"email": "li@example.com", "name": "Li Lei", "client_msg_id": "f1",
               "content": "Refund please\nOrder 1234 arrived broken"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["ticket"]["number"], number);
    assert_eq!(again["message"], body["message"]);
    assert_eq!(ticket_count(&server).await, 1);
    assert_eq!(visitor_messages(&server, &li).await.len(), 1);

    // An email already known is kept; the form's email is the requester.
    let (status, body) = form(
        &server,
        &li,
        json!({"email": "other@example.com", "content": "Second question", "subject": "Sizes"}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["ticket"]["subject"], "Sizes");
    let second = body["ticket"]["number"].as_u64().expect("number");
    let (_, full) = server
        .get(&format!("/api/v1/tickets/{second}"), Some(&amy.token))
        .await;
    assert_eq!(full["ticket"]["requester"]["email"], "other@example.com");
    let (_, conversation) = server
        .get(
            &format!("/api/v1/conversations/{}", li.conversation_id),
            Some(&amy.token),
        )
        .await;
    assert_eq!(
        conversation["conversation"]["visitor"]["email"],
        "li@example.com"
    );

    // The visitor's own list; another visitor sees none of it.
    let (status, body) = server.get("/api/v1/visitor/tickets", Some(&li.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(numbers(&body), vec![second, number]);
    let (_, page) = server
        .get("/api/v1/visitor/tickets?limit=1", Some(&li.token))
        .await;
    assert_eq!(numbers(&page), vec![second]);
    let (_, page) = server
        .get(
            &format!(
                "/api/v1/visitor/tickets?limit=1&cursor={}",
                page["next_cursor"].as_str().expect("cursor")
            ),
            Some(&li.token),
        )
        .await;
    assert_eq!(numbers(&page), vec![number]);
    assert!(page["next_cursor"].is_null());
    let (status, body) = server.get("/api/v1/visitor/tickets", Some(&bo.token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["tickets"], json!([]));
    let (status, body) = server
        .get(
            &format!("/api/v1/visitor/tickets/{number}"),
            Some(&bo.token),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .get(
            &format!("/api/v1/visitor/tickets/{number}"),
            Some(&li.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket"]["replies"], json!([]));
    assert_eq!(
        body["ticket"]["description"],
        "Refund please\nOrder 1234 arrived broken"
    );

    // Agent routes refuse visitor tokens; visitor routes refuse agent tokens.
    let n = number;
    for (method, path) in [
        ("GET", "/api/v1/tickets".to_owned()),
        ("POST", "/api/v1/tickets".to_owned()),
        ("GET", format!("/api/v1/tickets/{n}")),
        ("PATCH", format!("/api/v1/tickets/{n}")),
        ("GET", format!("/api/v1/tickets/{n}/comments")),
        ("POST", format!("/api/v1/tickets/{n}/comments")),
        ("GET", format!("/api/v1/tickets/{n}/history")),
        ("GET", format!("/api/v1/tickets/{n}/transcript")),
    ] {
        let (status, body) = match method {
            "GET" => server.get(&path, Some(&li.token)).await,
            "POST" => {
                server
                    .post(&path, Some(&li.token), json!({"subject": "x", "body": "x"}))
                    .await
            }
            _ => {
                server
                    .patch(&path, Some(&li.token), json!({"status": "solved"}))
                    .await
            }
        };
        assert_error(status, &body, 403, "forbidden");
    }
    let (status, body) = server
        .get("/api/v1/visitor/tickets", Some(&amy.token))
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .post(
            "/api/v1/visitor/tickets",
            Some(&amy.token),
            json!({"email": "a@b.co", "content": "x"}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server.get("/api/v1/visitor/tickets", None).await;
    assert_error(status, &body, 401, "unauthorized");

    // Bad forms store nothing: no ticket, no message, no email.
    let before = ticket_count(&server).await;
    for (body, origin, status, code) in [
        (
            json!({"email": "bo", "content": "hi"}),
            None,
            400,
            "bad_request",
        ),
        (
            json!({"email": "bo@example", "content": "hi"}),
            None,
            400,
            "bad_request",
        ),
        (json!({"content": "hi"}), None, 400, "bad_request"),
        (
            json!({"email": "bo@example.com", "content": "  "}),
            None,
            400,
            "bad_request",
        ),
        (json!({"email": "bo@example.com"}), None, 400, "bad_request"),
        (
            json!({"email": "bo@example.com", "content": "hi", "name": "n".repeat(201)}),
            None,
            400,
            "bad_request",
        ),
        (
            json!({"email": "bo@example.com", "content": "hi", "subject": "s".repeat(201)}),
            None,
            400,
            "bad_request",
        ),
        (
            json!({"email": "bo@example.com", "content": "hi", "client_msg_id": "no spaces"}),
            None,
            400,
            "bad_request",
        ),
        (
            json!({"email": "bo@example.com", "content": "hi", "phone": "1"}),
            None,
            400,
            "bad_request",
        ),
        (
            json!({"email": "bo@example.com", "content": "c".repeat(16 * 1024 + 1)}),
            None,
            413,
            "payload_too_large",
        ),
        (
            json!({"email": "bo@example.com", "content": "hi"}),
            Some("https://evil.example"),
            403,
            "forbidden",
        ),
    ] {
        let (got, answer) = form(&server, &bo, body, origin).await;
        assert_error(got, &answer, status, code);
    }
    assert_eq!(ticket_count(&server).await, before);
    assert!(visitor_messages(&server, &bo).await.is_empty());
    let (email,): (Option<String>,) = sqlx::query_as("SELECT email FROM visitors WHERE id = ?")
        .bind(&bo.visitor_id)
        .fetch_one(&server.state().db)
        .await
        .expect("visitor");
    assert_eq!(email, None);

    // Forms per visitor per hour are limited; a retry is still answered.
    for i in 0..3 {
        let (status, body) = form(
            &server,
            &li,
            json!({"email": "li@example.com", "content": format!("more {i}")}),
            None,
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = form(
        &server,
        &li,
        json!({"email": "li@example.com", "content": "one too many"}),
        None,
    )
    .await;
    assert_error(status, &body, 429, "rate_limited");
    let (status, body) = form(
        &server,
        &li,
        json!({"email": "li@example.com", "client_msg_id": "f1",
               "content": "Refund please\nOrder 1234 arrived broken"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket"]["number"], number);
    assert_eq!(visitor_messages(&server, &li).await.len(), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn reporting_events_count_opened_and_solved_tickets() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "v1", "hi").await;
    create(
        &server,
        &amy,
        json!({"subject": "one", "conversation_id": visitor.conversation_id, "assignee_id": bo.id}),
    )
    .await;
    create(&server, &amy, json!({"subject": "two"})).await;
    for change in [
        json!({"status": "solved"}),
        json!({"status": "solved"}),
        json!({"status": "closed"}),
    ] {
        server
            .patch("/api/v1/tickets/1", Some(&amy.token), change)
            .await;
    }
    server
        .patch(
            "/api/v1/tickets/2",
            Some(&amy.token),
            json!({"status": "solved"}),
        )
        .await;
    let rows: Vec<ReportRow> = sqlx::query_as(
        "SELECT name, ticket_number, agent_id, app_id FROM reporting_events
         WHERE name LIKE 'ticket_%' ORDER BY id",
    )
    .fetch_all(&server.state().db)
    .await
    .expect("events");
    let app_id = app["id"].as_str().map(str::to_owned);
    assert_eq!(
        rows,
        vec![
            (
                "ticket_opened".into(),
                Some(1),
                Some(amy.id.clone()),
                app_id.clone()
            ),
            ("ticket_opened".into(), Some(2), Some(amy.id.clone()), None),
            ("ticket_solved".into(), Some(1), Some(bo.id.clone()), app_id),
            ("ticket_solved".into(), Some(2), Some(amy.id.clone()), None),
        ],
        "solved once per transition, by the assignee, else the solver"
    );
    server.shutdown().await;
}

/// The same post sent twice at once (a client that retries before the first
/// answer): one comment, one message; one form, one ticket.
#[tokio::test]
async fn concurrent_retries_store_and_deliver_once() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "v1", "hello").await;
    let ticket = create(
        &server,
        &amy,
        json!({"subject": "x", "conversation_id": visitor.conversation_id}),
    )
    .await;
    let path = format!("/api/v1/tickets/{}/comments", ticket["number"]);
    let body = json!({"body": "on its way", "public": true, "client_msg_id": "same"});
    let posts = (0..4).map(|_| server.post(&path, Some(&amy.token), body.clone()));
    let answers = futures_util::future::join_all(posts).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 200, 201], "{answers:?}");
    let ids: Vec<&Value> = answers.iter().map(|(_, b)| &b["comment"]["id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let (_, comments) = server.get(&path, Some(&amy.token)).await;
    assert_eq!(comments["comments"].as_array().expect("comments").len(), 1);
    let messages = visitor_messages(&server, &visitor).await;
    assert_eq!(messages.len(), 2, "{messages:?}");

    let other = server.visitor(&app).await;
    let form_body = json!({"email": "li@example.com", "content": "help", "client_msg_id": "f1"});
    let forms = (0..4).map(|_| form(&server, &other, form_body.clone(), None));
    let answers = futures_util::future::join_all(forms).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 200, 201], "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(_, b)| b["ticket"]["number"] == answers[0].1["ticket"]["number"])
    );
    let (_, mine) = server
        .get("/api/v1/visitor/tickets", Some(&other.token))
        .await;
    assert_eq!(mine["tickets"].as_array().expect("tickets").len(), 1);
    assert_eq!(visitor_messages(&server, &other).await.len(), 1);
    server.shutdown().await;
}
