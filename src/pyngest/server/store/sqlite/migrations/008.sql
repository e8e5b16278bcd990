-- 7 -> 8: branch environments archive themselves 3 days after their latest deploy (a sync).
-- deployed_ms: the latest deploy (for branches; NULL: none yet).
-- auto_archive_ms: when the environment will be archived unless deployed again (each deploy moves
-- it to 3 days later); NULL: auto-archive is off (or the environment is not a branch). An
-- environment archived by auto-archive has archived_ms = auto_archive_ms, which is how a later
-- deploy tells it from one archived by hand (a deploy revives the first, not the second).
-- Branches from before get 3 days from the upgrade, not an archive at the first start.
ALTER TABLE envs ADD COLUMN deployed_ms INTEGER;
ALTER TABLE envs ADD COLUMN auto_archive_ms INTEGER;
UPDATE envs SET auto_archive_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) + 259200000
WHERE kind = 'branch' AND archived_ms IS NULL AND auto_archive_ms IS NULL;
