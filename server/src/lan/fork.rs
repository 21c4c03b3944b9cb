//! Reconciliation of an old host's writes after the fork (issue 18;
//! docs/LAN.md, "Reconciliation after a takeover").
//!
//! **The fork point.** A standby's copy is, by RocksDB sequence, a prefix
//! of the old host's log (`lan::replication`), hence per conversation a
//! gap-free prefix of its messages. `lan takeover` records the copy's
//! per-conversation heads ([`ForkPoint`], in `lan/takeover.json`) before
//! the copy serves anything: the old host's messages of conversation `C`
//! with `seq > heads[C]` (a conversation missing there: every one) are
//! exactly what it wrote after the fork — acknowledged after the copy's
//! last batch, or in its stale term before it was fenced.
//!
//! **The old host's side.** Once fenced (its log closed for good), it
//! answers the device that superseded it, and only that one, over the
//! pairing's mutual TLS, reading its own log read-only:
//! - `GET /lan/v1/fork/heads?after=C` — its conversation heads, in key
//!   order, at most [`HEADS_PAGE_MAX`] a page;
//! - `GET /lan/v1/fork/messages?conversation_id=C&after=N` — the messages
//!   of `C` after `N` (notes included), at most [`MESSAGES_PAGE_MAX`];
//! - `GET /lan/v1/fork/conversation?conversation_id=C` — what starting `C`
//!   wrote in SQLite ([`Start`]: the conversation, its visitor, the
//!   visitor's token hashes), for a conversation started after the copy's
//!   last SQLite snapshot, which the new host does not know.
//!
//! **The new host's side** ([`run`]). After the fence, it pulls every
//! message past the fork point and appends each as an ordinary send of its
//! original author: the same conversation, sender and `client_msg_id`
//! (a line without one, written by Kefu itself, gets `fork-<message id>`),
//! through the handover gate, so the log's dedup makes it idempotent; each
//! gets a new seq after what the new host already has. A conversation it
//! does not know (started on the old host after the copy's last SQLite
//! snapshot) it first creates from the old host's [`Start`], with the
//! same ids, so the visitor's token works on the new host too; only one
//! that cannot be created so (its visitor's identity already taken by
//! another visitor here, its app unknown) is left and counted `skipped`.
//! Then it records `reconciled` in `lan/takeover.json`.
//!
//! **Exactly once, crash-safe.** Nothing is written but through the dedup
//! key, so a re-send interrupted anywhere (either side killed, the link
//! cut) and done again from the start writes nothing twice: every message
//! already re-sent is answered as a duplicate. A client that re-sent its
//! message to the new host itself is deduplicated the same way. Until
//! `reconciled` is written, every start of the new host tries again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::DeviceClient;
use super::device_id::DeviceId;
use super::host::{LanHost, LanPeer};
use super::identity::Identity;
use super::tls::ServerTrust;
use crate::error::{ApiError, ApiResult};
use crate::ids::ConversationId;
use crate::message::{Message, SenderType};
use crate::state::AppState;
use crate::store::keys::{self, CF_HEAD, CF_MSG};

pub mod routes;

/// The line of seqs this host serves, named in `welcome` as `history_id`
/// (docs/PROTOCOL.md, "LAN hosting"): the shop's history, and the term of
/// the takeover that forked it, if any. A client whose cursors came from
/// another line of the same shop may hold seqs past the fork.
#[derive(Clone, Debug, Default)]
pub struct Line {
    pub id: String,
    /// The copy's heads at the takeover that started this line.
    pub fork: Option<ForkPoint>,
}

impl Line {
    /// This host's line: `takeover.json`'s fork, if it took the shop over.
    pub fn of(data_dir: &Path, history: super::state::HistoryId) -> Line {
        match super::takeover::read(data_dir) {
            Some(record) if record.fork.is_some() => Line {
                id: format!("{history}-{}", record.term),
                fork: record.fork,
            },
            _ => Line {
                id: history.to_string(),
                fork: None,
            },
        }
    }

