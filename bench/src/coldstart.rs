//! Cold start (Kefu only: the baselines keep nothing to open).
//!
//! 1. A store is filled offline (`store::fill`: tickets, comments and
//!    messages over many conversations), served once so that one visitor
//!    sends 60 messages and the search index catches up, then stopped
//!    cleanly.
//! 2. Clean start: from exec of `kefu-server` to the first successful
//!    answer to "the last 50 messages of that conversation" (agent token,
//!    polled every millisecond), several times.
//! 3. Crash: visitors send with many sends in flight; the server gets
//!    SIGKILL mid-load; from the new exec to serving again, then every
//!    message that was acked before the kill must be in the log.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Connection, Shop};
use crate::report::dir_size;
use crate::scenarios::round2;
use crate::server::Server;
use crate::store;

pub struct Sizes {
    pub messages: u64,
    pub tickets: u64,
    pub runs: usize,
    /// Seconds of load before the kill.
    pub load_seconds: u64,
}

pub async fn run(bin: &std::path::Path, sizes: Sizes) -> anyhow::Result<Vec<Value>> {
    let dir = Server::prepare(bin)?;
    let fill = store::Sizes {
        tickets: sizes.tickets,
        messages: sizes.messages,
        conversations: (sizes.messages / 10).max(1),
        comments: sizes.tickets / 10,
        requests: 0,
    };
    eprintln!(
        "coldstart: filling {} messages, {} tickets",
        sizes.messages, sizes.tickets
    );
    let (sqlite_seconds, log_seconds) = store::fill(dir.path(), &fill).await?;
    let server = Server::serve(bin, dir, "os").await?;
    let shop = Shop::setup(&server.base).await?;
    let visitor = shop.visitors(1).await?.remove(0);
    let mut connection = Connection::open(&server.ws_url(), &visitor.token, 0).await?;
    let mut last = 0;
    for n in 0..60 {
        last = connection
            .send_and_ack(&visitor.conversation_id, &format!("c{n}"))
            .await?;
    }
    drop(connection);
    let index_seconds = store::wait_indexed(server.data_dir(), sizes.messages).await?;
    let store_bytes = dir_size(server.data_dir());
    let mut dir = server.terminate()?;

    let http = reqwest::Client::new();
    let token = shop.admin_token.clone();
    let path = format!(
        "/api/v1/conversations/{}/messages?after={}&limit=50",
        visitor.conversation_id,
        last.saturating_sub(50)
    );
    let mut clean = Vec::new();
    for _ in 0..sizes.runs.max(1) {
        let exec = Instant::now();
        let server = Server::spawn(bin, dir, "os")?;
        clean.push(first_answer(&http, &server.base, &path, &token, 50, exec).await?);
        dir = server.terminate()?;
    }
    eprintln!("coldstart: clean starts {clean:?} s");

    // Crash under load.
    let server = Server::serve(bin, dir, "os").await?;
    let shop = Shop::setup(&server.base).await?;
    let visitors = shop.visitors(20).await?;
    let acked: Arc<parking_lot::Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut load = Vec::new();
    for (n, visitor) in visitors.iter().enumerate() {
        let connection = Connection::open(&server.ws_url(), &visitor.token, n).await?;
        let acked = Arc::clone(&acked);
        let conversation = visitor.conversation_id.clone();
        load.push(tokio::spawn(async move {
            send_until_dead(connection, conversation, 16, acked).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(sizes.load_seconds)).await;
    let dir = server.kill()?;
    for task in load {
        let _ = task.await;
    }
    let acked = std::mem::take(&mut *acked.lock());
    let exec = Instant::now();
    let server = Server::spawn(bin, dir, "os")?;
    let crash_seconds = first_answer(&http, &server.base, &path, &token, 50, exec).await?;
    // Every acked message must be there.
    let mut by_conversation: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for (conversation, seq) in &acked {
        by_conversation
            .entry(conversation.clone())
            .or_default()
            .insert(*seq);
    }
    let mut lost = 0usize;
    for (conversation, seqs) in &by_conversation {
        let stored = stored_seqs(&http, &server.base, &token, conversation).await?;
        lost += seqs.difference(&stored).count();
    }
    eprintln!(
        "coldstart: after kill -9 serving in {crash_seconds:.3} s, {} acked, {lost} lost",
        acked.len()
    );
    drop(server);
    Ok(vec![json!({
        "system": "Kefu",
        "case": format!("{} messages, {} tickets", sizes.messages, sizes.tickets),
        "fill_sqlite_seconds": round2(sqlite_seconds),
        "fill_log_seconds": round2(log_seconds),
        "index_caught_up_seconds": round2(index_seconds),
        "store_mib": store_bytes >> 20,
        "clean_start_ms": clean.iter().map(|s| (s * 1000.0).round()).collect::<Vec<_>>(),
        "clean_start_ms_max": (clean.iter().cloned().fold(0.0, f64::max) * 1000.0).round(),
        "crash_acked_before_kill": acked.len(),
        "crash_start_ms": (crash_seconds * 1000.0).round(),
        "crash_lost": lost,
    })])
}

/// Seconds from `exec` until GET `path` answers 200 with `want` messages.
async fn first_answer(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    want: usize,
    exec: Instant,
) -> anyhow::Result<f64> {
    let url = format!("{base}{path}");
    loop {
        if let Ok(response) = http.get(&url).bearer_auth(token).send().await
            && response.status().is_success()
        {
            let body: Value = response.json().await?;
            let got = body["messages"].as_array().map_or(0, Vec::len);
            if got >= want {
                return Ok(exec.elapsed().as_secs_f64());
            }
            bail!("{path} gave {got} messages, not {want}");
        }
        if exec.elapsed() > Duration::from_secs(120) {
            bail!("the server did not serve {path} within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every seq stored in a conversation, paged through the agent API.
async fn stored_seqs(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    conversation: &str,
) -> anyhow::Result<BTreeSet<u64>> {
    let mut seqs = BTreeSet::new();
    let mut after = 0;
    loop {
        let body: Value = http
            .get(format!(
                "{base}/api/v1/conversations/{conversation}/messages?after={after}&limit=200"
            ))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let page = body["messages"].as_array().context("messages")?;
        for message in page {
            after = message["seq"].as_u64().context("seq")?;
            seqs.insert(after);
        }
        if page.len() < 200 {
            return Ok(seqs);
        }
    }
}

/// Keeps `in_flight` sends outstanding until the connection dies; records
/// the seq of every ack.
async fn send_until_dead(
    connection: Connection,
    conversation: String,
    in_flight: usize,
    acked: Arc<parking_lot::Mutex<Vec<(String, u64)>>>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = connection.into_stream().split();
    let frame = |n: u64| {
        json!({"type": "send", "client_msg_id": format!("k{n}"), "conversation_id": conversation,
            "content": "benchmark message", "meta": {}})
        .to_string()
    };
    let mut next = 0u64;
    for _ in 0..in_flight {
        sink.send(Message::Text(frame(next).into())).await?;
        next += 1;
    }
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if !text.as_str().starts_with(r#"{"type":"ack""#) {
            continue;
        }
        let value: Value = serde_json::from_str(text.as_str())?;
        if let Some(seq) = value["message"]["seq"].as_u64() {
            acked.lock().push((conversation.clone(), seq));
        }
        sink.send(Message::Text(frame(next).into())).await?;
        next += 1;
    }
    Ok(())
}
