-- 7 -> 8: reserved for another branch's migration (this number was assigned to it);
-- this placeholder changes nothing and is replaced by that migration at merge.
SELECT 1;
