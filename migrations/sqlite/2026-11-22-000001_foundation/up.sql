-- Times are Unix seconds unless the column name ends in _ms.

CREATE TABLE instance (
    id BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    initialized_at BIGINT NOT NULL,
    admin_user_id TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    alg TEXT NOT NULL,
    generation BIGINT NOT NULL,
    public_jwk TEXT NOT NULL,
    private_key BLOB NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    UNIQUE (alg, generation)
);

CREATE TABLE service_users (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

-- Opaque bearer credentials (bootstrap tokens now, personal access tokens
-- later). Only a keyed digest is stored; `lookup` is the public prefix.
CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    lookup TEXT NOT NULL UNIQUE,
    digest BLOB NOT NULL,
    owner_id TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    disabled_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX access_tokens_owner ON access_tokens (owner_id);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    actor_id TEXT,
    actor_kind TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    client_id TEXT,
    remote_addr TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_events_action ON audit_events (action, id);
CREATE INDEX audit_events_actor ON audit_events (actor_id, id);
