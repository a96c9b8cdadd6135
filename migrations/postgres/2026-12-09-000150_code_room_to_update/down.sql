ALTER TABLE authorization_codes RESET (fillfactor);
