-- pyngest PostgreSQL schema, version 1. Each NNN.sql upgrades version NNN-1 to NNN; a fresh
-- database runs them all in order (server/store/postgres/migrate.py, under an advisory lock).

CREATE TABLE meta (
    key    text PRIMARY KEY,
    value  text NOT NULL
);

-- The processes of the cluster: each one renews its row while it lives.
CREATE TABLE nodes (
    id          text PRIMARY KEY,
    url         text NOT NULL,         -- where the others reach it (forwarded requests)
    started_ms  bigint NOT NULL,
    seen_ms     bigint NOT NULL        -- the database's clock at its last renewal
);

-- Shard leases: at most one owner per shard; ``epoch`` grows with every change of owner and
-- fences commits (a batch carries the epochs its writer believes it holds). ``cursor_*`` is how
-- far the shard has matched the event log.
CREATE TABLE shards (
    shard       integer PRIMARY KEY,
    owner       text,
    epoch       bigint NOT NULL DEFAULT 0,
    expires_ms  bigint NOT NULL DEFAULT 0,
    cursor_xid  bigint NOT NULL DEFAULT 0,
    cursor_seq  bigint NOT NULL DEFAULT 0
);

CREATE TABLE apps (
    id            text PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    url           text NOT NULL DEFAULT '',
    sdk_language  text NOT NULL DEFAULT '',
    sdk_version   text NOT NULL DEFAULT '',
    framework     text NOT NULL DEFAULT '',
    app_version   text NOT NULL DEFAULT '',
    checksum      text NOT NULL DEFAULT '',
    error         text,
    created_ms    bigint NOT NULL,
    updated_ms    bigint NOT NULL
);

CREATE TABLE app_urls (
    url         text PRIMARY KEY,
    source      text NOT NULL,
    error       text,
    app_id      text,
    created_ms  bigint NOT NULL,
    synced_ms   bigint
);

CREATE TABLE syncs (
    id          text PRIMARY KEY,
    app_id      text,
    url         text NOT NULL,
    status      text NOT NULL,
    error       text,
    modified    boolean NOT NULL DEFAULT false,
    functions   jsonb NOT NULL DEFAULT '[]',
    created_ms  bigint NOT NULL
);
CREATE INDEX syncs_app ON syncs (app_id, created_ms);

CREATE TABLE functions (
    id           text PRIMARY KEY,
    app_id       text NOT NULL,
    slug         text NOT NULL UNIQUE,
    name         text NOT NULL,
    config       jsonb NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    created_ms   bigint NOT NULL,
    updated_ms   bigint NOT NULL,
    archived_ms  bigint,
    paused_ms    bigint
);
CREATE INDEX functions_app ON functions (app_id);

-- The event log. ``xid`` is the inserting transaction's id: every transaction with a smaller
-- xid has ended once it is below the snapshot's xmin, so the matcher reads the log in
-- (xid, seq) order without missing a row that commits late.
CREATE TABLE events (
    seq          bigserial PRIMARY KEY,
    xid          bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    internal_id  text NOT NULL UNIQUE,
    name         text NOT NULL,
    event_id     text NOT NULL,
    ts           bigint NOT NULL,
    received_ms  bigint NOT NULL,
    source       text NOT NULL DEFAULT '',
    body         bytea NOT NULL
);
CREATE INDEX events_log ON events (xid, seq);
CREATE INDEX events_name ON events (name, seq);
CREATE INDEX events_received ON events (received_ms);

CREATE TABLE runs (
    id               text PRIMARY KEY,
    shard            integer NOT NULL,
    fn_id            text NOT NULL,
    app_id           text NOT NULL,
    fn_version       integer NOT NULL DEFAULT 1,
    status           text NOT NULL,
    event_ids        jsonb NOT NULL,
    batch_id         text,
    cron             text,
    original_run_id  text,
    queued_ms        bigint NOT NULL,
    started_ms       bigint,
    ended_ms         bigint,
    output           bytea,
    version          integer NOT NULL DEFAULT -1,
    force_step_plan  boolean NOT NULL DEFAULT false,
    pending          jsonb,
    state_bytes      bigint NOT NULL DEFAULT 0,
    attrs            jsonb
);
CREATE INDEX runs_fn ON runs (fn_id, id);
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_queued ON runs (queued_ms);
CREATE INDEX runs_ended ON runs (ended_ms) WHERE ended_ms IS NOT NULL;

CREATE TABLE run_events (
    event_internal_id  text NOT NULL,
    run_id             text NOT NULL,
    PRIMARY KEY (event_internal_id, run_id)
);
CREATE INDEX run_events_run ON run_events (run_id);

CREATE TABLE steps (
    run_id   text NOT NULL,
    step_id  text NOT NULL,
    pos      integer NOT NULL,
    value    bytea NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE history (
    seq      bigserial PRIMARY KEY,
    run_id   text NOT NULL,
    at_ms    bigint NOT NULL,
    kind     text NOT NULL,
    step_id  text,
    name     text,
    attempt  integer,
    data     bytea
);
CREATE INDEX history_run ON history (run_id, seq);

CREATE TABLE jobs (
    id        text PRIMARY KEY,
    shard     integer NOT NULL,
    run_id    text,
    kind      text NOT NULL,
    due_ms    bigint NOT NULL,
    priority  integer NOT NULL DEFAULT 0,
    step_id   text NOT NULL DEFAULT 'step',
    attempt   integer NOT NULL DEFAULT 0,
    payload   jsonb,
    remote    boolean NOT NULL DEFAULT false  -- enqueued by another process than the owner
);
CREATE INDEX jobs_due ON jobs (shard, due_ms);
CREATE INDEX jobs_run ON jobs (run_id);
CREATE INDEX jobs_remote ON jobs (shard) WHERE remote;

CREATE TABLE pauses (
    id          text PRIMARY KEY,
    shard       integer NOT NULL,
    run_id      text NOT NULL,
    step_id     text NOT NULL,
    kind        text NOT NULL,
    event_name  text,
    expression  text,
    signal      text,
    after_seq   bigint NOT NULL,   -- only events of a later transaction (xid) match
    expires_ms  bigint NOT NULL,
    data        jsonb
);
CREATE INDEX pauses_run ON pauses (run_id);
CREATE INDEX pauses_shard ON pauses (shard);
CREATE UNIQUE INDEX pauses_signal ON pauses (signal) WHERE signal IS NOT NULL;

CREATE TABLE idempotency (
    key         text PRIMARY KEY,
    run_id      text,
    expires_ms  bigint NOT NULL
);

CREATE TABLE flow (
    key         text PRIMARY KEY,
    shard       integer NOT NULL,
    value       jsonb NOT NULL,
    expires_ms  bigint NOT NULL
);
CREATE INDEX flow_shard ON flow (shard);

CREATE TABLE skips (
    event_internal_id  text NOT NULL,
    fn_id              text NOT NULL,
    reason             text NOT NULL,
    at_ms              bigint NOT NULL,
    PRIMARY KEY (event_internal_id, fn_id)
);
CREATE INDEX skips_fn ON skips (fn_id, at_ms);

CREATE TABLE operations (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    fn_id       text NOT NULL,
    app_id      text,
    name        text NOT NULL DEFAULT '',
    spec        jsonb NOT NULL,
    status      text NOT NULL,
    total       integer NOT NULL DEFAULT 0,
    done        integer NOT NULL DEFAULT 0,
    created_ms  bigint NOT NULL,
    ended_ms    bigint
);
CREATE INDEX operations_fn ON operations (fn_id, kind, created_ms);
