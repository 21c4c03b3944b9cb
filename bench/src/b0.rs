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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Frames queued per connection before it is dropped as slow (as Kefu's
/// `ws_outbound_queue`).
const OUTBOUND_QUEUE: usize = 4_096;

#[derive(Default)]
struct Relay {
    agents: Mutex<HashMap<u64, mpsc::Sender<Arc<str>>>>,
    seqs: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
}

/// Serves until the process is killed. Prints `listening ADDR` when bound.
pub async fn serve(bind: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).await?;
    println!("listening {}", listener.local_addr()?);
    let relay = Arc::new(Relay::default());
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
    let result = async {
        ws.send(Message::Text(welcome.into())).await?;
        loop {
            tokio::select! {
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
                        Some("send") => {
                            let (ack, message) = relay.store(&frame, role, id);
                            ws.send(Message::Text(ack.into())).await?;
                            relay.publish(&message, id);
                        }
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

impl Relay {
    /// Gives the send its seq and builds the ack and the message frame.
    fn store(&self, frame: &Value, role: &str, sender: u64) -> (String, Arc<str>) {
        let conversation = frame["conversation_id"].as_str().unwrap_or("");
        let seq = {
            let mut seqs = self.seqs.lock();
            let seq = seqs.entry(conversation.to_owned()).or_insert(0);
            *seq += 1;
            *seq
        };
        let client_msg_id = frame["client_msg_id"].as_str().unwrap_or("");
        let message = serde_json::json!({
            "id": format!("{conversation}-{seq}"),
            "conversation_id": conversation,
            "seq": seq,
            "client_msg_id": client_msg_id,
            "kind": "text",
            "sender": {"type": role, "id": sender.to_string(), "name": ""},
            "content": frame["content"],
            "meta": frame["meta"],
            "created_at": crate::now_ms(),
        })
        .to_string();
        let ack = format!(
            r#"{{"type":"ack","client_msg_id":{},"message":{message}}}"#,
            Value::from(client_msg_id)
        );
        let out: Arc<str> = format!(r#"{{"type":"message","message":{message}}}"#).into();
        (ack, out)
    }

    /// Queues the frame for every agent connection but the sender's; a full
    /// queue drops that connection, as Kefu does with a slow consumer.
    fn publish(&self, frame: &Arc<str>, sender: u64) {
        let mut agents = self.agents.lock();
        agents.retain(|&id, tx| id == sender || tx.try_send(Arc::clone(frame)).is_ok());
    }
}