    /// For a client whose cursors came from line `from`: the resumed
    /// conversations whose cursor lies past the fork, with the last seq
    /// this line shares with the old one (the catch-up starts there).
    pub fn forked(
        &self,
        from: Option<&str>,
        resume: &std::collections::HashMap<String, u64>,
    ) -> BTreeMap<ConversationId, u64> {
        let (Some(from), Some(fork)) = (from, &self.fork) else {
            return BTreeMap::new();
        };
        if from == self.id {
            return BTreeMap::new();
        }
        resume
            .iter()
            .filter_map(|(conversation, after)| {
                let conversation: ConversationId = conversation.parse().ok()?;
                let head = fork.heads.get(&conversation).copied().unwrap_or(0);
                (*after > head).then_some((conversation, head))
            })
            .collect()
    }
}

/// Conversation heads per page of `/lan/v1/fork/heads`.
pub const HEADS_PAGE_MAX: usize = 1000;
/// Messages per page of `/lan/v1/fork/messages`.
pub const MESSAGES_PAGE_MAX: usize = 500;
/// How long the new host waits between two attempts.
pub const RETRY: Duration = Duration::from_secs(1);

/// Where the surviving history forked from the old host's: the copy's log
/// when it was taken over.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkPoint {
    /// The copy's RocksDB sequence.
    pub seq: u64,
    /// The copy's last seq per conversation.
    pub heads: BTreeMap<ConversationId, u64>,
}

/// What the reconciliation did, recorded when it is complete.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub at_ms: i64,
    /// Messages past the fork written on this host now.
    pub resent: u64,
    /// Messages past the fork this host already had (re-sent by their
    /// client, or by an earlier, interrupted reconciliation).
    pub duplicates: u64,
    /// Messages of conversations this host could not create from the old
    /// host's [`Start`] (another visitor has its identity here, or its app
    /// is unknown): left there.
    pub skipped: u64,
    /// Conversations started on the old host after the copy's last SQLite
    /// snapshot, created here from its [`Start`].
    #[serde(default)]
    pub carried: u64,
}

/// What starting a conversation wrote in the old host's SQLite: enough for
/// the new host to create it with the same ids (`/lan/v1/fork/conversation`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Start {
    pub conversation_id: ConversationId,
    pub app_id: String,
    pub created_at: i64,
    pub visitor: StartVisitor,
    /// The visitor's tokens (SHA-256, hex; never a token itself).
    pub tokens: Vec<StartToken>,
}

/// The visitor of a [`Start`], as the `visitors` row holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct StartVisitor {
    pub id: String,
    pub app_id: String,
    /// Hex of `user_key` (SHA-256 of app and user id), for an identified
    /// visitor.
    pub user_key: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub attributes: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// One token of a [`Start`]'s visitor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StartToken {
    pub token_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The most tokens of one visitor a [`Start`] carries (a visitor holds
/// one per session).
pub const START_TOKENS_MAX: i64 = 100;

/// Every conversation head of a message log opened by `lan takeover` or
/// read-only by the old host.
pub fn heads_of(db: &rocksdb::DB) -> anyhow::Result<BTreeMap<ConversationId, u64>> {
    let cf = db
        .cf_handle(CF_HEAD)
        .context("no conv_head column family")?;
    let mut heads = BTreeMap::new();
    for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let (key, value) = item?;
        let key: [u8; 16] = key.as_ref().try_into().context("conv_head key length")?;
        let (last_seq, _) = keys::parse_head_value(&value).context("conv_head value")?;
        heads.insert(ConversationId::from_bytes(key), last_seq);
    }
    Ok(heads)
}

