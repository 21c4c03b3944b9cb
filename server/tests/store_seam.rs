//! One suite for every engine behind the `MessageStore` seam
//! (server/src/store/seam.rs): the embedded RocksDB log and, with the
//! `cluster` feature, PostgreSQL, each real, in a temp dir (a throwaway
//! PostgreSQL from Debian's binaries, started per test on 127.0.0.1).
//!
//! Each test takes two stores over the same data: for PostgreSQL two
//! separate pools, as two nodes would hold; for RocksDB two handles of the
//! one log (one node). Without PostgreSQL's binaries the PostgreSQL half
//! prints SKIPPED, except in CI (`CI=true`), where it fails.

use kefu_server::ids::ConversationId;
use kefu_server::message::{Message, MessageKind, Sender, SenderType};
use kefu_server::store::messages::{Draft, StoredMessage};
use kefu_server::store::seam::{BATCH_MAX, MessageStore, READ_LIMIT_MAX, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};

fn draft(
    conversation: ConversationId,
    sender: u8,
    client_msg_id: Option<&str>,
    text: &str,
) -> Draft {
    draft_kind(conversation, sender, client_msg_id, text, MessageKind::Text)
}

fn draft_kind(
    conversation: ConversationId,
    sender: u8,
    client_msg_id: Option<&str>,
    text: &str,
    kind: MessageKind,
) -> Draft {
    Draft {
        conversation_id: conversation,
        sender: Sender {
            kind: if kind == MessageKind::Note {
                SenderType::Agent
            } else {
                SenderType::Visitor
            },
            id: format!("sender-{sender}"),
            name: format!("Sender {sender}"),
        },
        sender_key: [sender; 16],
        client_msg_id: client_msg_id.map(str::to_owned),
        kind,
        content: text.to_owned(),
        meta: json!({}),
        attachment: None,
        start: false,
    }
}

fn decode(stored: &StoredMessage) -> Message {
    serde_json::from_str(&stored.json).expect("stored JSON is a Message")
}

