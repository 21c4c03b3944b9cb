//! `lan-relay` (Kefu only): what a LAN peer's relay costs an agent.
//!
//! One host process (`serve --lan-bind 127.0.0.2:…`) and one peer process
//! (`serve --peer-of`, on 127.0.0.3, paired and approved in the run) with
//! two agent WebSockets side by side: one straight to the host's loopback
//! listener, one through the peer. A visitor's WebSocket is on the host.
//! The agent replies, one message at a time, alternating the two paths
//! (and which goes first) so both meet the same host in the same state;
//! measured per reply:
//!
//! - **reply → visitor**: from the agent's `send` to the visitor's
//!   `message` frame (what a customer waits for);
//! - **ack**: from the `send` to the agent's `ack`.
//!
//! The difference between the two paths is the relay: a loopback hop to
//! the peer, its byte tunnel, and mutual TLS to the host. On one machine
//! the LAN itself costs nothing, so this is the relay's own overhead.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use kefu_server::lan::HostAddress;
use kefu_server::lan::client::{self, PairingProgress};
use kefu_server::lan::device_id::DeviceId;
use kefu_server::lan::identity::Identity;
use kefu_server::lan::pairing::PairingCode;
use kefu_server::lan::state::LanStateFile;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Connection, Shop};
use crate::scenarios::percentiles;

/// Kills the process when dropped.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port(ip: &str) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(format!("{ip}:0"))?
        .local_addr()?
        .port())
}

