-- The maintenance loop deletes refresh tokens whose family can no longer
-- be used: past its absolute lifetime, revoked over an hour ago, or whose
-- newest token went unused past the idle lifetime. These indexes keep that
-- sweep from reading the whole table every minute.
CREATE INDEX refresh_tokens_family_expires ON refresh_tokens (family_expires_at);
CREATE INDEX refresh_tokens_idle_expires ON refresh_tokens (idle_expires_at) WHERE used_at IS NULL;
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
-- Ending a user's or a session's grants finds their codes by these.
CREATE INDEX authorization_codes_user ON authorization_codes (user_id);
CREATE INDEX authorization_codes_session ON authorization_codes (session_id);
