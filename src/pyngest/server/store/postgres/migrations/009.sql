-- 8 -> 9: pyngest_apply takes its batches as jsonb[] (a batch of the common shapes as rows by
-- kind, applied set-wise by pyngest_apply_setwise) and the group's shards from the writer; both
-- are created from functions.sql at start. The old signature is dropped, and the version bump
-- keeps an older pyngest, which would create it again and send the old form, off this database.
DROP FUNCTION IF EXISTS pyngest_apply(jsonb, bytea[], text, jsonb, bigint);
