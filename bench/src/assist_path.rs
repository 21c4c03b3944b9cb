//! `assist-path` (Kefu only, issue 20): the message path with Kefu Assist
//! off and on, in the same run.
//!
//! Two kinds of server, the same binary and the same load:
//!
//! - **off**: an app with Assist as it ships (bot mode `off`, no intents;
//!   the suggestion learner's thread runs but nobody asks it);
//! - **on**: the same app with the FAQ bot in mode `always` (the 30
//!   entries of `bench/data/assist/faq.tsv`), the six intents of
//!   `intents.tsv` trained (round 1 as the admin's examples, the model
//!   ready before the load starts), the 15 canned replies of
//!   `suggest_canned.tsv`, and the agent asking for reply suggestions for
//!   every visitor message it answers (as the workstation does while a
//!   chat is open), while the learner learns from the chats resolved.
//!
//! The load (open loop, over real WebSockets): `conversations` visitors
//! send `rate` messages a second in all on a fixed schedule, each text
//! taken in turn from the visitor lines of the Assist sets (FAQ
//! questions, intents, out-of-scope lines, a few 人工 and 投诉), so the
//! bot answers, offers choices and hands off, the intent model and the
//! urgency signal read every chat start. One agent connection answers
//! every visitor message at once, and resolves a chat after every
//! [`RESOLVE_EVERY`]th visitor message (the next message reopens it: a new
//! session, which the bot holds again when on). Measured per message:
//!
//! - **ack**: a visitor's send → its ack, from the *intended* send time
//!   (a stalled sender shows) — the message path;
//! - **to agent**: the visitor's send → the agent's `message` frame;
//! - **reply ack** and **reply to visitor**: the agent's reply → its ack,
//!   and → the visitor's `message` frame.
//!
//! Runs alternate (off, on, on, off, …: `rounds` of each), every run on a
//! fresh server and data dir, so drift in a shared machine's load falls
//! on both; the report gives each run and each mode's totals with the
//! on ÷ off ratios.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Connection};
use crate::scenarios::{percentiles, round2};
use crate::server::Server;

const FAQ: &str = include_str!("../data/assist/faq.tsv");
const QUERIES: &str = include_str!("../data/assist/queries.tsv");
const INTENTS: &str = include_str!("../data/assist/intents.tsv");
const CANNED: &str = include_str!("../data/assist/suggest_canned.tsv");
const CHATS: &str = include_str!("../data/assist/suggest_chats.tsv");

/// The agent resolves a chat after this many visitor messages in it.
pub const RESOLVE_EVERY: u64 = 6;
/// Seconds after the schedule that late acks and frames are waited for.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
pub struct Sizes {
    pub conversations: usize,
    /// Visitor messages per second, all visitors together.
    pub rate: u64,
    /// Seconds measured per run.
    pub seconds: u64,
    /// Seconds sent before measuring.
    pub warmup: u64,
    /// Runs of each mode.
    pub rounds: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Off,
    On,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::On => "on",
        }
    }
}

fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
}

/// What visitors say, in a fixed order: every visitor line of the Assist
/// sets (the last column of queries, intents and chats) and a few
/// requests for a person and complaints.
fn visitor_lines() -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for cols in rows(QUERIES).chain(rows(INTENTS)) {
        if let Some(text) = cols.last() {
            lines.push((*text).to_owned());
        }
    }
    for cols in rows(CHATS) {
        // round, visitor, message, reply…: the visitor's message.
        if let Some(text) = cols.get(2) {
            lines.push((*text).to_owned());
        }
    }
    for (n, extra) in ["转人工", "我要投诉，一直没人处理", "human please"]
        .iter()
        .enumerate()
    {
        lines.insert((n + 1) * lines.len() / 4, (*extra).to_owned());
    }
    lines
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 300_000_000, 3)?)
}

/// One run's histograms (µs) and counts.
struct Run {
    ack: Histogram<u64>,
    to_agent: Histogram<u64>,
    reply_ack: Histogram<u64>,
    reply_to_visitor: Histogram<u64>,
    suggestions: Histogram<u64>,
    sent: u64,
    acked: u64,
    replies: u64,
    bot_messages: u64,
    resolved: u64,
    server_cpu_seconds: f64,
    server_rss_kib: u64,
    extra: Value,
}

