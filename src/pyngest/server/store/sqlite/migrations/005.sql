-- 4 -> 5: environments. Apps, functions, events and runs carry the environment they belong to;
-- rows from before are the default environment's (pyngest.server.model.DEFAULT_ENV), the one
-- the flags seed. An app name and a function slug are unique within an environment only, so
-- apps and functions are rebuilt without their old UNIQUE constraints (small tables).
CREATE TABLE apps_new (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    url           TEXT NOT NULL DEFAULT '',
    sdk_language  TEXT NOT NULL DEFAULT '',
    sdk_version   TEXT NOT NULL DEFAULT '',
    framework     TEXT NOT NULL DEFAULT '',
    app_version   TEXT NOT NULL DEFAULT '',
    checksum      TEXT NOT NULL DEFAULT '',
    error         TEXT,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    env_id        TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000'
);
INSERT INTO apps_new (id, name, url, sdk_language, sdk_version, framework, app_version, checksum, error,
                      created_ms, updated_ms)
SELECT id, name, url, sdk_language, sdk_version, framework, app_version, checksum, error, created_ms, updated_ms
FROM apps;
DROP TABLE apps;
ALTER TABLE apps_new RENAME TO apps;
CREATE UNIQUE INDEX apps_env_name ON apps (env_id, name);

CREATE TABLE functions_new (
    id           TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL,
    slug         TEXT NOT NULL,
    name         TEXT NOT NULL,
    config       BLOB NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    archived_ms  INTEGER,
    paused_ms    INTEGER,
    env_id       TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000'
);
INSERT INTO functions_new (id, app_id, slug, name, config, version, created_ms, updated_ms, archived_ms, paused_ms)
SELECT id, app_id, slug, name, config, version, created_ms, updated_ms, archived_ms, paused_ms FROM functions;
DROP TABLE functions;
ALTER TABLE functions_new RENAME TO functions;
CREATE INDEX functions_app ON functions (app_id);
CREATE UNIQUE INDEX functions_env_slug ON functions (env_id, slug);

-- Adding a column with a constant default rewrites nothing.
ALTER TABLE events ADD COLUMN env_id TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000';
-- only other environments' rows: the default one's (most, and all of a single-environment
-- server) cost no index entry
CREATE INDEX events_env ON events (env_id, seq) WHERE env_id <> '00000000-0000-4000-b000-000000000000';
ALTER TABLE runs ADD COLUMN env_id TEXT NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000';
CREATE INDEX runs_env ON runs (env_id, id) WHERE env_id <> '00000000-0000-4000-b000-000000000000';
CREATE TABLE IF NOT EXISTS envs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,             -- production | custom | branch
    parent_id     TEXT NOT NULL DEFAULT '',  -- a branch's parent, whose keys it shares
    archived_ms   INTEGER,                   -- set: refuses events, triggers nothing
    created_ms    INTEGER NOT NULL,
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
