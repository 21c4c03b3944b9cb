//! Load spread over processes: one process may hold at most 20,000 open
//! files, so the connection and reconnect scenarios re-execute this binary
//! as `kefu-bench worker`, each worker holding a share of the clients.
//!
//! A worker reads one JSON [`Job`] line on stdin, opens its connections and
//! prints `{"event":"connected",…}`; then it answers commands, one a line:
//! `check` → `{"event":"alive","alive":N}`; `storm` → every connection
//! drops and resumes by seq, then `{"event":"resumed",…}`. EOF ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Semaphore, watch};

use crate::client::Connection;
use crate::target::Client;

#[derive(Serialize, Deserialize)]
pub struct Job {
    pub url: String,
    pub clients: Vec<Client>,
    /// Index of this worker's first client in the whole run (source addresses).
    pub index_base: usize,
    /// Each client sends two messages after connecting and, in the storm,
    /// resumes from the first: the catch-up must deliver the second.
    pub prepare: bool,
    /// Connections being opened at once (per worker).
    pub concurrency: usize,
}

enum Outcome {
    Resumed,
    Missed,
    Failed,
}

/// The worker process's main.
pub async fn run() -> anyhow::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let job: Job = serde_json::from_str(&stdin.next_line().await?.context("no job")?)?;
    let job = Arc::new(job);
    let alive = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let (storm_tx, storm_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(1024);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(job.clients.len());
    for n in 0..job.clients.len() {
        let job = Arc::clone(&job);
        let alive = Arc::clone(&alive);
        let gate = Arc::clone(&gate);
        let storm = storm_rx.clone();
        let done = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            hold(&job, n, gate, storm, alive, done).await
        }));
    }
    drop(done_tx);
    let (mut ok, mut failed, mut first_error) = (0usize, 0usize, None);
    while ok + failed < job.clients.len() {
        match done_rx.recv().await {
            Some(Ok(())) => ok += 1,
            Some(Err(error)) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
            None => break,
        }
    }
    say(json!({"event": "connected", "ok": ok, "failed": failed,
        "seconds": started.elapsed().as_secs_f64(), "first_error": first_error}))
    .await?;

    while let Some(line) = stdin.next_line().await? {
        match line.trim() {
            "check" => {
                say(json!({"event": "alive", "alive": alive.load(Ordering::Relaxed)})).await?
            }
            "storm" => {
                let started = Instant::now();
                storm_tx.send_replace(true);
                let (mut resumed, mut missed, mut failed) = (0usize, 0usize, 0usize);
                for task in tasks.drain(..) {
                    match task.await? {
                        Outcome::Resumed => resumed += 1,
                        Outcome::Missed => missed += 1,
                        Outcome::Failed => failed += 1,
                    }
                }
                say(
                    json!({"event": "resumed", "resumed": resumed, "missed": missed,
                    "failed": failed, "seconds": started.elapsed().as_secs_f64()}),
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn say(value: Value) -> anyhow::Result<()> {
    let mut out = tokio::io::stdout();
    out.write_all(format!("{value}\n").as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// One client: connect (and prepare), hold until the storm, then drop and
/// resume.
async fn hold(
    job: &Job,
    n: usize,
    gate: Arc<Semaphore>,
    mut storm: watch::Receiver<bool>,
    alive: Arc<AtomicUsize>,
    done: tokio::sync::mpsc::Sender<Result<(), String>>,
) -> Outcome {
    let client = &job.clients[n];
    let index = job.index_base + n;
    let opened = async {
        let _permit = gate.acquire().await?;
        let mut connection = Connection::open(&job.url, &client.token, index).await?;
        let mut seqs = (0, 0);
        if job.prepare {
            seqs.0 = connection.send_and_ack(&client.conversation, "r1").await?;
            seqs.1 = connection.send_and_ack(&client.conversation, "r2").await?;
        }
        anyhow::Ok((connection, seqs))
    }
    .await;
    let (mut connection, seqs) = match opened {
        Ok(opened) => {
            alive.fetch_add(1, Ordering::Relaxed);
            let _ = done.send(Ok(())).await;
            opened
        }
        Err(error) => {
            let _ = done.send(Err(error.to_string())).await;
            let _ = storm.wait_for(|&s| s).await;
            return Outcome::Failed;
        }
    };
    let dropped = tokio::select! {
        _ = connection.drain() => true,
        _ = storm.wait_for(|&s| s) => false,
    };
    if dropped {
        alive.fetch_sub(1, Ordering::Relaxed);
        let _ = storm.wait_for(|&s| s).await;
        return Outcome::Failed;
    }
    // Drop the connection without a close handshake, as a lost network does.
    drop(connection);
    let resumed = async {
        let _permit = gate.acquire().await?;
        let resume = job
            .prepare
            .then_some((client.conversation.as_str(), seqs.0));
        Connection::resume(&job.url, &client.token, index + 1_000_000, resume).await
    }
    .await;
    let Ok(mut connection) = resumed else {
        return Outcome::Failed;
    };
    // Welcomed again; with `prepare`, the catch-up must bring the second
    // message (the first was claimed as seen).
    if job.prepare
        && connection
            .wait_seq(seqs.1, Duration::from_secs(10))
            .await
            .is_err()
    {
        return Outcome::Missed;
    }
    // Kept open until the worker ends, so the server sees every client
    // back at once.
    std::mem::forget(connection);
    Outcome::Resumed
}

/// The coordinator's handle on a worker process.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Worker {
    pub async fn spawn(job: &Job) -> anyhow::Result<Worker> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        stdin
            .write_all(format!("{}\n", serde_json::to_string(job)?).as_bytes())
            .await?;
        stdin.flush().await?;
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    /// The next event line of this worker.
    pub async fn event(&mut self) -> anyhow::Result<Value> {
        match self.stdout.next_line().await? {
            Some(line) => Ok(serde_json::from_str(&line)?),
            None => bail!("worker ended: {:?}", self.child.try_wait()),
        }
    }

    pub async fn command(&mut self, command: &str) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        Ok(self.stdin.flush().await?)
    }
}
