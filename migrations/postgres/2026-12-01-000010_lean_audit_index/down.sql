DROP INDEX audit_events_action;
CREATE INDEX audit_events_action ON audit_events (action, id);
