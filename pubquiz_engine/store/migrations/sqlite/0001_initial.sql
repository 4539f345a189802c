-- pubquiz-engine schema v1 (SQLite). Same logical schema as postgres/0001_initial.sql.
-- Times are REAL unix seconds; JSON columns hold JSON text.
-- No foreign keys on purpose: the write-behind commits whatever arrives, in one transaction per
-- batch, and a fenced session's rows are skipped while its neighbours commit; the natural keys
-- below keep every insert idempotent, which is the property replays rely on.

CREATE TABLE quizzes (
    quiz_id        TEXT PRIMARY KEY,          -- content hash of the quiz data
    title          TEXT NOT NULL,
    data           TEXT NOT NULL,             -- JSON
    first_seen_at  REAL NOT NULL
);

CREATE TABLE quiz_sessions (
    code             TEXT PRIMARY KEY,
    quiz_id          TEXT NOT NULL,
    title            TEXT NOT NULL,
    mode             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'live' CHECK (status IN ('live', 'finished')),
    created_at       REAL NOT NULL,
    ended_at         REAL,
    epoch            INTEGER NOT NULL DEFAULT 0,  -- fencing epoch: only ever rises
    host_token_hash  TEXT NOT NULL,               -- never the token itself
    owner_node       TEXT
);
-- Active sessions (status = 'live') and listings by status, oldest first.
CREATE INDEX quiz_sessions_by_status ON quiz_sessions (status, created_at);

CREATE TABLE participants (
    session_code       TEXT NOT NULL,
    participant_id     INTEGER NOT NULL,
    name               TEXT NOT NULL,
    team               TEXT,
    joined_at          REAL NOT NULL,
    resume_token_hash  TEXT NOT NULL,
    PRIMARY KEY (session_code, participant_id)
);

CREATE TABLE answers (
    session_code    TEXT NOT NULL,
    participant_id  INTEGER NOT NULL,
    request_id      INTEGER NOT NULL,
    question        INTEGER NOT NULL,
    value           TEXT NOT NULL,            -- JSON
    team            TEXT,
    submitted_at    REAL NOT NULL,
    seq             INTEGER NOT NULL,         -- session event seq at acceptance (replay order)
    epoch           INTEGER NOT NULL,
    PRIMARY KEY (session_code, participant_id, request_id)  -- also the by-participant path
);
CREATE INDEX answers_by_seq ON answers (session_code, seq);
CREATE INDEX answers_by_question ON answers (session_code, question);

CREATE TABLE participant_scores (
    session_code    TEXT NOT NULL,
    participant_id  INTEGER NOT NULL,
    score           REAL NOT NULL,
    updated_seq     INTEGER NOT NULL,         -- an older seq never overwrites a newer one
    epoch           INTEGER NOT NULL,
    PRIMARY KEY (session_code, participant_id)
);

CREATE TABLE events (
    session_code  TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    type          TEXT NOT NULL,
    payload       TEXT NOT NULL,              -- JSON
    at            REAL NOT NULL,
    epoch         INTEGER NOT NULL,
    PRIMARY KEY (session_code, seq)
);
