-- RFC 6749 §4.1.2: a second use of a code revokes the tokens issued from
-- it. The second use can come while the first is still minting them (the
-- code is claimed before its tokens are named): `reused_at` records it, and
-- naming the tokens afterwards revokes them instead of letting them live.
ALTER TABLE authorization_codes ADD COLUMN reused_at BIGINT;
