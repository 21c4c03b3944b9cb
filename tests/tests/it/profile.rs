//! CPU profiles on demand (issue 19 item 8, `ops::profile`): who may ask,
//! the bounds, and (in a build with the `pprof` feature:
//! `cargo nextest run --workspace --all-targets --features kefu-tests/pprof
//! -E 'test(/profile/)'`) a real flame graph of the live server.

use kefu_tests::serde_json::json;
use kefu_tests::{TestServer, assert_error};

#[tokio::test]
async fn profiles_are_for_admins_and_bounded() {
    let mut server = TestServer::start_with(|config| {
        // The load below must not be refused for its rate.
        config.limits.visitor_messages_per_second = 0;
    })
    .await;
    let (status, body) = server.get("/api/v1/admin/profile?seconds=1", None).await;
    assert_error(status, &body, 401, "unauthorized");
    let amy = server.agent("amy").await;
    let (status, body) = server
        .get("/api/v1/admin/profile?seconds=1", Some(&amy.token))
        .await;
    assert_error(status, &body, 403, "forbidden");
    let admin = server.admin().await;
    for bad in ["0", "61", "-1", "ten"] {
        let (status, body) = server
            .get(
                &format!("/api/v1/admin/profile?seconds={bad}"),
                Some(&admin),
            )
            .await;
        assert_error(status, &body, 400, "bad_request");
        assert_eq!(body["error"]["field"], "seconds", "{bad}: {body}");
    }
    let (status, body) = server
        .get("/api/v1/admin/profile?seconds=1&colour=red", Some(&admin))
        .await;
    assert_error(status, &body, 400, "bad_request");

    #[cfg(not(feature = "pprof"))]
    {
        let (status, body) = server
            .get("/api/v1/admin/profile?seconds=1", Some(&admin))
            .await;
        assert_error(status, &body, 404, "not_found");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("pprof")),
            "{body}"
        );
    }
    #[cfg(feature = "pprof")]
    {
        // Work to sample while the profile runs: visitors sending.
        let app = server.app(json!({})).await;
        let base = server.base.clone();
        let visitor = server.visitor(&app).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = tokio::spawn({
            let stop = std::sync::Arc::clone(&stop);
            async move {
                let http = reqwest::Client::new();
                let mut sent = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = http
                        .post(format!("{base}/api/v1/visitor/messages"))
                        .bearer_auth(&visitor.token)
                        .json(
                            &json!({"client_msg_id": format!("p{sent}"), "content": "profile me"}),
                        )
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(response.status(), 201);
                    sent += 1;
                }
                sent
            }
        });
        let profiling = {
            let http = server.http.clone();
            let url = server.url("/api/v1/admin/profile?seconds=2");
            let admin = admin.clone();
            tokio::spawn(async move { http.get(url).bearer_auth(admin).send().await })
        };
        // One at a time.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (status, body) = server
            .get("/api/v1/admin/profile?seconds=1", Some(&admin))
            .await;
        assert_error(status, &body, 409, "conflict");
        let response = profiling.await.expect("join").expect("profile");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/svg+xml");
        let svg = response.text().await.expect("svg");
        assert!(svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(200)]);
        assert!(
            svg.contains("kefu_server"),
            "no Kefu frame in the flame graph"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(load.await.expect("load") > 10, "the load ran");
        let (status, body) = server
            .get("/api/v1/audit?action=profile.cpu", Some(&admin))
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.to_string().contains("profile.cpu"), "{body}");
    }
    let _ = json!(null);
    server.shutdown().await;
}
