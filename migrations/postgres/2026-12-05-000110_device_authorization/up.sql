-- The device authorization grant (RFC 8628, issue 11). Only keyed digests
-- (hex) of the device code and of the user code (normalised: eight
-- letters, upper case) are stored. `interval_secs` grows by 5 with each
-- `slow_down` (§3.5) and `last_polled_ms` is the previous poll, so every
-- replica enforces one pace. `status` is pending, approved, denied or
-- redeemed (or ended, when the user's sessions ended before the tokens
-- were handed out); `claim` names the one poll that redeemed an approval,
-- `access_jti` the access token it gave (revoked if the user's sessions
-- end while it lives).
CREATE TABLE device_authorizations (
    device_digest TEXT PRIMARY KEY NOT NULL,
    user_code_digest TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    requested_from TEXT,
    expires_at BIGINT NOT NULL,
    interval_secs BIGINT NOT NULL,
    last_polled_ms BIGINT,
    slowed BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL,
    claim TEXT,
    user_id TEXT,
    auth_time BIGINT,
    amr TEXT,
    decided_at BIGINT,
    decided_from TEXT,
    access_jti TEXT,
    access_exp BIGINT
);
CREATE INDEX device_authorizations_expires ON device_authorizations (expires_at);

-- `tessera login`'s public client, which every instance has (issue 11,
-- item 4): the device flow, and authorization code + PKCE with a loopback
-- redirect on any port (RFC 8252 §7.3). First party: the approval page is
-- its consent. An existing client of that id is left as it is.
INSERT INTO clients (id, name, confidential, grant_types, auth_method, redirect_uris,
    post_logout_redirect_uris, scopes, audiences, default_audience, access_token_lifetime,
    access_token_alg, jwks, jwks_uri, enabled, created_at, updated_at, first_party,
    id_token_alg, require_pkce)
VALUES ('tessera-cli', 'Tessera CLI', FALSE,
    'urn:ietf:params:oauth:grant-type:device_code authorization_code refresh_token', 'none',
    '["http://127.0.0.1/callback"]', '[]', 'admin admin:read audit:read tokens:self', '', NULL,
    NULL, 'ES256', NULL, NULL, TRUE, CAST(EXTRACT(EPOCH FROM now()) AS BIGINT), CAST(EXTRACT(EPOCH FROM now()) AS BIGINT), TRUE, 'RS256', TRUE)
ON CONFLICT (id) DO NOTHING;
