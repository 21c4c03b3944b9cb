//! Issue 16 items 4 and 5 over real sockets: error bodies name the request
//! field at fault (`field`), REST and WebSocket alike; 405 speaks the same
//! error body; a malformed id in a path is 404 with the body; an empty
//! query value is "not given".

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{TestServer, assert_error, read};
use reqwest::Method;

fn field(body: &Value) -> Option<&str> {
    body["error"]["field"].as_str()
}

#[tokio::test]
async fn bad_bodies_name_the_field_at_fault() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;

    // A value the route refuses, a wrong type, a missing member.
    let cases = [
        (
            "/api/v1/agents",
            admin.as_str(),
            json!({"username": "bad name!", "password": "long-enough"}),
            400,
            "username",
        ),
        (
            "/api/v1/agents",
            admin.as_str(),
            json!({"username": "bob", "password": "short"}),
            400,
            "password",
        ),
        (
            "/api/v1/tickets",
            amy.token.as_str(),
            json!({"subject": 5}),
            400,
            "subject",
        ),
        (
            "/api/v1/tickets",
            amy.token.as_str(),
            json!({"subject": "  "}),
            400,
            "subject",
        ),
        (
            "/api/v1/tickets",
            amy.token.as_str(),
            json!({"subject": "Refund", "tags": ["ok", 7]}),
            400,
            "tags[1]",
        ),
        (
            "/api/v1/visitor/messages",
            visitor.token.as_str(),
            json!({"client_msg_id": "no spaces", "content": "hi"}),
            400,
            "client_msg_id",
        ),
        (
            "/api/v1/visitor/messages",
            visitor.token.as_str(),
            json!({"client_msg_id": "c1", "content": "x".repeat(16 * 1024 + 1)}),
            413,
            "content",
        ),
    ];
    for (path, token, body, status, expected) in cases {
        let (got, answer) = server.post(path, Some(token), body.clone()).await;
        let code = if status == 413 {
            "payload_too_large"
        } else {
            "bad_request"
        };
        assert_error(got, &answer, status, code);
        assert_eq!(field(&answer), Some(expected), "{path} {body}: {answer}");
    }
    let (status, answer) = server
        .post("/api/v1/auth/login", None, json!({"username": "amy"}))
        .await;
    assert_error(status, &answer, 400, "bad_request");
    assert_eq!(field(&answer), Some("password"), "{answer}");

    // Errors about no one field carry none.
    let (status, answer) = server
        .get(
            "/api/v1/conversations/01J9Z8C0NV0000000000000000",
            Some(&amy.token),
        )
        .await;
    assert_error(status, &answer, 404, "not_found");
    assert!(answer["error"].get("field").is_none(), "{answer}");
    let (status, answer) = server.get("/api/v1/agents/me", None).await;
    assert_error(status, &answer, 401, "unauthorized");
    assert!(answer["error"].get("field").is_none(), "{answer}");
    // Nothing was stored by the refused sends.
    assert!(
        server
            .transcript(&amy.token, &visitor.conversation_id)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn bad_query_values_name_their_parameter_and_empty_ones_are_not_given() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    for (query, expected) in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("status=weird", "status"),
        ("cursor=nonsense", "cursor"),
        ("assignee=nobody", "assignee"),
    ] {
        let (status, answer) = server
            .get(&format!("/api/v1/conversations?{query}"), Some(&amy.token))
            .await;
        assert_error(status, &answer, 400, "bad_request");
        assert_eq!(field(&answer), Some(expected), "{query}: {answer}");
    }
    // Every parameter given empty, as a form or a URL template sends it.
    let (status, answer) = server
        .get(
            "/api/v1/conversations?status=&assignee=&cursor=&limit=",
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server
        .get(
            "/api/v1/tickets?status=&priority=&assignee=&q=&cursor=&limit=&sort=",
            Some(&amy.token),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // Empty is "not given", so a required one is still missing.
    let (status, answer) = server
        .get("/api/v1/search?q=&type=", Some(&amy.token))
        .await;
    assert_error(status, &answer, 400, "bad_request");
    assert_eq!(field(&answer), Some("q"), "{answer}");
}

#[tokio::test]
async fn a_malformed_id_in_a_path_is_404_with_the_error_body() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    for (path, what) in [
        ("/api/v1/conversations/not-an-id", "conversation not found"),
        (
            "/api/v1/conversations/not-an-id/messages",
            "conversation not found",
        ),
        ("/api/v1/apps/not-an-id", "app not found"),
        ("/api/v1/teams/not-an-id", "team not found"),
    ] {
        let (status, answer) = server.get(path, Some(&admin)).await;
        assert_error(status, &answer, 404, "not_found");
        assert_eq!(answer["error"]["message"], what, "{path}");
    }
    let (status, answer) = server
        .patch(
            "/api/v1/agents/not-an-id",
            Some(&admin),
            json!({"display_name": "X"}),
        )
        .await;
    assert_error(status, &answer, 404, "not_found");
    assert_eq!(answer["error"]["message"], "agent not found");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_the_error_body() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::PUT, "/api/v1/auth/login"),
        (Method::DELETE, "/api/v1/conversations"),
        (Method::POST, "/healthz"),
    ] {
        let response = server
            .http
            .request(method.clone(), server.url(path))
            .send()
            .await
            .expect("request");
        let (status, answer) = read(response).await;
        assert_error(status, &answer, 405, "method_not_allowed");
        assert_eq!(
            answer["error"]["message"], "method not allowed on this route",
            "{method} {path}"
        );
        assert!(answer["error"].get("field").is_none(), "{answer}");
    }
}

