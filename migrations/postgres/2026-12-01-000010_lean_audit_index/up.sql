-- token.issued is nearly every row, and listing it needs no index (the
-- primary key serves it newest first). Indexing only the other actions
-- keeps rare events quick to find and spares every issuance an index entry.
DROP INDEX audit_events_action;
CREATE INDEX audit_events_action ON audit_events (action, id) WHERE action <> 'token.issued';
