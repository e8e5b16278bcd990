-- pyngest SQLite schema. Version 6. Migrations live in migrations/NNN.sql and are applied in order.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS apps (
    id            TEXT PRIMARY KEY,      -- uuid
    name          TEXT NOT NULL,         -- the app id the SDK registers ("appName")
    url           TEXT NOT NULL DEFAULT '',
    sdk_language  TEXT NOT NULL DEFAULT '',
    sdk_version   TEXT NOT NULL DEFAULT '',
    framework     TEXT NOT NULL DEFAULT '',
    app_version   TEXT NOT NULL DEFAULT '',
    checksum      TEXT NOT NULL DEFAULT '',
    error         TEXT,                  -- last sync error, NULL when healthy
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    env_id        TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000'
);
CREATE UNIQUE INDEX IF NOT EXISTS apps_env_name ON apps (env_id, name);

-- App URLs known to the server (from -u, discovery, the API); an app row appears once it syncs.
CREATE TABLE IF NOT EXISTS app_urls (
    url         TEXT PRIMARY KEY,
    source      TEXT NOT NULL,           -- flag | discovery | api | register
    error       TEXT,
    app_id      TEXT,
    created_ms  INTEGER NOT NULL,
    synced_ms   INTEGER
);

CREATE TABLE IF NOT EXISTS syncs (
    id          TEXT PRIMARY KEY,
    app_id      TEXT,
    url         TEXT NOT NULL,
    status      TEXT NOT NULL,           -- success | error | duplicate
    error       TEXT,
    modified    INTEGER NOT NULL DEFAULT 0,
    functions   TEXT NOT NULL DEFAULT '[]',
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS syncs_app ON syncs (app_id, created_ms);
CREATE INDEX IF NOT EXISTS syncs_created ON syncs (created_ms);

CREATE TABLE IF NOT EXISTS functions (
    id           TEXT PRIMARY KEY,       -- uuid
    app_id       TEXT NOT NULL,
    slug         TEXT NOT NULL,
    name         TEXT NOT NULL,
    config       BLOB NOT NULL,          -- normalized FunctionConfig, JSON
    version      INTEGER NOT NULL DEFAULT 1,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    archived_ms  INTEGER,
    paused_ms    INTEGER,
    env_id       TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000'
);
CREATE INDEX IF NOT EXISTS functions_app ON functions (app_id);
CREATE UNIQUE INDEX IF NOT EXISTS functions_env_slug ON functions (env_id, slug);

CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order
    internal_id  TEXT NOT NULL UNIQUE,               -- ULID returned to the sender
    name         TEXT NOT NULL,
    event_id     TEXT NOT NULL,                      -- the event's own "id" (dedup key)
    ts           INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL,
    source       TEXT NOT NULL DEFAULT '',
    -- body: the canonical JSON of the event
    body         BLOB NOT NULL,
    env_id       TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000'
);
-- only other environments' rows: the default one's (most, and all of a single-environment
-- server) cost no index entry
CREATE INDEX IF NOT EXISTS events_env ON events (env_id, seq) WHERE env_id <> '00000000-0000-4000-b000-000000000000';
CREATE INDEX IF NOT EXISTS events_name ON events (name, seq);
CREATE INDEX IF NOT EXISTS events_received ON events (received_ms);

CREATE TABLE IF NOT EXISTS runs (
    id               TEXT PRIMARY KEY,   -- ULID
    fn_id            TEXT NOT NULL,
    app_id           TEXT NOT NULL,
    fn_version       INTEGER NOT NULL DEFAULT 1,
    status           TEXT NOT NULL,      -- Queued | Running | Completed | Failed | Cancelled | Skipped
    event_ids        TEXT NOT NULL,      -- JSON list of internal event ids, in order
    batch_id         TEXT,
    cron             TEXT,
    original_run_id  TEXT,
    queued_ms        INTEGER NOT NULL,
    started_ms       INTEGER,
    ended_ms         INTEGER,
    output           BLOB,               -- canonical JSON; the return value or the error
    version          INTEGER NOT NULL DEFAULT -1,
    force_step_plan  INTEGER NOT NULL DEFAULT 0,
    pending          TEXT,               -- JSON list of step ids awaited before the next discovery
    state_bytes      INTEGER NOT NULL DEFAULT 0,
    -- attrs: JSON, the correlation id of an invoking parent, a skip reason...
    attrs            BLOB,
    env_id           TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000'
);
CREATE INDEX IF NOT EXISTS runs_env ON runs (env_id, id) WHERE env_id <> '00000000-0000-4000-b000-000000000000';
CREATE INDEX IF NOT EXISTS runs_fn ON runs (fn_id, id);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, id);
CREATE INDEX IF NOT EXISTS runs_queued ON runs (queued_ms);
CREATE INDEX IF NOT EXISTS runs_ended ON runs (ended_ms) WHERE ended_ms IS NOT NULL;

