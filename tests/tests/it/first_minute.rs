//! A new shop's first minute (issue 22): the demo page where the owner sends
//! the first app a test message through its real widget.

use kefu_tests::serde_json::json;
use kefu_tests::{TestServer, assert_error, read};

#[tokio::test]
async fn the_demo_page_carries_the_apps_widget_and_escapes_what_the_shop_typed() {
    let mut server = TestServer::start().await;
    let app = server
        .app(json!({"name": "Tea <script>alert(1)</script> & \"Co\""}))
        .await;
    let key = app["app_key"].as_str().expect("key");
    let response = server
        .http
        .get(server.url(&format!("/widget/demo.html?app_key={key}")))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = response.text().await.expect("body");
    assert!(
        page.contains(&format!(
            "<script src=\"/widget.js\" data-app-key=\"{key}\" async></script>"
        )),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(
        page.contains("Tea &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;"),
        "{page}"
    );
    // The widget it loads is served, and a visitor of that page can start a chat.
    let (status, _) = server.get("/widget.js", None).await;
    assert_eq!(status, 200);
    let visitor = server.visitor(&app).await;
    let (status, body) = server.visitor_says(&visitor, "t1", "test message").await;
    assert_eq!(status, 201, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_demo_page_needs_a_known_app_key() {
    let server = TestServer::start().await;
    let (status, body) = read(
        server
            .http
            .get(server.url("/widget/demo.html?app_key=ak_nope"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = read(
        server
            .http
            .get(server.url("/widget/demo.html"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    let long = "k".repeat(200);
    let (status, body) = read(
        server
            .http
            .get(server.url(&format!("/widget/demo.html?app_key={long}")))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    server.shutdown().await;
}
