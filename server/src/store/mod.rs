//! Storage: the message log in RocksDB ([`messages`]) and everything
//! relational in SQLite ([`db`]).

pub mod db;
pub mod keys;
pub mod messages;
