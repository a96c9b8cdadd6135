DELETE FROM clients WHERE id = 'tessera-cli';
DROP TABLE device_authorizations;
