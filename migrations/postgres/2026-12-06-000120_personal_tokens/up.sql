-- Personal access tokens (`pat`, a user's) and machine tokens (`mt`, a
-- service user's) in the opaque-token table the bootstrap token uses.
-- `env`: the environment label in the token's prefix ('' for other kinds).
-- `responsible_id`: a machine token's human owner (users.id); NULL when it
-- has none (orphaned). `lifetime_secs`: the duration chosen at creation, so
-- a roll gives the new token as long again; NULL never expires.
-- `replaced_by`: the token a roll made. Uses are counted in memory and
-- written at most about once a minute per token.
ALTER TABLE access_tokens ADD COLUMN env TEXT NOT NULL DEFAULT '';
ALTER TABLE access_tokens ADD COLUMN responsible_id TEXT;
ALTER TABLE access_tokens ADD COLUMN lifetime_secs BIGINT;
ALTER TABLE access_tokens ADD COLUMN last_used_ip TEXT;
ALTER TABLE access_tokens ADD COLUMN use_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE access_tokens ADD COLUMN replaced_by TEXT;
-- The token's last four characters, shown in lists beside its prefix.
ALTER TABLE access_tokens ADD COLUMN last_four TEXT NOT NULL DEFAULT '';
CREATE INDEX access_tokens_responsible ON access_tokens (responsible_id);
-- Who stands behind an actor that is itself a credential: a token's owner.
ALTER TABLE audit_events ADD COLUMN actor_owner TEXT;
-- `tessera audit list --token ID`: a token's lifecycle and refused uses
-- name it as their target (its uses name it as the actor, which
-- audit_events_actor serves). Partial, so issuance rows cost nothing more.
CREATE INDEX audit_events_token_target ON audit_events (target, id)
    WHERE action IN ('token.created', 'token.disabled', 'token.enabled', 'token.rolled',
                     'token.revoked', 'token.transferred', 'auth.failed');
-- Replicas cache opaque tokens by their lookup prefix for a second
-- (src/oauth/token_cache.rs): every change to one is announced, so that a
-- disabled or revoked token is refused by every replica at once.
CREATE TRIGGER access_tokens_changed AFTER INSERT OR UPDATE OR DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_change('token', 'lookup');
