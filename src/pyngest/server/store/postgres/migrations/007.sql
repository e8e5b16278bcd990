-- reserved: another branch's migration 007 (placeholder on branch pgstmts only; drop at merge)
SELECT 1;
