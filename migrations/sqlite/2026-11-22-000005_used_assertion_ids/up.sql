-- Used assertion ids, now keyed by expiry first. A batch of concurrent
-- assertions expires within the same seconds, so its rows land on the same
-- few B-tree pages instead of one random page each: one commit writes a
-- handful of pages, not one per assertion (docs/architecture.md). A replay
-- presents the same token, so the same expiry and issuer+jti digest, and
-- still collides with its row. Rows in use are carried over.
CREATE TABLE used_assertion_ids (
    expires_at BIGINT NOT NULL,
    jti_key TEXT NOT NULL,
    PRIMARY KEY (expires_at, jti_key)
) WITHOUT ROWID;
INSERT INTO used_assertion_ids (expires_at, jti_key)
    SELECT expires_at, jti_key FROM used_assertions;
DROP TABLE used_assertions;
