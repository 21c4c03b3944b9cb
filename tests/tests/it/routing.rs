//! Presence, routing (policies, queue, rules, teams), claim and transfer,
//! over real sockets: several agents and visitors, presence changes, a
//! queue that drains in order, rules that route.

use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{AgentClient, TestServer, VisitorClient, Ws, assert_error};

// ---- helpers (local to this suite) ---------------------------------------

async fn set_status(server: &TestServer, agent: &AgentClient, status: &str) -> Value {
    let (code, body) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&agent.token),
            json!({"status": status}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["agent"].clone()
}

async fn conversation(server: &TestServer, token: &str, id: &str) -> Value {
    let (code, body) = server
        .get(&format!("/api/v1/conversations/{id}"), Some(token))
        .await;
    assert_eq!(code, 200, "{body}");
    body["conversation"].clone()
}

/// A new visitor whose first message is `text`; returns it once routed.
async fn new_chat(
    server: &TestServer,
    app: &Value,
    token: &str,
    text: &str,
) -> (VisitorClient, Value) {
    let visitor = server.visitor(app).await;
    let (code, message) = server.visitor_says(&visitor, "first", text).await;
    assert_eq!(code, 201, "{message}");
    let conversation = conversation(server, token, &visitor.conversation_id).await;
    (visitor, conversation)
}

async fn patch_agent(server: &mut TestServer, agent: &AgentClient, body: Value) -> Value {
    let admin = server.admin().await;
    let (code, body) = server
        .patch(&format!("/api/v1/agents/{}", agent.id), Some(&admin), body)
        .await;
    assert_eq!(code, 200, "{body}");
    body["agent"].clone()
}

