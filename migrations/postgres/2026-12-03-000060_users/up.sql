-- People (issue 10). `id` is a UUID v4 string: the stable, opaque OIDC
-- `sub` (OIDC Core §2), never the username. `username_key` is the
-- username in lowercase: usernames are unique case-insensitively.
-- `password_hash` is an argon2id PHC string, NULL for a user who cannot
-- log in with a password (yet).
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    email TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    display_name TEXT,
    password_hash TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A service user's owner is now a user. Owners recorded as free text
-- before users existed stay in `owner` with `owner_id` NULL (unlinked);
-- a linked owner has both (the username in `owner`). Deleting the user
-- unlinks (the store clears `owner_id` in the same transaction; no
-- foreign key, so that SQLite can drop the column again), it does not
-- delete the service user.
ALTER TABLE service_users ADD COLUMN owner_id TEXT;
CREATE INDEX service_users_owner_id ON service_users (owner_id);
