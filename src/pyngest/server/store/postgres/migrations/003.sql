-- 2 -> 3: webhooks (URLs whose requests a transform turns into events), and the requests a
-- webhook could not turn into events, kept for inspection and replay.
CREATE TABLE IF NOT EXISTS webhooks (
    id          text PRIMARY KEY,        -- a UUID
    key         text NOT NULL UNIQUE,    -- the URL's secret part: POST /e/{key}
    name        text NOT NULL,
    transform   text,                    -- JavaScript; NULL: the default transform
    created_ms  bigint NOT NULL,
    updated_ms  bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_failures (
    id           text PRIMARY KEY,       -- a ULID (in order of arrival)
    webhook_id   text NOT NULL,
    received_ms  bigint NOT NULL,
    error        text NOT NULL,
    body         bytea NOT NULL,         -- the request body as it arrived
    headers      jsonb NOT NULL,         -- JSON: {name: value}
    query        text NOT NULL,          -- the URL's query string
    replayed_ms  bigint,                -- a replay turned it into events
    event_ids    jsonb                   -- JSON: the ids of those events
);
CREATE INDEX IF NOT EXISTS webhook_failures_hook ON webhook_failures (webhook_id, id);
CREATE INDEX IF NOT EXISTS webhook_failures_received ON webhook_failures (received_ms);
