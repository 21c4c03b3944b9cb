-- Routing: teams, ordered routing rules, the queue's order and the
-- round-robin pointer. Policy settings live in `settings` under
-- `routing.policy` and `routing.auto_assign`.

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE team_members (
    team_id   TEXT NOT NULL REFERENCES teams(id),
    agent_id  TEXT NOT NULL REFERENCES agents(id),
    PRIMARY KEY (team_id, agent_id)
);
CREATE INDEX team_members_agent ON team_members(agent_id);

-- Evaluated in `position` order; the first rule whose every given
-- condition matches decides. Exactly one of team_id / agent_id is set.
CREATE TABLE routing_rules (
    id          TEXT PRIMARY KEY,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    app_id      TEXT REFERENCES apps(id),       -- NULL: any app
    keywords    TEXT NOT NULL DEFAULT '[]',     -- JSON array; any one, case-insensitive substring of the first message
    attributes  TEXT NOT NULL DEFAULT '{}',     -- JSON object; every key must equal the visitor's attribute
    team_id     TEXT REFERENCES teams(id),
    agent_id    TEXT REFERENCES agents(id),
    created_at  INTEGER NOT NULL,
    CHECK ((team_id IS NULL) <> (agent_id IS NULL))
);

-- The team a conversation is routed to (NULL: everyone), and since when it
-- waits in the queue (meaningful while status = 'queued'; the queue is
-- FIFO by (queued_at, id)).
ALTER TABLE conversations ADD COLUMN team_id TEXT REFERENCES teams(id);
ALTER TABLE conversations ADD COLUMN queued_at INTEGER;
CREATE INDEX conversations_queue ON conversations(queued_at, id) WHERE status = 'queued';
-- An agent's load (open + pending assigned to them) without scanning their history.
CREATE INDEX conversations_load ON conversations(assignee_id, status);

-- A deactivated agent cannot sign in and is never routed to; kept for history.
ALTER TABLE agents ADD COLUMN deactivated_at INTEGER;

-- Round robin: the free agent whose last automatic assignment is oldest goes next.
ALTER TABLE agents ADD COLUMN last_assigned_at INTEGER;
