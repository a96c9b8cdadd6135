-- Agents (issue 13): workloads that register their own Ed25519 key with a
-- short-lived bootstrap token (`tsr_ab_`, a row of access_tokens) and live
-- on 15-minute tokens. `max_uses`: how many registrations a bootstrap token
-- allows; `use_count` counts them, raised only while below it, so two
-- replicas racing for a single-use token cannot both win.
ALTER TABLE access_tokens ADD COLUMN max_uses BIGINT;
-- When a bootstrap token's expiry was audited (`agent.bootstrap_expired`,
-- written once by whichever replica gets there first).
ALTER TABLE access_tokens ADD COLUMN expiry_audited_at BIGINT;
CREATE INDEX access_tokens_bootstrap_expiry ON access_tokens (expires_at)
    WHERE kind = 'ab' AND expiry_audited_at IS NULL AND revoked_at IS NULL;

-- An agent is a client (private_key_jwt, client_credentials) acting for a
-- service user. Its key expires; a rotation keeps the previous key until
-- `previous_key_expires_at` (the overlap). The registration access token
-- (RFC 7592) is stored as a keyed digest and replaced on every use.
CREATE TABLE agents (
    client_id TEXT PRIMARY KEY NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    service_user_id TEXT NOT NULL REFERENCES service_users (id),
    bootstrap_id TEXT,
    registered_ip TEXT,
    key_expires_at BIGINT NOT NULL,
    previous_jwks TEXT,
    previous_key_expires_at BIGINT,
    registration_digest BYTEA NOT NULL,
    -- The token the last configuration call used: good for one thing only,
    -- repeating that call's key rotation while the old key's overlap lasts,
    -- so that an agent whose answer was lost can ask again.
    previous_registration_digest BYTEA,
    rotated_at BIGINT,
    last_token_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX agents_service_user ON agents (service_user_id);

-- Replicas cache an agent with its client: a change of what the token
-- endpoint reads is announced as one, but not the last token time, written
-- once a minute. (A configuration call rewrites the whole row, so it is
-- announced whatever it changed: rare, and harmless.)
CREATE TRIGGER agents_changed
    AFTER INSERT OR DELETE OR UPDATE OF service_user_id, key_expires_at, previous_jwks,
        previous_key_expires_at ON agents
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_change('client', 'client_id');
