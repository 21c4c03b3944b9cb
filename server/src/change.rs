//! An admin change, start to finish: its writes in one transaction taken
//! with the write lock (`BEGIN IMMEDIATE`, so checks read under it hold),
//! its audit row in that same transaction, and — only once committed — its
//! follow-up actions, in the order they were asked for.
//!
//! [`After`] is the whole list of what a change may cause outside SQLite:
//! a new reader of a domain looks here, not through every route, to learn
//! what follows a write. A change that is dropped (an early `?`) rolls back
//! and causes none of them.
//!
//! ```ignore
//! let mut change = Change::begin(&state.db, Some(admin.id)).await?;
//! sqlx::query("UPDATE teams SET name = ? WHERE id = ?")
//!     .bind(&name).bind(id).execute(&mut *change).await?;
//! change.audit("team.update", ("team", &id.to_string()), json!({"name": name})).await?;
//! change.then(After::Drain);
//! change.commit(&state).await?;
//! ```

use std::ops::{Deref, DerefMut};

use serde_json::Value;
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::auth::sessions::Revocation;
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId};
use crate::state::AppState;

/// What a committed change causes outside SQLite.
#[derive(Debug)]
pub enum After {
    /// Tokens were revoked in the transaction: drop them from the auth
    /// cache and close their sockets.
    Revoke(Revocation),
    /// An agent's row changed: the cached principal is reread, and every
    /// agent connection gets the fresh `agent` frame.
    Agent(AgentId),
    /// An app's row changed (keys, origins, settings): the cache rereads it.
    App(AppId),
    /// A conversation changed outside the send path (requeued, team
    /// cleared): the send path forgets it as active, and every agent
    /// connection gets the fresh `conversation` frame.
    Conversation(ConversationId),
    /// Capacity or the queue may have changed: a routing pass drains the
    /// queue.
    Drain,
    /// An app's FAQ changed: the bot's retrieval index of it is rebuilt
    /// on next use.
    Faq(AppId),
    /// An app's intents changed: the intent model is marked for retraining.
    Intents(AppId),
    /// An app's Assist settings changed: the bot reads them from now on
    /// (`any_on`: whether any app still has Assist on).
    AssistSettings {
        app: AppId,
        settings: crate::assist::settings::Settings,
        any_on: bool,
    },
}

/// An admin change in progress (see the module's doc). Derefs to the
/// transaction's connection, so queries run on `&mut *change`.
pub struct Change {
    tx: Transaction<'static, Sqlite>,
    actor: Option<AgentId>,
    after: Vec<After>,
}

impl Change {
    /// Starts a change by `actor` (`None`: the command line), holding the
    /// write lock.
    pub async fn begin(db: &SqlitePool, actor: Option<AgentId>) -> Result<Self, ApiError> {
        Ok(Change {
            tx: crate::store::db::begin_write(db).await?,
            actor,
            after: Vec::new(),
        })
    }

    /// The transaction itself, for helpers that take one.
    pub fn tx(&mut self) -> &mut Transaction<'static, Sqlite> {
        &mut self.tx
    }

    /// Writes the audit row (`action` on `target`; the changed fields in
    /// `details`, never a secret) in the change's transaction.
    pub async fn audit(
        &mut self,
        action: &str,
        target: (&str, &str),
        details: Value,
    ) -> Result<(), ApiError> {
        crate::audit::record(&mut *self.tx, self.actor, action, Some(target), details).await
    }

    /// [`Change::audit`] for an action on no one record (a reordering).
    pub async fn audit_all(&mut self, action: &str, details: Value) -> Result<(), ApiError> {
        crate::audit::record(&mut *self.tx, self.actor, action, None, details).await
    }

    /// Asks for a follow-up once the change is committed.
    pub fn then(&mut self, after: After) -> &mut Self {
        self.after.push(after);
        self
    }

    /// Commits, then runs the follow-ups in order. A follow-up that fails
    /// (a conversation's announce could not read it) is an error for the
    /// caller, but the change stays committed.
    pub async fn commit(self, state: &AppState) -> Result<(), ApiError> {
        let Change { tx, after, .. } = self;
        tx.commit().await?;
        for follow_up in after {
            match follow_up {
                After::Revoke(revocation) => revocation.apply(state),
                After::Agent(id) => {
                    state.auth_cache.agent_changed(id);
                    if let Some(agent) = crate::agents::find(&state.db, id).await? {
                        state
                            .hub
                            .broadcast_agents(&crate::hub::frames::agent(&agent));
                    }
                }
                After::App(id) => state.auth_cache.app_changed(id),
                After::Conversation(id) => {
                    state.conversations.forget_active(id);
                    crate::conversations::announce(state, id).await?;
                }
                After::Drain => crate::routing::drain_logged(state).await,
                After::Faq(app) => state.assist.faq_changed(app),
                After::Intents(app) => state.assist.intents_changed(app),
                After::AssistSettings {
                    app,
                    settings,
                    any_on,
                } => state.assist.settings_changed(app, settings, any_on),
            }
        }
        Ok(())
    }
}

impl Deref for Change {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for Change {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}
