//! The storage baseline: a raw RocksDB put loop with the log's own options
//! and column families (`kefu_server::store::messages`), no server. Each
//! message is what the log writes for it — the message (~300 bytes of
//! JSON) under conversation ++ seq, its dedup key and the conversation's
//! head — in write batches of the log's `writer_batch_max` (512), synced
//! per batch with `fsync`. This is the ceiling of persisted messages per
//! second on this disk, whatever the server around it does.

use std::time::{Duration, Instant};

use kefu_server::store::keys::{CF_DEDUP, CF_HEAD, CF_MSG};
use kefu_server::store::messages::{column_families, db_options};
use rocksdb::{DB, WriteBatch, WriteOptions};
use serde_json::{Value, json};

pub fn run(seconds: u64, batch: usize) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for durability in ["os", "fsync"] {
        let dir = tempfile::tempdir()?;
        let db = DB::open_cf_descriptors(&db_options(), dir.path(), column_families())?;
        let (msg, dedup, head) = (
            db.cf_handle(CF_MSG).ok_or_else(|| anyhow::anyhow!("cf"))?,
            db.cf_handle(CF_DEDUP)
                .ok_or_else(|| anyhow::anyhow!("cf"))?,
            db.cf_handle(CF_HEAD).ok_or_else(|| anyhow::anyhow!("cf"))?,
        );
        let mut options = WriteOptions::default();
        options.set_sync(durability == "fsync");
        let value = json!({"id": "01JDQ0000000000000000000000", "conversation_id": "01JDQ0000000000000000000001",
            "seq": 1, "client_msg_id": "b1", "kind": "text",
            "sender": {"type": "visitor", "id": "01JDQ0000000000000000000002", "name": ""},
            "content": "benchmark message", "meta": {}, "attachment": null, "created_at": 1_764_000_000_000i64})
        .to_string();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut written = 0u64;
        while Instant::now() < deadline {
            let mut write = WriteBatch::default();
            for _ in 0..batch {
                // 1,000 conversations in turn, seq counting up in each.
                let conversation = (written % 1_000).to_be_bytes();
                let seq = (written / 1_000 + 1).to_be_bytes();
                let mut key = [0u8; 24];
                key[8..16].copy_from_slice(&conversation);
                key[16..].copy_from_slice(&seq);
                write.put_cf(&msg, key, value.as_bytes());
                write.put_cf(&dedup, written.to_be_bytes(), seq);
                write.put_cf(&head, conversation, seq);
                written += 1;
            }
            db.write_opt(write, &options)?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        rows.push(json!({
            "system": "RocksDB",
            "case": format!("batches of {batch}"),
            "durability": durability,
            "messages": written,
            "messages_per_second": (written as f64 / elapsed).round(),
        }));
    }
    Ok(rows)
}