pub(crate) async fn ready(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..2400 {
        let answer = http.get(url).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{url} did not become ready")
}

struct CodeOut(Option<tokio::sync::oneshot::Sender<PairingCode>>);

impl PairingProgress for CodeOut {
    fn code(&mut self, _: &DeviceId, code: PairingCode) {
        if let Some(out) = self.0.take() {
            let _ = out.send(code);
        }
    }
}

pub async fn run(bin: &std::path::Path, replies: usize) -> anyhow::Result<Value> {
    let host_dir = crate::server::Server::prepare(bin)?;
    let http_port = free_port("127.0.0.1")?;
    let lan: std::net::SocketAddr = format!("127.0.0.2:{}", free_port("127.0.0.2")?).parse()?;
    let _host = Process(
        crate::pin::server_command(bin)
            .args(["serve", "--data-dir"])
            .arg(host_dir.path())
            .args(["--bind", &format!("127.0.0.1:{http_port}")])
            .args(["--lan-bind", &lan.to_string(), "--durability", "os"])
            .env("RUST_LOG", "warn")
            .env("KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND", "0")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{http_port}");
    ready(&format!("{base}/readyz")).await?;
    let shop = Shop::setup(&base).await?;

    // Pair the peer's device and approve it, as `lan pair` would.
    let peer_dir = tempfile::tempdir()?;
    pair_device(&base, &shop.admin_token, lan, peer_dir.path(), "bench peer").await?;
    let peer_port = free_port("127.0.0.3")?;
    let _peer = Process(
        Command::new(bin)
            .args(["serve", "--data-dir"])
            .arg(peer_dir.path())
            .args(["--bind", &format!("127.0.0.3:{peer_port}")])
            .args(["--peer-of", &lan.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    ready(&format!("http://127.0.0.3:{peer_port}/readyz")).await?;

    let visitor = shop.visitors(1).await?.remove(0);
    let conversation = visitor.conversation_id.as_str();
    let mut visitor_ws = Connection::open(
        &format!("ws://127.0.0.1:{http_port}/api/v1/ws"),
        &visitor.token,
        0,
    )
    .await?;
    let token = &shop.admin_token;
    let mut direct = Connection::resume(
        &format!("ws://127.0.0.1:{http_port}/api/v1/ws"),
        token,
        1,
        Some((conversation, 0)),
    )
    .await?;
    let mut relayed = Connection::resume(
        &format!("ws://127.0.0.3:{peer_port}/api/v1/ws"),
        token,
        2,
        Some((conversation, 0)),
    )
    .await?;

    let new = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
    let (mut reply_direct, mut reply_relay) = (new()?, new()?);
    let (mut ack_direct, mut ack_relay) = (new()?, new()?);
    let warmup = (replies / 10).max(5);
    for n in 0..replies + warmup {
        for turn in 0..2 {
            let via_relay = (n + turn) % 2 == 1;
            let agent = if via_relay { &mut relayed } else { &mut direct };
            let id = format!("r{n}-{turn}");
            let (reply, ack) = reply_once(agent, &mut visitor_ws, conversation, &id).await?;
            if n < warmup {
                continue;
            }
            let (reply_histogram, ack_histogram) = if via_relay {
                (&mut reply_relay, &mut ack_relay)
            } else {
                (&mut reply_direct, &mut ack_direct)
            };
            reply_histogram.record(reply.max(1))?;
            ack_histogram.record(ack.max(1))?;
        }
    }
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5);
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99);
    Ok(json!({
        "scenario": "lan-relay",
        "replies_per_path": replies,
        "unit": "µs",
        "reply_to_visitor": {
            "direct": percentiles(&reply_direct),
            "through_peer": percentiles(&reply_relay),
            "overhead_p50": p50(&reply_relay).saturating_sub(p50(&reply_direct)),
            "overhead_p99": p99(&reply_relay).saturating_sub(p99(&reply_direct)),
        },
        "ack": {
            "direct": percentiles(&ack_direct),
            "through_peer": percentiles(&ack_relay),
        },
    }))
}

/// Pairs a new device in `dir` with the host whose LAN listener is `lan`
/// and approves it with the admin's token (what `lan pair` and an admin's
/// click do), then pins the host in the device's state: a peer.
pub(crate) async fn pair_device(
    base: &str,
    admin_token: &str,
    lan: std::net::SocketAddr,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<DeviceId> {
    let (identity, _) = Identity::load_or_create(dir, &[])?;
    let (code_in, code_out) = tokio::sync::oneshot::channel();
    let mut progress = CodeOut(Some(code_in));
    let address = HostAddress::from(lan);
    let pairing = Box::pin(client::pair(
        &identity,
        &address,
        None,
        Some(name),
        Duration::from_millis(50),
        &mut progress,
    ));
    let approval = async {
        let code = code_out.await.context("no pairing code")?;
        let approved = reqwest::Client::new()
            .post(format!(
                "{base}/api/v1/lan/devices/{}/approve",
                identity.device_id()
            ))
            .bearer_auth(admin_token)
            .json(&json!({"code": code.to_string()}))
            .send()
            .await?;
        if !approved.status().is_success() {
            bail!("approving the device: {}", approved.status());
        }
        anyhow::Ok(())
    };
    let (paired, approved) = tokio::join!(pairing, approval);
    approved?;
    LanStateFile::open(dir)?.become_peer(paired?.host)?;
    Ok(identity.device_id())
}

/// One reply: the agent sends, the visitor sees it, the agent gets its
/// ack. Returns (send → visitor's frame, send → ack) in µs.
async fn reply_once(
    agent: &mut Connection,
    visitor: &mut Connection,
    conversation: &str,
    id: &str,
) -> anyhow::Result<(u64, u64)> {
    let content = format!("reply {id}");
    let send = json!({"type": "send", "client_msg_id": id, "conversation_id": conversation, "content": content});
    let started = Instant::now();
    agent.send_text(send.to_string()).await?;
    let mut ack = None;
    let mut reply = None;
    let ack_needle = format!(r#""client_msg_id":"{id}""#);
    let content_needle = format!(r#""content":"{content}""#);
    while ack.is_none() || reply.is_none() {
        tokio::select! {
            frame = agent.next_frame(), if ack.is_none() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    if text.starts_with(r#"{"type":"ack""#) && text.contains(&ack_needle) {
                        ack = Some(micros(started));
                    } else if text.starts_with(r#"{"type":"error""#) {
                        bail!("the send was refused: {text}");
                    }
                }
                Some(Ok(_)) => {}
                other => bail!("agent socket ended: {other:?}"),
            },
            frame = visitor.next_frame(), if reply.is_none() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if text.as_str().contains(&content_needle) {
                        reply = Some(micros(started));
                    }
                }
                Some(Ok(_)) => {}
                other => bail!("visitor socket ended: {other:?}"),
            },
            () = tokio::time::sleep(Duration::from_secs(30)) => bail!("no reply within 30 s"),
        }
    }
    Ok((reply.unwrap_or(0), ack.unwrap_or(0)))
}

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}
