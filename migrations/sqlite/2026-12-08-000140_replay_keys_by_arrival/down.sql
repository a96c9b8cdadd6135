-- Back to migration 20's layout, keyed by the digest alone; rows carried over.
CREATE TABLE used_assertion_ids_by_key (
    jti_key TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO used_assertion_ids_by_key (jti_key, expires_at)
    SELECT jti_key, expires_at FROM used_assertion_ids;
DROP TABLE used_assertion_ids;
ALTER TABLE used_assertion_ids_by_key RENAME TO used_assertion_ids;
CREATE INDEX used_assertion_ids_expiry ON used_assertion_ids (expires_at);
