//! `lan-lag` (Kefu only): how far a LAN standby trails its host under a
//! steady message rate (issue 18; docs/LAN.md "Replication and fencing").
//!
//! One host process (`serve --lan-bind 127.0.0.2:…`) and one standby
//! process (`lan standby`, its device paired, approved and made a standby
//! in the run) on loopback. Visitors' WebSockets send at a fixed total
//! rate (open loop: each visitor on its own schedule, not waiting for
//! acks) for the given seconds. Sampled all the while:
//!
//! - the host's view, `GET /api/v1/lan/status` every 20 ms: its log's
//!   sequence and the standby's `lag_seq` (what the host had and the
//!   standby had not, at the standby's last request plus what the host
//!   wrote since) and `lag_seconds`;
//! - the standby's own progress, `DATA_DIR/lan/replica.json` every 5 ms:
//!   the sequence it applied and fsynced (written after each answer).
//!
//! **Lag in ms**: for each host sample (the host's log at sequence `S`, at
//! the midpoint of the status request), the time until the standby's
//! progress first shows `S` applied. Its resolution is the status
//! request's half-time plus the 5 ms of the standby's sampling.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Connection, Shop};
use crate::lan::{Process, free_port, pair_device, ready};
use crate::scenarios::percentiles;

/// The sizes of a run.
pub struct Sizes {
    /// Messages per second, all visitors together.
    pub rate: u32,
    pub seconds: u64,
    pub visitors: usize,
}

/// One sample of the host's status.
struct HostSample {
    at: Instant,
    log_seq: u64,
    lag_seq: u64,
    lag_seconds: f64,
}