async fn set_status_of(server: &TestServer, token: &str, id: &str, status: &str) -> Value {
    let (code, body) = server
        .post(
            &format!("/api/v1/conversations/{id}/status"),
            Some(token),
            json!({"status": status}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["conversation"].clone()
}

async fn create_team(server: &mut TestServer, name: &str, members: &[&AgentClient]) -> Value {
    let admin = server.admin().await;
    let ids: Vec<&str> = members.iter().map(|a| a.id.as_str()).collect();
    let (code, body) = server
        .post(
            "/api/v1/teams",
            Some(&admin),
            json!({"name": name, "agent_ids": ids}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    body["team"].clone()
}

async fn create_rule(server: &mut TestServer, rule: Value) -> Value {
    let admin = server.admin().await;
    let (code, body) = server
        .post("/api/v1/routing/rules", Some(&admin), rule)
        .await;
    assert_eq!(code, 201, "{body}");
    body["rule"].clone()
}

/// The next `agent` frame about `id`.
async fn agent_frame(ws: &mut Ws, id: &str) -> Value {
    loop {
        let frame = ws.next_of("agent").await;
        if frame["agent"]["id"] == id {
            return frame["agent"].clone();
        }
    }
}

/// The next `conversation` frame about `id` that satisfies `done`.
async fn conversation_frame(ws: &mut Ws, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = ws.next_of("conversation").await;
        if frame["conversation"]["id"] == id && done(&frame["conversation"]) {
            return frame["conversation"].clone();
        }
    }
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m["kind"].as_str().unwrap_or("?"),
                m["content"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

// ---- presence -------------------------------------------------------------

/// The complaint: an online agent closes the laptop. After the grace they
/// are `away` and the next chat goes to a colleague; a queued one waits.
#[tokio::test]
async fn a_closed_laptop_gets_no_new_chats() {
    let mut server = TestServer::start_with(|c| c.presence.away_grace_secs = 1).await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let mut amy_ws = server.ws(&amy.token, json!({})).await;
    let mut bo_ws = server.ws(&bo.token, json!({})).await;
    assert_eq!(
        set_status(&server, &amy, "online").await["status"],
        "online"
    );
    assert_eq!(agent_frame(&mut bo_ws, &amy.id).await["status"], "online");

    // Amy's laptop closes: her only connection drops.
    amy_ws.stream.close(None).await.expect("close");
    drop(amy_ws);
    let frame = agent_frame(&mut bo_ws, &amy.id).await;
    assert_eq!(frame["status"], "away");
    let (code, me) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(code, 200);
    assert_eq!(me["agent"]["status"], "away");

    // Nobody online: the chat waits in the queue, not with Amy.
    let (_, first) = new_chat(&server, &app, &bo.token, "hello?").await;
    assert_eq!(first["status"], "queued");
    assert_eq!(first["assignee_id"], Value::Null);
    // Bo comes online and takes it; the next one goes to him too.
    set_status(&server, &bo, "online").await;
    let taken = conversation(&server, &bo.token, first["id"].as_str().expect("id")).await;
    assert_eq!(taken["assignee_id"], bo.id.as_str());
    assert_eq!(taken["status"], "open");
    let (_, second) = new_chat(&server, &app, &bo.token, "anyone?").await;
    assert_eq!(second["assignee_id"], bo.id.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn reconnecting_within_the_grace_keeps_an_agent_online() {
    let mut server = TestServer::start_with(|c| c.presence.away_grace_secs = 2).await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let mut bo_ws = server.ws(&bo.token, json!({})).await;
    let laptop = server.ws(&amy.token, json!({})).await;
    let phone = server.ws(&amy.token, json!({})).await;
    set_status(&server, &amy, "online").await;
    assert_eq!(agent_frame(&mut bo_ws, &amy.id).await["status"], "online");
    // One of two connections closing changes nothing; the last one closing
    // starts the grace, and a reconnect within it cancels it.
    drop(laptop);
    drop(phone);
    let _back = server.ws(&amy.token, json!({})).await;
    // Longer than the grace: no `agent` frame says Amy went away.
    bo_ws.silent(Duration::from_secs(4)).await;
    let (_, me) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(me["agent"]["status"], "online");
    let (_, chat) = new_chat(&server, &app, &bo.token, "hi").await;
    assert_eq!(chat["assignee_id"], amy.id.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn availability_changes_reach_agents_and_away_agents_get_nothing() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let mut bo_ws = server.ws(&bo.token, json!({})).await;
    set_status(&server, &amy, "online").await;
    assert_eq!(agent_frame(&mut bo_ws, &amy.id).await["status"], "online");
    set_status(&server, &amy, "away").await;
    assert_eq!(agent_frame(&mut bo_ws, &amy.id).await["status"], "away");
    let (_, chat) = new_chat(&server, &app, &bo.token, "hi").await;
    assert_eq!(chat["status"], "queued");
    set_status(&server, &amy, "offline").await;
    assert_eq!(agent_frame(&mut bo_ws, &amy.id).await["status"], "offline");
    let (_, chat) = new_chat(&server, &app, &bo.token, "hi").await;
    assert_eq!(chat["status"], "queued");
    server.shutdown().await;
}

// ---- policies, capacity, queue ------------------------------------------

#[tokio::test]
async fn round_robin_alternates_and_frames_reach_agents() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let mut amy_ws = server.ws(&amy.token, json!({})).await;
    set_status(&server, &amy, "online").await;
    set_status(&server, &bo, "online").await;
    let admin = server.admin().await;
    let (code, body) = server.get("/api/v1/routing", Some(&amy.token)).await;
    assert_eq!(code, 200);
    assert_eq!(
        body["routing"],
        json!({"policy": "round_robin", "auto_assign": true})
    );

    let mut assignees = Vec::new();
    for i in 0..4 {
        let (_, chat) = new_chat(&server, &app, &admin, &format!("question {i}")).await;
        assert_eq!(chat["status"], "open");
        assignees.push(chat["assignee_id"].as_str().expect("assigned").to_owned());
        // Every assignment reaches agents as a conversation frame.
        let id = chat["id"].as_str().expect("id");
        let frame = conversation_frame(&mut amy_ws, id, |c| !c["assignee_id"].is_null()).await;
        assert_eq!(frame["assignee_id"], chat["assignee_id"]);
    }
    assert_ne!(assignees[0], assignees[1]);
    assert_eq!(assignees[0], assignees[2]);
    assert_eq!(assignees[1], assignees[3]);
    server.shutdown().await;
}

#[tokio::test]
async fn least_busy_picks_the_agent_with_fewest_open_chats() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let admin = server.admin().await;
    let (code, body) = server
        .patch(
            "/api/v1/routing",
            Some(&admin),
            json!({"policy": "least_busy"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["routing"]["policy"], "least_busy");
    // Amy alone online takes three chats.
    set_status(&server, &amy, "online").await;
    let mut amys = Vec::new();
    for i in 0..3 {
        let (_, chat) = new_chat(&server, &app, &admin, &format!("a{i}")).await;
        assert_eq!(chat["assignee_id"], amy.id.as_str());
        amys.push(chat);
    }
    // Bo comes online with none: he gets the next three (0, 1, 2 < 3).
    set_status(&server, &bo, "online").await;
    for i in 0..3 {
        let (_, chat) = new_chat(&server, &app, &admin, &format!("b{i}")).await;
        assert_eq!(chat["assignee_id"], bo.id.as_str(), "chat {i}");
    }
    // 3:3. Amy resolves two: least busy is Amy again.
    for chat in &amys[..2] {
        set_status_of(
            &server,
            &amy.token,
            chat["id"].as_str().expect("id"),
            "resolved",
        )
        .await;
    }
    let (_, chat) = new_chat(&server, &app, &admin, "c").await;
    assert_eq!(chat["assignee_id"], amy.id.as_str());
    // The change was audited.
    let (_, audit) = server
        .get("/api/v1/audit?action=routing.update", Some(&admin))
        .await;
    assert_eq!(audit["entries"][0]["details"]["policy"], "least_busy");
    server.shutdown().await;
}

#[tokio::test]
async fn capacity_sends_chats_to_the_queue_which_drains_in_fifo_order() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let admin = server.admin().await;
    let mut bo_ws = server.ws(&bo.token, json!({})).await;
    assert_eq!(
        patch_agent(&mut server, &amy, json!({"max_concurrent": 1})).await["max_concurrent"],
        1
    );
    set_status(&server, &amy, "online").await;
    let (_, c1) = new_chat(&server, &app, &admin, "one").await;
    assert_eq!(c1["assignee_id"], amy.id.as_str());
    // Amy is full: the next three wait, in arrival order.
    let mut waiting = Vec::new();
    for i in 2..=4 {
        let (_, chat) = new_chat(&server, &app, &admin, &format!("chat {i}")).await;
        assert_eq!(chat["status"], "queued");
        assert!(chat["queued_at"].as_i64().is_some(), "{chat}");
        waiting.push(chat["id"].as_str().expect("id").to_owned());
    }
    let (code, queue) = server.get("/api/v1/queue", Some(&bo.token)).await;
    assert_eq!(code, 200, "{queue}");
    assert_eq!(queue["total"], 3);
    let listed: Vec<&str> = queue["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .map(|e| e["conversation"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        listed,
        waiting.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(queue["queue"][0]["position"], 1);
    assert_eq!(queue["queue"][2]["position"], 3);
    assert!(queue["queue"][0]["waiting_ms"].as_i64().expect("waiting") >= 0);

    // Amy resolves hers: the head of the queue goes to her, not the others.
    set_status_of(
        &server,
        &amy.token,
        c1["id"].as_str().expect("id"),
        "resolved",
    )
    .await;
    let frame = conversation_frame(&mut bo_ws, &waiting[0], |c| c["status"] == "open").await;
    assert_eq!(frame["assignee_id"], amy.id.as_str());
    assert_eq!(frame["queued_at"], Value::Null);
    for id in &waiting[1..] {
        assert_eq!(conversation(&server, &admin, id).await["status"], "queued");
    }
    // Capacity raised: Amy takes the next one. Bo online: he takes the last.
    patch_agent(&mut server, &amy, json!({"max_concurrent": 2})).await;
    assert_eq!(
        conversation(&server, &admin, &waiting[1]).await["assignee_id"],
        amy.id.as_str()
    );
    assert_eq!(
        conversation(&server, &admin, &waiting[2]).await["status"],
        "queued"
    );
    set_status(&server, &bo, "online").await;
    assert_eq!(
        conversation(&server, &admin, &waiting[2]).await["assignee_id"],
        bo.id.as_str()
    );
    let (_, queue) = server.get("/api/v1/queue", Some(&bo.token)).await;
    assert_eq!(queue["total"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn an_agent_coming_online_takes_from_the_queue_head_up_to_capacity() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let admin = server.admin().await;
    patch_agent(&mut server, &amy, json!({"max_concurrent": 2})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, chat) = new_chat(&server, &app, &admin, &format!("q{i}")).await;
        assert_eq!(chat["status"], "queued");
        ids.push(chat["id"].as_str().expect("id").to_owned());
    }
    set_status(&server, &amy, "online").await;
    let states: Vec<Value> = {
        let mut all = Vec::new();
        for id in &ids {
            all.push(conversation(&server, &admin, id).await["assignee_id"].clone());
        }
        all
    };
    assert_eq!(states, vec![json!(amy.id), json!(amy.id), Value::Null]);
    // Unassigning an active chat puts it back in the queue (at the tail),
    // and Amy, who has room again, takes the head: the one that waited longest.
    let (code, body) = server
        .post(
            &format!("/api/v1/conversations/{}/assign", ids[0]),
            Some(&amy.token),
            json!({"agent_id": null}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["conversation"]["status"], "queued");
    assert_eq!(
        conversation(&server, &admin, &ids[2]).await["assignee_id"],
        amy.id.as_str()
    );
    assert_eq!(
        conversation(&server, &admin, &ids[0]).await["status"],
        "queued"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn with_auto_assignment_off_chats_wait_for_a_claim() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let admin = server.admin().await;
    let response = server
        .http
        .put(server.url("/api/v1/routing"))
        .bearer_auth(&admin)
        .json(&json!({"auto_assign": false}))
        .send()
        .await
        .expect("put");
    let (code, body) = kefu_tests::read(response).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["routing"]["auto_assign"], false);
    set_status(&server, &amy, "online").await;
    let (_, chat) = new_chat(&server, &app, &admin, "hi").await;
    assert_eq!(chat["status"], "queued");
    // Turning it back on drains the queue.
    let (_, body) = server
        .patch(
            "/api/v1/routing",
            Some(&admin),
            json!({"auto_assign": true}),
        )
        .await;
    assert_eq!(body["routing"]["auto_assign"], true);
    let id = chat["id"].as_str().expect("id");
    assert_eq!(
        conversation(&server, &admin, id).await["assignee_id"],
        amy.id.as_str()
    );
    server.shutdown().await;
}

// ---- claim ---------------------------------------------------------------

#[tokio::test]
async fn two_claims_race_one_wins() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    for round in 0..5 {
        let (visitor, chat) = new_chat(&server, &app, &amy.token, "help").await;
        assert_eq!(chat["status"], "queued");
        let path = format!("/api/v1/conversations/{}/claim", visitor.conversation_id);
        let (a, b) = tokio::join!(
            server.post(&path, Some(&amy.token), json!({})),
            server.post(&path, Some(&bo.token), json!({})),
        );
        let (winner, loser) = if a.0 == 200 { (a, b) } else { (b, a) };
        assert_eq!(winner.0, 200, "round {round}: {winner:?} {loser:?}");
        assert_error(loser.0, &loser.1, 409, "conflict");
        let owner = winner.1["conversation"]["assignee_id"].clone();
        assert_eq!(winner.1["conversation"]["status"], "open");
        assert_eq!(
            conversation(&server, &amy.token, &visitor.conversation_id).await["assignee_id"],
            owner
        );
        // The visitor sees who joined.
        let (_, page) = server
            .get("/api/v1/visitor/messages", Some(&visitor.token))
            .await;
        let seen = texts(page["messages"].as_array().expect("messages"));
        let name = if owner == amy.id.as_str() {
            "AMY"
        } else {
            "BO"
        };
        assert_eq!(
            seen,
            vec![
                "text:help".to_owned(),
                format!("event:{name} joined the conversation")
            ]
        );
    }
    // Unknown conversation: 404; claiming an assigned one: 409.
    let (code, body) = server
        .post(
            "/api/v1/conversations/01ARZ3NDEKTSV4RRFFQ69G5FAV/claim",
            Some(&amy.token),
            json!({}),
        )
        .await;
    assert_error(code, &body, 404, "not_found");
    server.shutdown().await;
}

// ---- rules and teams -----------------------------------------------------

#[tokio::test]
async fn rules_route_by_keyword_app_and_attribute_to_teams_and_agents() {
    let mut server = TestServer::start().await;
    let shop = server.app(json!({"name": "Shop"})).await;
    let game = server.app(json!({"name": "Game"})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let cy = server.agent("cy").await;
    let dee = server.agent("dee").await;
    let admin = server.admin().await;
    let billing = create_team(&mut server, "Billing", &[&bo, &dee]).await;
    let vip = create_team(&mut server, "VIP", &[&cy]).await;
    let r1 = create_rule(
        &mut server,
        json!({"name": "Refunds", "keywords": ["退款", "Refund"], "team_id": billing["id"]}),
    )
    .await;
    assert_eq!(r1["position"], 1);
    let r2 = create_rule(
        &mut server,
        json!({"name": "VIPs", "attributes": {"plan": "vip"}, "team_id": vip["id"]}),
    )
    .await;
    let r3 = create_rule(
        &mut server,
        json!({"name": "Game to Amy", "app_id": game["id"], "agent_id": amy.id}),
    )
    .await;
    assert_eq!(r3["position"], 3);
    for agent in [&amy, &bo, &cy, &dee] {
        set_status(&server, agent, "online").await;
    }

    // Chinese keyword, case-insensitive English keyword → Billing members.
    let (_, chat) = new_chat(&server, &shop, &admin, "我要退款，谢谢").await;
    assert_eq!(chat["team_id"], billing["id"]);
    let first = chat["assignee_id"].clone();
    assert!(first == json!(bo.id) || first == json!(dee.id), "{chat}");
    let (_, chat) = new_chat(&server, &shop, &admin, "I want a REFUND now").await;
    assert_eq!(chat["team_id"], billing["id"]);
    assert!(
        chat["assignee_id"] != first
            && chat["assignee_id"] != json!(amy.id)
            && chat["assignee_id"] != json!(cy.id),
        "{chat}"
    );
    // Attribute → VIP team (Cy).
    let vip_visitor = server
        .visitor_with(&shop, json!({"attributes": {"plan": "vip"}}))
        .await;
    server.visitor_says(&vip_visitor, "v1", "hello").await;
    let chat = conversation(&server, &admin, &vip_visitor.conversation_id).await;
    assert_eq!(chat["team_id"], vip["id"]);
    assert_eq!(chat["assignee_id"], cy.id.as_str());
    // App → Amy directly.
    let (_, chat) = new_chat(&server, &game, &admin, "lag!").await;
    assert_eq!(chat["assignee_id"], amy.id.as_str());
    assert_eq!(chat["team_id"], Value::Null);
    // No rule matches: anybody, no team.
    let (_, chat) = new_chat(&server, &shop, &admin, "where is my parcel").await;
    assert_eq!(chat["team_id"], Value::Null);
    assert!(chat["assignee_id"].is_string());

    // Order matters: a VIP asking for a refund goes to Billing (rule 1)…
    let both = server
        .visitor_with(&shop, json!({"attributes": {"plan": "vip"}}))
        .await;
    server.visitor_says(&both, "b1", "退款").await;
    assert_eq!(
        conversation(&server, &admin, &both.conversation_id).await["team_id"],
        billing["id"]
    );
    // …until the VIP rule is moved first.
    let (code, body) = server
        .post(
            "/api/v1/routing/rules/reorder",
            Some(&admin),
            json!({"ids": [r2["id"], r1["id"], r3["id"]]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["rules"][0]["id"], r2["id"]);
    assert_eq!(body["rules"][0]["position"], 1);
    let both = server
        .visitor_with(&shop, json!({"attributes": {"plan": "vip"}}))
        .await;
    server.visitor_says(&both, "b1", "退款").await;
    assert_eq!(
        conversation(&server, &admin, &both.conversation_id).await["team_id"],
        vip["id"]
    );
    // A disabled rule is skipped.
    let (code, _) = server
        .patch(
            &format!("/api/v1/routing/rules/{}", r2["id"].as_str().expect("id")),
            Some(&admin),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(code, 200);
    let both = server
        .visitor_with(&shop, json!({"attributes": {"plan": "vip"}}))
        .await;
    server.visitor_says(&both, "b1", "退款").await;
    assert_eq!(
        conversation(&server, &admin, &both.conversation_id).await["team_id"],
        billing["id"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_team_queue_waits_for_a_member_and_does_not_block_others() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let admin = server.admin().await;
    let billing = create_team(&mut server, "Billing", &[&bo]).await;
    create_rule(
        &mut server,
        json!({"name": "Refunds", "keywords": ["refund"], "team_id": billing["id"]}),
    )
    .await;
    // Nobody online: a billing chat, then a general one.
    let (_, refund) = new_chat(&server, &app, &admin, "refund please").await;
    let (_, general) = new_chat(&server, &app, &admin, "hello").await;
    assert_eq!(refund["status"], "queued");
    assert_eq!(refund["team_id"], billing["id"]);
    let (_, queue) = server
        .get(
            &format!(
                "/api/v1/queue?team_id={}",
                billing["id"].as_str().expect("id")
            ),
            Some(&admin),
        )
        .await;
    assert_eq!(queue["total"], 1);
    // Amy (not in Billing) comes online: she skips the billing chat at the
    // head and takes the general one behind it.
    set_status(&server, &amy, "online").await;
    let refund_id = refund["id"].as_str().expect("id");
    let general_id = general["id"].as_str().expect("id");
    assert_eq!(
        conversation(&server, &admin, refund_id).await["status"],
        "queued"
    );
    assert_eq!(
        conversation(&server, &admin, general_id).await["assignee_id"],
        amy.id.as_str()
    );
    // Bo (Billing) comes online: the billing chat is his.
    set_status(&server, &bo, "online").await;
    assert_eq!(
        conversation(&server, &admin, refund_id).await["assignee_id"],
        bo.id.as_str()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn teams_crud_and_membership() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let admin = server.admin().await;
    let team = create_team(&mut server, "Sales", &[&amy]).await;
    let id = team["id"].as_str().expect("id").to_owned();
    assert_eq!(team["agent_ids"], json!([amy.id]));
    // Same name (any case) is a conflict.
    let (code, body) = server
        .post("/api/v1/teams", Some(&admin), json!({"name": "sales"}))
        .await;
    assert_error(code, &body, 409, "conflict");
    let (code, body) = server
        .patch(
            &format!("/api/v1/teams/{id}"),
            Some(&admin),
            json!({"name": "Sales EU", "agent_ids": [bo.id, amy.id, bo.id]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["team"]["name"], "Sales EU");
    let mut members = vec![amy.id.clone(), bo.id.clone()];
    members.sort();
    assert_eq!(body["team"]["agent_ids"], json!(members));
    let (code, body) = server.get("/api/v1/teams", Some(&amy.token)).await;
    assert_eq!(code, 200);
    assert_eq!(body["teams"].as_array().expect("teams").len(), 1);
    // A team a rule uses cannot be deleted; once the rule is gone it can.
    let rule = create_rule(
        &mut server,
        json!({"name": "r", "keywords": ["x"], "team_id": id}),
    )
    .await;
    let response = server
        .http
        .delete(server.url(&format!("/api/v1/teams/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    let (code, body) = kefu_tests::read(response).await;
    assert_error(code, &body, 409, "conflict");
    let response = server
        .http
        .delete(server.url(&format!(
            "/api/v1/routing/rules/{}",
            rule["id"].as_str().expect("id")
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 200);
    let response = server
        .http
        .delete(server.url(&format!("/api/v1/teams/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 200);
    let (code, body) = server
        .get(&format!("/api/v1/teams/{id}"), Some(&admin))
        .await;
    assert_error(code, &body, 404, "not_found");
    // Every admin action is in the audit log.
    let (_, audit) = server.get("/api/v1/audit?action=team.", Some(&admin)).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, vec!["team.delete", "team.update", "team.create"]);
    let (_, audit) = server
        .get("/api/v1/audit?action=routing.rule.", Some(&admin))
        .await;
    assert_eq!(audit["entries"].as_array().expect("entries").len(), 2);
    server.shutdown().await;
}

// ---- transfer ------------------------------------------------------------

#[tokio::test]
async fn transfer_to_an_agent_and_to_a_team_leaves_an_event_and_hides_the_note() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let cy = server.agent("cy").await;
    let billing = create_team(&mut server, "Billing", &[&cy]).await;
    set_status(&server, &amy, "online").await;
    let (visitor, chat) = new_chat(&server, &app, &amy.token, "my order is late").await;
    assert_eq!(chat["assignee_id"], amy.id.as_str());
    let mut visitor_ws = server.ws(&visitor.token, json!({})).await;
    let mut bo_ws = server.ws(&bo.token, json!({})).await;
    let path = format!("/api/v1/conversations/{}/transfer", visitor.conversation_id);

    let (code, body) = server
        .post(
            &path,
            Some(&amy.token),
            json!({"agent_id": bo.id, "note": "VIP customer, offer a voucher"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["conversation"]["assignee_id"], bo.id.as_str());
    assert_eq!(body["conversation"]["status"], "open");
    // The visitor sees the event live, never the note.
    let frame = visitor_ws.next_of("message").await;
    assert_eq!(frame["message"]["kind"], "event");
    assert_eq!(frame["message"]["sender"]["type"], "system");
    assert_eq!(
        frame["message"]["content"],
        "AMY transferred the conversation to BO"
    );
    // Bo gets the event, the note and the conversation frame.
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let frame = bo_ws.next_of("message").await;
        kinds.push((
            frame["message"]["kind"].clone(),
            frame["message"]["content"].clone(),
        ));
    }
    assert_eq!(
        kinds[1],
        (json!("note"), json!("VIP customer, offer a voucher"))
    );
    let frame = conversation_frame(&mut bo_ws, &visitor.conversation_id, |c| {
        c["assignee_id"] == bo.id.as_str()
    })
    .await;
    assert_eq!(frame["status"], "open");

    // To a team: queued for it and routed to its free member (Cy, once online).
    let (code, body) = server
        .post(&path, Some(&bo.token), json!({"team_id": billing["id"]}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["conversation"]["status"], "queued");
    assert_eq!(body["conversation"]["team_id"], billing["id"]);
    assert_eq!(body["conversation"]["assignee_id"], Value::Null);
    set_status(&server, &cy, "online").await;
    let chat = conversation(&server, &amy.token, &visitor.conversation_id).await;
    assert_eq!(chat["assignee_id"], cy.id.as_str());

    // REST: the visitor's view has the events, not the note; agents see all.
    let (_, page) = server
        .get("/api/v1/visitor/messages", Some(&visitor.token))
        .await;
    assert_eq!(
        texts(page["messages"].as_array().expect("messages")),
        vec![
            "text:my order is late",
            "event:AMY joined the conversation",
            "event:AMY transferred the conversation to BO",
            "event:BO transferred the conversation to the Billing team",
            "event:CY joined the conversation",
        ]
    );
    let all = texts(
        &server
            .transcript(&amy.token, &visitor.conversation_id)
            .await,
    );
    assert!(
        all.contains(&"note:VIP customer, offer a voucher".to_owned()),
        "{all:?}"
    );
    // The visitor's socket never got the note either.
    while let Some(frame) = visitor_ws.try_next(Duration::from_millis(300)).await {
        assert_ne!(frame["message"]["kind"], "note", "{frame}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bad_transfers_change_nothing() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    set_status(&server, &amy, "online").await;
    let (visitor, _) = new_chat(&server, &app, &amy.token, "hi").await;
    let path = format!("/api/v1/conversations/{}/transfer", visitor.conversation_id);
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let cases = [
        (json!({"agent_id": unknown}), 404, "not_found"),
        (json!({"team_id": unknown}), 404, "not_found"),
        (json!({}), 400, "bad_request"),
        (
            json!({"agent_id": amy.id, "team_id": unknown}),
            400,
            "bad_request",
        ),
        (json!({"agent_id": "not-an-id"}), 400, "bad_request"),
        (json!({"agent_id": amy.id, "extra": 1}), 400, "bad_request"),
        // Already hers.
        (json!({"agent_id": amy.id}), 409, "conflict"),
    ];
    for (body, status, code) in cases {
        let (got, response) = server.post(&path, Some(&amy.token), body.clone()).await;
        assert_error(got, &response, status, code);
    }
    let too_long = "x".repeat(server.config().limits.content_bytes + 1);
    let bo = server.agent("bo").await;
    let (got, response) = server
        .post(
            &path,
            Some(&amy.token),
            json!({"agent_id": bo.id, "note": too_long}),
        )
        .await;
    assert_error(got, &response, 413, "payload_too_large");
    let chat = conversation(&server, &amy.token, &visitor.conversation_id).await;
    assert_eq!(chat["assignee_id"], amy.id.as_str());
    assert_eq!(
        server
            .transcript(&amy.token, &visitor.conversation_id)
            .await
            .len(),
        2
    );
    // A resolved conversation is not transferred; an unknown one is 404.
    set_status_of(&server, &amy.token, &visitor.conversation_id, "resolved").await;
    let (got, response) = server
        .post(&path, Some(&amy.token), json!({"agent_id": bo.id}))
        .await;
    assert_error(got, &response, 409, "conflict");
    let (got, response) = server
        .post(
            &format!("/api/v1/conversations/{unknown}/transfer"),
            Some(&amy.token),
            json!({"agent_id": bo.id}),
        )
        .await;
    assert_error(got, &response, 404, "not_found");
    // Visitors cannot transfer or claim.
    let (got, response) = server
        .post(&path, Some(&visitor.token), json!({"agent_id": bo.id}))
        .await;
    assert_error(got, &response, 403, "forbidden");
    let claim = format!("/api/v1/conversations/{}/claim", visitor.conversation_id);
    let (got, response) = server.post(&claim, Some(&visitor.token), json!({})).await;
    assert_error(got, &response, 403, "forbidden");
    server.shutdown().await;
}

// ---- admin checks and bad input -------------------------------------------

#[tokio::test]
async fn admin_routes_refuse_agents_and_bad_input_changes_nothing() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let admin = server.admin().await;
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    // Agents: 403 on every admin route.
    for (method, path, body) in [
        (
            "PATCH",
            "/api/v1/routing".to_owned(),
            json!({"policy": "least_busy"}),
        ),
        ("POST", "/api/v1/teams".to_owned(), json!({"name": "x"})),
        (
            "POST",
            "/api/v1/routing/rules".to_owned(),
            json!({"name": "x", "agent_id": amy.id}),
        ),
        (
            "POST",
            "/api/v1/routing/rules/reorder".to_owned(),
            json!({"ids": []}),
        ),
        (
            "PATCH",
            format!("/api/v1/agents/{}", amy.id),
            json!({"max_concurrent": 99}),
        ),
    ] {
        let (code, body) = if method == "POST" {
            server.post(&path, Some(&amy.token), body).await
        } else {
            server.patch(&path, Some(&amy.token), body).await
        };
        assert_error(code, &body, 403, "forbidden");
    }
    let (_, me) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(me["agent"]["max_concurrent"], 10);
    let team = create_team(&mut server, "Ops", &[]).await;
    let rule = create_rule(&mut server, json!({"name": "r", "agent_id": amy.id})).await;
    for path in [
        format!("/api/v1/teams/{}", team["id"].as_str().expect("id")),
        format!("/api/v1/routing/rules/{}", rule["id"].as_str().expect("id")),
    ] {
        let response = server
            .http
            .delete(server.url(&path))
            .bearer_auth(&amy.token)
            .send()
            .await
            .expect("delete");
        let (code, body) = kefu_tests::read(response).await;
        assert_error(code, &body, 403, "forbidden");
        let response = server
            .http
            .delete(server.url(&path))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("delete");
        assert_eq!(response.status(), 200);
    }
    let (code, body) = server
        .get("/api/v1/queue?team_id=nope", Some(&amy.token))
        .await;
    assert_error(code, &body, 400, "bad_request");
    let (code, body) = server.get("/api/v1/queue?limit=0", Some(&amy.token)).await;
    assert_error(code, &body, 400, "bad_request");

    // Bad input for admins: nothing stored.
    for (path, body, status, code) in [
        (
            "/api/v1/routing/rules",
            json!({"name": "r", "team_id": unknown}),
            404,
            "not_found",
        ),
        (
            "/api/v1/routing/rules",
            json!({"name": "r", "agent_id": unknown}),
            404,
            "not_found",
        ),
        (
            "/api/v1/routing/rules",
            json!({"name": "r"}),
            400,
            "bad_request",
        ),
        (
            "/api/v1/routing/rules",
            json!({"name": "", "agent_id": amy.id}),
            400,
            "bad_request",
        ),
        (
            "/api/v1/routing/rules",
            json!({"name": "r", "agent_id": amy.id, "keywords": [""]}),
            400,
            "bad_request",
        ),
        (
            "/api/v1/routing/rules",
            json!({"name": "r", "agent_id": amy.id, "app_id": unknown}),
            404,
            "not_found",
        ),
        (
            "/api/v1/routing/rules",
            json!({"name": "r", "agent_id": amy.id, "attributes": {"a": {"b": 1}}}),
            400,
            "bad_request",
        ),
        (
            "/api/v1/teams",
            json!({"name": "t", "agent_ids": [unknown]}),
            404,
            "not_found",
        ),
        ("/api/v1/teams", json!({"name": " "}), 400, "bad_request"),
    ] {
        let (got, response) = server.post(path, Some(&admin), body).await;
        assert_error(got, &response, status, code);
    }
    let (_, rules) = server.get("/api/v1/routing/rules", Some(&admin)).await;
    assert_eq!(rules["rules"], json!([]));
    let (_, teams) = server.get("/api/v1/teams", Some(&admin)).await;
    assert_eq!(teams["teams"], json!([]));
    for (body, status, code) in [
        (json!({"policy": "random"}), 400, "bad_request"),
        (json!({"auto_assign": "yes"}), 400, "bad_request"),
    ] {
        let (got, response) = server.patch("/api/v1/routing", Some(&admin), body).await;
        assert_error(got, &response, status, code);
    }
    let (_, routing) = server.get("/api/v1/routing", Some(&admin)).await;
    assert_eq!(routing["routing"]["policy"], "round_robin");
    for (path, body, status, code) in [
        (
            format!("/api/v1/agents/{}", amy.id),
            json!({"max_concurrent": -1}),
            400,
            "bad_request",
        ),
        (
            format!("/api/v1/agents/{}", amy.id),
            json!({"max_concurrent": 1001}),
            400,
            "bad_request",
        ),
        (
            format!("/api/v1/agents/{}", amy.id),
            json!({"display_name": ""}),
            400,
            "bad_request",
        ),
        (
            format!("/api/v1/agents/{}", amy.id),
            json!({"password": "short"}),
            400,
            "bad_request",
        ),
        (
            format!("/api/v1/agents/{unknown}"),
            json!({"max_concurrent": 3}),
            404,
            "not_found",
        ),
    ] {
        let (got, response) = server.patch(&path, Some(&admin), body).await;
        assert_error(got, &response, status, code);
    }
    let (_, me) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(me["agent"]["max_concurrent"], 10);
    assert_eq!(me["agent"]["display_name"], "AMY");
    // Reorder must name every rule once.
    let rule = create_rule(&mut server, json!({"name": "r", "agent_id": amy.id})).await;
    for ids in [json!([]), json!([rule["id"], rule["id"]]), json!([unknown])] {
        let (got, response) = server
            .post(
                "/api/v1/routing/rules/reorder",
                Some(&admin),
                json!({"ids": ids}),
            )
            .await;
        assert_error(got, &response, 400, "bad_request");
    }
    // The last admin cannot be demoted.
    let (_, owner) = server.get("/api/v1/agents/me", Some(&admin)).await;
    let owner_id = owner["agent"]["id"].as_str().expect("id");
    let (got, response) = server
        .patch(
            &format!("/api/v1/agents/{owner_id}"),
            Some(&admin),
            json!({"role": "agent"}),
        )
        .await;
    assert_error(got, &response, 409, "conflict");
    server.shutdown().await;
}

#[tokio::test]
async fn admin_updates_an_agent_and_a_password_reset_signs_them_out() {
    let mut server = TestServer::start().await;
    let amy = server.agent("amy").await;
    let admin = server.admin().await;
    let mut amy_ws = server.ws(&amy.token, json!({})).await;
    let updated = patch_agent(
        &mut server,
        &amy,
        json!({"display_name": "Amy Lee", "role": "admin", "max_concurrent": 3}),
    )
    .await;
    assert_eq!(updated["display_name"], "Amy Lee");
    assert_eq!(updated["role"], "admin");
    assert_eq!(updated["max_concurrent"], 3);
    assert_eq!(
        agent_frame(&mut amy_ws, &amy.id).await["display_name"],
        "Amy Lee"
    );
    patch_agent(&mut server, &amy, json!({"password": "a-new-password"})).await;
    let (code, _) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(code, 401);
    let (code, _) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "amy", "password": "a-new-password"}),
        )
        .await;
    assert_eq!(code, 200);
    let (_, audit) = server
        .get("/api/v1/audit?action=agent.update", Some(&admin))
        .await;
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["details"]["password_reset"], true);
    assert!(!audit.to_string().contains("a-new-password"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_deactivated_agent_is_signed_out_and_their_chats_go_to_others() {
    let mut server = TestServer::start().await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let bo = server.agent("bo").await;
    let admin = server.admin().await;
    set_status(&server, &amy, "online").await;
    let (visitor, chat) = new_chat(&server, &app, &admin, "hi").await;
    assert_eq!(chat["assignee_id"], amy.id.as_str());
    let mut amy_ws = server.ws(&amy.token, json!({})).await;
    let mut bo_ws = server.ws(&bo.token, json!({})).await;
    set_status(&server, &bo, "online").await;

    let updated = patch_agent(&mut server, &amy, json!({"active": false})).await;
    assert_eq!(updated["active"], false);
    assert_eq!(updated["status"], "offline");
    // Her socket is closed and her token is dead; she cannot sign in.
    assert_ne!(amy_ws.closed().await, kefu_tests::Closed::Code(1000));
    let (code, _) = server.get("/api/v1/agents/me", Some(&amy.token)).await;
    assert_eq!(code, 401);
    let (code, _) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "amy", "password": "agent-password"}),
        )
        .await;
    assert_eq!(code, 401);
    // Her chat went back to the queue and on to Bo.
    let frame = conversation_frame(&mut bo_ws, &visitor.conversation_id, |c| {
        c["assignee_id"] == bo.id.as_str()
    })
    .await;
    assert_eq!(frame["status"], "open");
    // Nothing is routed or transferred to her, even if set online.
    patch_agent(&mut server, &amy, json!({"status": "online"})).await;
    let (code, body) = server
        .post(
            &format!("/api/v1/conversations/{}/transfer", visitor.conversation_id),
            Some(&bo.token),
            json!({"agent_id": amy.id}),
        )
        .await;
    assert_error(code, &body, 409, "conflict");
    // Nor assigned by hand; the chat stays with Bo.
    let (code, body) = server
        .post(
            &format!("/api/v1/conversations/{}/assign", visitor.conversation_id),
            Some(&admin),
            json!({"agent_id": amy.id}),
        )
        .await;
    assert_error(code, &body, 409, "conflict");
    let (_, still) = server
        .get(
            &format!("/api/v1/conversations/{}", visitor.conversation_id),
            Some(&admin),
        )
        .await;
    assert_eq!(still["conversation"]["assignee_id"], bo.id.as_str());
    let (_, chat) = new_chat(&server, &app, &admin, "hello").await;
    assert_eq!(chat["assignee_id"], bo.id.as_str());
    // An admin cannot deactivate themselves.
    let (_, owner) = server.get("/api/v1/agents/me", Some(&admin)).await;
    let owner_id = owner["agent"]["id"].as_str().expect("id");
    let (code, body) = server
        .patch(
            &format!("/api/v1/agents/{owner_id}"),
            Some(&admin),
            json!({"active": false}),
        )
        .await;
    assert_error(code, &body, 409, "conflict");
    // Reactivated, she signs in again.
    assert_eq!(
        patch_agent(&mut server, &amy, json!({"active": true})).await["active"],
        true
    );
    let (code, _) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "amy", "password": "agent-password"}),
        )
        .await;
    assert_eq!(code, 200);
    server.shutdown().await;
}
