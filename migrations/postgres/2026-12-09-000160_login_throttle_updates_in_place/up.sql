-- Every login writes its address's bucket twice (the attempt counted, then
-- taken back) and its account's once or twice; an address's row is shared
-- by every login from that address. The index on updated_at, which every
-- one of those writes changed, made each a new row version with an entry
-- in both indexes, and the hot row's key a chain of dead entries to walk.
-- Without it only the key is indexed, and with room left on each page
-- every write stays on its page (a heap-only update). The purge, which
-- used the index, reads the table instead: it holds the buckets active
-- within one failure window, and runs once per maintenance round.
DROP INDEX login_throttle_updated;
ALTER TABLE login_throttle SET (fillfactor = 70);
