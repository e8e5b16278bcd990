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
