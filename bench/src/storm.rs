//! The storm scenario (issue 24, the 双十一 storm): new visitors start
//! chats at a fixed rate on top of a steady message rate, open loop, on
//! Kefu and the baselines in the same run.
//!
//! `steady` visitors, whose conversations are opened first (as the latency
//! scenario does), send `rate` messages a second in all on a fixed
//! schedule; after `warmup` seconds, `new_rate` new visitors a second,
//! connected beforehand, each send their first message. Every send's ack
//! latency is measured from its *intended* time (a stalled sender shows);
//! sends with no ack by the end of the run plus a grace are *missing*. An
//! agent connection records, for each new chat, when it became visible to
//! agents (Kefu: its first `conversation` frame; the baselines have none:
//! the first message frame) and, on Kefu, when a frame showed it assigned
//! (`agents` agents online, each with room for every new chat).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Connection};
use crate::scenarios::{self, percentiles, round2};
use crate::target::{System, Target};

#[derive(Clone, Copy)]
pub struct Sizes {
    /// Messages per second over the steady conversations.
    pub rate: u64,
    pub steady: usize,
    /// New conversations per second.
    pub new_rate: u64,
    /// Seconds new conversations start (the steady rate goes on as long).
    pub seconds: u64,
    /// Seconds of steady rate alone before the storm.
    pub warmup: u64,
    /// Agents online on Kefu.
    pub agents: usize,
}

/// Seconds after the schedule that late acks and frames are waited for.
const GRACE: Duration = Duration::from_secs(10);

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 300_000_000, 3)?)
}

pub async fn run(
    bin: &std::path::Path,
    systems: &[System],
    sizes: Sizes,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &system in systems {
        // Kefu in its default durability (fsync), as the storm was found;
        // B1 writes with `os`, N and B0 keep nothing.
        let durability = match system {
            System::Kefu | System::KefuB => "fsync",
            System::B1 => "os",
            System::B1f => "fsync",
            _ => "none",
        };
        eprintln!(
            "storm: {} ({durability}): {} new/s on {}/s",
            system.label(),
            sizes.new_rate,
            sizes.rate
        );
        rows.push(one(bin, system, durability, sizes).await?);
    }
    Ok(rows)
}

/// When the observing agent saw each new chat.
#[derive(Default)]
struct Seen {
    visible: HashMap<usize, u64>,
    assigned: HashMap<usize, u64>,
    first_message: HashMap<usize, u64>,
}

