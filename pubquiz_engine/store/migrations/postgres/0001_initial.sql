-- pubquiz-engine schema v1 (PostgreSQL). Same logical schema as sqlite/0001_initial.sql.
-- Times are double precision unix seconds (as the records carry them); JSON columns are jsonb.
-- No foreign keys on purpose: the write-behind commits whatever arrives, in one transaction per
-- batch, and a fenced session's rows are skipped while its neighbours commit; the natural keys
-- below keep every insert idempotent, which is the property replays rely on.

CREATE TABLE quizzes (
    quiz_id        text PRIMARY KEY,          -- content hash of the quiz data
    title          text NOT NULL,
    data           jsonb NOT NULL,
    first_seen_at  double precision NOT NULL
);

CREATE TABLE quiz_sessions (
    code             text PRIMARY KEY,
    quiz_id          text NOT NULL,
    title            text NOT NULL,
    mode             text NOT NULL,
    status           text NOT NULL DEFAULT 'live' CHECK (status IN ('live', 'finished')),
    created_at       double precision NOT NULL,
    ended_at         double precision,
    epoch            bigint NOT NULL DEFAULT 0,   -- fencing epoch: only ever rises
    host_token_hash  text NOT NULL,               -- never the token itself
    owner_node       text
);
-- Active sessions (status = 'live') and listings by status, oldest first.
CREATE INDEX quiz_sessions_by_status ON quiz_sessions (status, created_at);

CREATE TABLE participants (
    session_code       text NOT NULL,
    participant_id     bigint NOT NULL,
    name               text NOT NULL,
    team               text,
    joined_at          double precision NOT NULL,
    resume_token_hash  text NOT NULL,
    PRIMARY KEY (session_code, participant_id)
);

CREATE TABLE answers (
    session_code    text NOT NULL,
    participant_id  bigint NOT NULL,
    request_id      bigint NOT NULL,
    question        integer NOT NULL,
    value           jsonb NOT NULL,
    team            text,
    submitted_at    double precision NOT NULL,
    seq             bigint NOT NULL,          -- session event seq at acceptance (replay order)
    epoch           bigint NOT NULL,
    PRIMARY KEY (session_code, participant_id, request_id)  -- also the by-participant path
);
CREATE INDEX answers_by_seq ON answers (session_code, seq);
CREATE INDEX answers_by_question ON answers (session_code, question);

CREATE TABLE participant_scores (
    session_code    text NOT NULL,
    participant_id  bigint NOT NULL,
    score           double precision NOT NULL,
    updated_seq     bigint NOT NULL,          -- an older seq never overwrites a newer one
    epoch           bigint NOT NULL,
    PRIMARY KEY (session_code, participant_id)
);

CREATE TABLE events (
    session_code  text NOT NULL,
    seq           bigint NOT NULL,
    type          text NOT NULL,
    payload       jsonb NOT NULL,
    at            double precision NOT NULL,
    epoch         bigint NOT NULL,
    PRIMARY KEY (session_code, seq)
);
