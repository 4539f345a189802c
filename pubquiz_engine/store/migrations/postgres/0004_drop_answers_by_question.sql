-- pubquiz-engine schema v4 (PostgreSQL). Same logical schema as sqlite/0004.
-- The index answers_by_question (session_code, question) served no read: the engine reads a
-- session's answers whole (results, export) or after a seq (a takeover's replay, through
-- answers_by_seq). Each answer row still paid for it with one more b-tree insert in the
-- write-behind's commit: on SQLite 16-19% of the instructions of an answer row's insert
-- (docs/benchmarks.md, "An index no read used"). No table is rebuilt: it applies at once.

DROP INDEX IF EXISTS answers_by_question;
