-- Version 2: bulk cancellations and replays, started from the dashboard or the REST API.
CREATE TABLE IF NOT EXISTS cancellations (
    id             TEXT PRIMARY KEY,     -- ULID
    fn_id          TEXT NOT NULL,
    name           TEXT NOT NULL,
    queued_after   INTEGER,              -- ms; runs queued at or after
    queued_before  INTEGER,              -- ms; runs queued before
    expression     TEXT,                 -- CEL over the run's triggering event
    created_ms     INTEGER NOT NULL,
    matched        INTEGER NOT NULL DEFAULT 0,
    cancelled      INTEGER NOT NULL DEFAULT 0,
    finished_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS cancellations_fn ON cancellations (fn_id, id);

CREATE TABLE IF NOT EXISTS replays (
    id           TEXT PRIMARY KEY,       -- ULID
    fn_id        TEXT NOT NULL,
    name         TEXT NOT NULL,
    from_ms      INTEGER NOT NULL,
    until_ms     INTEGER NOT NULL,
    statuses     TEXT NOT NULL,          -- JSON list of run statuses replayed
    created_ms   INTEGER NOT NULL,
    total        INTEGER NOT NULL DEFAULT 0,
    scheduled    INTEGER NOT NULL DEFAULT 0,
    finished_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS replays_fn ON replays (fn_id, id);
