-- 1 -> 2: flow-control state and skipped events.
CREATE TABLE IF NOT EXISTS flow (
    key         TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;

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
