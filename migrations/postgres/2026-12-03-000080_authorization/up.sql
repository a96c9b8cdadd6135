-- Browser sign-in (issue 10): clients for the authorization code flow,
-- authorization codes, remembered consents and refresh tokens.

-- OIDC Registration §2: first-party clients skip consent; the ID token's
-- algorithm (RS256 is the registration default); RFC 7636 PKCE, which only
-- a confidential client may make optional.
ALTER TABLE clients ADD COLUMN first_party BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN id_token_alg TEXT NOT NULL DEFAULT 'RS256';
ALTER TABLE clients ADD COLUMN require_pkce BOOLEAN NOT NULL DEFAULT TRUE;

-- RFC 6749 §4.1.2: codes live 60 s and are used once. Only a keyed digest
-- (hex) of the code is stored. `used_at` marks the redemption; the tokens
-- issued from it are named so that a second use can revoke them.
CREATE TABLE authorization_codes (
    digest TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    nonce TEXT,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    access_jti TEXT,
    access_exp BIGINT,
    refresh_family TEXT
);
CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

-- Consent, remembered per user and client: the scopes granted so far.
CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- Opaque `tsr_rt_` refresh tokens (RFC 6749 §6), stored as keyed digests.
-- Each use rotates the token within its family; `used_at` marks a rotated
-- token, whose second use revokes the family (a leak).
CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    lookup TEXT NOT NULL UNIQUE,
    digest BYTEA NOT NULL,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    session_id TEXT,
    scopes TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    family_expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT,
    access_jti TEXT,
    access_exp BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
