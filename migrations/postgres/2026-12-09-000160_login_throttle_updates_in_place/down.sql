ALTER TABLE login_throttle RESET (fillfactor);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);
