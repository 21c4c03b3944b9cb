-- The log seq of the visitor message that started (or last reopened) the
-- conversation: a start replayed from the log's `conv_start` markers at
-- start-up applies only when it is newer than this (conversations::start),
-- so a start that was committed but whose marker survived a crash does not
-- reopen a conversation an agent resolved since.
ALTER TABLE conversations ADD COLUMN start_seq INTEGER;
