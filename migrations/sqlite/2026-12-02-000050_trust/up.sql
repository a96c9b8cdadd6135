-- CI federation (issue 9): the issuers whose tokens may be exchanged and
-- the trust policies that map their tokens to service users. Lists are
-- space-separated (algorithms, scopes, refused events); conditions and a
-- static JWK Set are JSON.
--
-- Both references RESTRICT: an issuer or a service user that a policy
-- names cannot be deleted until the policy is (the store answers Conflict
-- naming the policy, the API 409), so a policy never points at nothing and
-- a deletion never silently widens or removes a trust.

CREATE TABLE trusted_issuers (
    issuer TEXT PRIMARY KEY NOT NULL,
    algorithms TEXT NOT NULL,
    max_token_age BIGINT NOT NULL,
    jwks TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE trust_policies (
    name TEXT PRIMARY KEY NOT NULL,
    issuer TEXT NOT NULL REFERENCES trusted_issuers (issuer) ON DELETE RESTRICT,
    audience TEXT NOT NULL,
    allow_multiple_audiences BOOLEAN NOT NULL,
    service_user TEXT NOT NULL REFERENCES service_users (id) ON DELETE RESTRICT,
    scopes TEXT NOT NULL,
    lifetime BIGINT NOT NULL,
    conditions TEXT NOT NULL,
    refused_events TEXT NOT NULL,
    name_only BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX trust_policies_issuer ON trust_policies (issuer);
CREATE INDEX trust_policies_service_user ON trust_policies (service_user);
