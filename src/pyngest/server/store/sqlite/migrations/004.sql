-- 3 -> 4: webhooks (URLs whose requests a transform turns into events), and the requests a
-- webhook could not turn into events, kept for inspection and replay.
CREATE TABLE IF NOT EXISTS webhooks (
    id          TEXT PRIMARY KEY,        -- a UUID
    key         TEXT NOT NULL UNIQUE,    -- the URL's secret part: POST /e/{key}
    name        TEXT NOT NULL,
    transform   TEXT,                    -- JavaScript; NULL: the default transform
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
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
