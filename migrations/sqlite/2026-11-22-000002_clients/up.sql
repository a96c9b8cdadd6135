-- OAuth clients (RFC 6749 §2) and their generated secrets. Lists are
-- space-separated (scopes, grant types, audiences) or JSON arrays (URIs).

CREATE TABLE clients (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    confidential BOOLEAN NOT NULL,
    grant_types TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    scopes TEXT NOT NULL,
    audiences TEXT NOT NULL,
    default_audience TEXT,
    access_token_lifetime BIGINT,
    access_token_alg TEXT NOT NULL,
    jwks TEXT,
    jwks_uri TEXT,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Only a keyed digest of each secret. `expires_at` is NULL for the current
-- secret and set to the end of the grace period when it is rotated out.
CREATE TABLE client_secrets (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    digest BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX client_secrets_client ON client_secrets (client_id);