pub async fn run(bin: &std::path::Path, durability: &str, sizes: Sizes) -> anyhow::Result<Value> {
    let lines = Arc::new(visitor_lines());
    let mut order = Vec::new();
    for round in 0..sizes.rounds.max(1) {
        if round % 2 == 0 {
            order.extend([Mode::Off, Mode::On]);
        } else {
            order.extend([Mode::On, Mode::Off]);
        }
    }
    let mut totals: HashMap<&'static str, Run> = HashMap::new();
    let mut runs = Vec::new();
    for (n, mode) in order.into_iter().enumerate() {
        eprintln!(
            "assist-path: run {} ({}): {}/s over {} for {} s",
            n + 1,
            mode.label(),
            sizes.rate,
            sizes.conversations,
            sizes.seconds
        );
        let run = one(bin, durability, mode, sizes, Arc::clone(&lines)).await?;
        runs.push(run_row(n + 1, mode, &run));
        match totals.get_mut(mode.label()) {
            Some(total) => {
                total.ack.add(&run.ack)?;
                total.to_agent.add(&run.to_agent)?;
                total.reply_ack.add(&run.reply_ack)?;
                total.reply_to_visitor.add(&run.reply_to_visitor)?;
                total.suggestions.add(&run.suggestions)?;
                total.sent += run.sent;
                total.acked += run.acked;
                total.replies += run.replies;
                total.bot_messages += run.bot_messages;
                total.resolved += run.resolved;
                total.server_cpu_seconds += run.server_cpu_seconds;
                total.server_rss_kib = total.server_rss_kib.max(run.server_rss_kib);
            }
            None => {
                totals.insert(mode.label(), run);
            }
        }
    }
    let off = totals.get("off").context("no off run")?;
    let on = totals.get("on").context("no on run")?;
    let ratio = |a: &Histogram<u64>, b: &Histogram<u64>, q: f64| {
        let base = b.value_at_quantile(q).max(1) as f64;
        round2(a.value_at_quantile(q) as f64 / base)
    };
    let ratios = |a: &Histogram<u64>, b: &Histogram<u64>| json!({"p50": ratio(a, b, 0.5), "p99": ratio(a, b, 0.99), "p999": ratio(a, b, 0.999)});
    Ok(json!({
        "system": "Kefu",
        "case": format!(
            "{}/s over {} conversations, {} s x {} runs per mode, durability {durability}",
            sizes.rate, sizes.conversations, sizes.seconds, sizes.rounds.max(1)
        ),
        "resolve_every": RESOLVE_EVERY,
        "visitor_lines": lines.len(),
        "off": mode_row(off),
        "on": mode_row(on),
        "on_over_off": {
            "ack_us": ratios(&on.ack, &off.ack),
            "to_agent_us": ratios(&on.to_agent, &off.to_agent),
            "reply_ack_us": ratios(&on.reply_ack, &off.reply_ack),
            "reply_to_visitor_us": ratios(&on.reply_to_visitor, &off.reply_to_visitor),
            "server_cpu_seconds": round2(on.server_cpu_seconds / off.server_cpu_seconds.max(1e-9)),
        },
        "runs": runs,
    }))
}

fn mode_row(run: &Run) -> Value {
    json!({
        "sent": run.sent,
        "acked": run.acked,
        "missing_acks": run.sent.saturating_sub(run.acked),
        "ack_us": percentiles(&run.ack),
        "to_agent_us": percentiles(&run.to_agent),
        "reply_ack_us": percentiles(&run.reply_ack),
        "reply_to_visitor_us": percentiles(&run.reply_to_visitor),
        "replies": run.replies,
        "bot_messages": run.bot_messages,
        "resolved": run.resolved,
        "suggestions_us": percentiles(&run.suggestions),
        "server_cpu_seconds": round2(run.server_cpu_seconds),
        "server_rss_kib_max": run.server_rss_kib,
    })
}

fn run_row(n: usize, mode: Mode, run: &Run) -> Value {
    let mut row = mode_row(run);
    row["run"] = json!(n);
    row["mode"] = json!(mode.label());
    row["setup"] = run.extra.clone();
    row
}

/// The REST side of one server: the admin's token, the app.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
    app_id: String,
    app_key: String,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
}

