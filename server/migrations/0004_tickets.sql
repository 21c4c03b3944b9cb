-- Tickets, complete: where a ticket came from, its chat transcript, its
-- tags as rows (so a tag filter is an index seek, not a JSON scan), the
-- history of every change, idempotent comments and their delivery, and the
-- indexes every list filter needs at a million tickets.
-- Existing columns of `tickets` and `ticket_comments` keep their names
-- (the search index is built over subject, description and body).

-- How the ticket was made: `agent` (by hand), `chat` (by an agent from a
-- conversation), `form` (a visitor's offline form).
ALTER TABLE tickets ADD COLUMN via TEXT NOT NULL DEFAULT 'agent'
    CHECK (via IN ('agent', 'chat', 'form'));
UPDATE tickets SET via = 'chat' WHERE conversation_id IS NOT NULL;
-- The linked conversation's last seq when the ticket was made: the attached
-- transcript is that conversation's messages 1..=transcript_seq (the log is
-- append-only, so a seq range is a snapshot).
ALTER TABLE tickets ADD COLUMN transcript_seq INTEGER;
-- Offline form: the seq of the visitor message the ticket was made from.
-- Unique per conversation, so a retried form post finds its ticket.
ALTER TABLE tickets ADD COLUMN source_seq INTEGER;
CREATE UNIQUE INDEX tickets_source ON tickets(conversation_id, source_seq)
    WHERE source_seq IS NOT NULL;

-- One row per (tag, ticket); `tickets.tags` keeps the JSON list for reading.
CREATE TABLE ticket_tags (
    tag    TEXT NOT NULL,
    number INTEGER NOT NULL REFERENCES tickets(number),
    PRIMARY KEY (tag, number DESC)
) WITHOUT ROWID;
CREATE INDEX ticket_tags_number ON ticket_tags(number);
INSERT OR IGNORE INTO ticket_tags (tag, number)
    SELECT j.value, t.number FROM tickets t, json_each(t.tags) j
    WHERE json_valid(t.tags) AND j.type = 'text';

-- Every change: who (`actor_type` agent|visitor|system, `actor_id`), when,
-- what (`kind`) and the JSON values before and after. Append only.
CREATE TABLE ticket_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_number INTEGER NOT NULL REFERENCES tickets(number),
    actor_type    TEXT NOT NULL CHECK (actor_type IN ('agent', 'visitor', 'system')),
    actor_id      TEXT,
    kind          TEXT NOT NULL CHECK (kind IN ('created', 'subject', 'description', 'status',
                      'priority', 'assignee', 'tags', 'comment')),
    from_value    TEXT,   -- JSON, NULL when there was nothing before
    to_value      TEXT,   -- JSON
    created_at    INTEGER NOT NULL
);
CREATE INDEX ticket_events_ticket ON ticket_events(ticket_number, id);
-- Tickets made before this migration start their history with `created`.
INSERT INTO ticket_events (ticket_number, actor_type, actor_id, kind, from_value, to_value, created_at)
    SELECT number, CASE WHEN created_by IS NULL THEN 'system' ELSE 'agent' END, created_by,
           'created', NULL,
           json_object('subject', subject, 'status', status, 'priority', priority,
                       'assignee_id', assignee_id,
                       'tags', CASE WHEN json_valid(tags) THEN json(tags) ELSE json('[]') END,
                       'via', via),
           created_at
    FROM tickets ORDER BY number;

-- A comment's optional client id (a retried post returns the original) and,
-- for a public reply delivered into the linked conversation, its seq there.
ALTER TABLE ticket_comments ADD COLUMN client_msg_id TEXT;
ALTER TABLE ticket_comments ADD COLUMN message_seq INTEGER;
CREATE UNIQUE INDEX ticket_comments_client ON ticket_comments(ticket_number, author_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

-- List filters: each equality filter (and the common pairs) has an index
-- ending in the sort key, so a page is an index range read whatever the
-- store's size. Sort by number (= creation) …
CREATE INDEX tickets_status_priority ON tickets(status, priority, number DESC);
CREATE INDEX tickets_assignee_status ON tickets(assignee_id, status, number DESC);
CREATE INDEX tickets_assignee_priority ON tickets(assignee_id, priority, number DESC);
CREATE INDEX tickets_requester_visitor ON tickets(requester_visitor_id, number DESC)
    WHERE requester_visitor_id IS NOT NULL;
CREATE INDEX tickets_requester_email ON tickets(requester_email COLLATE NOCASE, number DESC)
    WHERE requester_email IS NOT NULL;
CREATE INDEX tickets_conversation ON tickets(conversation_id, number DESC)
    WHERE conversation_id IS NOT NULL;
-- … or by last update.
CREATE INDEX tickets_updated ON tickets(updated_at DESC, number DESC);
CREATE INDEX tickets_status_updated ON tickets(status, updated_at DESC, number DESC);
CREATE INDEX tickets_priority_updated ON tickets(priority, updated_at DESC, number DESC);
CREATE INDEX tickets_assignee_updated ON tickets(assignee_id, updated_at DESC, number DESC);
CREATE INDEX tickets_assignee_status_updated ON tickets(assignee_id, status, updated_at DESC, number DESC);
