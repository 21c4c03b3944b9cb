//! The `store` scenario: ticket lists and full-text search on a large store.
//!
//! Fill (offline, through the server library, before the server starts):
//! - tickets and comments are INSERTed into SQLite (the tickets table's own
//!   triggers and indexes apply; `ticket_tags` rows too when that table
//!   exists), with Chinese and English subjects and descriptions, varied
//!   status, priority, assignee and tags;
//! - messages are appended to the RocksDB log through `MessageLog`, the
//!   server's own writer (group commit), spread over conversations.
//!
//! Then the real `kefu-server` starts on the data dir, its search indexer
//! catches up with the log (timed), and every query is measured over HTTP,
//! one request at a time, with a rotating set of parameters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use kefu_server::config::Durability;
use kefu_server::ids::{AgentId, CommentId, ConversationId};
use kefu_server::message::{MessageKind, Sender, SenderType};
use kefu_server::store::messages::{Draft, LogMetrics, MessageLog};
use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::report::{dir_size, load_average};
use crate::server::Server;

pub struct Sizes {
    pub tickets: u64,
    pub messages: u64,
    pub conversations: u64,
    pub comments: u64,
    pub requests: u64,
}

const ZH: &[&str] = &[
    "退款",
    "发货",
    "快递",
    "订单",
    "地址",
    "修改",
    "尺码",
    "颜色",
    "质量",
    "问题",
    "客服",
    "你好",
    "请问",
    "什么",
    "时候",
    "能到",
    "已经",
    "收到",
    "破损",
    "换货",
    "优惠券",
    "发票",
    "谢谢",
    "麻烦",
    "尽快",
    "处理",
    "物流",
    "查询",
    "付款",
    "成功",
    "失败",
    "账户",
    "登录",
    "密码",
    "会员",
    "积分",
    "活动",
    "价格",
    "保修",
    "申请退款",
    "快递单号",
];
const EN: &[&str] = &[
    "order", "refund", "delivery", "parcel", "invoice", "size", "color", "broken", "exchange",
    "coupon", "account", "password", "login", "please", "thanks", "when", "arrive", "tracking",
    "address", "warranty", "price", "member", "points", "payment", "failed", "hello",
];
/// Rare terms, about one document in a thousand.
const RARE_ZH: &str = "蓝牙耳机";
const RARE_EN: &str = "bluetooth";
const TAGS: &[&str] = &[
    "vip",
    "refund",
    "shipping",
    "billing",
    "bug",
    "urgent-case",
    "wholesale",
    "return",
];
const STATUSES: &[&str] = &["open", "pending", "solved", "closed"];
const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
const AGENTS: usize = 20;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    /// `min` to `min + spread - 1` words, Chinese two times in three.
    fn text(&mut self, min: usize, spread: usize) -> String {
        let words = min + self.below(spread);
        let chinese = self.below(3) != 0;
        let mut out = String::new();
        for _ in 0..words {
            if chinese {
                out.push_str(self.pick(ZH));
            } else {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(self.pick(EN));
            }
        }
        if self.below(1000) == 0 {
            if chinese {
                out.push_str(RARE_ZH);
            } else {
                out.push(' ');
                out.push_str(RARE_EN);
            }
        }
        out
    }
}

struct NoMetrics;
impl LogMetrics for NoMetrics {
    fn batch_written(&self, _: usize, _: usize, _: f64) {}
}

/// Fills a prepared data dir offline (SQLite, then the log); returns the
/// seconds each took.
pub async fn fill(dir: &std::path::Path, sizes: &Sizes) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let agents = fill_sqlite(dir, sizes).await?;
    let sqlite_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    fill_log(dir, sizes, &agents).await?;
    Ok((sqlite_seconds, started.elapsed().as_secs_f64()))
}