async fn one(
    bin: &std::path::Path,
    system: System,
    durability: &str,
    sizes: Sizes,
) -> anyhow::Result<Value> {
    let new_count = (sizes.new_rate * sizes.seconds) as usize;
    let target = Target::start(system, bin, durability).await?;
    let mut clients = target.clients(sizes.steady + new_count).await?;
    let new_clients = clients.split_off(sizes.steady);
    let tokens = target.agent_tokens(sizes.agents, new_count).await?;
    let mut observer = Connection::open(&target.ws_url, &tokens[0], 0).await?;
    // The other agents only need to be connected (and read).
    for (n, token) in tokens.iter().enumerate().skip(1) {
        let mut agent = Connection::open(&target.ws_url, token, 300_000 + n).await?;
        tokio::spawn(async move { agent.drain().await });
    }
    target.agents_online(&tokens).await?;
    let visitors = scenarios::open_all(&target.ws_url, &clients, 1, 256).await?;
    let (visitors, opening) =
        scenarios::open_conversations(&mut observer, visitors, &clients).await?;
    let newcomers =
        scenarios::open_all(&target.ws_url, &new_clients, 1 + sizes.steady, 256).await?;
    // Scraped before the schedule's clock starts: a slow scrape must not
    // make the first sends late.
    let metrics_before = target.metrics_text().await?;

    let origin = Instant::now();
    let epoch_us = crate::now_us();
    let now_us = move || epoch_us + origin.elapsed().as_micros() as u64;
    let start = origin + Duration::from_millis(500);
    let storm_start = start + Duration::from_secs(sizes.warmup);
    let end = storm_start + Duration::from_secs(sizes.seconds);
    let stop = tokio::time::Instant::from_std(end + GRACE);
    let intended_us = move |at: Instant| epoch_us + (at - origin).as_micros() as u64;
    let measure_from = intended_us(storm_start);

    // The new chats by conversation id, and when each was meant to start.
    let index: Arc<HashMap<String, usize>> = Arc::new(
        new_clients
            .iter()
            .enumerate()
            .map(|(n, c)| (c.conversation.clone(), n))
            .collect(),
    );
    let new_period = Duration::from_secs_f64(1.0 / sizes.new_rate.max(1) as f64);
    let first_at: Arc<Vec<u64>> = Arc::new(
        (0..new_count)
            .map(|n| intended_us(storm_start + new_period.mul_f64(n as f64)))
            .collect(),
    );

    let cpu_before = target.cpu_seconds()?;
    let observing = {
        let index = Arc::clone(&index);
        tokio::spawn(async move {
            let mut seen = Seen::default();
            while let Ok(Some(frame)) = tokio::time::timeout_at(stop, observer.next_frame()).await {
                let Ok(Message::Text(text)) = frame else {
                    continue;
                };
                let text = text.as_str();
                // Kefu writes the `conversation` frame's keys in sorted
                // order (`{"conversation":…,"type":"conversation"}`).
                if !text.starts_with(r#"{"type":"message""#)
                    && text.contains(r#""type":"conversation""#)
                {
                    let Ok(frame) = serde_json::from_str::<Value>(text) else {
                        continue;
                    };
                    let chat = &frame["conversation"];
                    let Some(&n) = chat["id"].as_str().and_then(|id| index.get(id)) else {
                        continue;
                    };
                    let at = now_us();
                    seen.visible.entry(n).or_insert(at);
                    if chat["assignee_id"].is_string() {
                        seen.assigned.entry(n).or_insert(at);
                    }
                } else if text.starts_with(r#"{"type":"message""#) && text.contains(r#""first":1"#)
                {
                    let Ok(frame) = serde_json::from_str::<Value>(text) else {
                        continue;
                    };
                    let id = frame["message"]["conversation_id"]
                        .as_str()
                        .or_else(|| frame["conversation_id"].as_str());
                    if let Some(&n) = id.and_then(|id| index.get(id)) {
                        seen.first_message.entry(n).or_insert(now_us());
                    }
                }
                if seen.first_message.len() == index.len()
                    && (!system.is_kefu()
                        || (seen.visible.len() == index.len()
                            && seen.assigned.len() == index.len()))
                    && Instant::now() > end
                {
                    break;
                }
            }
            seen
        })
    };

    // The steady schedule: `rate` a second over the steady visitors.
    let period = Duration::from_secs_f64(sizes.steady as f64 / sizes.rate.max(1) as f64);
    let mut tasks = Vec::new();
    for (n, (connection, client)) in visitors.into_iter().zip(clients).enumerate() {
        let (mut sink, mut stream) = connection.into_stream().split();
        let offset = period.mul_f64(n as f64 / sizes.steady.max(1) as f64);
        let first = start + offset;
        let reader = tokio::spawn(async move {
            let mut acks = histogram()?;
            let mut acked = 0u64;
            while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(stop, stream.next()).await {
                let Message::Text(text) = frame else {
                    continue;
                };
                if let Some(k) = client::ack_number(text.as_str()) {
                    acked += 1;
                    let intended = intended_us(first + period.mul_f64(k as f64));
                    if intended >= measure_from {
                        acks.saturating_record(now_us().saturating_sub(intended).max(1));
                    }
                }
            }
            anyhow::Ok((acked, acks))
        });
        let sender = tokio::spawn(async move {
            let mut sent = 0u64;
            let mut intended = first;
            while intended < end {
                tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
                let t = intended_us(intended);
                let frame = format!(
                    r#"{{"type":"send","client_msg_id":"b{sent}","conversation_id":"{}","content":"benchmark message","meta":{{"t":{t}}}}}"#,
                    client.conversation
                );
                if sink.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
                sent += 1;
                intended += period;
            }
            // Kept open until the acks are read.
            tokio::time::sleep_until(stop).await;
            drop(sink);
            sent
        });
        tasks.push((sender, reader));
    }
    // The storm: new visitor n sends its first message at its time.
    let mut firsts = Vec::new();
    for (n, (connection, client)) in newcomers.into_iter().zip(new_clients).enumerate() {
        let (mut sink, mut stream) = connection.into_stream().split();
        let first_at = Arc::clone(&first_at);
        let at = storm_start + new_period.mul_f64(n as f64);
        firsts.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            let t = first_at[n];
            let frame = format!(
                r#"{{"type":"send","client_msg_id":"b0","conversation_id":"{}","content":"在吗？我的订单还没发货","meta":{{"t":{t},"first":1}}}}"#,
                client.conversation
            );
            if sink.send(Message::Text(frame.into())).await.is_err() {
                return (false, None);
            }
            while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(stop, stream.next()).await {
                if let Message::Text(text) = frame
                    && client::ack_number(text.as_str()) == Some(0)
                {
                    return (true, Some(now_us().saturating_sub(t).max(1)));
                }
            }
            (true, None)
        }));
    }

    let mut acks = histogram()?;
    let mut first_acks = histogram()?;
    let (mut sent, mut acked) = (0u64, 0u64);
    for (sender, reader) in tasks {
        sent += sender.await?;
        let (count, histogram) = reader.await??;
        acked += count;
        acks.add(histogram)?;
    }
    let (mut new_sent, mut new_acked) = (0u64, 0u64);
    for first in firsts {
        let (was_sent, latency) = first.await?;
        new_sent += u64::from(was_sent);
        if let Some(latency) = latency {
            new_acked += 1;
            first_acks.saturating_record(latency);
            acks.saturating_record(latency);
        }
    }
    let server_cpu = target.cpu_seconds()? - cpu_before;
    let log_us = match (metrics_before, target.metrics_text().await?) {
        (Some(before), Some(after)) => json!({
            "answer": log_quantiles(&before, &after, "kefu_log_answer_seconds"),
            "queue_wait": log_quantiles(&before, &after, "kefu_log_queue_wait_seconds"),
            "write": log_quantiles(&before, &after, "kefu_log_write_seconds"),
        }),
        _ => Value::Null,
    };
    let seen = observing.await?;
    let since_first = |times: &HashMap<usize, u64>| -> anyhow::Result<Histogram<u64>> {
        let mut histogram = histogram()?;
        for (&n, &at) in times {
            histogram.saturating_record(at.saturating_sub(first_at[n]).max(1));
        }
        Ok(histogram)
    };
    let (visible, assigned) = if system.is_kefu() {
        (&seen.visible, Some(&seen.assigned))
    } else {
        (&seen.first_message, None)
    };
    let assigned_us = match assigned {
        Some(assigned) => percentiles(&since_first(assigned)?),
        None => Value::Null,
    };
    Ok(json!({
        "system": system.label(),
        "load": crate::report::load_average(),
        "case": format!(
            "{} new/s for {} s on {}/s over {}",
            sizes.new_rate, sizes.seconds, sizes.rate, sizes.steady
        ),
        "durability": durability,
        "sent": sent + new_sent,
        "acked": acked + new_acked,
        "missing_acks": (sent + new_sent).saturating_sub(acked + new_acked),
        "ack_us": percentiles(&acks),
        "first_ack_us": percentiles(&first_acks),
        "new_sent": new_sent,
        "visible": visible.len(),
        "visible_us": percentiles(&since_first(visible)?),
        "first_message_seen": seen.first_message.len(),
        "first_message_us": percentiles(&since_first(&seen.first_message)?),
        "assigned": assigned.map(HashMap::len),
        "assigned_us": assigned_us,
        "open_seconds": round2(opening.seconds),
        "open_ack_us": percentiles(&opening.acks),
        "server_cpu_seconds": round2(server_cpu),
        "log_us": log_us,
        "server_rss_kib": target.rss_kib()?,
    }))
}

