//! How much memory the stores may take: the `memory` setting.
//!
//! `server` (the default) sizes RocksDB and SQLite for a service with many
//! agents and a busy log. `desktop` is for the embedded server of the
//! desktop app, a small shop's always-on companion (docs/DESKTOP.md,
//! "Memory"): a few agents, a few hundred chats a day. Both hold the same
//! data with the same durability; only caches and buffers differ, so a
//! store written under one opens under the other.
//!
//! What the desktop profile changes, and why it costs a shop nothing:
//! - RocksDB's block cache 64 → 8 MiB: a shop's hot messages (the open
//!   chats' last pages) are a few MiB; index and filter blocks are charged
//!   to the cache, so the table readers are bounded by it too.
//! - RocksDB's write buffers 32 → 4 MiB per column family (four of them):
//!   a memtable's arena grows in blocks of an eighth of it; a shop writes
//!   kilobytes a minute, so a small memtable flushes rarely anyway.
//! - RocksDB's background jobs 2 → 1, and its WAL capped at 64 MiB.
//! - SQLite: 4 pooled connections instead of 8, and a page cache of
//!   512 KiB instead of SQLite's 2 MiB default, per connection (the search
//!   indexer's and the conversation starter's included).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryProfile {
    #[default]
    Server,
    Desktop,
}

/// RocksDB sizes of the message log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSizes {
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
    pub background_jobs: i32,
    pub max_total_wal_bytes: u64,
    /// Index and filter blocks live in the block cache (bounded by it)
    /// instead of beside each open table file.
    pub cache_index_and_filter_blocks: bool,
}

/// SQLite sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteSizes {
    pub pool_connections: u32,
    /// `PRAGMA cache_size`, in KiB (SQLite's own default is 2,000).
    pub cache_kib: u32,
}

impl MemoryProfile {
    pub fn log(self) -> LogSizes {
        match self {
            MemoryProfile::Server => LogSizes {
                block_cache_bytes: 64 << 20,
                write_buffer_bytes: 32 << 20,
                background_jobs: 2,
                max_total_wal_bytes: 256 << 20,
                cache_index_and_filter_blocks: false,
            },
            MemoryProfile::Desktop => LogSizes {
                block_cache_bytes: 8 << 20,
                write_buffer_bytes: 4 << 20,
                background_jobs: 1,
                max_total_wal_bytes: 64 << 20,
                cache_index_and_filter_blocks: true,
            },
        }
    }

    pub fn sqlite(self) -> SqliteSizes {
        match self {
            MemoryProfile::Server => SqliteSizes {
                pool_connections: 8,
                cache_kib: 2_000,
            },
            MemoryProfile::Desktop => SqliteSizes {
                pool_connections: 4,
                cache_kib: 512,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desktop_profile_is_smaller_in_every_size() {
        let (server, desktop) = (MemoryProfile::Server, MemoryProfile::Desktop);
        assert!(desktop.log().block_cache_bytes < server.log().block_cache_bytes);
        assert!(desktop.log().write_buffer_bytes < server.log().write_buffer_bytes);
        assert!(desktop.log().background_jobs < server.log().background_jobs);
        assert!(desktop.log().max_total_wal_bytes < server.log().max_total_wal_bytes);
        assert!(desktop.sqlite().pool_connections < server.sqlite().pool_connections);
        assert!(desktop.sqlite().cache_kib < server.sqlite().cache_kib);
        assert_eq!(MemoryProfile::default(), server);
    }
}
