//! Protocol clients for the bench: setup over REST, traffic over WebSocket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Shop {
    http: reqwest::Client,
    base: String,
    pub admin_token: String,
    app_key: String,
}

pub struct Visitor {
    pub token: String,
    pub conversation_id: String,
}

impl Shop {
    pub async fn setup(base: &str) -> anyhow::Result<Shop> {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "bench", "password": "bench-password"}))
            .send()
            .await?
            .json()
            .await?;
        let admin_token = login["token"].as_str().context("login")?.to_owned();
        let app: Value = http
            .post(format!("{base}/api/v1/apps"))
            .bearer_auth(&admin_token)
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .json()
            .await?;
        let app_key = app["app"]["app_key"].as_str().context("app")?.to_owned();
        Ok(Shop {
            http,
            base: base.to_owned(),
            admin_token,
            app_key,
        })
    }

    pub async fn visitors(&self, count: usize) -> anyhow::Result<Vec<Visitor>> {
        let mut out = Vec::with_capacity(count);
        for chunk in (0..count).collect::<Vec<_>>().chunks(64) {
            let mut batch = Vec::new();
            for _ in chunk {
                let request = self
                    .http
                    .post(format!("{}/api/v1/visitor/sessions", self.base))
                    .json(&json!({"app_key": self.app_key}))
                    .send();
                batch.push(request);
            }
            for response in futures_util::future::join_all(batch).await {
                let body: Value = response?.json().await?;
                out.push(Visitor {
                    token: body["token"].as_str().context("token")?.to_owned(),
                    conversation_id: body["conversation_id"]
                        .as_str()
                        .context("conversation")?
                        .to_owned(),
                });
            }
        }
        Ok(out)
    }
}

pub struct Connection {
    stream: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// Source address for the n-th connection: 127.0.0.2, .3, … .250, so that
/// no single source address runs out of ephemeral ports.
fn source_address(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (index % 249) as u8))
}

impl Connection {
    pub async fn open(url: &str, token: &str, index: usize) -> anyhow::Result<Connection> {
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .context("url")?;
        let server: SocketAddr = host.parse()?;
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source_address(index), 0))?;
        let tcp = socket.connect(server).await?;
        tcp.set_nodelay(true)?;
        let (mut stream, _) =
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)).await?;
        stream
            .send(Message::Text(
                json!({"type": "hello", "token": token}).to_string().into(),
            ))
            .await?;
        match stream.next().await {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"welcome\"") => {
                Ok(Connection { stream })
            }
            other => bail!("no welcome: {other:?}"),
        }
    }

    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.stream
            .send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.stream.next()).await? {
                Some(Ok(Message::Text(text))) if text.as_str().contains("\"pong\"") => {
                    return Ok(());
                }
                Some(Ok(_)) => continue,
                other => bail!("no pong: {other:?}"),
            }
        }
    }

    /// Keeps `in_flight` sends outstanding until `deadline`; returns the
    /// number of acks and their latency histogram (µs).
    pub async fn pipeline(
        &mut self,
        conversation: &str,
        in_flight: usize,
        deadline: Instant,
    ) -> anyhow::Result<(u64, Histogram<u64>)> {
        let mut histogram = Histogram::<u64>::new(3)?;
        let mut sent_at: HashMap<u64, Instant> = HashMap::new();
        let mut next = 0u64;
        let mut acked = 0u64;
        let send = |n: u64| {
            json!({"type": "send", "client_msg_id": format!("b{n}"), "conversation_id": conversation, "content": "benchmark message", "meta": {}})
                .to_string()
        };
        while (next as usize) < in_flight {
            sent_at.insert(next, Instant::now());
            self.stream.send(Message::Text(send(next).into())).await?;
            next += 1;
        }
        while !sent_at.is_empty() {
            let frame =
                match tokio::time::timeout(Duration::from_secs(30), self.stream.next()).await? {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    other => bail!("stream ended: {other:?}"),
                };
            let value: Value = serde_json::from_str(frame.as_str())?;
            if value["type"] != "ack" {
                continue;
            }
            let id = value["client_msg_id"].as_str().unwrap_or("b0");
            let n: u64 = id.trim_start_matches('b').parse().unwrap_or(0);
            if let Some(at) = sent_at.remove(&n) {
                histogram.record(at.elapsed().as_micros() as u64)?;
                acked += 1;
            }
            if Instant::now() < deadline {
                sent_at.insert(next, Instant::now());
                self.stream.send(Message::Text(send(next).into())).await?;
                next += 1;
            }
        }
        Ok((acked, histogram))
    }

    /// Counts message frames until `wait` passes.
    pub async fn count_messages(&mut self, wait: Duration) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut count = 0;
        while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, self.stream.next()).await {
            if let Ok(Message::Text(text)) = frame
                && text.as_str().starts_with(r#"{"type":"message""#)
            {
                count += 1;
            }
        }
        Ok(count)
    }
}
