-- Kefu's relational store. Times are Unix milliseconds; ids are ULID text.
-- The message log (RocksDB) is the truth for messages: conversations'
-- last_seq / last_message_at / activity_at are derived from it and rebuilt at start.

CREATE TABLE apps (
    id                    TEXT PRIMARY KEY,
    app_key               TEXT NOT NULL UNIQUE,
    secret                TEXT NOT NULL,
    name                  TEXT NOT NULL,
    identity_verification TEXT NOT NULL CHECK (identity_verification IN ('off', 'required')),
    allowed_origins       TEXT NOT NULL DEFAULT '[]',  -- JSON array of origins
    created_at            INTEGER NOT NULL
);

CREATE TABLE agents (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash  TEXT NOT NULL,                       -- argon2id PHC string
    display_name   TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    status         TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'away', 'offline')),
    max_concurrent INTEGER NOT NULL DEFAULT 10,
    created_at     INTEGER NOT NULL
);

CREATE TABLE visitors (
    id           TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL REFERENCES apps(id),
    user_key     BLOB UNIQUE,          -- SHA-256(app_id ":" user_id); the raw user id is never stored
    name         TEXT,
    email        TEXT,
    attributes   TEXT NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);

-- Bearer tokens of agents and visitors, stored as SHA-256 of the token.
CREATE TABLE tokens (
    token_hash   BLOB PRIMARY KEY,
    agent_id     TEXT REFERENCES agents(id),
    visitor_id   TEXT REFERENCES visitors(id),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    CHECK ((agent_id IS NULL) <> (visitor_id IS NULL))
);
CREATE INDEX tokens_agent ON tokens(agent_id);
CREATE INDEX tokens_visitor ON tokens(visitor_id);

CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps(id),
    visitor_id      TEXT NOT NULL UNIQUE REFERENCES visitors(id),  -- one conversation per visitor (a visitor belongs to one app)
    status          TEXT NOT NULL CHECK (status IN ('queued', 'open', 'pending', 'resolved')),
    assignee_id     TEXT REFERENCES agents(id),
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_message_at INTEGER,
    activity_at     INTEGER NOT NULL,  -- sort key: last_message_at, or created_at before any message
    started_at      INTEGER,           -- the visitor's first message; NULL = not a chat yet (hidden from lists)
    created_at      INTEGER NOT NULL
);
CREATE INDEX conversations_activity ON conversations(activity_at DESC, id DESC) WHERE started_at IS NOT NULL;
CREATE INDEX conversations_status ON conversations(status, activity_at DESC, id DESC);
CREATE INDEX conversations_assignee ON conversations(assignee_id, activity_at DESC, id DESC);

CREATE TABLE tickets (
    number               INTEGER PRIMARY KEY AUTOINCREMENT,
    subject              TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL CHECK (status IN ('open', 'pending', 'solved', 'closed')),
    priority             TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    assignee_id          TEXT REFERENCES agents(id),
    conversation_id      TEXT REFERENCES conversations(id),
    requester_visitor_id TEXT REFERENCES visitors(id),
    requester_email      TEXT,
    tags                 TEXT NOT NULL DEFAULT '[]',
    created_by           TEXT REFERENCES agents(id),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX tickets_status ON tickets(status, number DESC);
CREATE INDEX tickets_assignee ON tickets(assignee_id, number DESC);
CREATE INDEX tickets_priority ON tickets(priority, number DESC);

CREATE TABLE ticket_comments (
    id            TEXT PRIMARY KEY,
    ticket_number INTEGER NOT NULL REFERENCES tickets(number),
    author_id     TEXT NOT NULL REFERENCES agents(id),
    body          TEXT NOT NULL,
    public        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX ticket_comments_ticket ON ticket_comments(ticket_number, created_at);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
