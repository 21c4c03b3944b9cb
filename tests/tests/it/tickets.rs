//! docs/PROTOCOL.md's ticket routes: create, list with filters and cursor, get,
//! patch, comments, and their error cases.

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{TestServer, assert_error};

#[tokio::test]
async fn ticket_lifecycle() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let visitor = server
        .visitor_with(&app, json!({"email": "li@example.com"}))
        .await;
    server
        .visitor_says(&visitor, "c1", "my parcel never came")
        .await;

    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "Parcel missing", "description": "Order 1234", "priority": "high",
                   "conversation_id": visitor.conversation_id, "assignee_id": bo.id}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ticket = &body["ticket"];
    assert_eq!(ticket["number"], 1);
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["priority"], "high");
    assert_eq!(ticket["assignee_id"], bo.id.as_str());
    assert_eq!(ticket["conversation_id"], visitor.conversation_id.as_str());
    assert_eq!(
        ticket["requester"]["visitor_id"],
        visitor.visitor_id.as_str()
    );
    assert_eq!(ticket["requester"]["email"], "li@example.com");
    assert_eq!(ticket["tags"], json!([]));
    assert!(ticket["created_at"].as_i64().expect("created_at") > 0);

    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "Invoice copy"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["ticket"]["number"], 2);
    assert_eq!(body["ticket"]["priority"], "normal");

    let (status, body) = server.get("/api/v1/tickets/1", Some(&bo.token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["ticket"]["subject"], "Parcel missing");

    let (status, body) = server
        .patch("/api/v1/tickets/1", Some(&bo.token), json!({"status": "pending", "priority": "urgent", "tags": ["Shipping", "shipping", "vip"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket"]["status"], "pending");
    assert_eq!(body["ticket"]["priority"], "urgent");
    assert_eq!(body["ticket"]["tags"], json!(["shipping", "vip"]));
    assert_eq!(body["ticket"]["subject"], "Parcel missing");
    assert!(body["ticket"]["updated_at"].as_i64() >= body["ticket"]["created_at"].as_i64());
    let (_, body) = server
        .patch(
            "/api/v1/tickets/1",
            Some(&bo.token),
            json!({"assignee_id": null}),
        )
        .await;
    assert_eq!(body["ticket"]["assignee_id"], Value::Null);

    let (status, body) = server
        .post(
            "/api/v1/tickets/1/comments",
            Some(&bo.token),
            json!({"body": "Asked the courier", "public": false}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["comment"]["public"], false);
    assert_eq!(body["comment"]["author_id"], bo.id.as_str());
    server
        .post(
            "/api/v1/tickets/1/comments",
            Some(&bo.token),
            json!({"body": "It is on its way", "public": true}),
        )
        .await;
    let (_, body) = server
        .get("/api/v1/tickets/1/comments", Some(&amy.token))
        .await;
    assert_eq!(body["comments"].as_array().expect("comments").len(), 2);

    // Filters.
    let count = |body: &Value| body["tickets"].as_array().expect("tickets").len();
    let (_, body) = server
        .get("/api/v1/tickets?status=pending", Some(&amy.token))
        .await;
    assert_eq!(count(&body), 1);
    let (_, body) = server
        .get("/api/v1/tickets?priority=normal", Some(&amy.token))
        .await;
    assert_eq!(count(&body), 1);
    assert_eq!(body["tickets"][0]["number"], 2);
    let (_, body) = server
        .get("/api/v1/tickets?assignee=none", Some(&amy.token))
        .await;
    assert_eq!(count(&body), 2);
    let (_, body) = server
        .get("/api/v1/tickets?q=invoice", Some(&amy.token))
        .await;
    assert_eq!(count(&body), 1);
    let (_, body) = server
        .get("/api/v1/tickets?q=100%25", Some(&amy.token))
        .await;
    assert_eq!(count(&body), 0);
    let (_, body) = server
        .get("/api/v1/tickets?tag=vip", Some(&amy.token))
        .await;
    assert_eq!(count(&body), 1);

    // Errors.
    let (status, body) = server.get("/api/v1/tickets/99", Some(&amy.token)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.get("/api/v1/tickets/abc", Some(&amy.token)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "  "}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "x", "priority": "meh"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "x", "conversation_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .patch(
            "/api/v1/tickets/1",
            Some(&amy.token),
            json!({"status": "exploded"}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/tickets/1/comments",
            Some(&amy.token),
            json!({"body": ""}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "x", "description": "d".repeat(20_000)}),
        )
        .await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = server.get("/api/v1/tickets", Some(&visitor.token)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server.get("/api/v1/tickets", None).await;
    assert_error(status, &body, 401, "unauthorized");
    // Nothing of the refused requests was stored.
    let (_, body) = server.get("/api/v1/tickets", Some(&amy.token)).await;
    assert_eq!(count(&body), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn ticket_list_pages_with_a_cursor() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    for i in 0..5 {
        server
            .post(
                "/api/v1/tickets",
                Some(&amy.token),
                json!({"subject": format!("t{i}")}),
            )
            .await;
    }
    let (_, first) = server
        .get("/api/v1/tickets?limit=2", Some(&amy.token))
        .await;
    let numbers: Vec<u64> = first["tickets"]
        .as_array()
        .expect("t")
        .iter()
        .map(|t| t["number"].as_u64().expect("n"))
        .collect();
    assert_eq!(numbers, vec![5, 4]);
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (_, second) = server
        .get(
            &format!("/api/v1/tickets?limit=2&cursor={cursor}"),
            Some(&amy.token),
        )
        .await;
    let numbers: Vec<u64> = second["tickets"]
        .as_array()
        .expect("t")
        .iter()
        .map(|t| t["number"].as_u64().expect("n"))
        .collect();
    assert_eq!(numbers, vec![3, 2]);
    let cursor = second["next_cursor"].as_str().expect("cursor");
    let (_, third) = server
        .get(
            &format!("/api/v1/tickets?limit=2&cursor={cursor}"),
            Some(&amy.token),
        )
        .await;
    assert_eq!(third["tickets"].as_array().expect("t").len(), 1);
    assert!(third["next_cursor"].is_null());
    server.shutdown().await;
}

/// docs/PROTOCOL.md writes the list route as `?status=&priority=&assignee=&q=&cursor=`:
/// empty parameters mean "no filter", as forms and templates send them.
#[tokio::test]
async fn empty_query_parameters_mean_no_filter() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    server.visitor_says(&visitor, "c1", "hi").await;
    server
        .post(
            "/api/v1/tickets",
            Some(&amy.token),
            json!({"subject": "one"}),
        )
        .await;
    let (status, body) = server
        .get(
            "/api/v1/tickets?status=&priority=&assignee=&q=&cursor=",
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tickets"].as_array().expect("tickets").len(), 1);
    let (status, body) = server
        .get(
            "/api/v1/conversations?status=&assignee=&cursor=",
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["conversations"]
            .as_array()
            .expect("conversations")
            .len(),
        1
    );
    let (status, body) = server
        .get(
            &format!(
                "/api/v1/conversations/{}/messages?after=&limit=",
                visitor.conversation_id
            ),
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().expect("messages").len(), 1);
    server.shutdown().await;
}

/// `q` on the ticket list reads the full-text indexes: Chinese two- and
/// four-character terms, English in any case, comments included, with the
/// other filters and cursor pages; a one-character `q` still works.
#[tokio::test]
async fn the_ticket_list_q_filter_searches_subjects_descriptions_and_comments() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let subjects = [
        ("申请退款", "订单 1001 想退款", "open"),
        ("物流查询", "快递单号是多少", "open"),
        ("Refund please", "The INVOICE was wrong", "pending"),
        ("发票问题", "需要开发票", "open"),
        ("退款进度", "退款什么时候到账", "pending"),
    ];
    for (subject, description, status) in subjects {
        let (code, body) = server
            .post(
                "/api/v1/tickets",
                Some(&amy.token),
                json!({"subject": subject, "description": description}),
            )
            .await;
        assert_eq!(code, reqwest::StatusCode::CREATED, "{body}");
        if status != "open" {
            let number = body["ticket"]["number"].as_u64().expect("number");
            let (code, _) = server
                .patch(
                    &format!("/api/v1/tickets/{number}"),
                    Some(&amy.token),
                    json!({"status": status}),
                )
                .await;
            assert_eq!(code, reqwest::StatusCode::OK);
        }
    }
    // A comment on #2 mentions a refund too.
    let (code, _) = server
        .post(
            "/api/v1/tickets/2/comments",
            Some(&amy.token),
            json!({"body": "客户也要求退款", "public": false}),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::CREATED);

    let numbers = |body: &Value| -> Vec<u64> {
        body["tickets"]
            .as_array()
            .expect("tickets")
            .iter()
            .map(|t| t["number"].as_u64().expect("number"))
            .collect()
    };
    // The bigram index follows the tickets a moment behind: wait for it.
    let mut found = Vec::new();
    for _ in 0..100 {
        let (code, body) = server
            .get("/api/v1/tickets?q=%E9%80%80%E6%AC%BE", Some(&amy.token))
            .await;
        assert_eq!(code, reqwest::StatusCode::OK, "{body}");
        found = numbers(&body);
        if found.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        found,
        [5, 2, 1],
        "退款 in subjects, descriptions and a comment"
    );
    let (_, body) = server
        .get(
            "/api/v1/tickets?q=%E9%80%80%E6%AC%BE&status=pending",
            Some(&amy.token),
        )
        .await;
    assert_eq!(numbers(&body), [5]);
    let (_, body) = server
        .get(
            "/api/v1/tickets?q=%E5%BF%AB%E9%80%92%E5%8D%95%E5%8F%B7",
            Some(&amy.token),
        )
        .await;
    assert_eq!(numbers(&body), [2], "快递单号");
    let (_, body) = server
        .get("/api/v1/tickets?q=invoice", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body), [3], "any case");
    // Pages over the matches, no repeats, no gaps.
    let (_, first) = server
        .get(
            "/api/v1/tickets?q=%E9%80%80%E6%AC%BE&limit=2",
            Some(&amy.token),
        )
        .await;
    assert_eq!(numbers(&first), [5, 2]);
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (_, second) = server
        .get(
            &format!("/api/v1/tickets?q=%E9%80%80%E6%AC%BE&limit=2&cursor={cursor}"),
            Some(&amy.token),
        )
        .await;
    assert_eq!(numbers(&second), [1]);
    assert_eq!(second["next_cursor"], Value::Null);
    // Sorted by update, the same matches.
    let (_, body) = server
        .get(
            "/api/v1/tickets?q=%E9%80%80%E6%AC%BE&sort=updated",
            Some(&amy.token),
        )
        .await;
    let mut by_update = numbers(&body);
    by_update.sort_unstable();
    assert_eq!(by_update, [1, 2, 5]);
    // Too short for the index: a substring match still answers.
    let (_, body) = server
        .get("/api/v1/tickets?q=%E7%A5%A8", Some(&amy.token))
        .await;
    assert_eq!(numbers(&body), [4], "票");
}
