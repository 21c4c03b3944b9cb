//! Storage: the message log in RocksDB ([`messages`]) and everything
//! relational in SQLite ([`db`]); at start, SQLite's copies of log facts
//! are brought back to the log ([`reconcile`]). [`seam`] is what the
//! service needs from a message store, whichever engine holds it: the
//! RocksDB log ([`seam_rocks`]) or PostgreSQL (`cluster`, feature `cluster`).

pub mod db;
pub mod keys;
pub mod memory;
pub mod messages;
pub mod reconcile;
pub mod seam;
pub mod seam_rocks;