/// The messages of `conversation` after `after`, at most `limit`, notes
/// included, in seq order.
fn messages_of(
    db: &rocksdb::DB,
    conversation: ConversationId,
    after: u64,
    limit: usize,
) -> anyhow::Result<Vec<Message>> {
    let cf = db.cf_handle(CF_MSG).context("no msg column family")?;
    let mut options = rocksdb::ReadOptions::default();
    options.set_iterate_lower_bound(keys::msg_key(conversation, after.saturating_add(1)).to_vec());
    options.set_iterate_upper_bound(keys::msg_key(conversation, u64::MAX).to_vec());
    let mut out = Vec::new();
    for item in db.iterator_cf_opt(cf, options, rocksdb::IteratorMode::Start) {
        let (key, value) = item?;
        let Some((conv, _)) = keys::parse_msg_key(&key) else {
            continue;
        };
        if conv != conversation {
            continue;
        }
        let (_, _, json) = keys::split_msg_value(&value).context("short msg value")?;
        out.push(serde_json::from_slice(json)?);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// This server's own message log, read-only (it was closed when the host
/// was fenced; a read-only open takes no lock and writes nothing).
fn open_own_log(data_dir: &Path) -> anyhow::Result<rocksdb::DB> {
    let mut options = crate::store::messages::db_options();
    options.create_if_missing(false);
    rocksdb::DB::open_cf_descriptors_read_only(
        &options,
        data_dir.join(crate::LOG_DIR),
        crate::store::messages::column_families(),
        false,
    )
    .map_err(|e| anyhow::anyhow!("cannot open the message log read-only: {e}"))
}

/// The calling device, when this host was superseded by it; 403 otherwise
/// (a host that still writes has no fork to give).
async fn superseding_device(
    state: &AppState,
    host: &LanHost,
    peer: &LanPeer,
) -> ApiResult<DeviceId> {
    let key = peer
        .key
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("needs a Kefu device certificate"))?;
    let data_dir = state.config.data_dir.clone();
    let stored = tokio::task::spawn_blocking(move || {
        super::state::LanStateFile::open(&data_dir).map(|f| f.state().clone())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(e.into()))?;
    let superseded_by = stored.superseded_by.map(|s| s.device_id);
    if !host.gate_closed_for_good() || superseded_by != Some(key.device_id) {
        return Err(ApiError::forbidden(
            "only the device that took this shop over reads its writes after the fork",
        ));
    }
    if state.log.is_open() {
        return Err(ApiError::Conflict("the message log is still open".into()));
    }
    Ok(key.device_id)
}

/// `GET /lan/v1/fork/heads`: this (superseded) host's conversation heads
/// after `after`, in key order.
pub async fn heads(
    state: &AppState,
    host: &LanHost,
    peer: &LanPeer,
    after: Option<ConversationId>,
) -> ApiResult<Value> {
    superseding_device(state, host, peer).await?;
    let data_dir = state.config.data_dir.clone();
    let page = tokio::task::spawn_blocking(move || {
        let db = open_own_log(&data_dir)?;
        let heads = heads_of(&db)?;
        let mut page: Vec<(ConversationId, u64)> = match after {
            Some(after) => heads
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .map(|(c, s)| (*c, *s))
                .take(HEADS_PAGE_MAX + 1)
                .collect(),
            None => heads
                .iter()
                .map(|(c, s)| (*c, *s))
                .take(HEADS_PAGE_MAX + 1)
                .collect(),
        };
        let more = page.len() > HEADS_PAGE_MAX;
        page.truncate(HEADS_PAGE_MAX);
        anyhow::Ok((page, more))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(ApiError::Internal)?;
    let (page, more) = page;
    let heads: Vec<Value> = page
        .into_iter()
        .map(|(conversation, last_seq)| json!({"conversation_id": conversation, "last_seq": last_seq}))
        .collect();
    Ok(json!({"heads": heads, "more": more}))
}

/// `GET /lan/v1/fork/messages`: messages of one conversation after `after`.
pub async fn messages(
    state: &AppState,
    host: &LanHost,
    peer: &LanPeer,
    conversation: ConversationId,
    after: u64,
) -> ApiResult<Value> {
    superseding_device(state, host, peer).await?;
    let data_dir = state.config.data_dir.clone();
    let messages = tokio::task::spawn_blocking(move || {
        let db = open_own_log(&data_dir)?;
        messages_of(&db, conversation, after, MESSAGES_PAGE_MAX)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(ApiError::Internal)?;
    Ok(json!({"messages": messages}))
}

/// `GET /lan/v1/fork/conversation`: what starting `conversation` wrote in
/// this (superseded) host's SQLite, for the device that superseded it.
pub async fn conversation_start(
    state: &AppState,
    host: &LanHost,
    peer: &LanPeer,
    conversation: ConversationId,
) -> ApiResult<Start> {
    superseding_device(state, host, peer).await?;
    let row: Option<(String, String, i64)> =
        sqlx::query_as("SELECT app_id, visitor_id, created_at FROM conversations WHERE id = ?")
            .bind(conversation)
            .fetch_optional(&state.db)
            .await?;
    let Some((app_id, visitor_id, created_at)) = row else {
        return Err(ApiError::NotFound("no such conversation".into()));
    };
    let visitor: StartVisitor = sqlx::query_as(
        "SELECT id, app_id,
                CASE WHEN user_key IS NULL THEN NULL ELSE lower(hex(user_key)) END AS user_key,
                name, email, attributes,
                created_at, last_seen_at
         FROM visitors WHERE id = ?",
    )
    .bind(&visitor_id)
    .fetch_one(&state.db)
    .await?;
    let tokens: Vec<(Vec<u8>, i64, Option<i64>)> = sqlx::query_as(
        "SELECT token_hash, created_at, revoked_at FROM tokens WHERE visitor_id = ?
         ORDER BY created_at DESC LIMIT ?",
    )
    .bind(&visitor_id)
    .bind(START_TOKENS_MAX)
    .fetch_all(&state.db)
    .await?;
    Ok(Start {
        conversation_id: conversation,
        app_id,
        created_at,
        visitor,
        tokens: tokens
            .into_iter()
            .map(|(hash, created_at, revoked_at)| StartToken {
                token_hash: hex::encode(hash),
                created_at,
                revoked_at,
            })
            .collect(),
    })
}

/// The new host: creates a conversation it does not know from the old
/// host's [`Start`] (the same ids; what exists already is kept). False
/// when it cannot: the old host does not know it either, or SQLite
/// refuses it (another visitor holds the visitor's identity, its app is
/// unknown); nothing is written then.
async fn carry_start(
    client: &mut DeviceClient,
    state: &AppState,
    conversation: ConversationId,
) -> anyhow::Result<bool> {
    let path = format!("/lan/v1/fork/conversation?conversation_id={conversation}");
    let (status, body) = client.request(Method::GET, &path, None, None).await?;
    if status == http::StatusCode::NOT_FOUND {
        return Ok(false);
    }
    if !status.is_success() {
        anyhow::bail!("{path}: {status} {body}");
    }
    let start: Start = serde_json::from_value(body).context("the old host's start")?;
    if start.conversation_id != conversation || start.visitor.app_id != start.app_id {
        anyhow::bail!("the old host's start does not match {conversation}");
    }
    let user_key = start
        .visitor
        .user_key
        .as_deref()
        .map(hex::decode)
        .transpose()
        .context("user_key")?;
    let tokens = start
        .tokens
        .iter()
        .map(|token| anyhow::Ok((hex::decode(&token.token_hash)?, token)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tx = state.db.begin().await?;
    let written = async {
        sqlx::query(
            "INSERT INTO visitors (id, app_id, user_key, name, email, attributes, created_at, last_seen_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&start.visitor.id)
        .bind(&start.visitor.app_id)
        .bind(user_key)
        .bind(&start.visitor.name)
        .bind(&start.visitor.email)
        .bind(&start.visitor.attributes)
        .bind(start.visitor.created_at)
        .bind(start.visitor.last_seen_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO conversations (id, app_id, visitor_id, status, activity_at, created_at)
             VALUES (?, ?, ?, 'open', ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(conversation)
        .bind(&start.app_id)
        .bind(&start.visitor.id)
        .bind(start.created_at)
        .bind(start.created_at)
        .execute(&mut *tx)
        .await?;
        for (hash, token) in &tokens {
            sqlx::query(
                "INSERT INTO tokens (token_hash, visitor_id, created_at, revoked_at)
                 VALUES (?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(&hash[..])
            .bind(&start.visitor.id)
            .bind(token.created_at)
            .bind(token.revoked_at)
            .execute(&mut *tx)
            .await?;
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    match written {
        Ok(()) => {
            tx.commit().await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(error)) => {
            tracing::warn!(
                %conversation,
                %error,
                "LAN reconciliation: the old host's conversation cannot be created here; left there"
            );
            Ok(false)
        }
        Err(error) => Err(error.into()),
    }
}

/// The new host: once the old host is fenced, re-sends its writes past the
/// fork point (module doc) and records that it did. Ends when done, when
/// there is nothing to do, or at shutdown.
pub async fn run(state: AppState) {
    let data_dir = state.config.data_dir.clone();
    loop {
        let Some(record) = super::takeover::read(&data_dir) else {
            return;
        };
        if record.reconciled.is_some() {
            return;
        }
        let Some(fork) = record.fork.clone() else {
            return;
        };
        if record.fenced_at_ms.is_some() {
            match reconcile(&state, &record.old_host, &fork).await {
                Ok(done) => {
                    tracing::warn!(
                        resent = done.resent,
                        duplicates = done.duplicates,
                        skipped = done.skipped,
                        "LAN: the old host's writes after the fork are reconciled"
                    );
                    if let Err(error) = super::takeover::record_reconciled(&data_dir, done) {
                        tracing::warn!(%error, "LAN reconciliation: cannot record it; done again at the next start");
                    }
                    return;
                }
                Err(error) => {
                    tracing::debug!(error = %format!("{error:#}"), "LAN reconciliation: not done yet");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = state.shutdown.cancelled() => return,
        }
    }
}

async fn reconcile(
    state: &AppState,
    old: &super::state::PinnedHost,
    fork: &ForkPoint,
) -> anyhow::Result<Reconciled> {
    let data_dir = state.config.data_dir.clone();
    let identity = tokio::task::spawn_blocking(move || Identity::open(&data_dir))
        .await??
        .0;
    let mut client =
        DeviceClient::connect(&identity, ServerTrust::Pinned(old.device_id), &old.address).await?;
    let mut done = Reconciled::default();
    let mut after: Option<ConversationId> = None;
    loop {
        let path = match after {
            Some(after) => format!("/lan/v1/fork/heads?after={after}"),
            None => "/lan/v1/fork/heads".to_owned(),
        };
        let page = get(&mut client, &path).await?;
        let heads: Vec<(ConversationId, u64)> = page["heads"]
            .as_array()
            .context("no heads")?
            .iter()
            .map(|head| {
                let conversation = head["conversation_id"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .context("conversation_id")?;
                let last_seq = head["last_seq"].as_u64().context("last_seq")?;
                anyhow::Ok((conversation, last_seq))
            })
            .collect::<Result<_, _>>()?;
        for (conversation, last_seq) in &heads {
            let fork_head = fork.heads.get(conversation).copied().unwrap_or(0);
            if *last_seq <= fork_head {
                continue;
            }
            if !crate::conversations::exists(state, *conversation).await? {
                if !carry_start(&mut client, state, *conversation).await? {
                    tracing::warn!(
                        %conversation,
                        messages = last_seq - fork_head,
                        "LAN reconciliation: a conversation this host cannot create; left on the old host"
                    );
                    done.skipped += last_seq - fork_head;
                    continue;
                }
                done.carried += 1;
            }
            let mut cursor = fork_head;
            while cursor < *last_seq {
                let page = get(
                    &mut client,
                    &format!("/lan/v1/fork/messages?conversation_id={conversation}&after={cursor}"),
                )
                .await?;
                let messages: Vec<Message> = serde_json::from_value(page["messages"].clone())?;
                let Some(last) = messages.last() else {
                    break;
                };
                cursor = last.seq;
                for message in messages {
                    if resend(state, message).await? {
                        done.duplicates += 1;
                    } else {
                        done.resent += 1;
                    }
                }
            }
        }
        if page["more"] != true {
            break;
        }
        after = heads.last().map(|(c, _)| *c);
    }
    done.at_ms = crate::time::now_ms();
    Ok(done)
}

async fn get(client: &mut DeviceClient, path: &str) -> anyhow::Result<Value> {
    let (status, body) = client.request(Method::GET, path, None, None).await?;
    if !status.is_success() {
        anyhow::bail!("{path}: {status} {body}");
    }
    Ok(body)
}

/// Appends one of the old host's messages as an ordinary send of its
/// author (module doc). True when this host already had it.
async fn resend(state: &AppState, message: Message) -> anyhow::Result<bool> {
    let sender_key = match message.sender.kind {
        SenderType::System => [0; 16],
        SenderType::Visitor | SenderType::Agent => ulid::Ulid::from_string(&message.sender.id)
            .context("a sender id that is not a ULID")?
            .to_bytes(),
    };
    let client_msg_id = message
        .client_msg_id
        .clone()
        .unwrap_or_else(|| format!("fork-{}", message.id));
    let appended = crate::conversations::send::resend(state, message, sender_key, client_msg_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(appended.duplicate)
}
