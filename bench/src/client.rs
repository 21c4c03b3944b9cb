//! Protocol clients for the bench: setup over REST, traffic over WebSocket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
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

    /// `count` agents (the admin first), each allowed `max_concurrent`
    /// chats; returns their tokens. The caller connects them and sets them
    /// online (routing only gives chats to online agents).
    pub async fn agents(&self, count: usize, max_concurrent: u32) -> anyhow::Result<Vec<String>> {
        let mut tokens = vec![self.admin_token.clone()];
        for n in 1..count {
            let username = format!("bench-agent-{n}");
            let password = "bench-agent-password";
            let created = self
                .http
                .post(format!("{}/api/v1/agents", self.base))
                .bearer_auth(&self.admin_token)
                .json(&json!({"username": username, "password": password, "role": "agent"}))
                .send()
                .await?;
            if !created.status().is_success() {
                bail!("creating an agent: {}", created.status());
            }
            let login: Value = self
                .http
                .post(format!("{}/api/v1/auth/login", self.base))
                .json(&json!({"username": username, "password": password}))
                .send()
                .await?
                .json()
                .await?;
            tokens.push(login["token"].as_str().context("agent login")?.to_owned());
        }
        for token in &tokens {
            let me: Value = self
                .http
                .get(format!("{}/api/v1/agents/me", self.base))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            let id = me["agent"]["id"].as_str().context("agent id")?;
            let updated = self
                .http
                .patch(format!("{}/api/v1/agents/{id}", self.base))
                .bearer_auth(&self.admin_token)
                .json(&json!({"max_concurrent": max_concurrent}))
                .send()
                .await?;
            if !updated.status().is_success() {
                bail!("setting max_concurrent: {}", updated.status());
            }
        }
        Ok(tokens)
    }

    /// Sets the agent of `token` online.
    pub async fn online(&self, token: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/api/v1/agents/me/status", self.base))
            .bearer_auth(token)
            .json(&json!({"status": "online"}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("setting an agent online: {}", response.status());
        }
        Ok(())
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
                let response = response?;
                let status = response.status();
                let body: Value = response.json().await?;
                if !status.is_success() {
                    bail!("creating a visitor session: {status} {body}");
                }
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

pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Connection {
    stream: Stream,
}

/// Source address and port of the n-th connection: 127.0.0.2, .3, … .250
/// in turn, each with its own port counted up from 10,000. Binding an
/// explicit port costs the kernel one lookup; binding port 0 before
/// connect makes it search for a port free for any destination (the 18 s
/// for 10,000 connections of the first idle runs). A taken port (a
/// neighbour's wildcard listener, a TIME_WAIT of an earlier round) moves
/// on to another.
pub fn source(index: usize, attempt: usize) -> SocketAddr {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (index % 249) as u8));
    let slot = index / 249 + attempt * 7_919;
    SocketAddr::new(ip, 10_000 + (slot % 50_000) as u16)
}

/// A TCP connection to `server` from the n-th source address.
pub async fn connect_from(index: usize, server: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut last = None;
    for attempt in 0..16 {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        if let Err(error) = socket.bind(source(index, attempt)) {
            last = Some(error);
            continue;
        }
        match socket.connect(server).await {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AddrNotAvailable => {
                last = Some(error);
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no source port"), anyhow::Error::from))
}

/// Host and port of a `ws://HOST:PORT/…` URL.
pub fn server_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .context("url")?;
    Ok(host.parse()?)
}

impl Connection {
    pub async fn open(url: &str, token: &str, index: usize) -> anyhow::Result<Connection> {
        Self::resume(url, token, index, None).await
    }

    /// Connects, says hello (with `resume` when given) and waits for the
    /// welcome.
    pub async fn resume(
        url: &str,
        token: &str,
        index: usize,
        resume: Option<(&str, u64)>,
    ) -> anyhow::Result<Connection> {
        let tcp = connect_from(index, server_addr(url)?).await?;
        let (mut stream, _) =
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)).await?;
        let hello = match resume {
            Some((conversation, seq)) => {
                json!({"type": "hello", "token": token, "resume": {conversation: seq}})
            }
            None => json!({"type": "hello", "token": token}),
        };
        stream.send(Message::Text(hello.to_string().into())).await?;
        match stream.next().await {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"welcome\"") => {
                Ok(Connection { stream })
            }
            other => bail!("no welcome: {other:?}"),
        }
    }

    pub async fn next_frame(
        &mut self,
    ) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
        self.stream.next().await
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.stream.send(Message::Text(text.into())).await?;
        Ok(())
    }

    pub fn into_stream(self) -> Stream {
        self.stream
    }

    /// Sends one message and waits for its ack; returns its seq.
    pub async fn send_and_ack(
        &mut self,
        conversation: &str,
        client_msg_id: &str,
    ) -> anyhow::Result<u64> {
        let send = json!({"type": "send", "client_msg_id": client_msg_id, "conversation_id": conversation, "content": "benchmark message", "meta": {}});
        self.stream
            .send(Message::Text(send.to_string().into()))
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.stream.next()).await? {
                Some(Ok(Message::Text(text))) if text.as_str().contains(r#""type":"ack""#) => {
                    let value: Value = serde_json::from_str(text.as_str())?;
                    return value["message"]["seq"].as_u64().context("ack without seq");
                }
                Some(Ok(_)) => continue,
                other => bail!("no ack: {other:?}"),
            }
        }
    }

    /// Waits for the message frame with `seq` (a catch-up).
    pub async fn wait_seq(&mut self, seq: u64, wait: Duration) -> anyhow::Result<()> {
        let needle = format!(r#""seq":{seq},"#);
        loop {
            match tokio::time::timeout(wait, self.stream.next()).await? {
                Some(Ok(Message::Text(text)))
                    if text.as_str().starts_with(r#"{"type":"message""#)
                        && text.as_str().contains(&needle) =>
                {
                    return Ok(());
                }
                Some(Ok(_)) => continue,
                other => bail!("stream ended before seq {seq}: {other:?}"),
            }
        }
    }

    /// Reads (answering pings) until the server closes; returns then.
    pub async fn drain(&mut self) {
        while let Some(Ok(_)) = self.stream.next().await {}
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
            let Some(n) = ack_number(frame.as_str()) else {
                continue;
            };
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

/// The n of an ack frame for client_msg_id `bN`, found without parsing the
/// whole frame (the load side must stay cheap next to the server).
pub fn ack_number(frame: &str) -> Option<u64> {
    if !frame.starts_with(r#"{"type":"ack""#) {
        return None;
    }
    let at = frame.find(r#""client_msg_id":"b"#)? + r#""client_msg_id":"b"#.len();
    let digits = &frame[at..];
    let end = digits.find('"')?;
    digits[..end].parse().ok()
}

/// The `meta.t` of a message frame: the intended send time (µs since the
/// epoch) the latency scenario puts there.
pub fn meta_time(frame: &str) -> Option<u64> {
    if !frame.starts_with(r#"{"type":"message""#) {
        return None;
    }
    let at = frame.find(r#""meta":{"t":"#)? + r#""meta":{"t":"#.len();
    let digits = &frame[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}
