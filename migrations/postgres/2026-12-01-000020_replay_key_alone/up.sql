-- The replay key is the digest of issuer and `jti` alone (RFC 7523 §3
-- item 7): the same `jti` with another `exp` is a replay, so the digest is
-- the primary key, and expiry only an index for the purge. Rows in use stay;
-- of one digest the row that lives longest is kept.
ALTER TABLE used_assertion_ids DROP CONSTRAINT used_assertion_ids_pkey;
DELETE FROM used_assertion_ids shorter
    USING used_assertion_ids longer
    WHERE shorter.jti_key = longer.jti_key AND shorter.expires_at < longer.expires_at;
ALTER TABLE used_assertion_ids ADD PRIMARY KEY (jti_key);
CREATE INDEX used_assertion_ids_expiry ON used_assertion_ids (expires_at);
