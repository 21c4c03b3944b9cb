//! Full-text search over messages and tickets (SQLite FTS5, trigram).

use axum::Router;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