CREATE TABLE IF NOT EXISTS run_events (
    event_internal_id  TEXT NOT NULL,
    run_id             TEXT NOT NULL,
    PRIMARY KEY (event_internal_id, run_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_events_run ON run_events (run_id);  -- retention deletes by run

-- Memoized step results: what the SDK gets back in "steps".
CREATE TABLE IF NOT EXISTS steps (
    run_id   TEXT NOT NULL,
    step_id  TEXT NOT NULL,              -- hashed step id
    pos      INTEGER NOT NULL,           -- position in the run's stack
    value    BLOB NOT NULL,              -- canonical JSON: {"data":...} | {"error":...} | raw
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;

-- What happened, in order: the source of traces, timelines and run history.
CREATE TABLE IF NOT EXISTS history (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT NOT NULL,
    at_ms     INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    step_id   TEXT,
    name      TEXT,
    attempt   INTEGER,
    data      BLOB
);
CREATE INDEX IF NOT EXISTS history_run ON history (run_id, seq);

CREATE TABLE IF NOT EXISTS jobs (
    id        TEXT PRIMARY KEY,
    run_id    TEXT,
    kind      TEXT NOT NULL,
    due_ms    INTEGER NOT NULL,
    priority  INTEGER NOT NULL DEFAULT 0,
    step_id   TEXT NOT NULL DEFAULT 'step',
    attempt   INTEGER NOT NULL DEFAULT 0,
    payload   BLOB
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due_ms);
CREATE INDEX IF NOT EXISTS jobs_run ON jobs (run_id);

CREATE TABLE IF NOT EXISTS pauses (
    id           TEXT PRIMARY KEY,
    run_id       TEXT NOT NULL,
    step_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,          -- wait | invoke | cancel | signal
    event_name   TEXT,
    expression   TEXT,
    signal       TEXT,
    after_seq    INTEGER NOT NULL,       -- only events with a larger seq may match
    expires_ms   INTEGER NOT NULL,
    data         BLOB
);
CREATE INDEX IF NOT EXISTS pauses_run ON pauses (run_id);
CREATE UNIQUE INDEX IF NOT EXISTS pauses_signal ON pauses (signal) WHERE signal IS NOT NULL;

CREATE TABLE IF NOT EXISTS idempotency (
    key         TEXT PRIMARY KEY,
    run_id      TEXT,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency (expires_ms);

-- Flow-control state: throttle TATs, rate-limit windows, debounce and batch buffers, singletons.
CREATE TABLE IF NOT EXISTS flow (
    key         TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS flow_expires ON flow (expires_ms);

-- Events that started no run of a function, and why.
CREATE TABLE IF NOT EXISTS skips (
    event_internal_id  TEXT NOT NULL,
    fn_id              TEXT NOT NULL,
    reason             TEXT NOT NULL,
    at_ms              INTEGER NOT NULL,
    PRIMARY KEY (event_internal_id, fn_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS skips_fn ON skips (fn_id, at_ms);

-- Bulk operations over many runs: cancellations and replays, with their progress.
CREATE TABLE IF NOT EXISTS operations (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,           -- cancellation | replay
    fn_id       TEXT NOT NULL,
    app_id      TEXT,
    name        TEXT NOT NULL DEFAULT '',
    spec        BLOB NOT NULL,           -- JSON: time range, statuses, if expression, ...
    status      TEXT NOT NULL,           -- running | completed | stopped
    total       INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    ended_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS operations_fn ON operations (fn_id, kind, created_ms);
CREATE INDEX IF NOT EXISTS operations_ended ON operations (ended_ms) WHERE ended_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS webhooks (
    id          TEXT PRIMARY KEY,        -- a UUID
    key         TEXT NOT NULL UNIQUE,    -- the URL's secret part: POST /e/{key}
    name        TEXT NOT NULL,
    transform   TEXT,                    -- JavaScript; NULL: the default transform
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    env_id      TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000'  -- its events' environment
);
CREATE INDEX IF NOT EXISTS webhooks_env ON webhooks (env_id);
CREATE TABLE IF NOT EXISTS webhook_failures (
    id           TEXT PRIMARY KEY,       -- a ULID (in order of arrival)
    webhook_id   TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    error        TEXT NOT NULL,
    body         BLOB NOT NULL,          -- the request body as it arrived
    headers      BLOB NOT NULL,          -- JSON: {name: value}
    query        TEXT NOT NULL,          -- the URL's query string
    replayed_ms  INTEGER,                -- a replay turned it into events
    event_ids    BLOB                    -- JSON: the ids of those events
);
CREATE INDEX IF NOT EXISTS webhook_failures_hook ON webhook_failures (webhook_id, id);
CREATE INDEX IF NOT EXISTS webhook_failures_received ON webhook_failures (received_ms);

-- Dashboard sessions signed out before they expire (a sign-out survives a restart).
CREATE TABLE IF NOT EXISTS revoked_sessions (
    session_id  TEXT PRIMARY KEY,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revoked_sessions_expires ON revoked_sessions (expires_ms);

-- Environments (see migrations/005.sql).
CREATE TABLE IF NOT EXISTS envs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,             -- production | custom | branch
    parent_id     TEXT NOT NULL DEFAULT '',  -- a branch's parent, whose keys it shares
    archived_ms   INTEGER,                   -- set: refuses events, triggers nothing
    created_ms    INTEGER NOT NULL,
    deployed_ms   INTEGER,                   -- a branch's latest deploy (sync)
    auto_archive_ms INTEGER,                 -- a branch is archived then (NULL: auto-archive off)
    UNIQUE (parent_id, name)
);
INSERT OR IGNORE INTO envs (id, name, kind, created_ms)
VALUES ('00000000-0000-4000-b000-000000000000', 'Production', 'production', 0);

CREATE TABLE IF NOT EXISTS signing_keys (
    id          TEXT PRIMARY KEY,
    env_id      TEXT NOT NULL,
    key         TEXT NOT NULL,               -- kept as given: it signs requests to apps
    state       TEXT NOT NULL,               -- active | next | previous
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS signing_keys_env ON signing_keys (env_id);

CREATE TABLE IF NOT EXISTS event_keys (
    id          TEXT PRIMARY KEY,
    env_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,        -- SHA-256 of the key; the key itself is not kept
    hint        TEXT NOT NULL,
    filter      TEXT,                        -- JSON
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS event_keys_env ON event_keys (env_id);
