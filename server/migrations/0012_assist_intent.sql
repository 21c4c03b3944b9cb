-- Kefu Assist, intents, language and urgency (server/src/assist/intent*,
-- insight.rs; docs/ASSIST.md): the intents an admin defines per app, the
-- model trained from them and from the shop's history, a routing rule's
-- intent condition, and what Assist read in each conversation.

-- An intent of one app: its name (what a routing rule names), examples
-- (a JSON array of strings), and where history finds more examples: the
-- team that resolves such chats, the ticket tags that mean it.
CREATE TABLE assist_intents (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps(id),
    name        TEXT NOT NULL,
    examples    TEXT NOT NULL DEFAULT '[]',
    team_id     TEXT REFERENCES teams(id) ON DELETE SET NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (app_id, name)
);

-- The app's trained model (assist::intent::Model::to_bytes), written by
-- the background trainer; no row: not trained yet.
CREATE TABLE assist_intent_models (
    app_id      TEXT PRIMARY KEY REFERENCES apps(id),
    model       BLOB NOT NULL,
    -- JSON: {"examples": n, "from_history": n, "per_intent": {name: n}, "ready": bool}
    summary     TEXT NOT NULL,
    trained_at  INTEGER NOT NULL
);

-- A routing rule may also require a predicted intent at a confidence.
ALTER TABLE routing_rules ADD COLUMN intent TEXT;
ALTER TABLE routing_rules ADD COLUMN intent_confidence REAL;

-- What Assist read in the conversation (JSON: intent, confidence,
-- language, urgency reasons), and its priority: 1 = urgent, served first
-- from the queue.
ALTER TABLE conversations ADD COLUMN assist_insight TEXT;
ALTER TABLE conversations ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX conversations_queue_priority ON conversations(priority DESC, queued_at, id)
    WHERE status = 'queued';
