//! Renaming the shop on a running host (`PUT /api/v1/lan/shop`, `kefu-server
//! lan shop-name`), with a real host process on 127.0.0.2: who may, which
//! names are refused (400 naming `name`, nothing changed), the new name in
//! the admin status, `state.json` and the audit log, kept across a restart,
//! and the command line both against the running server (operator token)
//! and offline. The name in the mDNS TXT record is checked between network
//! namespaces in `lan_discovery.rs`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::lan_host::{Host, kefu};

async fn status(host: &Host) -> Value {
    let (status, body) = host
        .call(Method::GET, "/api/v1/lan/status", Some(&host.admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn rename(host: &Host, token: Option<&str>, body: Value) -> (u16, Value) {
    host.call(Method::PUT, "/api/v1/lan/shop", token, Some(body))
        .await
}

#[tokio::test]
async fn an_admin_renames_the_shop_on_a_running_host() {
    let mut host = Host::start().await;
    assert_eq!(status(&host).await["shop_name"], Value::Null);

    // Agents may not; visitors do not see the route; no token: 401.
    let agent = host.agent("amy").await;
    let (code, body) = rename(&host, Some(&agent), json!({"name": "Amy's"})).await;
    assert_eq!(code, 403, "{body}");
    let (code, app) = host
        .call(
            Method::POST,
            "/api/v1/apps",
            Some(&host.admin),
            Some(json!({"name": "Shop"})),
        )
        .await;
    assert_eq!(code, 201, "{app}");
    let (code, visitor) = host
        .call(
            Method::POST,
            "/api/v1/visitor/sessions",
            None,
            Some(json!({"app_key": app["app"]["app_key"]})),
        )
        .await;
    assert_eq!(code, 201, "{visitor}");
    let visitor = visitor["token"].as_str().expect("token");
    let (code, body) = rename(&host, Some(visitor), json!({"name": "Visitor's"})).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = rename(&host, None, json!({"name": "Nobody's"})).await;
    assert_eq!(code, 401, "{body}");

    // Bad names: 400 naming the field, nothing changed.
    for bad in [
        "",
        "   ",
        "Tea\nHouse",
        "Tea\u{7}",
        "Tea\u{202E}esuoH",
        "Te\u{200B}a",
        &"x".repeat(64),
        &"字".repeat(22),
    ] {
        let (code, body) = rename(&host, Some(&host.admin), json!({"name": bad})).await;
        assert_eq!(code, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert_eq!(body["error"]["field"], "name", "{bad:?}: {body}");
    }
    for bad in [json!({}), json!({"name": 7}), json!({"name": "A", "x": 1})] {
        let (code, body) = rename(&host, Some(&host.admin), bad.clone()).await;
        assert_eq!(code / 100, 4, "{bad}: {body}");
    }
    assert_eq!(status(&host).await["shop_name"], Value::Null);
    assert_eq!(host.state()["shop_name"], Value::Null);

    // The longest name fits (63 bytes); trimmed; shown and kept.
    let longest = "字".repeat(21);
    let (code, body) = rename(&host, Some(&host.admin), json!({"name": longest})).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = rename(&host, Some(&host.admin), json!({"name": "  小林茶馆  "})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["shop_name"], "小林茶馆");
    assert_eq!(body["announced"], false, "mDNS is off in this test");
    assert_eq!(status(&host).await["shop_name"], "小林茶馆");
    assert_eq!(host.state()["shop_name"], "小林茶馆");
    let (code, audit) = host
        .call(
            Method::GET,
            "/api/v1/audit?action=lan.shop.rename",
            Some(&host.admin),
            None,
        )
        .await;
    assert_eq!(code, 200, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{audit}");
    assert!(
        entries
            .iter()
            .any(|e| e["details"]["from"] == longest.as_str() && e["details"]["to"] == "小林茶馆"),
        "{audit}"
    );

    // Kept across a restart (the term moves on, the name stays).
    host.restart().await;
    assert_eq!(status(&host).await["shop_name"], "小林茶馆");

    // The command line against the running server (its operator token).
    let output = kefu()
        .args(["lan", "shop-name", "Tea House", "--data-dir"])
        .arg(host.dir.path())
        .output()
        .expect("lan shop-name");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Tea House"));
    assert_eq!(status(&host).await["shop_name"], "Tea House");
    let (_, audit) = host
        .call(
            Method::GET,
            "/api/v1/audit?action=lan.shop.rename",
            Some(&host.admin),
            None,
        )
        .await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["details"]["to"] == "Tea House" && e["details"]["via"] == "cli"),
        "{audit}"
    );

    // A bad name on the command line changes nothing.
    let output = kefu()
        .args(["lan", "shop-name", "Tea\tHouse", "--data-dir"])
        .arg(host.dir.path())
        .output()
        .expect("lan shop-name");
    assert!(!output.status.success());
    assert_eq!(status(&host).await["shop_name"], "Tea House");

    // Offline: straight into state.json, announced at the next start.
    host.stop();
    let output = kefu()
        .args(["lan", "shop-name", "Lin's", "--data-dir"])
        .arg(host.dir.path())
        .output()
        .expect("lan shop-name");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(host.state()["shop_name"], "Lin's");
    host.restart().await;
    assert_eq!(status(&host).await["shop_name"], "Lin's");
}

#[tokio::test]
async fn a_solo_server_has_no_shop_to_rename() {
    let mut server = kefu_tests::TestServer::start().await;
    let admin = server.admin().await;
    let response = reqwest::Client::new()
        .put(server.url("/api/v1/lan/shop"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Tea"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 409);
    let (_, status) = server.get("/api/v1/lan/status", Some(&admin)).await;
    assert_eq!(status["shop_name"], Value::Null, "{status}");
}
