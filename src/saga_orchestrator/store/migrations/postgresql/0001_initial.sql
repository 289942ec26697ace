-- The initial schema of the PostgreSQL store.
-- Timestamps are epoch seconds in DOUBLE PRECISION: they round-trip the Python floats exactly.
-- Identifiers that are sorted or paged on use COLLATE "C" (byte order = code point order), so
-- the order does not depend on the server's locale and matches the other backends.

CREATE TABLE events (
    position    BIGSERIAL PRIMARY KEY,
    stream_id   TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    event_id    TEXT NOT NULL UNIQUE,
    event_type  TEXT COLLATE "C" NOT NULL,
    data        JSONB NOT NULL,
    metadata    JSONB NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX events_event_type_idx ON events (event_type);

-- The current version of each stream: one row to lock (SELECT ... FOR UPDATE) per append.
CREATE TABLE streams (
    stream_id TEXT COLLATE "C" PRIMARY KEY,
    version   BIGINT NOT NULL
);

-- The queryable projection of sagas; version is the saga stream's version.
CREATE TABLE sagas (
    saga_id         TEXT COLLATE "C" PRIMARY KEY,
    saga_type       TEXT COLLATE "C" NOT NULL,
    saga_version    INTEGER NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    current_step    TEXT,
    input           JSONB NOT NULL,
    result          JSONB,
    error           TEXT,
    deadline_at     DOUBLE PRECISION NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    version         BIGINT NOT NULL,
    idempotency_key TEXT UNIQUE,
    correlation_id  TEXT
);
CREATE INDEX sagas_created_idx ON sagas (created_at DESC, saga_id DESC);
-- Filtered listings page in the same order, so the filter leads the same key.
CREATE INDEX sagas_status_idx ON sagas (status, created_at DESC, saga_id DESC);
CREATE INDEX sagas_type_idx ON sagas (saga_type, created_at DESC, saga_id DESC);

CREATE TABLE saga_steps (
    saga_id               TEXT COLLATE "C" NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    step_index            INTEGER NOT NULL,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    attempts              INTEGER NOT NULL DEFAULT 0,
    started_at            DOUBLE PRECISION,
    finished_at           DOUBLE PRECISION,
    result                JSONB,
    error                 TEXT,
    compensation_status   TEXT NOT NULL DEFAULT 'not_run',
    compensation_attempts INTEGER NOT NULL DEFAULT 0,
    compensation_error    TEXT,
    PRIMARY KEY (saga_id, step_index)
);

CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    topic      TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data       JSONB NOT NULL,
    metadata   JSONB NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at    DOUBLE PRECISION
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
