//! Baseline B0: the smallest WebSocket relay tokio-tungstenite allows, with
//! the same WebSocket settings as Kefu (256-byte read buffer, no write buffer,
//! 64 KiB frames, TCP_NODELAY) and no persistence. It speaks the subset of
//! the protocol the bench uses: `hello` → `welcome`, `send` → `ack` to the
//! sender and `message` to every agent connection, `ping` → `pong`.
//!
//! Tokens are not checked: `agent…` is an agent, anything else a visitor.
//! Seqs are counted per conversation in memory. What B0 measures is the
//! practical limit of a Rust relay on this machine: Kefu's cost is its
//! distance from here.
//!
//! Baseline B1 is the same relay with `--log DIR`: it keeps Kefu's storage
//! promise and nothing else. Every send goes to one writer thread that
//! looks the dedup key up and writes the message, its dedup key and the
//! conversation's head in one RocksDB batch, with the log's own options and
//! column families (`kefu_server::store::messages`), `os` durability, up to
//! 512 sends a batch. Only when the batch is written are the ack and the
//! message sent, as Kefu does. Sends on one connection may be in flight
//! together. Seqs live in the writer's memory and start again with the
//! process: the bench only ever starts B1 on an empty directory.
//! With `--log DIR --fsync` it is B1f: the same, each batch synced to disk
//! before its acks (`fsync` durability, Kefu's default), so the floor of
//! Kefu's own durability on this machine's disk.
//! B1 is the floor for any relay that acks only what is durable;
//! B1 − B0 is what that promise costs, and Kefu − B1 what the rest of Kefu
//! costs (auth, the hub, SQLite's derived columns, the search index).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use kefu_server::store::keys::{CF_DEDUP, CF_HEAD, CF_MSG};
use kefu_server::store::messages::{column_families, db_options};
use parking_lot::Mutex;
use rocksdb::{DB, WriteBatch, WriteOptions};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Frames queued per connection before it is dropped as slow (as Kefu's
/// `ws_outbound_queue`).
const OUTBOUND_QUEUE: usize = 4_096;

/// Sends one writer batch may hold (the log's `writer_batch_max`).
const BATCH_MAX: usize = 512;

/// Sends queued for B1's writer (the log's `writer_queue`).
const WRITER_QUEUE: usize = 65_536;

#[derive(Default)]
struct Relay {
    agents: Mutex<HashMap<u64, mpsc::Sender<Arc<str>>>>,
    seqs: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
    /// B1: the writer thread's queue.
    log: Option<mpsc::Sender<Append>>,
}

/// The ack for the sender and the frame for the agents (`None`: a
/// duplicate, acked with the stored message and not sent again).
type Stored = (String, Option<Arc<str>>);

/// What a `send` frame asks for.
struct SendFrame {
    conversation: String,
    client_msg_id: String,
    role: &'static str,
    sender: u64,
    content: Value,
    meta: Value,
}

impl SendFrame {
    fn parse(frame: &Value, role: &'static str, sender: u64) -> SendFrame {
        let text = |name: &str| frame[name].as_str().unwrap_or("").to_owned();
        SendFrame {
            conversation: text("conversation_id"),
            client_msg_id: text("client_msg_id"),
            role,
            sender,
            content: frame["content"].clone(),
            meta: frame["meta"].clone(),
        }
    }

    /// The stored message's JSON.
    fn message(&self, seq: u64) -> String {
        serde_json::json!({
            "id": format!("{}-{seq}", self.conversation),
            "conversation_id": self.conversation,
            "seq": seq,
            "client_msg_id": self.client_msg_id,
            "kind": "text",
            "sender": {"type": self.role, "id": self.sender.to_string(), "name": ""},
            "content": self.content,
            "meta": self.meta,
            "created_at": crate::now_ms(),
        })
        .to_string()
    }
}

/// A send on its way to B1's writer.
struct Append {
    send: SendFrame,
    reply: oneshot::Sender<Stored>,
}

/// Serves until the process is killed. Prints `listening ADDR` when bound.
/// With `log`, this is B1: sends are written to RocksDB under `log` first.
/// With `fsync` (B1f), each batch is synced to disk before it is answered.
pub async fn serve(bind: SocketAddr, log: Option<&Path>, fsync: bool) -> anyhow::Result<()> {
    let relay = Arc::new(Relay {
        log: log
            .map(|path| open_log(path).and_then(|db| start_writer(db, fsync)))
            .transpose()?,
        ..Relay::default()
    });
    let listener = TcpListener::bind(bind).await?;
    println!("listening {}", listener.local_addr()?);
    accept(listener, relay).await
}

async fn accept(listener: TcpListener, relay: Arc<Relay>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let _ = connection(stream, relay).await;
        });
    }
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10))
}

