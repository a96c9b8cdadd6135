-- Used assertion ids in a rowid table: rows, and their expiry index, grow
-- at the end in arrival order. Keyed by the digest alone (WITHOUT ROWID,
-- migration 20), the expiry index's entries were ordered by expiry and
-- then by the random digest: concurrent assertions that expire in the same
-- second (pre-signed ones, or clients that round `exp`) landed on one
-- random index page each. The digest stays unique (the replay check); only
-- that one index is still written at random. Rows in use are carried over.
CREATE TABLE used_assertion_ids_by_arrival (
    jti_key TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO used_assertion_ids_by_arrival (jti_key, expires_at)
    SELECT jti_key, expires_at FROM used_assertion_ids ORDER BY expires_at;
DROP TABLE used_assertion_ids;
ALTER TABLE used_assertion_ids_by_arrival RENAME TO used_assertion_ids;
CREATE INDEX used_assertion_ids_expiry ON used_assertion_ids (expires_at);
