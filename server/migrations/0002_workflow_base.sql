-- Shared ground for the shop workflow: the audit log, reporting events and
-- the timestamps of a conversation's current session. Each workflow area
-- (routing, tickets, attachments, search…) adds its own tables in its own
-- migration.

-- A conversation's current session: it opens with the visitor's first
-- message (or the one that reopens it after `resolved`).
ALTER TABLE conversations ADD COLUMN opened_at INTEGER;          -- start of the current session
ALTER TABLE conversations ADD COLUMN first_response_at INTEGER;  -- first agent reply in this session
ALTER TABLE conversations ADD COLUMN resolved_at INTEGER;        -- set when resolved, cleared on reopen

-- Facts reports are computed from, one row each (in the manner of
-- Chatwoot's reporting events): a reopened conversation counts again.
CREATE TABLE reporting_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL CHECK (name IN ('conversation_opened', 'first_response',
                        'conversation_resolved', 'ticket_opened', 'ticket_solved')),
    app_id          TEXT,
    conversation_id TEXT,
    ticket_number   INTEGER,
    agent_id        TEXT,      -- who answered / resolved / solved (NULL if nobody)
    value_ms        INTEGER,   -- first_response / conversation_resolved: time since opened_at
    created_at      INTEGER NOT NULL
);
CREATE INDEX reporting_events_time ON reporting_events(name, created_at);

-- What admins did: agents, apps, routing, settings. Append only.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_id    TEXT,          -- the admin; NULL for the CLI
    action      TEXT NOT NULL, -- dotted verb: agent.create, app.update, routing.update…
    target_type TEXT,
    target_id   TEXT,
    details     TEXT NOT NULL DEFAULT '{}',  -- JSON; never secrets or passwords
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_log_time ON audit_log(created_at DESC, id DESC);