async fn connection(stream: tokio::net::TcpStream, relay: Arc<Relay>) -> anyhow::Result<()> {
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await?;
    let hello = match ws.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(text.as_str())?,
        _ => return Ok(()),
    };
    let token = hello["token"].as_str().unwrap_or("").to_owned();
    let id = relay.next_id.fetch_add(1, Ordering::Relaxed);
    let agent = token.starts_with("agent");
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(OUTBOUND_QUEUE);
    if agent {
        relay.agents.lock().insert(id, tx);
    }
    let role = if agent { "agent" } else { "visitor" };
    let welcome = format!(r#"{{"type":"welcome","role":"{role}","id":"{id}"}}"#);
    // B1: sends waiting for their batch, answered in the order they came.
    let mut written = FuturesOrdered::new();
    let result = async {
        ws.send(Message::Text(welcome.into())).await?;
        loop {
            tokio::select! {
                done = written.next(), if !written.is_empty() => {
                    let Some(Ok((ack, message))): Option<Result<Stored, _>> = done else {
                        anyhow::bail!("the writer stopped");
                    };
                    ws.send(Message::Text(ack.into())).await?;
                    if let Some(message) = message {
                        relay.publish(&message, id);
                    }
                }
                frame = rx.recv() => {
                    let Some(frame) = frame else { return Ok(()) };
                    ws.feed(Message::Text(frame.as_ref().into())).await?;
                    let mut more = 0;
                    while more < 64 {
                        let Ok(frame) = rx.try_recv() else { break };
                        ws.feed(Message::Text(frame.as_ref().into())).await?;
                        more += 1;
                    }
                    ws.flush().await?;
                }
                incoming = ws.next() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None => return Ok(()),
                        Some(Ok(_)) => continue,
                        Some(Err(error)) => return Err(anyhow::Error::from(error)),
                    };
                    let frame: Value = match serde_json::from_str(text.as_str()) {
                        Ok(frame) => frame,
                        Err(_) => continue,
                    };
                    match frame["type"].as_str() {
                        Some("ping") => ws.send(Message::Text(r#"{"type":"pong"}"#.into())).await?,
                        Some("send") => match (&relay.log, SendFrame::parse(&frame, role, id)) {
                            (Some(log), send) => {
                                let (reply, stored) = oneshot::channel();
                                log.send(Append { send, reply }).await?;
                                written.push_back(stored);
                            }
                            (None, send) => {
                                let message = send.message(relay.next_seq(&send.conversation));
                                let ack = ack_frame(&send.client_msg_id, &message);
                                ws.send(Message::Text(ack.into())).await?;
                                relay.publish(&message_frame(&message), id);
                            }
                        },
                        _ => {}
                    }
                }
            }
        }
    }
    .await;
    relay.agents.lock().remove(&id);
    result
}

fn ack_frame(client_msg_id: &str, message: &str) -> String {
    format!(
        r#"{{"type":"ack","client_msg_id":{},"message":{message}}}"#,
        Value::from(client_msg_id)
    )
}

fn message_frame(message: &str) -> Arc<str> {
    format!(r#"{{"type":"message","message":{message}}}"#).into()
}

/// Opens B1's log under `path`.
fn open_log(path: &Path) -> anyhow::Result<Arc<DB>> {
    Ok(Arc::new(DB::open_cf_descriptors(
        &db_options(),
        path,
        column_families(),
    )?))
}

/// Starts B1's writer thread on `db`.
fn start_writer(db: Arc<DB>, fsync: bool) -> anyhow::Result<mpsc::Sender<Append>> {
    Ok(spawn_writer(db, fsync)?.0)
}

/// As [`start_writer`], with the writer's thread: it ends (and lets go of
/// the store) once every sender is dropped.
fn spawn_writer(
    db: Arc<DB>,
    fsync: bool,
) -> anyhow::Result<(mpsc::Sender<Append>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    let thread = std::thread::Builder::new()
        .name("b1-writer".into())
        .spawn(move || {
            if let Err(error) = write_loop(&db, rx, fsync) {
                eprintln!("b1 writer: {error:#}");
            }
        })?;
    Ok((tx, thread))
}

/// B1's writer: drains the queue into a batch, looks each dedup key up,
/// writes message, dedup key and head in one batch, then answers them all.
fn write_loop(db: &DB, mut rx: mpsc::Receiver<Append>, fsync: bool) -> anyhow::Result<()> {
    let mut options = WriteOptions::default();
    options.set_sync(fsync);
    let cf = |name| {
        db.cf_handle(name)
            .ok_or_else(|| anyhow::anyhow!("no {name}"))
    };
    let (msg_cf, dedup_cf, head_cf) = (cf(CF_MSG)?, cf(CF_DEDUP)?, cf(CF_HEAD)?);
    let mut seqs: HashMap<String, u64> = HashMap::new();
    // Dedup keys written by the batch being built: a resend within one
    // batch is a duplicate too.
    let mut in_batch: HashMap<Vec<u8>, String> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut replies = Vec::with_capacity(BATCH_MAX);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        let mut write = WriteBatch::default();
        for Append { send, reply } in batch.drain(..) {
            let mut dedup_key = send.conversation.as_bytes().to_vec();
            dedup_key.extend_from_slice(&send.sender.to_be_bytes());
            dedup_key.extend_from_slice(send.client_msg_id.as_bytes());
            let earlier = match in_batch.get(&dedup_key) {
                Some(message) => Some(message.clone()),
                None => match db.get_pinned_cf(dedup_cf, &dedup_key)? {
                    Some(seq) => {
                        let mut key = send.conversation.as_bytes().to_vec();
                        key.extend_from_slice(&seq);
                        let stored = db.get_cf(msg_cf, key)?.unwrap_or_default();
                        Some(String::from_utf8_lossy(&stored).into_owned())
                    }
                    None => None,
                },
            };
            if let Some(message) = earlier {
                replies.push((reply, (ack_frame(&send.client_msg_id, &message), None)));
                continue;
            }
            let seq = seqs.entry(send.conversation.clone()).or_insert(0);
            *seq += 1;
            let seq = *seq;
            let message = send.message(seq);
            let mut key = send.conversation.as_bytes().to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            write.put_cf(msg_cf, key, message.as_bytes());
            write.put_cf(dedup_cf, &dedup_key, seq.to_be_bytes());
            let mut head = seq.to_be_bytes().to_vec();
            head.extend_from_slice(&crate::now_ms().to_be_bytes());
            write.put_cf(head_cf, send.conversation.as_bytes(), head);
            let ack = ack_frame(&send.client_msg_id, &message);
            replies.push((reply, (ack, Some(message_frame(&message)))));
            in_batch.insert(dedup_key, message);
        }
        in_batch.clear();
        // `os` durability: in the WAL (the OS's page cache) before any ack;
        // B1f: synced to disk.
        db.write_opt(write, &options)?;
        for (reply, stored) in replies.drain(..) {
            let _ = reply.send(stored);
        }
    }
    Ok(())
}

