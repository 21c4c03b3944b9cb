//! Routing and presence: policies, queue, rules, teams, transfer.

use axum::Router;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