/// Quantiles of one of Kefu's log histograms over the run (the counts of
/// `after` less those of `before`, two `/metrics` scrapes), in µs: each is
/// the upper bound of the bucket it falls in (buckets grow ×1.25), so read
/// it as "at most". Covers the whole load, the 3 s warm-up included.
fn log_quantiles(before: &str, after: &str, name: &str) -> Value {
    let buckets = |text: &str| -> Vec<(f64, u64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(prefix.as_str())?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse::<f64>().ok()? as u64))
            })
            .collect()
    };
    let (before, after) = (buckets(before), buckets(after));
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, count)| {
            let earlier = before.iter().find(|(l, _)| *l == le).map_or(0, |&(_, c)| c);
            (le, count.saturating_sub(earlier))
        })
        .collect();
    let total = counts.last().map_or(0, |&(_, c)| c);
    let quantile = |q: f64| -> Value {
        let wanted = ((total as f64) * q).ceil().max(1.0) as u64;
        counts
            .iter()
            .find(|&&(_, c)| c >= wanted)
            .filter(|(le, _)| le.is_finite())
            .map_or(Value::Null, |&(le, _)| json!((le * 1e6).round() as u64))
    };
    json!({
        "count": total,
        "p50": quantile(0.5),
        "p90": quantile(0.9),
        "p99": quantile(0.99),
        "p999": quantile(0.999),
    })
}
