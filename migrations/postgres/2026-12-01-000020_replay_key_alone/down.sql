-- Back to migration 5's layout, keyed by expiry first; rows stay.
DROP INDEX used_assertion_ids_expiry;
ALTER TABLE used_assertion_ids DROP CONSTRAINT used_assertion_ids_pkey;
ALTER TABLE used_assertion_ids ADD PRIMARY KEY (expires_at, jti_key);
