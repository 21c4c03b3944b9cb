-- What a visitor meets per app, and the agents' canned replies.

ALTER TABLE apps ADD COLUMN welcome_message TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN offline_message TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN business_hours  TEXT;   -- JSON BusinessHours; NULL = always open
ALTER TABLE apps ADD COLUMN updated_at      INTEGER;

-- Canned replies: shared by the shop (owner_id NULL, managed by admins)
-- or personal to one agent. A shortcut is unique within its scope.
CREATE TABLE canned_replies (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT REFERENCES agents(id),
    shortcut    TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_by  TEXT REFERENCES agents(id),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX canned_replies_shortcut ON canned_replies(COALESCE(owner_id, ''), shortcut COLLATE NOCASE);
