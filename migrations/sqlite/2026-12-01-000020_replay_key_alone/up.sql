-- The replay key is the digest of issuer and `jti` alone (RFC 7523 §3
-- item 7): the same `jti` with another `exp` is a replay, so the digest is
-- the primary key, and expiry only an index for the purge. Rows in use are
-- carried over; of one digest the row that lives longest is kept.
CREATE TABLE used_assertion_ids_by_key (
    jti_key TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO used_assertion_ids_by_key (jti_key, expires_at)
    SELECT jti_key, MAX(expires_at) FROM used_assertion_ids GROUP BY jti_key;
DROP TABLE used_assertion_ids;
ALTER TABLE used_assertion_ids_by_key RENAME TO used_assertion_ids;
CREATE INDEX used_assertion_ids_expiry ON used_assertion_ids (expires_at);
