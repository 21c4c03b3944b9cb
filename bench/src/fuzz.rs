//! `fuzz`: what a frame fuzzer beside a healthy client costs that client
//! (issue 23). One visitor sends on a fixed schedule (open loop, the
//! intended send time in `meta.t`) to one agent, which measures delivery;
//! first alone, then while other visitor connections send malformed
//! frames as fast as they are allowed to: garbage text, JSON of the wrong
//! types, `meta` nested 127 and 200 levels deep, frames one byte over the
//! limit, binary frames, frames that break the protocol (unmasked, a
//! reserved opcode, invalid UTF-8), and raw garbage bytes. A fuzzer whose
//! connection the server closes reconnects (with the same visitor token)
//! and carries on. Kefu only: the baselines check nothing to fuzz.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Connection};
use crate::scenarios::percentiles;
use crate::target::{System, Target};

/// What one fuzzer sends next, picked in turn from a seeded sequence.
#[derive(Clone, Copy, Debug)]
enum Case {
    Garbage,
    WrongTypes,
    Meta127,
    Meta200,
    Oversized,
    Binary,
    Unmasked,
    ReservedOpcode,
    NotUtf8,
    RawBytes,
}

const CASES: [Case; 10] = [
    Case::Garbage,
    Case::WrongTypes,
    Case::Meta127,
    Case::Meta200,
    Case::Oversized,
    Case::Binary,
    Case::Unmasked,
    Case::ReservedOpcode,
    Case::NotUtf8,
    Case::RawBytes,
];

/// xorshift64*: reproducible, and the load side needs no crate for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 1 to `max` random bytes.
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let len = 1 + self.next() % max;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn nested(levels: usize) -> String {
    format!(
        "{}{{}}{}",
        "{\"a\":".repeat(levels - 1),
        "}".repeat(levels - 1)
    )
}

/// A masked client frame header (zero key) with `first` = FIN/RSV/opcode.
fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first, 0x80 | payload.len().min(125) as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&payload[..payload.len().min(125)]);
    frame
}

#[derive(Default)]
struct Tally {
    frames: AtomicU64,
    connections: AtomicU64,
    closes: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn closed(&self, how: String) {
        *self.closes.lock().entry(how).or_default() += 1;
    }
}