async fn setup(base: &str) -> anyhow::Result<Admin> {
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "bench", "password": "bench-password"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("login")?.to_owned();
    let mut admin = Admin {
        http,
        base: base.to_owned(),
        token,
        app_id: String::new(),
        app_key: String::new(),
    };
    let app = admin
        .call(
            reqwest::Method::POST,
            "/apps",
            Some(json!({"name": "bench"})),
        )
        .await?;
    admin.app_id = app["app"]["id"].as_str().context("app id")?.to_owned();
    admin.app_key = app["app"]["app_key"]
        .as_str()
        .context("app key")?
        .to_owned();
    // The agent takes every chat (routing gives chats to online agents).
    let me = admin.call(reqwest::Method::GET, "/agents/me", None).await?;
    let id = me["agent"]["id"].as_str().context("agent id")?;
    admin
        .call(
            reqwest::Method::PATCH,
            &format!("/agents/{id}"),
            Some(json!({"max_concurrent": 1000})),
        )
        .await?;
    Ok(admin)
}

/// A CSV cell, quoted.
fn cell(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Turns Assist on for the app: FAQ, bot mode, intents (trained), canned
/// replies. Returns what was set up.
async fn assist_on(admin: &Admin) -> anyhow::Result<Value> {
    let mut csv = String::from("questions,answer,tags\n");
    let mut entries = 0;
    for cols in rows(FAQ) {
        let questions = cols[1].replace('|', "\n");
        csv.push_str(&format!(
            "{},{},{}\n",
            cell(&questions),
            cell(cols[2]),
            cell(cols[0])
        ));
        entries += 1;
    }
    let response = admin
        .http
        .post(format!(
            "{}/api/v1/faq_entries/import?app_id={}",
            admin.base, admin.app_id
        ))
        .bearer_auth(&admin.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "FAQ import: {} {}",
            response.status(),
            response.text().await?
        );
    }
    admin
        .call(
            reqwest::Method::PATCH,
            &format!("/apps/{}/assist", admin.app_id),
            Some(json!({"mode": "always"})),
        )
        .await?;
    let mut intents: Vec<(String, Vec<String>)> = Vec::new();
    for cols in rows(INTENTS).filter(|c| c[0] == "1") {
        match intents.iter_mut().find(|(name, _)| name == cols[1]) {
            Some((_, examples)) => examples.push(cols[2].to_owned()),
            None => intents.push((cols[1].to_owned(), vec![cols[2].to_owned()])),
        }
    }
    for (name, examples) in &intents {
        admin
            .call(
                reqwest::Method::POST,
                "/intents",
                Some(json!({"app_id": admin.app_id, "name": name, "examples": examples})),
            )
            .await?;
    }
    admin
        .call(
            reqwest::Method::POST,
            "/intents/train",
            Some(json!({"app_id": admin.app_id})),
        )
        .await?;
    let mut ready = false;
    for _ in 0..600 {
        let model = admin
            .call(
                reqwest::Method::GET,
                &format!("/intents/model?app_id={}", admin.app_id),
                None,
            )
            .await?;
        if model["model"]["ready"] == true && model["model"]["pending"] == false {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        bail!("the intent model did not become ready");
    }
    let mut canned = 0;
    for cols in rows(CANNED) {
        admin
            .call(
                reqwest::Method::POST,
                "/canned_replies",
                Some(
                    json!({"shortcut": cols[0], "title": cols[1], "body": cols[2], "shared": true}),
                ),
            )
            .await?;
        canned += 1;
    }
    Ok(
        json!({"faq_entries": entries, "intents": intents.len(), "canned_replies": canned, "bot_mode": "always"}),
    )
}

async fn visitors(admin: &Admin, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let body: Value = admin
            .http
            .post(format!("{}/api/v1/visitor/sessions", admin.base))
            .json(&json!({"app_key": admin.app_key}))
            .send()
            .await?
            .json()
            .await?;
        out.push((
            body["token"].as_str().context("token")?.to_owned(),
            body["conversation_id"]
                .as_str()
                .context("conversation")?
                .to_owned(),
        ));
    }
    Ok(out)
}

/// What the agent's reader hands its writer.
enum Job {
    Reply { conversation: String, resolve: bool },
}

