-- Every replica caches clients, service users and signing keys. A change
-- made through any replica (or by hand) is announced on a channel of this
-- schema and delivered when its transaction commits, so the other replicas
-- drop what they cached at once (src/store/notify.rs). The payload is
-- `kind:id`, or `kind` alone when every entry of that kind must go.

CREATE FUNCTION tessera_change_channel(schema_name TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 'tessera_changes_' || md5(schema_name) $$;

-- Trigger arguments: the kind, and the column that holds the id (none for
-- signing keys: any change reloads them all).
-- Trigger arguments: the kind, and the column that holds the id (none for
-- signing keys: any change reloads them all). The search path is pinned so
-- that a session with another one (a hand-run fix) still finds the channel.
CREATE FUNCTION tessera_notify_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
    AS $$
DECLARE
    id TEXT;
    payload TEXT := TG_ARGV[0];
BEGIN
    IF TG_NARGS > 1 THEN
        IF TG_OP = 'DELETE' THEN
            id := to_jsonb(OLD) ->> TG_ARGV[1];
        ELSE
            id := to_jsonb(NEW) ->> TG_ARGV[1];
        END IF;
        -- NOTIFY payloads are limited to 8000 bytes: name a long id by kind.
        IF id IS NOT NULL AND octet_length(id) <= 1000 THEN
            payload := payload || ':' || id;
        END IF;
    END IF;
    PERFORM pg_notify(tessera_change_channel(TG_TABLE_SCHEMA), payload);
    RETURN NULL;
END
$$;

CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_change('client', 'id');
CREATE TRIGGER client_secrets_changed AFTER INSERT OR UPDATE OR DELETE ON client_secrets
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_change('client', 'client_id');
CREATE TRIGGER service_users_changed AFTER INSERT OR UPDATE OR DELETE ON service_users
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_change('service_user', 'id');
CREATE TRIGGER service_user_keys_changed AFTER INSERT OR UPDATE OR DELETE ON service_user_keys
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_change('service_user', 'user_id');
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tessera_notify_change('keys');
