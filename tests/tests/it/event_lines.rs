//! System event lines ("Amy joined the conversation") as a contract: each
//! `event` message carries a stable `meta.event` code and exactly the
//! parameters docs/API.md lists for it, so a client can word the line in its
//! reader's language (the widget does, for visitors who cannot look agents
//! or teams up) while `content` stays the English fallback.

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient};

/// An agent with a chosen display name (the shared helper names them by
/// their username), logged in.
async fn agent_named(server: &mut TestServer, username: &str, display_name: &str) -> AgentClient {
    let admin = server.admin().await;
    let (code, body) = server
        .post(
            "/api/v1/agents",
            Some(&admin),
            json!({"username": username, "password": "agent-password",
                   "display_name": display_name, "role": "agent"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": username, "password": "agent-password"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    AgentClient {
        id: body["agent"]["id"].as_str().expect("id").to_owned(),
        username: username.to_owned(),
        token: body["token"].as_str().expect("token").to_owned(),
    }
}

async fn online(server: &TestServer, agent: &AgentClient) {
    let (code, body) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&agent.token),
            json!({"status": "online"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

/// The event messages of the visitor's own view, oldest first.
async fn visitor_events(server: &TestServer, visitor: &VisitorClient) -> Vec<Value> {
    let (code, page) = server
        .get("/api/v1/visitor/messages", Some(&visitor.token))
        .await;
    assert_eq!(code, 200, "{page}");
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["kind"] == "event")
        .cloned()
        .collect()
}

/// The keys of an event's meta, sorted: the documented set, nothing else.
fn keys(message: &Value) -> Vec<String> {
    let mut keys: Vec<String> = message["meta"]
        .as_object()
        .expect("meta is an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn every_event_line_carries_its_code_and_the_names_to_word_it() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    // Names a visitor could not look up, one of them not English and one
    // that looks like markup: stored and sent as plain text, verbatim.
    let amy = agent_named(&mut server, "amy", "小王").await;
    let bo = agent_named(&mut server, "bo", "Bo <b>Li</b>").await;
    let admin = server.admin().await;
    let (code, team) = server
        .post(
            "/api/v1/teams",
            Some(&admin),
            json!({"name": "售后 Billing", "agent_ids": []}),
        )
        .await;
    assert_eq!(code, 201, "{team}");
    let team_id = team["team"]["id"].as_str().expect("team id").to_owned();

    // 1. `assigned` by routing (`by: auto`), seen live by the visitor too.
    online(&server, &amy).await;
    let visitor = server.visitor(&app).await;
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;
    let (code, first) = server
        .visitor_says(&visitor, "v1", "where is my tea?")
        .await;
    assert_eq!(code, 201, "{first}");
    let live = loop {
        let frame = visitor_ws.next_of("message").await;
        if frame["message"]["kind"] == "event" {
            break frame["message"].clone();
        }
    };
    assert_eq!(live["sender"]["type"], "system");
    assert_eq!(live["content"], "小王 joined the conversation");
    assert_eq!(
        live["meta"],
        json!({"event": "assigned", "agent_id": amy.id, "agent_name": "小王", "by": "auto"})
    );

    // 2. `transferred` to an agent: both names, and no team fields.
    let transfer = format!("/api/v1/conversations/{}/transfer", visitor.conversation_id);
    let (code, body) = server
        .post(&transfer, Some(&amy.token), json!({"agent_id": bo.id}))
        .await;
    assert_eq!(code, 200, "{body}");

    // 3. `transferred` to a team: the team's name, and no agent target.
    let (code, body) = server
        .post(&transfer, Some(&bo.token), json!({"team_id": team_id}))
        .await;
    assert_eq!(code, 200, "{body}");

    // 4. `assigned` by a claim (the team has nobody free, so it waits).
    let claim = format!("/api/v1/conversations/{}/claim", visitor.conversation_id);
    let (code, body) = server.post(&claim, Some(&bo.token), json!({})).await;
    assert_eq!(code, 200, "{body}");

    let events = visitor_events(&server, &visitor).await;
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(events[0], live, "REST and the socket carry the same line");

    assert_eq!(
        keys(&events[1]),
        [
            "by_agent_id",
            "by_agent_name",
            "event",
            "to_agent_id",
            "to_agent_name"
        ]
    );
    assert_eq!(
        events[1]["meta"],
        json!({"event": "transferred", "by_agent_id": amy.id, "by_agent_name": "小王",
               "to_agent_id": bo.id, "to_agent_name": "Bo <b>Li</b>"})
    );
    assert_eq!(
        events[1]["content"],
        "小王 transferred the conversation to Bo <b>Li</b>"
    );

    assert_eq!(
        keys(&events[2]),
        [
            "by_agent_id",
            "by_agent_name",
            "event",
            "to_team_id",
            "to_team_name"
        ]
    );
    assert_eq!(
        events[2]["meta"],
        json!({"event": "transferred", "by_agent_id": bo.id, "by_agent_name": "Bo <b>Li</b>",
               "to_team_id": team_id, "to_team_name": "售后 Billing"})
    );
    assert_eq!(
        events[2]["content"],
        "Bo <b>Li</b> transferred the conversation to the 售后 Billing team"
    );

    assert_eq!(
        events[3]["meta"],
        json!({"event": "assigned", "agent_id": bo.id, "agent_name": "Bo <b>Li</b>", "by": "claim"})
    );
    assert_eq!(events[3]["content"], "Bo <b>Li</b> joined the conversation");

    // Agents read the same lines (and the same meta) as the visitor.
    let all = server
        .transcript(&admin, &visitor.conversation_id)
        .await
        .into_iter()
        .filter(|m| m["kind"] == "event")
        .collect::<Vec<_>>();
    assert_eq!(all, events);
    server.shutdown().await;
}