impl Relay {
    fn next_seq(&self, conversation: &str) -> u64 {
        let mut seqs = self.seqs.lock();
        let seq = seqs.entry(conversation.to_owned()).or_insert(0);
        *seq += 1;
        *seq
    }

    /// Queues the frame for every agent connection but the sender's; a full
    /// queue drops that connection, as Kefu does with a slow consumer.
    fn publish(&self, frame: &Arc<str>, sender: u64) {
        let mut agents = self.agents.lock();
        agents.retain(|&id, tx| id == sender || tx.try_send(Arc::clone(frame)).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn hello(url: &str, token: &str) -> Ws {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let hello = serde_json::json!({"type": "hello", "token": token}).to_string();
        ws.send(Message::Text(hello.into())).await.expect("hello");
        assert_eq!(next(&mut ws).await["type"], "welcome");
        ws
    }

    async fn next(ws: &mut Ws) -> Value {
        loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("open")
                .expect("frame");
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).expect("JSON");
            }
        }
    }

    async fn send(ws: &mut Ws, client_msg_id: &str, content: &str) {
        let frame = serde_json::json!({"type": "send", "conversation_id": "c1",
            "client_msg_id": client_msg_id, "content": content});
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    /// B1 stores before it answers: the message is in RocksDB when the ack
    /// comes, a resend is acked with the stored message and not relayed,
    /// and seqs stay gap-free.
    #[tokio::test]
    async fn b1_acks_what_it_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_log(dir.path()).expect("log");
        let (log, writer) = spawn_writer(Arc::clone(&db), false).expect("writer");
        let relay = Arc::new(Relay {
            log: Some(log),
            ..Relay::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("addr"));
        let server = tokio::spawn(accept(listener, Arc::clone(&relay)));
        let mut agent = hello(&url, "agent").await;
        let mut visitor = hello(&url, "visitor-1").await;

        send(&mut visitor, "m1", "first").await;
        let ack = next(&mut visitor).await;
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["message"]["seq"], 1);
        send(&mut visitor, "m1", "first, resent").await;
        let again = next(&mut visitor).await;
        assert_eq!(again["message"]["seq"], 1);
        assert_eq!(again["message"]["content"], "first");
        send(&mut visitor, "m2", "second").await;
        assert_eq!(next(&mut visitor).await["message"]["seq"], 2);
        // Acked, so written: conversation ++ seq (big-endian) in `msg`.
        let msg = db.cf_handle(CF_MSG).expect("cf");
        let key = |seq: u64| [b"c1".as_slice(), &seq.to_be_bytes()].concat();
        let stored = db.get_cf(msg, key(2)).expect("get").expect("seq 2 stored");
        let stored: Value = serde_json::from_slice(&stored).expect("JSON");
        assert_eq!(stored["content"], "second");
        assert!(
            db.get_cf(msg, key(3)).expect("get").is_none(),
            "the resend took no seq"
        );

        // The agent got each message once, in order.
        let first = next(&mut agent).await;
        assert_eq!(
            (first["type"].as_str(), first["message"]["seq"].as_u64()),
            (Some("message"), Some(1))
        );
        assert_eq!(next(&mut agent).await["message"]["seq"], 2);

        // RocksDB must be closed before the process exits (a writer thread
        // still holding it then aborts the process at exit): end the
        // connections and the listener, so the last sender goes, and join
        // the writer.
        drop((agent, visitor));
        server.abort();
        let _ = server.await;
        drop(relay);
        drop(db);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .expect("join task")
            .expect("writer thread");
    }
}
