-- Browser sessions, login throttling and TOTP second factors (issue 10,
-- item 2). Sessions live in the database so that any replica serves them;
-- the cookie carries a 256-bit secret whose keyed digest is stored here,
-- never the public id.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    secret_digest BLOB NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);

-- Failed sign-in attempts per bucket (an account's keyed digest, or a
-- client address), shared by every replica; rows idle past the failure
-- window are pruned.
CREATE TABLE login_throttle (
    bucket TEXT PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);

-- RFC 6238 secrets, sealed with the master key (AES-256-GCM). A row
-- without confirmed_at is an enrolment not yet confirmed with a code.
-- last_step is the last time step accepted: a code is not accepted twice.
CREATE TABLE totp_credentials (
    user_id TEXT PRIMARY KEY NOT NULL,
    sealed_secret BLOB NOT NULL,
    master_key_id TEXT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Single-use recovery codes, stored as keyed digests.
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    digest BLOB NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, digest)
);