#[tokio::test]
async fn websocket_error_frames_carry_the_same_codes_and_fields() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let mut ws = server.ws(&visitor.token, json!({})).await;
    for (frame, code, expected) in [
        (
            json!({"type": "send", "client_msg_id": "c1", "content": 3}),
            "bad_request",
            Some("content"),
        ),
        (
            json!({"type": "send", "client_msg_id": "bad id", "content": "hi"}),
            "bad_request",
            Some("client_msg_id"),
        ),
        (
            json!({"type": "send", "client_msg_id": "c2", "content": "x".repeat(16 * 1024 + 1)}),
            "payload_too_large",
            Some("content"),
        ),
        (json!({"type": "dance"}), "bad_request", Some("type")),
        (json!({"type": "hello", "token": "x"}), "bad_request", None),
    ] {
        ws.send(frame.clone()).await;
        let answer = ws.next_of("error").await;
        assert_eq!(answer["code"], code, "{frame}: {answer}");
        assert_eq!(answer["field"].as_str(), expected, "{frame}: {answer}");
    }
    // A resume entry that is not an id names `resume`.
    let mut ws = server.ws(&amy.token, json!({"not-an-id": 0})).await;
    let answer = ws.next_of("error").await;
    assert_eq!(answer["code"], "bad_request", "{answer}");
    assert_eq!(answer["field"], "resume", "{answer}");
    assert!(
        server
            .transcript(&amy.token, &visitor.conversation_id)
            .await
            .is_empty()
    );
}

/// An oversized JSON body sent slowly, as over a real network: the client
/// is still writing when the server knows the answer. The server reads the
/// rest (within its bound) before answering, so the client finishes its
/// upload and reads the 413 error body; answering at once and closing with
/// unread data would reset the connection under the client's feet.
#[tokio::test]
async fn an_oversized_body_sent_slowly_gets_its_413_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    let stored = |page: &Value| page["messages"].as_array().map(Vec::len);
    let (_, before) = server
        .get("/api/v1/visitor/messages?after=0", Some(&visitor.token))
        .await;
    let total = 200 * 1024; // the limit is 64 KiB
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/visitor/messages HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n",
        server.addr(),
        visitor.token
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let body = vec![b' '; total];
    // Past the limit first, then a pause in which the server has decided,
    // then the rest.
    stream
        .write_all(&body[..80 * 1024])
        .await
        .expect("first part");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stream
        .write_all(&body[80 * 1024..])
        .await
        .expect("the rest of the body is read, not refused with a reset");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(kefu_tests::WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "expected a 413, got: {answer:.200}"
    );
    assert!(answer.contains("payload_too_large"), "{answer:.400}");
    // Nothing was stored.
    let (status, after) = server
        .get("/api/v1/visitor/messages?after=0", Some(&visitor.token))
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(stored(&after), stored(&before), "{after}");
}