async fn one(
    bin: &std::path::Path,
    durability: &str,
    mode: Mode,
    sizes: Sizes,
    lines: Arc<Vec<String>>,
) -> anyhow::Result<Run> {
    let server = Server::start(bin, durability).await?;
    let admin = Arc::new(setup(&server.base).await?);
    let extra = match mode {
        Mode::On => assist_on(&admin).await?,
        Mode::Off => json!({"bot_mode": "off"}),
    };
    let clients = visitors(&admin, sizes.conversations).await?;
    let ws_url = server.ws_url();
    let agent = Connection::open(&ws_url, &admin.token, 0).await?;
    admin
        .call(
            reqwest::Method::POST,
            "/agents/me/status",
            Some(json!({"status": "online"})),
        )
        .await?;
    let mut connections = Vec::with_capacity(clients.len());
    for (n, (token, _)) in clients.iter().enumerate() {
        connections.push(Connection::open(&ws_url, token, n + 1).await?);
    }

    let origin = Instant::now();
    let epoch_us = crate::now_us();
    let now_us = move || epoch_us + origin.elapsed().as_micros() as u64;
    let start = origin + Duration::from_millis(500);
    let measure_from_at = start + Duration::from_secs(sizes.warmup);
    let end = measure_from_at + Duration::from_secs(sizes.seconds);
    let stop = tokio::time::Instant::from_std(end + GRACE);
    let intended_us = move |at: Instant| epoch_us + (at - origin).as_micros() as u64;
    let measure_from = intended_us(measure_from_at);
    let cpu_before = crate::target::proc_cpu_seconds(server.pid())?;

    // The agent: a reader that records deliveries and queues replies, a
    // writer that sends them (and resolves), suggestions asked aside.
    let (agent_sink, mut agent_stream) = agent.into_stream().split();
    let (jobs, mut queue) = tokio::sync::mpsc::channel::<Job>(10_000);
    let reply_sent: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let suggestions = Arc::new(Mutex::new(histogram()?));
    let resolved = Arc::new(AtomicU64::new(0));
    let agent_reader = {
        let reply_sent = Arc::clone(&reply_sent);
        let suggestions = Arc::clone(&suggestions);
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let mut to_agent = histogram()?;
            let mut reply_ack = histogram()?;
            let mut replies = 0u64;
            let mut per_conversation: HashMap<String, u64> = HashMap::new();
            while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(stop, agent_stream.next()).await
            {
                let Message::Text(text) = frame else { continue };
                let text = text.as_str();
                if text.starts_with(r#"{"type":"ack""#) {
                    let Some(n) = reply_number(text) else {
                        continue;
                    };
                    if let Some(sent) = reply_sent.lock().remove(&n)
                        && sent >= measure_from
                    {
                        reply_ack.saturating_record(now_us().saturating_sub(sent).max(1));
                    }
                    continue;
                }
                if !text.starts_with(r#"{"type":"message""#) {
                    continue;
                }
                let Ok(frame) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                let message = &frame["message"];
                if message["sender"]["type"] != "visitor" {
                    continue;
                }
                let Some(sent) = message["meta"]["t"].as_u64() else {
                    continue;
                };
                if sent >= measure_from {
                    to_agent.saturating_record(now_us().saturating_sub(sent).max(1));
                }
                let Some(conversation) = message["conversation_id"].as_str() else {
                    continue;
                };
                let count = per_conversation.entry(conversation.to_owned()).or_default();
                *count += 1;
                replies += 1;
                let resolve = count.is_multiple_of(RESOLVE_EVERY);
                if mode == Mode::On {
                    let admin = Arc::clone(&admin);
                    let suggestions = Arc::clone(&suggestions);
                    let path = format!("/conversations/{conversation}/suggestions");
                    tokio::spawn(async move {
                        let asked = Instant::now();
                        if admin.call(reqwest::Method::GET, &path, None).await.is_ok() {
                            suggestions
                                .lock()
                                .saturating_record(asked.elapsed().as_micros().max(1) as u64);
                        }
                    });
                }
                if jobs
                    .try_send(Job::Reply {
                        conversation: conversation.to_owned(),
                        resolve,
                    })
                    .is_err()
                {
                    eprintln!("assist-path: the agent's reply queue is full");
                }
            }
            anyhow::Ok((to_agent, reply_ack, replies))
        })
    };
    let agent_writer = {
        let reply_sent = Arc::clone(&reply_sent);
        let admin = Arc::clone(&admin);
        let resolved = Arc::clone(&resolved);
        tokio::spawn(async move {
            let mut sink = agent_sink;
            let mut n = 0u64;
            while let Some(Job::Reply {
                conversation,
                resolve,
            }) = queue.recv().await
            {
                let t = now_us();
                reply_sent.lock().insert(n, t);
                let frame = format!(
                    r#"{{"type":"send","client_msg_id":"r{n}","conversation_id":"{conversation}","content":"好的，我帮您看一下。","meta":{{"t":{t}}}}}"#
                );
                n += 1;
                if sink.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
                if resolve {
                    let admin = Arc::clone(&admin);
                    let resolved = Arc::clone(&resolved);
                    tokio::spawn(async move {
                        let path = format!("/conversations/{conversation}/status");
                        if admin
                            .call(
                                reqwest::Method::POST,
                                &path,
                                Some(json!({"status": "resolved"})),
                            )
                            .await
                            .is_ok()
                        {
                            resolved.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            }
            drop(sink);
        })
    };

    // The visitors: a fixed schedule each, texts in turn.
    let period = Duration::from_secs_f64(sizes.conversations as f64 / sizes.rate.max(1) as f64);
    let mut tasks = Vec::new();
    for (n, (connection, (_, conversation))) in connections.into_iter().zip(clients).enumerate() {
        let (mut sink, mut stream) = connection.into_stream().split();
        let first = start + period.mul_f64(n as f64 / sizes.conversations.max(1) as f64);
        let reader = tokio::spawn(async move {
            let (mut ack, mut to_visitor) = (histogram()?, histogram()?);
            let (mut acked, mut bot) = (0u64, 0u64);
            while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(stop, stream.next()).await {
                let Message::Text(text) = frame else { continue };
                let text = text.as_str();
                if let Some(k) = client::ack_number(text) {
                    acked += 1;
                    let intended = intended_us(first + period.mul_f64(k as f64));
                    if intended >= measure_from {
                        ack.saturating_record(now_us().saturating_sub(intended).max(1));
                    }
                    continue;
                }
                if !text.starts_with(r#"{"type":"message""#) {
                    continue;
                }
                let Ok(frame) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                let message = &frame["message"];
                match message["sender"]["type"].as_str() {
                    Some("agent") => {
                        if let Some(sent) = message["meta"]["t"].as_u64()
                            && sent >= measure_from
                        {
                            to_visitor.saturating_record(now_us().saturating_sub(sent).max(1));
                        }
                    }
                    Some("system") if message["meta"]["assist"].is_object() => bot += 1,
                    _ => {}
                }
            }
            anyhow::Ok((acked, bot, ack, to_visitor))
        });
        let lines = Arc::clone(&lines);
        let sender = tokio::spawn(async move {
            let mut sent = 0u64;
            let mut intended = first;
            while intended < end {
                tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
                let t = intended_us(intended);
                let text = &lines[(n * 7 + sent as usize) % lines.len()];
                let frame = json!({
                    "type": "send",
                    "client_msg_id": format!("b{sent}"),
                    "conversation_id": conversation,
                    "content": text,
                    "meta": {"t": t},
                });
                if sink
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
                sent += 1;
                intended += period;
            }
            tokio::time::sleep_until(stop).await;
            drop(sink);
            sent
        });
        tasks.push((sender, reader));
    }
    let (mut ack, mut reply_to_visitor) = (histogram()?, histogram()?);
    let (mut sent, mut acked, mut bot_messages) = (0u64, 0u64, 0u64);
    for (sender, reader) in tasks {
        sent += sender.await?;
        let (count, bot, acks, to_visitor) = reader.await??;
        acked += count;
        bot_messages += bot;
        ack.add(&acks)?;
        reply_to_visitor.add(&to_visitor)?;
    }
    let (to_agent, reply_ack, replies) = agent_reader.await??;
    agent_writer.abort();
    let server_cpu_seconds = crate::target::proc_cpu_seconds(server.pid())? - cpu_before;
    let server_rss_kib = server.rss_kib()?;
    let suggestions = suggestions.lock().clone();
    drop(server.terminate()?);
    Ok(Run {
        ack,
        to_agent,
        reply_ack,
        reply_to_visitor,
        suggestions,
        sent,
        acked,
        replies,
        bot_messages,
        resolved: resolved.load(Ordering::Relaxed),
        server_cpu_seconds,
        server_rss_kib,
        extra,
    })
}

/// The n of an ack frame for the agent's reply `rN`.
fn reply_number(frame: &str) -> Option<u64> {
    let at = frame.find(r#""client_msg_id":"r"#)? + r#""client_msg_id":"r"#.len();
    let digits = &frame[at..];
    let end = digits.find('"')?;
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_lines_come_from_every_set() {
        let lines = visitor_lines();
        assert!(lines.len() > 300, "{}", lines.len());
        assert!(lines.iter().any(|l| l == "转人工"));
        assert!(lines.iter().all(|l| !l.trim().is_empty()));
        assert_eq!(
            reply_number(r#"{"type":"ack","client_msg_id":"r42","message":{}}"#),
            Some(42)
        );
    }
}
