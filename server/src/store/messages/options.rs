//! The message log's RocksDB options: the database's and its column
//! families', sized by a memory profile (`crate::store::memory`). Shared
//! with the bench's storage baseline, so that it measures what the log runs on.

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options};

use super::super::keys::{CF_DEDUP, CF_HEAD, CF_MSG, CF_START};
use super::super::memory::{LogSizes, MemoryProfile};

/// RocksDB options shared by the log and by the storage baseline of the
/// bench, so that the baseline measures exactly what the log runs on.
pub fn db_options() -> Options {
    db_options_sized(MemoryProfile::Server.log())
}

/// [`db_options`] for a memory profile (crate::store::memory).
pub fn db_options_sized(sizes: LogSizes) -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.increase_parallelism(sizes.background_jobs);
    options.set_max_background_jobs(sizes.background_jobs);
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_keep_log_file_num(4);
    options.set_max_total_wal_size(sizes.max_total_wal_bytes);
    options
}

/// The log's column families with their options (one block cache for
/// all), shared with the bench's storage baseline like [`db_options`].
pub fn column_families() -> Vec<ColumnFamilyDescriptor> {
    column_families_sized(MemoryProfile::Server.log())
}

/// [`column_families`] for a memory profile (crate::store::memory).
pub fn column_families_sized(sizes: LogSizes) -> Vec<ColumnFamilyDescriptor> {
    let cache = Cache::new_lru_cache(sizes.block_cache_bytes);
    vec![
        ColumnFamilyDescriptor::new(CF_MSG, cf_options(&cache, false, sizes)),
        ColumnFamilyDescriptor::new(CF_DEDUP, cf_options(&cache, true, sizes)),
        ColumnFamilyDescriptor::new(CF_HEAD, cf_options(&cache, true, sizes)),
        ColumnFamilyDescriptor::new(CF_START, cf_options(&cache, false, sizes)),
    ]
}

fn cf_options(cache: &Cache, bloom: bool, sizes: LogSizes) -> Options {
    let mut block = BlockBasedOptions::default();
    block.set_block_cache(cache);
    if sizes.cache_index_and_filter_blocks {
        block.set_cache_index_and_filter_blocks(true);
        block.set_pin_l0_filter_and_index_blocks_in_cache(true);
    }
    if bloom {
        block.set_bloom_filter(10.0, false);
    }
    let mut options = Options::default();
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_block_based_table_factory(&block);
    options.set_write_buffer_size(sizes.write_buffer_bytes);
    if bloom {
        // Point reads also get a bloom filter in the memtable: every new
        // message looks its dedup key up, and without one the miss is a
        // skip-list search (≈ 17 % of the writer thread's CPU). 2 % of the
        // 32 MiB buffer is 640 KiB, ~13 bits per key when the memtable is full.
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.02);
    }
    options
}
