-- Kefu Assist (server/src/assist, docs/ASSIST.md): the FAQ knowledge base
-- and per-app bot settings, the bot's hold on a conversation, and the
-- visitors' ratings of its answers.

-- One answer per entry, asked in several ways. `questions` and `tags` are
-- JSON arrays of strings (validated by the routes: 1-20 questions, 0-10
-- tags).
CREATE TABLE faq_entries (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps(id),
    questions   TEXT NOT NULL,
    answer      TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX faq_entries_app ON faq_entries(app_id, id);

-- Per app; no row = mode 'off' with the default thresholds.
CREATE TABLE assist_settings (
    app_id            TEXT PRIMARY KEY REFERENCES apps(id),
    mode              TEXT NOT NULL DEFAULT 'off'
                      CHECK (mode IN ('off', 'when_unavailable', 'always')),
    answer_threshold  REAL NOT NULL,
    margin            REAL NOT NULL,
    suggest_threshold REAL NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- The bot's part in the current session: NULL (none), 'bot' (it holds the
-- chat: status 'pending', out of the queue) or 'handed_off'.
ALTER TABLE conversations ADD COLUMN assist_state TEXT;
CREATE INDEX conversations_assist ON conversations(assist_state) WHERE assist_state = 'bot';

-- A visitor's 👍/👎 on one bot answer (the message's seq).
CREATE TABLE assist_ratings (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    entry_id        TEXT,
    rating          TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
