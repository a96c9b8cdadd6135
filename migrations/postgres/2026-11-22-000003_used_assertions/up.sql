-- `jti`s of JWT assertions already accepted (RFC 7523 §3 item 7), so a
-- replay is refused on every replica. `jti_key` is a SHA-256 of the issuer
-- and the jti; rows are purged once the assertion has expired.
CREATE TABLE used_assertions (
    jti_key TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_assertions_expiry ON used_assertions (expires_at);