pub async fn run(bin: &std::path::Path, sizes: Sizes) -> anyhow::Result<Value> {
    let dir = Server::prepare(bin)?;
    let fill_started = Instant::now();
    let agents = fill_sqlite(dir.path(), &sizes).await?;
    let sqlite_seconds = fill_started.elapsed().as_secs_f64();
    let log_started = Instant::now();
    fill_log(dir.path(), &sizes, &agents).await?;
    let log_seconds = log_started.elapsed().as_secs_f64();
    eprintln!("filled: sqlite {sqlite_seconds:.1} s, log {log_seconds:.1} s");

    let exec = Instant::now();
    let server = Server::serve(bin, dir, "os").await?;
    let ready_seconds = exec.elapsed().as_secs_f64();
    let index_seconds = wait_indexed(server.data_dir(), sizes.messages).await?;
    let catch_up_seconds = exec.elapsed().as_secs_f64();
    eprintln!(
        "server ready in {ready_seconds:.2} s, search index caught up after {catch_up_seconds:.1} s"
    );

    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "bench", "password": "bench-password"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("login")?.to_owned();
    let client = Client {
        http,
        base: server.base.clone(),
        token,
    };

    // Cursor pages: follow next_cursor ten pages deep, whatever its format.
    let mut cursors = Vec::new();
    let mut page = client.get("/api/v1/tickets?limit=50").await?;
    for _ in 0..10 {
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                cursors.push(format!("/api/v1/tickets?limit=50&cursor={cursor}"));
                page = client
                    .get(&format!("/api/v1/tickets?limit=50&cursor={cursor}"))
                    .await?;
            }
            None => break,
        }
    }
    if cursors.is_empty() {
        bail!("the ticket list returned no next_cursor");
    }
    let agent_ids: Vec<String> = agents.iter().map(ToString::to_string).collect();
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let search = |kind: &str, terms: &[&str]| -> Vec<String> {
        terms
            .iter()
            .map(|q| format!("/api/v1/search?type={kind}&limit=20&q={}", enc(q)))
            .collect()
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "tickets: first page",
            vec!["/api/v1/tickets?limit=50".to_owned()],
        ),
        ("tickets: cursor page (1-10 deep)", cursors),
        (
            "tickets: status",
            STATUSES
                .iter()
                .map(|s| format!("/api/v1/tickets?limit=50&status={s}"))
                .collect(),
        ),
        (
            "tickets: priority",
            PRIORITIES
                .iter()
                .map(|p| format!("/api/v1/tickets?limit=50&priority={p}"))
                .collect(),
        ),
        (
            "tickets: assignee",
            agent_ids
                .iter()
                .map(|a| format!("/api/v1/tickets?limit=50&assignee={a}"))
                .collect(),
        ),
        (
            "tickets: tag",
            TAGS.iter()
                .map(|t| format!("/api/v1/tickets?limit=50&tag={t}"))
                .collect(),
        ),
        (
            "tickets: status + assignee",
            agent_ids
                .iter()
                .map(|a| format!("/api/v1/tickets?limit=50&status=open&assignee={a}"))
                .collect(),
        ),
        (
            "tickets: q zh 2 chars",
            ["退款", "发票", "物流", "耳机"]
                .iter()
                .map(|q| format!("/api/v1/tickets?limit=50&q={}", enc(q)))
                .collect(),
        ),
        (
            "tickets: q zh 4 chars + status",
            ["申请退款", "快递单号", "蓝牙耳机", "退款成功"]
                .iter()
                .map(|q| format!("/api/v1/tickets?limit=50&status=open&q={}", enc(q)))
                .collect(),
        ),
        (
            "tickets: q en",
            ["refund", "invoice", "tracking", "bluetooth"]
                .iter()
                .map(|q| format!("/api/v1/tickets?limit=50&q={}", enc(q)))
                .collect(),
        ),
        (
            "search messages: zh 2 chars",
            search("messages", &["退款", "发票", "物流", "耳机"]),
        ),
        (
            "search messages: zh 4 chars",
            search(
                "messages",
                &["申请退款", "快递单号", "蓝牙耳机", "退款成功"],
            ),
        ),
        (
            "search messages: zh 2 + 4 chars",
            search(
                "messages",
                &[
                    "退款 快递单号",
                    "发票 申请退款",
                    "物流 蓝牙耳机",
                    "耳机 退款成功",
                ],
            ),
        ),
        (
            "search messages: en",
            search("messages", &["refund", "invoice", "tracking", "bluetooth"]),
        ),
        (
            "search tickets: zh 2 chars",
            search("tickets", &["退款", "发票", "物流", "耳机"]),
        ),
        (
            "search tickets: zh 4 chars",
            search("tickets", &["申请退款", "快递单号", "蓝牙耳机", "退款成功"]),
        ),
        (
            "search tickets: en",
            search("tickets", &["refund", "invoice", "tracking", "bluetooth"]),
        ),
        (
            "search all: zh 2 chars",
            search("all", &["退款", "发票", "物流", "耳机"]),
        ),
    ];
    let mut results = serde_json::Map::new();
    let load_before = load_average();
    eprintln!(
        "{:<36} {:>9} {:>9} {:>9} {:>9}",
        "query", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, paths) in &cases {
        // Warm up: one round of every variant.
        for path in paths {
            client.get(path).await?;
        }
        let mut histogram = Histogram::<u64>::new(3)?;
        for i in 0..sizes.requests {
            let path = &paths[i as usize % paths.len()];
            let started = Instant::now();
            client.get(path).await?;
            histogram.record(started.elapsed().as_micros() as u64)?;
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        eprintln!(
            "{name:<36} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            histogram.max() as f64 / 1000.0
        );
        results.insert(
            (*name).to_owned(),
            crate::scenarios::percentiles(&histogram),
        );
    }
    let load_after = load_average();
    let rss = server.rss_kib()?;
    let size = dir_size(server.data_dir());
    Ok(json!({
        "scenario": "store",
        "tickets": sizes.tickets,
        "comments": sizes.comments,
        "messages": sizes.messages,
        "conversations": sizes.conversations,
        "requests_per_query": sizes.requests,
        "fill_sqlite_seconds": round(sqlite_seconds),
        "fill_log_seconds": round(log_seconds),
        "server_ready_seconds": round(ready_seconds),
        "search_index_catch_up_seconds": round(catch_up_seconds),
        "search_index_wait_seconds": round(index_seconds),
        "data_dir_bytes": size,
        "server_rss_kib": rss,
        // Other work on the machine shows up in the tail latencies.
        "load_average_1m": {"before": load_before, "after": load_after},
        "latency_us": results,
    }))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }
}

