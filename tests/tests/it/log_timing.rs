//! The log writer's timing series in `/metrics` (issue 24: where a send's
//! time in the log goes): `kefu_log_answer_seconds` counts every send the
//! log answers, `kefu_log_write_seconds` and `kefu_log_queue_wait_seconds`
//! every batch it writes. A resend answered with the stored message writes
//! nothing, so it is an answer and no write.

use kefu_tests::TestServer;

/// `NAME_count` in a scrape.
fn count(text: &str, name: &str) -> f64 {
    let series = format!("{name}_count ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {name}_count in\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

async fn scrape(server: &TestServer) -> String {
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

#[tokio::test]
async fn the_log_counts_its_answers_and_its_writes_apart() {
    let mut server = TestServer::start().await;
    let app = server.app(kefu_tests::serde_json::json!({})).await;
    let visitor = server.visitor(&app).await;
    let before = scrape(&server).await;
    let (code, _) = server.visitor_says(&visitor, "m1", "hello").await;
    assert_eq!(code, 201);
    let (code, _) = server.visitor_says(&visitor, "m2", "anyone?").await;
    assert_eq!(code, 201);
    let after = scrape(&server).await;
    let answers =
        count(&after, "kefu_log_answer_seconds") - count(&before, "kefu_log_answer_seconds");
    let writes = count(&after, "kefu_log_write_seconds") - count(&before, "kefu_log_write_seconds");
    assert!(answers >= 2.0, "{answers} answers for two sends");
    assert!(
        (1.0..=answers).contains(&writes),
        "{writes} writes, {answers} answers"
    );
    // One queue wait per batch written.
    assert_eq!(
        count(&after, "kefu_log_queue_wait_seconds"),
        count(&after, "kefu_log_write_seconds")
    );

    // The resend is answered from the log: one more answer than writes
    // (other appends, such as an auto-reply, add one of each at most).
    let (code, _) = server.visitor_says(&visitor, "m1", "hello").await;
    assert_eq!(code, 200, "a resend is answered with the stored message");
    let resent = scrape(&server).await;
    let answers =
        count(&resent, "kefu_log_answer_seconds") - count(&after, "kefu_log_answer_seconds");
    let writes = count(&resent, "kefu_log_write_seconds") - count(&after, "kefu_log_write_seconds");
    assert!(
        answers >= 1.0 && writes <= answers - 1.0,
        "{writes} writes, {answers} answers"
    );
    server.shutdown().await;
}
