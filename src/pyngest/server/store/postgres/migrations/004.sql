-- 3 -> 4: environments. Each environment's data is its own: apps, functions, events and runs
-- carry the environment they belong to. Rows from before are the default environment's, the
-- one the flags seed (its id is pyngest.server.model.DEFAULT_ENV). Every statement may run again
-- (a database whose recorded version was set back).
CREATE TABLE IF NOT EXISTS envs (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    kind          text NOT NULL,             -- production | custom | branch
    parent_id     text NOT NULL DEFAULT '',  -- a branch's parent, whose keys it shares
    archived_ms   bigint,                    -- set: refuses events, triggers nothing
    created_ms    bigint NOT NULL,
    UNIQUE (parent_id, name)
);
INSERT INTO envs (id, name, kind, created_ms)
VALUES ('00000000-0000-4000-b000-000000000000', 'Production', 'production', 0) ON CONFLICT DO NOTHING;

-- Signing keys sign requests to apps, so they are kept as given (see docs/security.md).
-- state: active (signs; accepted), next (created for a rotation; accepted), previous (the key a
-- rotation replaced; accepted until retired).
CREATE TABLE IF NOT EXISTS signing_keys (
    id          text PRIMARY KEY,
    env_id      text NOT NULL,
    key         text NOT NULL,
    state       text NOT NULL,
    created_ms  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS signing_keys_env ON signing_keys (env_id);

-- Event keys only need checking: their SHA-256 is stored, never the key.
CREATE TABLE IF NOT EXISTS event_keys (
    id          text PRIMARY KEY,
    env_id      text NOT NULL,
    name        text NOT NULL,
    hash        text NOT NULL UNIQUE,
    hint        text NOT NULL,               -- the key's last characters, to tell keys apart
    filter      text,                        -- JSON
    created_ms  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS event_keys_env ON event_keys (env_id);

ALTER TABLE apps ADD COLUMN IF NOT EXISTS env_id text NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000';
ALTER TABLE apps DROP CONSTRAINT IF EXISTS apps_name_key;
CREATE UNIQUE INDEX IF NOT EXISTS apps_env_name ON apps (env_id, name);

ALTER TABLE functions ADD COLUMN IF NOT EXISTS env_id text NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000';
ALTER TABLE functions DROP CONSTRAINT IF EXISTS functions_slug_key;
CREATE UNIQUE INDEX IF NOT EXISTS functions_env_slug ON functions (env_id, slug);

ALTER TABLE events ADD COLUMN IF NOT EXISTS env_id text NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000';
-- only other environments' rows: the default one's (most, and all of a single-environment
-- server) cost no index entry
CREATE INDEX IF NOT EXISTS events_env ON events (env_id, seq) WHERE env_id <> '00000000-0000-4000-b000-000000000000';

ALTER TABLE runs ADD COLUMN IF NOT EXISTS env_id text NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000';
CREATE INDEX IF NOT EXISTS runs_env ON runs (env_id, id) WHERE env_id <> '00000000-0000-4000-b000-000000000000';
