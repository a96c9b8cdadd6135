CREATE TABLE used_assertions (
    jti_key TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_assertions_expiry ON used_assertions (expires_at);
INSERT INTO used_assertions (jti_key, expires_at)
    SELECT jti_key, MAX(expires_at) FROM used_assertion_ids GROUP BY jti_key;
DROP TABLE used_assertion_ids;
