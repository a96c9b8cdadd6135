-- Service users get what they may ask for, and public keys for the
-- JWT-bearer grant (RFC 7523 §2.1). Revoked JWT access tokens are kept by
-- jti until they would have expired (RFC 7009).
ALTER TABLE service_users ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE service_users ADD COLUMN audiences TEXT NOT NULL DEFAULT '';

CREATE TABLE service_user_keys (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES service_users (id) ON DELETE CASCADE,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX service_user_keys_user ON service_user_keys (user_id);

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
