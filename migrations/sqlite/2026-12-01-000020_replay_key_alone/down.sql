-- Back to migration 5's layout, keyed by expiry first; rows carried over.
CREATE TABLE used_assertion_ids_by_expiry (
    expires_at BIGINT NOT NULL,
    jti_key TEXT NOT NULL,
    PRIMARY KEY (expires_at, jti_key)
) WITHOUT ROWID;
INSERT INTO used_assertion_ids_by_expiry (expires_at, jti_key)
    SELECT expires_at, jti_key FROM used_assertion_ids;
DROP TABLE used_assertion_ids;
ALTER TABLE used_assertion_ids_by_expiry RENAME TO used_assertion_ids;
