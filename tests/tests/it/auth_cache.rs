//! The hello's in-memory cache of tokens, agents, visitors and apps
//! (server `auth::cache`) never outlives what it caches: each test first
//! makes the server cache a principal (a successful hello), then changes or
//! revokes it over the API and checks that the very next hello (and REST
//! call) sees the change.

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, Closed, TestServer, Ws};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn shop() -> (TestServer, Value, AgentClient) {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    (server, app, amy)
}

/// A hello with `token` is welcomed (and so cached by the server).
async fn welcomed(server: &TestServer, token: &str) -> Value {
    let mut ws = Ws::connect(&server.ws_url()).await;
    ws.send(json!({"type": "hello", "token": token})).await;
    let welcome = ws.next().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    welcome
}

/// A hello with `token` is refused with 4401.
async fn refused(server: &TestServer, token: &str) {
    let mut ws = Ws::connect(&server.ws_url()).await;
    ws.send(json!({"type": "hello", "token": token})).await;
    assert_eq!(ws.closed().await, Closed::Code(4401));
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

#[tokio::test]
async fn logout_refuses_the_next_hello() {
    let (server, _app, amy) = shop().await;
    welcomed(&server, &amy.token).await;
    assert_eq!(
        server.get("/api/v1/agents/me", Some(&amy.token)).await.0,
        200
    );
    let (status, _) = server
        .post("/api/v1/auth/logout", Some(&amy.token), json!({}))
        .await;
    assert_eq!(status, 200);
    refused(&server, &amy.token).await;
    assert_eq!(
        server.get("/api/v1/agents/me", Some(&amy.token)).await.0,
        401
    );
    server.shutdown().await;
}

#[tokio::test]
async fn password_change_refuses_the_other_tokens_at_once() {
    let (server, _app, amy) = shop().await;
    let other = login(&server, "amy", "agent-password").await;
    welcomed(&server, &amy.token).await;
    welcomed(&server, &other).await;
    let (status, body) = server
        .patch(
            "/api/v1/agents/me",
            Some(&amy.token),
            json!({"password": "a-new-password", "current_password": "agent-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    refused(&server, &other).await;
    // The token that made the change stays valid.
    welcomed(&server, &amy.token).await;
    server.shutdown().await;
}

#[tokio::test]
async fn deactivation_and_password_reset_refuse_the_next_hello() {
    let (mut server, _app, amy) = shop().await;
    let bob = server.agent("bob").await;
    let admin = server.admin().await;
    welcomed(&server, &amy.token).await;
    welcomed(&server, &bob.token).await;

    let (status, body) = server
        .patch(
            &format!("/api/v1/agents/{}", amy.id),
            Some(&admin),
            json!({"active": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    refused(&server, &amy.token).await;
    assert_eq!(
        server.get("/api/v1/agents/me", Some(&amy.token)).await.0,
        401
    );

    let (status, body) = server
        .patch(
            &format!("/api/v1/agents/{}", bob.id),
            Some(&admin),
            json!({"password": "reset-by-admin"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    refused(&server, &bob.token).await;
    let fresh = login(&server, "bob", "reset-by-admin").await;
    welcomed(&server, &fresh).await;
    server.shutdown().await;
}

#[tokio::test]
async fn role_and_status_changes_are_seen_at_once() {
    let (mut server, _app, amy) = shop().await;
    let admin = server.admin().await;
    welcomed(&server, &amy.token).await;
    let (_, me) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(me["agent"]["role"], "agent");
    // Not an admin yet.
    assert_eq!(server.get("/api/v1/apps", Some(&amy.token)).await.0, 403);

    let (status, body) = server
        .patch(
            &format!("/api/v1/agents/{}", amy.id),
            Some(&admin),
            json!({"role": "admin", "display_name": "Amy Admin"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(me["agent"]["role"], "admin");
    assert_eq!(me["agent"]["display_name"], "Amy Admin");
    assert_eq!(server.get("/api/v1/apps", Some(&amy.token)).await.0, 200);

    let (status, _) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "away"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, me) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(me["agent"]["status"], "away");
    server.shutdown().await;
}

#[tokio::test]
async fn allowed_origins_change_applies_to_the_next_hello() {
    let (mut server, app, _amy) = shop().await;
    let admin = server.admin().await;
    let visitor = server.visitor(&app).await;
    let hello_from = |origin: &'static str| {
        let url = server.ws_url();
        let token = visitor.token.clone();
        async move {
            let mut request = url.into_client_request().expect("request");
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("header"));
            let (stream, _) = tokio_tungstenite::connect_async(request)
                .await
                .expect("connect");
            let mut ws = Ws { stream };
            ws.send(json!({"type": "hello", "token": token})).await;
            ws
        }
    };
    // No list: any origin (and the app is now cached).
    let mut ws = hello_from("https://elsewhere.example").await;
    assert_eq!(ws.next().await["type"], "welcome");

    let (status, body) = server
        .patch(
            &format!("/api/v1/apps/{}", app["id"].as_str().expect("id")),
            Some(&admin),
            json!({"allowed_origins": ["https://shop.example"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut ws = hello_from("https://elsewhere.example").await;
    assert_eq!(ws.next().await["code"], "forbidden");
    assert_eq!(ws.closed().await, Closed::Code(4403));
    let mut ws = hello_from("https://shop.example").await;
    assert_eq!(ws.next().await["type"], "welcome");
    server.shutdown().await;
}

#[tokio::test]
async fn a_visitor_name_change_is_seen_by_the_next_hello() {
    let (server, app, amy) = shop().await;
    let visitor = server.visitor(&app).await;
    welcomed(&server, &visitor.token).await;
    // Resuming the session with a name updates the visitor.
    let (status, body) = server
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"app_key": app["app_key"], "token": visitor.token, "name": "Zhang Wei"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = Ws::connect(&server.ws_url()).await;
    ws.send(json!({"type": "hello", "token": visitor.token}))
        .await;
    assert_eq!(ws.next().await["type"], "welcome");
    ws.send(json!({"type": "send", "client_msg_id": "c1", "content": "hi", "meta": {}}))
        .await;
    let ack = ws.next_of("ack").await;
    assert_eq!(ack["message"]["sender"]["name"], "Zhang Wei", "{ack}");
    let transcript = server
        .transcript(&amy.token, &visitor.conversation_id)
        .await;
    assert!(
        transcript
            .iter()
            .any(|m| m["sender"]["name"] == "Zhang Wei"),
        "{transcript:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_cache_is_bounded_and_evicted_tokens_still_work() {
    let mut server = TestServer::start_with(|c| c.limits.auth_cache_entries = 2).await;
    let app = server.app(json!({})).await;
    let mut visitors = Vec::new();
    for _ in 0..6 {
        visitors.push(server.visitor(&app).await);
    }
    for visitor in &visitors {
        welcomed(&server, &visitor.token).await;
    }
    // Every one of them still authenticates (read again after eviction).
    for visitor in &visitors {
        let welcome = welcomed(&server, &visitor.token).await;
        assert_eq!(welcome["id"], visitor.visitor_id.as_str());
    }
    assert!(server.state().auth_cache.tokens_len() <= 2);
    server.shutdown().await;
}
