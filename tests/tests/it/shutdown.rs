//! Issue 16 item 9: `Running::shutdown` ends every WebSocket task before it
//! closes the message log. Real server, real sockets: clients that do not
//! answer the server's close (so each socket lingers) and clients that
//! never said hello; the same process then opens the same store again at
//! once, which fails while any task of the old server still holds it.

use kefu_tests::serde_json::json;
use kefu_tests::{Closed, TestServer, WAIT, Ws};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::MaybeTlsStream;

/// The close frame the server sent, then what the raw TCP stream gives
/// after it: `"fin"` once the server dropped the socket.
async fn close_then_end(ws: &mut Ws) -> (Closed, &'static str) {
    let code = ws.closed().await;
    let MaybeTlsStream::Plain(tcp) = ws.stream.get_mut() else {
        panic!("plain TCP expected");
    };
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buffer)).await {
            Err(_) => panic!("the server neither closed nor reset within {WAIT:?}"),
            Ok(Ok(0)) => return (code, "fin"),
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => return (code, "reset"),
        }
    }
}

#[tokio::test]
async fn shutdown_ends_every_websocket_task_before_it_closes_the_store() {
    let mut server = TestServer::start_with(|config| {
        // Sockets that never say hello are closed after a second, not five.
        config.ws.hello_timeout_secs = 1;
    })
    .await;
    let app = server.app(json!({})).await;
    let amy = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let (status, body) = server
        .post(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"client_msg_id": "c1", "content": "hello"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Past hello, resumed, and then not read: none answers the server's
    // close, so the server lingers on each.
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(server.ws(&amy.token, json!({})).await);
        sockets.push(
            server
                .ws(
                    &visitor.token,
                    json!({ visitor.conversation_id.as_str(): 0 }),
                )
                .await,
        );
    }
    // Upgraded, but no hello yet.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(Ws::connect(&server.ws_url()).await);
    }
    let tasks = server.state().websocket_tasks.len();
    assert!(
        tasks >= sockets.len() + silent.len(),
        "{tasks} tasks tracked"
    );

    // Stops, then opens the same data dir in this process at once: RocksDB
    // refuses a store another handle in the process still holds open, so
    // this fails if any socket task (which holds the server's state) were
    // still running when shutdown returned.
    let server = server.restart().await;

    for (i, ws) in sockets.iter_mut().enumerate() {
        // Each got its 1001, and its socket was dropped (a FIN) before the
        // store closed.
        assert_eq!(
            close_then_end(ws).await,
            (Closed::Code(1001), "fin"),
            "socket {i}"
        );
    }
    for (i, ws) in silent.iter_mut().enumerate() {
        let (closed, end) = close_then_end(ws).await;
        assert!(matches!(closed, Closed::Code(_)), "silent {i}: {closed:?}");
        assert_eq!(end, "fin", "silent {i}");
    }

    // The reopened store has what the old one acknowledged.
    let mut ws = server
        .ws(
            &visitor.token,
            json!({ visitor.conversation_id.as_str(): 0 }),
        )
        .await;
    let frame = ws.next_of("message").await;
    assert_eq!(frame["message"]["content"], "hello", "{frame}");
    server.shutdown().await;
}
