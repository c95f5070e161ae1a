-- Promotion-based early stopping (`[stopping] mode = "promote"`): a trial
-- pauses at a rung (status `paused`, its checkpoint kept) and is resumed when
-- it is promoted. Its decision row at the rung starts as `pause` and becomes
-- `promote` (resumed) or `stop` (not promoted when the sweep ended).
-- The CHECK constraints are edited in the schema text, as in
-- 20261129000003_stopping.sql (`store::db::open` bumps the schema cookie).
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql,
                     'CHECK (status IN (''queued'',''running'',''done'',''failed'',''interrupted'',''pruned''))',
                     'CHECK (status IN (''queued'',''running'',''done'',''failed'',''interrupted'',''pruned'',''paused''))')
 WHERE type = 'table' AND name = 'trials';
UPDATE sqlite_master
   SET sql = replace(sql,
                     'CHECK (action IN (''continue'',''stop''))',
                     'CHECK (action IN (''continue'',''stop'',''pause'',''promote''))')
 WHERE type = 'table' AND name = 'decisions';
PRAGMA writable_schema = OFF;
