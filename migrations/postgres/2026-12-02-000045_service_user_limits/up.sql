-- Service users can be disabled (a disabled one gets no token by any
-- grant or trust policy) and can cap the lifetime of the tokens issued to
-- them (seconds; NULL: the server's limits only).
ALTER TABLE service_users ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE service_users ADD COLUMN max_token_lifetime BIGINT;
