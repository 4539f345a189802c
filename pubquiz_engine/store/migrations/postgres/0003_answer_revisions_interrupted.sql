-- pubquiz-engine schema v3 (PostgreSQL). Same logical schema as sqlite/0003.
-- 1. An answer's natural key gains its seq: a client that restarted its request-id counter (a
--    reconnect, a reload) may reuse a rid for a new answer, which the engine applies as the new
--    answer it is (issue 16.1), and keyed by (participant, rid) alone its row would have been
--    skipped by ON CONFLICT DO NOTHING. A retried write of one record keeps its seq, so writes
--    stay idempotent. Every accepted answer has its own seq.
-- 2. A session status 'interrupted': the engine stopped (without Redis, nothing carries it on)
--    while the session was live. ended_at says when.
-- Both tables are rebuilt, as on SQLite (which cannot change a key or a CHECK in place), so
-- that the two backends' migrations stay statement for statement alike.

CREATE TABLE answers_v3 (
    session_code    text NOT NULL,
    participant_id  bigint NOT NULL,
    request_id      bigint NOT NULL,
    question        integer NOT NULL,
    value           jsonb NOT NULL,
    team            text,
    submitted_at    double precision NOT NULL,
    seq             bigint NOT NULL,          -- session event seq at acceptance (replay order)
    epoch           bigint NOT NULL,
    PRIMARY KEY (session_code, participant_id, request_id, seq)
);
INSERT INTO answers_v3 SELECT session_code, participant_id, request_id, question, value, team,
    submitted_at, seq, epoch FROM answers;
DROP TABLE answers;
ALTER TABLE answers_v3 RENAME TO answers;
CREATE INDEX answers_by_seq ON answers (session_code, seq);
CREATE INDEX answers_by_question ON answers (session_code, question);

CREATE TABLE quiz_sessions_v3 (
    code             text PRIMARY KEY,
    quiz_id          text NOT NULL,
    title            text NOT NULL,
    mode             text NOT NULL,
    status           text NOT NULL DEFAULT 'live'
                     CHECK (status IN ('live', 'finished', 'interrupted')),
    created_at       double precision NOT NULL,
    ended_at         double precision,
    epoch            bigint NOT NULL DEFAULT 0,   -- fencing epoch: only ever rises
    host_token_hash  text NOT NULL,               -- never the token itself
    owner_node       text
);
INSERT INTO quiz_sessions_v3 SELECT code, quiz_id, title, mode, status, created_at, ended_at,
    epoch, host_token_hash, owner_node FROM quiz_sessions;
DROP TABLE quiz_sessions;
ALTER TABLE quiz_sessions_v3 RENAME TO quiz_sessions;
CREATE INDEX quiz_sessions_by_status ON quiz_sessions (status, created_at);