async fn fill_sqlite(dir: &std::path::Path, sizes: &Sizes) -> anyhow::Result<Vec<AgentId>> {
    let db = kefu_server::store::db::open(dir).await?;
    let mut agents = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        let agent = kefu_server::agents::create(
            &db,
            kefu_server::agents::NewAgent {
                username: format!("agent{i}"),
                password: "bench-password".into(),
                display_name: Some(format!("Agent {i}")),
                role: kefu_server::agents::Role::Agent,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating an agent: {e}"))?;
        agents.push(agent.id);
    }
    let tag_rows = table_exists(&db, "ticket_tags").await?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = crate::now_ms() - 86_400_000 * 365;
    let chunk = 10_000u64;
    let mut number = 0u64;
    while number < sizes.tickets {
        let mut tx = db.begin().await?;
        for _ in 0..chunk.min(sizes.tickets - number) {
            number += 1;
            let subject = rng.text(3, 3);
            let description = rng.text(8, 20);
            let mut tags: Vec<&str> = Vec::new();
            for _ in 0..rng.below(3) {
                let tag = rng.pick(TAGS);
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            let assignee = (rng.below(5) != 0).then(|| agents[rng.below(agents.len())].to_string());
            let at = started + (number as i64) * 30;
            sqlx::query(
                "INSERT INTO tickets (number, subject, description, status, priority, assignee_id, tags, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(number as i64)
            .bind(subject)
            .bind(description)
            .bind(rng.pick(STATUSES))
            .bind(rng.pick(PRIORITIES))
            .bind(assignee)
            .bind(serde_json::to_string(&tags)?)
            .bind(at)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if tag_rows {
                for tag in &tags {
                    sqlx::query("INSERT OR IGNORE INTO ticket_tags (tag, number) VALUES (?, ?)")
                        .bind(tag)
                        .bind(number as i64)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
    }
    let mut tx = db.begin().await?;
    for i in 0..sizes.comments {
        let ticket = 1 + rng.next() % sizes.tickets.max(1);
        sqlx::query(
            "INSERT INTO ticket_comments (id, ticket_number, author_id, body, public, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(CommentId::new().to_string())
        .bind(ticket as i64)
        .bind(agents[rng.below(agents.len())].to_string())
        .bind(rng.text(5, 10))
        .bind(rng.below(2) == 0)
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await?;
        if i % 10_000 == 9_999 {
            tx.commit().await?;
            tx = db.begin().await?;
        }
    }
    tx.commit().await?;
    db.close().await;
    Ok(agents)
}

async fn table_exists(db: &SqlitePool, name: &str) -> anyhow::Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(name)
            .fetch_optional(db)
            .await?;
    Ok(found.is_some())
}

async fn fill_log(dir: &std::path::Path, sizes: &Sizes, agents: &[AgentId]) -> anyhow::Result<()> {
    let log = Arc::new(MessageLog::open(
        &dir.join(kefu_server::LOG_DIR),
        Durability::Os,
        16_384,
        1_024,
        Arc::new(NoMetrics),
        Box::new(|_| {}),
    )?);
    let conversations: Vec<ConversationId> = (0..sizes.conversations.max(1))
        .map(|_| ConversationId::new())
        .collect();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut sent = 0u64;
    while sent < sizes.messages {
        let mut batch = Vec::new();
        for _ in 0..10_000u64.min(sizes.messages - sent) {
            sent += 1;
            let conversation = conversations[rng.below(conversations.len())];
            let from_agent = rng.below(2) == 0;
            let note = from_agent && rng.below(20) == 0;
            let (sender, key) = if from_agent {
                let agent = agents[rng.below(agents.len())];
                (
                    Sender {
                        kind: SenderType::Agent,
                        id: agent.to_string(),
                        name: "Agent".into(),
                    },
                    agent.to_bytes(),
                )
            } else {
                (
                    Sender {
                        kind: SenderType::Visitor,
                        id: conversation.to_string(),
                        name: String::new(),
                    },
                    conversation.to_bytes(),
                )
            };
            let draft = Draft {
                conversation_id: conversation,
                sender,
                sender_key: key,
                client_msg_id: Some(format!("b{sent}")),
                kind: if note {
                    MessageKind::Note
                } else {
                    MessageKind::Text
                },
                content: rng.text(3, 12),
                meta: json!({}),
                attachment: None,
                start: false,
            };
            let log = Arc::clone(&log);
            batch.push(async move { log.append(draft, None).await });
        }
        for result in futures_util::future::join_all(batch).await {
            result?;
        }
    }
    log.close().await;
    Ok(())
}

/// Waits until the server's indexer has every message and every ticket;
/// returns the seconds waited.
pub async fn wait_indexed(dir: &std::path::Path, messages: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join(kefu_server::store::db::FILE_NAME))
        .read_only(true);
    let db = SqlitePool::connect_with(options).await?;
    let mut last_report = Instant::now();
    loop {
        let indexed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message_index")
            .fetch_one(&db)
            .await?;
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM search_pending_tickets")
            .fetch_one(&db)
            .await?;
        if indexed as u64 >= messages && pending == 0 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("indexing: {indexed} messages, {pending} tickets pending");
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(3_600) {
            bail!("the search index did not catch up within an hour");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    db.close().await;
    Ok(started.elapsed().as_secs_f64())
}
