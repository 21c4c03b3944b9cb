-- Attachments and read markers.

-- An uploaded file. The bytes live under the data dir at
-- `attachments/<stored_name>` (128 random bits in hex: never the client's
-- name); `url_key` (another 128 random bits) is the capability in the
-- download URL. Owned by exactly one uploader: a visitor (then bound to the
-- visitor's conversation) or an agent.
CREATE TABLE attachments (
    id                  TEXT PRIMARY KEY,
    stored_name         TEXT NOT NULL UNIQUE,
    url_key             TEXT NOT NULL,
    name                TEXT NOT NULL,     -- sanitized display name
    size                INTEGER NOT NULL,
    mime                TEXT NOT NULL,     -- as served: detected from the bytes, octet-stream unless on the safe list
    kind                TEXT NOT NULL CHECK (kind IN ('image', 'file')),
    uploader_agent_id   TEXT REFERENCES agents(id),
    uploader_visitor_id TEXT REFERENCES visitors(id),
    conversation_id     TEXT REFERENCES conversations(id),
    created_at          INTEGER NOT NULL,
    CHECK ((uploader_agent_id IS NULL) <> (uploader_visitor_id IS NULL))
);
CREATE INDEX attachments_visitor ON attachments(uploader_visitor_id, created_at);

-- How far each reader has read each conversation: forward-only (an update
-- never lowers `seq`). `reader_id` is an agent id, or the visitor id for
-- the visitor's side.
CREATE TABLE read_markers (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    reader_id       TEXT NOT NULL,
    reader_type     TEXT NOT NULL CHECK (reader_type IN ('agent', 'visitor')),
    seq             INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, reader_id)
) WITHOUT ROWID;
CREATE INDEX read_markers_reader ON read_markers(reader_id, conversation_id);
