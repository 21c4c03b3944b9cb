-- The message log in PostgreSQL (cluster mode, docs/CLUSTER.md): the same
-- facts as the embedded RocksDB log (server/src/store/keys.rs), as tables.
-- Its own migration directory: the embedded SQLite ones (server/migrations)
-- are another dialect.

-- One row per conversation: its counter. A send locks this row (SELECT ...
-- FOR UPDATE) for its transaction, so seqs are handed out one at a time
-- per conversation and never skip (conv_head in RocksDB).
CREATE TABLE message_heads (
    conversation_id BYTEA PRIMARY KEY CHECK (octet_length(conversation_id) = 16),
    last_seq BIGINT NOT NULL CHECK (last_seq >= 0),
    last_at BIGINT NOT NULL
);

-- One row per message (msg in RocksDB). `body` is the protocol's Message
-- object as JSON text, written once and served as is (TEXT, not JSONB:
-- JSONB would reorder keys and cost a reparse per read).
CREATE TABLE messages (
    conversation_id BYTEA NOT NULL,
    seq BIGINT NOT NULL CHECK (seq >= 1),
    id BYTEA NOT NULL UNIQUE CHECK (octet_length(id) = 16),
    -- The sender's 16-byte id, the dedup scope (all zeros for the system).
    sender_key BYTEA NOT NULL CHECK (octet_length(sender_key) = 16),
    client_msg_id TEXT,
    note BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    -- The dedup (msg_dedup in RocksDB): a send is INSERT ... ON CONFLICT
    -- ON CONSTRAINT messages_dedup DO NOTHING. NULLs are distinct: a
    -- message without a client_msg_id (the system's) never conflicts.
    CONSTRAINT messages_dedup UNIQUE (conversation_id, sender_key, client_msg_id)
);