/// Every message of a conversation, through `page_after` pages.
async fn all_messages<S: MessageStore>(
    store: &S,
    conversation: ConversationId,
) -> Vec<StoredMessage> {
    let mut out: Vec<StoredMessage> = Vec::new();
    loop {
        let after = out.last().map_or(0, |m| m.seq);
        let page = store
            .page_after(conversation, after, 100, true)
            .await
            .expect("page");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The conversation holds exactly seqs 1..=n, each once, and its head says n.
async fn assert_gap_free<S: MessageStore>(store: &S, conversation: ConversationId) -> u64 {
    let messages = all_messages(store, conversation).await;
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "seqs of {conversation} are 1..n");
    for message in &messages {
        assert_eq!(decode(message).seq, message.seq, "the JSON carries the seq");
    }
    let head = store.head(conversation).await.expect("head");
    assert_eq!(
        head.map(|h| h.last_seq),
        (!seqs.is_empty()).then_some(seqs.len() as u64)
    );
    seqs.len() as u64
}

// ---- the suite: each function runs against every engine -------------------

async fn appends_in_order_and_reads_back<S: MessageStore>(a: &S, _b: &S) {
    let conversation = ConversationId::new();
    assert!(a.head(conversation).await.expect("head").is_none());
    assert!(
        a.page_after(conversation, 0, 10, true)
            .await
            .expect("page")
            .is_empty()
    );
    let mut last_at = 0;
    for i in 0..20 {
        let id = format!("c-{i}");
        let appended = a
            .append(
                draft(conversation, 1, Some(&id), &format!("hello {i} 你好")),
                None,
            )
            .await
            .expect("append");
        assert!(!appended.duplicate);
        assert_eq!(appended.message.seq, i + 1);
        assert!(
            appended.message.created_at >= last_at,
            "time never goes back"
        );
        last_at = appended.message.created_at;
        let message = decode(&appended.message);
        assert_eq!(message.client_msg_id.as_deref(), Some(id.as_str()));
        assert_eq!(message.content, format!("hello {i} 你好"));
        assert_eq!(message.conversation_id, conversation);
    }
    let head = a
        .head(conversation)
        .await
        .expect("head")
        .expect("some head");
    assert_eq!(head.last_seq, 20);
    assert_eq!(head.last_at, last_at);
    let page = a.page_after(conversation, 5, 3, true).await.expect("page");
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    assert_eq!(decode(&page[0]).content, "hello 5 你好");
    assert_eq!(assert_gap_free(a, conversation).await, 20);
}

async fn same_client_msg_id_at_once_is_one_row<S: MessageStore>(a: &S, b: &S) {
    let conversation = ConversationId::new();
    let rounds = 40;
    for round in 0..rounds {
        let id = format!("dup-{round}");
        // Four sends of one client_msg_id at the same moment, two through
        // each store (for PostgreSQL: two nodes' pools, four connections).
        let sends = (0..4).map(|i| {
            let store = if i % 2 == 0 { a } else { b };
            store.append(
                draft(conversation, 7, Some(&id), &format!("round {round}")),
                None,
            )
        });
        let answers: Vec<_> = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .map(|answer| answer.expect("append"))
            .collect();
        let originals = answers.iter().filter(|a| !a.duplicate).count();
        assert_eq!(originals, 1, "exactly one send of {id} wrote a row");
        let first = decode(&answers[0].message);
        for answer in &answers {
            let message = decode(&answer.message);
            assert_eq!(message.id, first.id, "every send of {id} gets the original");
            assert_eq!(answer.message.seq, round + 1);
        }
    }
    // No seq was spent on a duplicate.
    assert_eq!(assert_gap_free(a, conversation).await, rounds);
    assert_eq!(assert_gap_free(b, conversation).await, rounds);
}

async fn concurrent_sends_across_conversations_are_gap_free<S: MessageStore>(a: &S, b: &S) {
    let conversations: Vec<ConversationId> = (0..6).map(|_| ConversationId::new()).collect();
    let tasks = 12;
    let per_task = 30;
    let sends = (0..tasks).map(|task| {
        let store = if task % 2 == 0 { a } else { b };
        let conversations = &conversations;
        async move {
            for i in 0..per_task {
                let conversation = conversations[(task * 7 + i * 3) % conversations.len()];
                let id = format!("t{task}-{i}");
                let appended = store
                    .append(draft(conversation, task as u8, Some(&id), &id), None)
                    .await
                    .expect("append");
                assert!(!appended.duplicate);
            }
        }
    });
    futures_util::future::join_all(sends).await;
    let mut total = 0;
    let mut contents = HashSet::new();
    for conversation in &conversations {
        total += assert_gap_free(a, *conversation).await;
        for message in all_messages(b, *conversation).await {
            assert!(
                contents.insert(decode(&message).content),
                "each send stored once"
            );
        }
    }
    assert_eq!(total, (tasks * per_task) as u64);
    assert_eq!(contents.len(), tasks * per_task);
}

async fn dedup_scope_is_sender_and_conversation<S: MessageStore>(a: &S, b: &S) {
    let one = ConversationId::new();
    let two = ConversationId::new();
    let first = a
        .append(draft(one, 1, Some("x"), "a"), None)
        .await
        .expect("append");
    let other_sender = b
        .append(draft(one, 2, Some("x"), "b"), None)
        .await
        .expect("append");
    let other_conversation = b
        .append(draft(two, 1, Some("x"), "c"), None)
        .await
        .expect("append");
    let again = b
        .append(draft(one, 1, Some("x"), "changed"), None)
        .await
        .expect("append");
    assert!(!first.duplicate && !other_sender.duplicate && !other_conversation.duplicate);
    assert_eq!((first.message.seq, other_sender.message.seq), (1, 2));
    assert_eq!(other_conversation.message.seq, 1);
    assert!(again.duplicate);
    assert_eq!(
        decode(&again.message).content,
        "a",
        "the original, not the resend"
    );
    assert_eq!(decode(&again.message).id, decode(&first.message).id);
    // Without a client_msg_id nothing is deduplicated (system messages).
    let system = a
        .append(draft(one, 0, None, "s"), None)
        .await
        .expect("append");
    let system2 = a
        .append(draft(one, 0, None, "s"), None)
        .await
        .expect("append");
    assert!(!system.duplicate && !system2.duplicate);
    assert_eq!(assert_gap_free(a, one).await, 4);
    assert_eq!(assert_gap_free(a, two).await, 1);
}

async fn notes_are_skipped_without_shortening_the_page<S: MessageStore>(a: &S, _b: &S) {
    let conversation = ConversationId::new();
    for i in 0..10 {
        let kind = if i % 2 == 0 {
            MessageKind::Note
        } else {
            MessageKind::Text
        };
        let appended = a
            .append(
                draft_kind(conversation, 3, Some(&format!("n{i}")), "x", kind),
                None,
            )
            .await
            .expect("append");
        assert_eq!(appended.message.note, kind == MessageKind::Note);
    }
    let visible = a.page_after(conversation, 0, 3, false).await.expect("page");
    assert_eq!(
        visible.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 4, 6]
    );
    assert!(visible.iter().all(|m| !m.note));
    let all = a.page_after(conversation, 0, 3, true).await.expect("page");
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(all[0].note);
}

