-- pubquiz-engine schema v3 (SQLite). Same logical schema as postgres/0003.
-- 1. An answer's natural key gains its seq: a client that restarted its request-id counter (a
--    reconnect, a reload) may reuse a rid for a new answer, which the engine applies as the new
--    answer it is (issue 16.1), and keyed by (participant, rid) alone its row would have been
--    skipped by ON CONFLICT DO NOTHING. A retried write of one record keeps its seq, so writes
--    stay idempotent. Every accepted answer has its own seq.
-- 2. A session status 'interrupted': the engine stopped (without Redis, nothing carries it on)
--    while the session was live. ended_at says when.
-- SQLite cannot change a primary key or a CHECK in place: both tables are rebuilt.

CREATE TABLE answers_v3 (
    session_code    TEXT NOT NULL,
    participant_id  INTEGER NOT NULL,
    request_id      INTEGER NOT NULL,
    question        INTEGER NOT NULL,
    value           TEXT NOT NULL,            -- JSON
    team            TEXT,
    submitted_at    REAL NOT NULL,
    seq             INTEGER NOT NULL,         -- session event seq at acceptance (replay order)
    epoch           INTEGER NOT NULL,
    PRIMARY KEY (session_code, participant_id, request_id, seq)
);
INSERT INTO answers_v3 SELECT session_code, participant_id, request_id, question, value, team,
    submitted_at, seq, epoch FROM answers;
DROP TABLE answers;
ALTER TABLE answers_v3 RENAME TO answers;
CREATE INDEX answers_by_seq ON answers (session_code, seq);
CREATE INDEX answers_by_question ON answers (session_code, question);

CREATE TABLE quiz_sessions_v3 (
    code             TEXT PRIMARY KEY,
    quiz_id          TEXT NOT NULL,
    title            TEXT NOT NULL,
    mode             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'live'
                     CHECK (status IN ('live', 'finished', 'interrupted')),
    created_at       REAL NOT NULL,
    ended_at         REAL,
    epoch            INTEGER NOT NULL DEFAULT 0,  -- fencing epoch: only ever rises
    host_token_hash  TEXT NOT NULL,               -- never the token itself
    owner_node       TEXT
);
INSERT INTO quiz_sessions_v3 SELECT code, quiz_id, title, mode, status, created_at, ended_at,
    epoch, host_token_hash, owner_node FROM quiz_sessions;
DROP TABLE quiz_sessions;
ALTER TABLE quiz_sessions_v3 RENAME TO quiz_sessions;
CREATE INDEX quiz_sessions_by_status ON quiz_sessions (status, created_at);
