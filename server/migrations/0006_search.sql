-- Full-text search (see docs/ARCHITECTURE.md, "Search").
--
-- Two kinds of index per corpus:
-- - FTS5 `trigram`: substring search for any term of 3+ characters, in any
--   script, case-insensitive, no word segmenter needed for Chinese.
-- - FTS5 `unicode61` over CJK bigrams ("退款申请" → "退款 款申 申请"),
--   computed in Rust: trigram cannot match a 2-character term such as
--   `退款`, and a LIKE scan for one costs a full table scan.

-- Messages: copied out of the RocksDB log by the indexer task (search.rs),
-- never on the send path. (conversation_id, seq) makes re-indexing
-- idempotent; the highest seq per conversation is the indexer's mark.
CREATE TABLE message_index (
    id              INTEGER PRIMARY KEY,  -- FTS rowid; index order, newest last
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,        -- text | image | file | event | note
    sender_type     TEXT NOT NULL,        -- visitor | agent | system
    sender_id       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    text            TEXT NOT NULL,        -- content, plus the attachment name if any
    UNIQUE (conversation_id, seq)
);
-- Reports count messages per day, sender type and sender from this index alone.
CREATE INDEX message_index_time ON message_index(created_at, sender_type, sender_id, kind);

CREATE VIRTUAL TABLE message_fts USING fts5(
    text, content = 'message_index', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER message_index_ai AFTER INSERT ON message_index BEGIN
    INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER message_index_ad AFTER DELETE ON message_index BEGIN
    INSERT INTO message_fts(message_fts, rowid, text) VALUES ('delete', old.id, old.text);
    DELETE FROM message_bigram WHERE rowid = old.id;
END;

-- Contentless (the bigrams are not worth storing twice); rows follow
-- message_index: inserted with it by the indexer, deleted with it here.
CREATE VIRTUAL TABLE message_bigram USING fts5(
    grams, content = '', contentless_delete = 1, tokenize = 'unicode61'
);

-- One bigram document per ticket (subject, description and comments),
-- rewritten by the indexer for every ticket the triggers queue here.
CREATE TABLE search_pending_tickets (number INTEGER PRIMARY KEY);
CREATE VIRTUAL TABLE ticket_bigram USING fts5(
    grams, content = '', contentless_delete = 1, tokenize = 'unicode61'
);

-- Tickets: one trigram document per ticket — subject, description and
-- its comments joined — kept by triggers on the tickets engineer's tables.
-- A copy, not external content: the comments column exists in no table,
-- and one document per ticket lets a page be one rowid-ordered FTS scan
-- (a separate comments index had to be merged by ticket number).
CREATE VIRTUAL TABLE ticket_fts USING fts5(
    subject, description, comments, tokenize = 'trigram'
);
CREATE TRIGGER tickets_search_ai AFTER INSERT ON tickets BEGIN
    INSERT INTO ticket_fts(rowid, subject, description, comments)
        VALUES (new.number, new.subject, new.description, '');
    INSERT OR IGNORE INTO search_pending_tickets(number) VALUES (new.number);
END;
CREATE TRIGGER tickets_search_ad AFTER DELETE ON tickets BEGIN
    DELETE FROM ticket_fts WHERE rowid = old.number;
    INSERT OR IGNORE INTO search_pending_tickets(number) VALUES (old.number);
END;
CREATE TRIGGER tickets_search_au AFTER UPDATE OF subject, description ON tickets BEGIN
    UPDATE ticket_fts SET subject = new.subject, description = new.description
        WHERE rowid = new.number;
    INSERT OR IGNORE INTO search_pending_tickets(number) VALUES (new.number);
END;

-- Any change to a ticket's comments rewrites its comments column.
CREATE TRIGGER ticket_comments_search_ai AFTER INSERT ON ticket_comments BEGIN
    UPDATE ticket_fts SET comments = COALESCE((SELECT group_concat(body, char(10))
        FROM ticket_comments WHERE ticket_number = new.ticket_number), '')
        WHERE rowid = new.ticket_number;
    INSERT OR IGNORE INTO search_pending_tickets(number) VALUES (new.ticket_number);
END;
CREATE TRIGGER ticket_comments_search_ad AFTER DELETE ON ticket_comments BEGIN
    UPDATE ticket_fts SET comments = COALESCE((SELECT group_concat(body, char(10))
        FROM ticket_comments WHERE ticket_number = old.ticket_number), '')
        WHERE rowid = old.ticket_number;
    INSERT OR IGNORE INTO search_pending_tickets(number) VALUES (old.ticket_number);
END;
CREATE TRIGGER ticket_comments_search_au AFTER UPDATE OF body ON ticket_comments BEGIN
    UPDATE ticket_fts SET comments = COALESCE((SELECT group_concat(body, char(10))
        FROM ticket_comments WHERE ticket_number = new.ticket_number), '')
        WHERE rowid = new.ticket_number;
    INSERT OR IGNORE INTO search_pending_tickets(number) VALUES (new.ticket_number);
END;

-- Tickets that exist already.
INSERT INTO ticket_fts(rowid, subject, description, comments)
    SELECT number, subject, description, COALESCE((SELECT group_concat(body, char(10))
        FROM ticket_comments c WHERE c.ticket_number = t.number), '')
    FROM tickets t;
INSERT INTO search_pending_tickets(number) SELECT number FROM tickets;