pub async fn run(bin: &std::path::Path, sizes: Sizes) -> anyhow::Result<Value> {
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
            .env("KEFU_LIMITS__VISITOR_MESSAGE_BURST", "0")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{http_port}");
    ready(&format!("{base}/readyz")).await?;
    let shop = Shop::setup(&base).await?;
    let visitors = shop.visitors(sizes.visitors.max(1)).await?;

    // The standby: paired, approved, made a standby, then `lan standby`.
    let standby_dir = tempfile::tempdir()?;
    let device = pair_device(
        &base,
        &shop.admin_token,
        lan,
        standby_dir.path(),
        "bench standby",
    )
    .await?;
    let http = reqwest::Client::new();
    let enabled = http
        .put(format!("{base}/api/v1/lan/devices/{device}/standby"))
        .bearer_auth(&shop.admin_token)
        .json(&json!({"enabled": true}))
        .send()
        .await?;
    if !enabled.status().is_success() {
        bail!("making the device a standby: {}", enabled.status());
    }
    let _standby = Process(
        std::process::Command::new(bin)
            .args(["lan", "standby", "--data-dir"])
            .arg(standby_dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let status = |http: reqwest::Client, base: String, token: String| async move {
        let body: Value = http
            .get(format!("{base}/api/v1/lan/status"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(body)
    };
    let caught_up = Instant::now();
    loop {
        let body = status(http.clone(), base.clone(), shop.admin_token.clone()).await?;
        let standby = &body["standbys"][0];
        if standby["connected"] == true && standby["applied_seq"] == body["log_seq"] {
            break;
        }
        if caught_up.elapsed() > Duration::from_secs(120) {
            bail!("the standby did not catch up: {body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The load: each visitor on its own schedule, acks read apart.
    let ws_url = format!("ws://127.0.0.1:{http_port}/api/v1/ws");
    let per_visitor = f64::from(sizes.rate.max(1)) / visitors.len() as f64;
    let interval = Duration::from_secs_f64(1.0 / per_visitor);
    let run_for = Duration::from_secs(sizes.seconds.max(1));
    let started = Instant::now();
    let deadline = started + run_for;
    let (sent, acked) = (
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let mut load = Vec::new();
    let count = visitors.len();
    for (index, visitor) in visitors.iter().enumerate() {
        let connection = Connection::open(&ws_url, &visitor.token, index).await?;
        let (mut sink, mut stream) = connection.into_stream().split();
        let conversation = visitor.conversation_id.clone();
        let (sent, acked) = (Arc::clone(&sent), Arc::clone(&acked));
        load.push(tokio::spawn(async move {
            let reader = tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    if let Message::Text(text) = frame
                        && text.as_str().starts_with(r#"{"type":"ack""#)
                    {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            // Spread the visitors' first sends over one interval.
            let offset = interval.mul_f64(index as f64 / count as f64);
            let mut ticks = tokio::time::interval_at(
                tokio::time::Instant::from_std(started) + offset,
                interval,
            );
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            while Instant::now() < deadline {
                ticks.tick().await;
                n += 1;
                let frame = json!({"type": "send", "client_msg_id": format!("lag-{index}-{n}"), "conversation_id": conversation, "content": "lag probe"});
                if sink
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // Let the last acks come, then close.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = sink.close().await;
            reader.abort();
        }));
    }

    // The samplers.
    let host_samples: Arc<Mutex<Vec<HostSample>>> = Arc::default();
    let standby_samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let sample_until = deadline + Duration::from_secs(3);
    let host_sampler = {
        let (samples, http, base, token) = (
            Arc::clone(&host_samples),
            http.clone(),
            base.clone(),
            shop.admin_token.clone(),
        );
        tokio::spawn(async move {
            while Instant::now() < sample_until {
                let asked = Instant::now();
                if let Ok(body) = status(http.clone(), base.clone(), token.clone()).await {
                    let answered = Instant::now();
                    let standby = &body["standbys"][0];
                    samples.lock().push(HostSample {
                        at: asked + (answered - asked) / 2,
                        log_seq: body["log_seq"].as_u64().unwrap_or(0),
                        lag_seq: standby["lag_seq"].as_u64().unwrap_or(0),
                        lag_seconds: standby["lag_seconds"].as_f64().unwrap_or(0.0),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let standby_sampler = {
        let (samples, dir) = (
            Arc::clone(&standby_samples),
            standby_dir.path().to_path_buf(),
        );
        tokio::spawn(async move {
            while Instant::now() < sample_until {
                if let Some(progress) = kefu_server::lan::standby::read_progress(&dir) {
                    let mut samples = samples.lock();
                    if samples
                        .last()
                        .is_none_or(|(_, seq)| *seq != progress.applied_seq)
                    {
                        samples.push((Instant::now(), progress.applied_seq));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for task in load {
        task.await.context("a visitor's task")?;
    }
    host_sampler.await?;
    standby_sampler.await?;
    let elapsed = started.elapsed().min(run_for).as_secs_f64();

    let host_samples = std::mem::take(&mut *host_samples.lock());
    let standby_samples = std::mem::take(&mut *standby_samples.lock());
    let in_load = |at: Instant| at >= started && at <= deadline;
    let mut lag_seq = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3)?;
    let mut lag_seconds_max = 0.0f64;
    let mut lag_ms = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let mut never = 0u64;
    for sample in host_samples.iter().filter(|s| in_load(s.at)) {
        lag_seq.record(sample.lag_seq.max(1))?;
        lag_seconds_max = lag_seconds_max.max(sample.lag_seconds);
        match standby_samples
            .iter()
            .find(|(_, applied)| *applied >= sample.log_seq)
        {
            Some((at, _)) => {
                let ms = at.saturating_duration_since(sample.at).as_millis();
                lag_ms.record(u64::try_from(ms).unwrap_or(u64::MAX).max(1))?;
            }
            None => never += 1,
        }
    }
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    let acked = acked.load(std::sync::atomic::Ordering::Relaxed);
    let final_status = status(http.clone(), base.clone(), shop.admin_token.clone()).await?;
    Ok(json!({
        "scenario": "lan-lag",
        "rate_target": sizes.rate,
        "seconds": sizes.seconds,
        "visitors": visitors.len(),
        "sent": sent,
        "acked": acked,
        "sent_per_second": crate::scenarios::round2(sent as f64 / elapsed),
        "host_samples": host_samples.iter().filter(|s| in_load(s.at)).count(),
        "lag_seq": percentiles(&lag_seq),
        "lag_ms": percentiles(&lag_ms),
        "lag_ms_not_reached": never,
        "lag_seconds_max": crate::scenarios::round2(lag_seconds_max),
        "full_syncs": final_status["standbys"][0]["full_syncs"],
        "final": {
            "log_seq": final_status["log_seq"],
            "applied_seq": final_status["standbys"][0]["applied_seq"],
        },
    }))
}
