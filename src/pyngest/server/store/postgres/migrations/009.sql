-- reserved: another branch's migration 009 (placeholder on branch pgstmts only; drop at merge)
SELECT 1;