async fn batches_keep_order_dedup_and_never_deadlock<S: MessageStore>(a: &S, b: &S) {
    let conversations: Vec<ConversationId> = (0..4).map(|_| ConversationId::new()).collect();
    // One batch: two conversations, a duplicate inside it.
    let answers = a
        .append_batch(vec![
            draft(conversations[0], 1, Some("m1"), "one"),
            draft(conversations[1], 1, Some("m1"), "two"),
            draft(conversations[0], 1, Some("m2"), "three"),
            draft(conversations[0], 1, Some("m1"), "one again"),
        ])
        .await
        .expect("batch");
    let seqs: Vec<(u64, bool)> = answers
        .iter()
        .map(|a| (a.message.seq, a.duplicate))
        .collect();
    assert_eq!(seqs, vec![(1, false), (1, false), (2, false), (1, true)]);
    assert_eq!(decode(&answers[3].message).content, "one");
    assert!(
        a.append_batch(Vec::new())
            .await
            .expect("empty batch")
            .is_empty()
    );
    // Many batches at once over the same conversations in opposite orders.
    let batches = (0..16).map(|batch| {
        let store = if batch % 2 == 0 { a } else { b };
        let mut order = conversations.clone();
        if batch % 2 == 1 {
            order.reverse();
        }
        let drafts: Vec<Draft> = order
            .iter()
            .enumerate()
            .map(|(i, c)| draft(*c, 9, Some(&format!("b{batch}-{i}")), "batch"))
            .collect();
        store.append_batch(drafts)
    });
    for answer in futures_util::future::join_all(batches).await {
        let answer = answer.expect("batch");
        assert_eq!(answer.len(), conversations.len());
        assert!(answer.iter().all(|a| !a.duplicate));
    }
    let mut total = 0;
    for conversation in &conversations {
        total += assert_gap_free(a, *conversation).await;
    }
    assert_eq!(total, 3 + 16 * 4);
}

async fn a_batch_over_the_limit_is_refused_and_writes_nothing<S: MessageStore>(a: &S, _b: &S) {
    let conversation = ConversationId::new();
    let drafts: Vec<Draft> = (0..=BATCH_MAX)
        .map(|i| draft(conversation, 1, Some(&format!("o{i}")), "x"))
        .collect();
    match a.append_batch(drafts).await {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(a.head(conversation).await.expect("head").is_none());
    assert!(
        a.page_after(conversation, 0, 10, true)
            .await
            .expect("page")
            .is_empty()
    );
}

async fn reads_are_bounded_and_heads_page_in_id_order<S: MessageStore>(a: &S, b: &S) {
    // READ_LIMIT_MAX + 24 messages in one conversation and as many
    // conversations, written in full batches.
    let big = ConversationId::new();
    let count = READ_LIMIT_MAX + 24;
    let mut written: BTreeMap<ConversationId, u64> = BTreeMap::new();
    let mut i = 0;
    while i < count {
        let n = BATCH_MAX.min(count - i);
        let mut drafts = Vec::with_capacity(2 * n);
        for j in i..i + n {
            drafts.push(draft(big, 1, Some(&format!("r{j}")), "x"));
        }
        a.append_batch(drafts).await.expect("batch");
        let mut drafts = Vec::with_capacity(n);
        for _ in 0..n {
            let conversation = ConversationId::new();
            written.insert(conversation, 1);
            drafts.push(draft(conversation, 1, Some("h"), "x"));
        }
        b.append_batch(drafts).await.expect("batch");
        i += n;
    }
    written.insert(big, count as u64);
    let page = a.page_after(big, 0, usize::MAX, true).await.expect("page");
    assert_eq!(page.len(), READ_LIMIT_MAX, "a page is capped");
    assert_eq!(page.last().map(|m| m.seq), Some(READ_LIMIT_MAX as u64));
    let first = a.heads(None, usize::MAX).await.expect("heads");
    assert_eq!(first.len(), READ_LIMIT_MAX, "a list of heads is capped");
    // Paging through every head: in id order, each once, all of them
    // (other tests' conversations are not in this store).
    let mut seen: Vec<(ConversationId, u64)> = Vec::new();
    let mut after = None;
    loop {
        let page = b.heads(after, 300).await.expect("heads");
        assert!(page.len() <= 300);
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        seen.extend(page.iter().map(|(c, h)| (*c, h.last_seq)));
    }
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "heads in id order"
    );
    assert_eq!(seen, written.into_iter().collect::<Vec<_>>());
}