/// One fuzzer: connects, says hello, sends malformed frames at `per_second`
/// (0: as fast as it can) until `stop`, reconnecting whenever it is closed.
async fn fuzzer(
    url: String,
    token: String,
    seed: u64,
    per_second: u64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut rng = Rng(seed | 1);
    let oversized = "x".repeat(64 * 1024 + 1);
    let period = (per_second > 0).then(|| Duration::from_secs_f64(1.0 / per_second as f64));
    let mut next_at = tokio::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut stream, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let hello = json!({"type": "hello", "token": token}).to_string();
        if stream.send(Message::Text(hello.into())).await.is_err() {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            // Whatever the server answered meanwhile (welcome, errors, the
            // close), read without waiting.
            if let Some(how) = ended(&mut stream) {
                tally.closed(how);
                break;
            }
            match period {
                Some(period) => {
                    next_at = (next_at + period).max(tokio::time::Instant::now() - period * 10);
                    tokio::time::sleep_until(next_at).await;
                }
                None => tokio::task::yield_now().await,
            }
            let case = CASES[(rng.next() % CASES.len() as u64) as usize];
            let sent = send_case(&mut stream, &mut rng, case, &oversized).await;
            tally.frames.fetch_add(1, Ordering::Relaxed);
            if sent.is_err() {
                // The server closed it: read how, briefly.
                let how = tokio::time::timeout(Duration::from_secs(3), async {
                    loop {
                        if let Some(how) = ended_waiting(&mut stream).await {
                            return how;
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| "write failed".into());
                tally.closed(how);
                break;
            }
        }
    }
}

/// How a connection ended, if it did, from what can be read at once.
fn ended(stream: &mut client::Stream) -> Option<String> {
    use futures_util::FutureExt;
    loop {
        match stream.next().now_or_never() {
            None => return None,
            Some(frame) => {
                if let Some(how) = end_of(frame) {
                    return Some(how);
                }
            }
        }
    }
}

async fn ended_waiting(stream: &mut client::Stream) -> Option<String> {
    end_of(stream.next().await)
}

fn end_of(frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Option<String> {
    match frame {
        Some(Ok(Message::Close(Some(frame)))) => Some(u16::from(frame.code).to_string()),
        Some(Ok(Message::Close(None))) => Some("close without code".into()),
        Some(Ok(_)) => None,
        Some(Err(_)) => Some("reset".into()),
        None => Some("eof".into()),
    }
}

async fn send_case(
    stream: &mut client::Stream,
    rng: &mut Rng,
    case: Case,
    oversized: &str,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let text = match case {
        Case::Garbage => rng
            .bytes(200)
            .into_iter()
            .map(|b| char::from(b' ' + b % 94))
            .collect(),
        Case::WrongTypes => {
            let values = ["5", "true", "[]", "{}", "null", "\"x\"", "-1", "2.5"];
            let kind = ["send", "read", "typing"][(rng.next() % 3) as usize];
            let mut pick = || values[(rng.next() % values.len() as u64) as usize];
            format!(
                r#"{{"type":"{kind}","client_msg_id":{},"conversation_id":{},"content":{},"meta":{},"on":{},"seq":{},"private":{}}}"#,
                pick(),
                pick(),
                pick(),
                pick(),
                pick(),
                pick(),
                pick()
            )
        }
        Case::Meta127 | Case::Meta200 => {
            let levels = if matches!(case, Case::Meta127) {
                127
            } else {
                200
            };
            format!(
                r#"{{"type":"send","client_msg_id":"f{}","content":"fuzz","meta":{}}}"#,
                rng.next() % 1_000_000,
                nested(levels)
            )
        }
        Case::Oversized => oversized.to_owned(),
        Case::Binary => {
            let bytes = rng.bytes(100);
            return stream.send(Message::Binary(bytes.into())).await;
        }
        Case::Unmasked | Case::ReservedOpcode | Case::NotUtf8 | Case::RawBytes => {
            let bytes = match case {
                Case::Unmasked => vec![0x81, 0x02, b'h', b'i'],
                Case::ReservedOpcode => raw_frame(0x83, b""),
                Case::NotUtf8 => raw_frame(0x81, &[0xff, 0xfe, 0xfd]),
                _ => rng.bytes(64),
            };
            // Under the WebSocket layer, on the TCP stream itself.
            return match stream.get_mut() {
                MaybeTlsStream::Plain(tcp) => tcp.write_all(&bytes).await.map_err(Into::into),
                _ => Ok(()),
            };
        }
    };
    stream.send(Message::Text(text.into())).await
}

/// Runs the scenario: `seconds` alone, then `seconds` beside `fuzzers`
/// fuzzing connections; the healthy visitor sends `rate` messages a second.
pub async fn run(
    bin: &std::path::Path,
    rate: u64,
    fuzzers: usize,
    fuzz_rate: u64,
    seconds: u64,
) -> anyhow::Result<Vec<Value>> {
    let target = Target::start(System::Kefu, bin, "os").await?;
    let clients = target.clients(1 + fuzzers).await?;
    let mut agent = Connection::open(&target.ws_url, &target.agent_token(), 0).await?;
    let healthy = &clients[0];
    let mut visitor = Connection::open(&target.ws_url, &healthy.token, 1).await?;
    visitor.send_and_ack(&healthy.conversation, "open").await?;
    let mut rows = Vec::new();
    for phase in ["alone", "beside fuzzers"] {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut fuzzing = Vec::new();
        if phase != "alone" {
            for (n, client) in clients[1..].iter().enumerate() {
                fuzzing.push(tokio::spawn(fuzzer(
                    target.ws_url.clone(),
                    client.token.clone(),
                    0x9E37_79B9_7F4A_7C15 ^ n as u64,
                    fuzz_rate,
                    Arc::clone(&stop),
                    Arc::clone(&tally),
                )));
            }
            // Let the fuzzers get going before measuring.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let cpu_before = target.cpu_seconds()?;
        let (sent, received, histogram, elapsed) = measure(
            &mut visitor,
            &mut agent,
            &healthy.conversation,
            rate,
            seconds,
        )
        .await?;
        let cpu = target.cpu_seconds()? - cpu_before;
        stop.store(true, Ordering::Relaxed);
        for task in fuzzing {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let closes: serde_json::Map<String, Value> = tally
            .closes
            .lock()
            .iter()
            .map(|(how, n)| (how.clone(), json!(n)))
            .collect();
        rows.push(json!({
            "system": "Kefu",
            "case": phase,
            "sent": sent,
            "received": received,
            "latency_us": percentiles(&histogram),
            "fuzz_frames": tally.frames.load(Ordering::Relaxed),
            "fuzz_connections": tally.connections.load(Ordering::Relaxed),
            "fuzz_closes": closes,
            "server_cpu_percent": (cpu / elapsed * 100.0).round(),
        }));
    }
    Ok(rows)
}

/// The healthy pair: the visitor sends on schedule for `seconds`, the agent
/// measures each message from its intended send time.
async fn measure(
    visitor: &mut Connection,
    agent: &mut Connection,
    conversation: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(u64, u64, Histogram<u64>, f64)> {
    let origin = Instant::now();
    let epoch_us = crate::now_us();
    let now_us = || epoch_us + origin.elapsed().as_micros() as u64;
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let end = origin + Duration::from_secs(seconds);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut intended = origin;
    let mut acks_pending = 0u64;
    loop {
        let send_due = intended < end;
        let wake = if send_due {
            tokio::time::Instant::from_std(intended)
        } else {
            tokio::time::Instant::from_std(end + Duration::from_secs(3))
        };
        if !send_due && received >= sent {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {
                if !send_due {
                    break;
                }
                let t = epoch_us + (intended - origin).as_micros() as u64;
                visitor.send_text(format!(
                    r#"{{"type":"send","client_msg_id":"h{t}","conversation_id":"{conversation}","content":"healthy","meta":{{"t":{t}}}}}"#
                )).await?;
                sent += 1;
                acks_pending += 1;
                intended += period;
            }
            frame = agent.next_frame() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    anyhow::ensure!(frame.is_some(), "the agent's connection ended");
                    continue;
                };
                if let Some(at) = client::meta_time(text.as_str()) {
                    received += 1;
                    histogram.saturating_record(now_us().saturating_sub(at).max(1));
                }
            }
            frame = visitor.next_frame() => {
                anyhow::ensure!(frame.is_some(), "the visitor's connection ended");
                acks_pending = acks_pending.saturating_sub(1);
            }
        }
    }
    let _ = acks_pending;
    Ok((sent, received, histogram, origin.elapsed().as_secs_f64()))
}
