//! Storage: the message log in RocksDB ([`messages`]) and everything
//! relational in SQLite ([`db`]); at start, SQLite's copies of log facts
//! are brought back to the log ([`reconcile`]).

pub mod db;
pub mod keys;
pub mod memory;
pub mod messages;
pub mod reconcile;