// ---- engines ------------------------------------------------------------------

/// The suite's functions, each a test per engine.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod rocksdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let engine = super::rocks::Engine::open();
                    super::$name(&engine.a, &engine.b).await;
                    engine.close().await;
                }
            )*
        }
        #[cfg(feature = "cluster")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(engine) = super::pg::Engine::start().await else { return };
                    super::$name(&engine.a, &engine.b).await;
                    engine.close().await;
                }
            )*
        }
    };
}

suite!(
    appends_in_order_and_reads_back,
    same_client_msg_id_at_once_is_one_row,
    concurrent_sends_across_conversations_are_gap_free,
    dedup_scope_is_sender_and_conversation,
    notes_are_skipped_without_shortening_the_page,
    batches_keep_order_dedup_and_never_deadlock,
    a_batch_over_the_limit_is_refused_and_writes_nothing,
    reads_are_bounded_and_heads_page_in_id_order,
);

mod rocks {
    use std::sync::Arc;

    use kefu_server::config::Durability;
    use kefu_server::store::messages::{LogMetrics, MessageLog};
    use kefu_server::store::seam_rocks::RocksStore;

    struct NoMetrics;
    impl LogMetrics for NoMetrics {
        fn batch_written(&self, _: usize, _: usize, _: f64) {}
    }

    pub struct Engine {
        pub a: RocksStore,
        pub b: RocksStore,
        _dir: tempfile::TempDir,
    }

    impl Engine {
        pub fn open() -> Engine {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = MessageLog::open(
                &dir.path().join("log"),
                Durability::Os,
                1024,
                256,
                Arc::new(NoMetrics),
                Box::new(|_| {}),
            )
            .expect("open log");
            let a = RocksStore::new(Arc::new(log));
            let b = a.clone();
            Engine { a, b, _dir: dir }
        }

        pub async fn close(self) {
            self.a.log().close().await;
        }
    }
}

#[cfg(feature = "cluster")]
mod pg {
    use kefu_server::cluster::postgres::{PgMessageStore, PgStoreOptions};
    use kefu_server::cluster::throwaway::ThrowawayPostgres;

    pub struct Engine {
        pub a: PgMessageStore,
        pub b: PgMessageStore,
        _server: ThrowawayPostgres,
    }

    impl Engine {
        /// A throwaway server, migrated, and two pools on it (two nodes).
        /// `None` (SKIPPED) only outside CI when PostgreSQL is not installed.
        pub async fn start() -> Option<Engine> {
            let server = tokio::task::spawn_blocking(|| ThrowawayPostgres::start(false))
                .await
                .expect("start task")
                .expect("start a throwaway PostgreSQL");
            let Some(server) = server else {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "PostgreSQL binaries are missing in CI (scripts/deps.sh kefu_ensure_postgres)"
                );
                eprintln!(
                    "SKIPPED: no PostgreSQL binaries (initdb, postgres); apt-get install postgresql"
                );
                return None;
            };
            let options = PgStoreOptions {
                max_connections: 8,
                ..PgStoreOptions::default()
            };
            let a = PgMessageStore::connect(server.url(), options).expect("pool a");
            a.migrate().await.expect("migrate");
            // Migrating again (another node starting) changes nothing.
            let b = PgMessageStore::connect(server.url(), options).expect("pool b");
            b.migrate().await.expect("migrate again");
            Some(Engine {
                a,
                b,
                _server: server,
            })
        }

        pub async fn close(self) {
            self.a.close().await;
            self.b.close().await;
        }
    }
}
