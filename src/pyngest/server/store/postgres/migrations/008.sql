-- reserved: another branch's migration 008 (placeholder on branch pgstmts only; drop at merge)
SELECT 1;
