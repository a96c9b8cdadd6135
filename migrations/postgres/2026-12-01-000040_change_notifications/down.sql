DROP TRIGGER signing_keys_changed ON signing_keys;
DROP TRIGGER service_user_keys_changed ON service_user_keys;
DROP TRIGGER service_users_changed ON service_users;
DROP TRIGGER client_secrets_changed ON client_secrets;
DROP TRIGGER clients_changed ON clients;
DROP FUNCTION tessera_notify_change();
DROP FUNCTION tessera_change_channel(TEXT);
