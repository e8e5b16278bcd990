-- 6 -> 7: a webhook belongs to an environment (the one its events go to; a branch of it with
-- x-inngest-env). Webhooks from before are the default environment's. A constant default
-- rewrites nothing.
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS env_id text NOT NULL DEFAULT '00000000-0000-4000-b000-000000000000';
CREATE INDEX IF NOT EXISTS webhooks_env ON webhooks (env_id);
