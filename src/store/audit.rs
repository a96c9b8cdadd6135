//! The append-only audit log. Nothing here updates a row; rows older than
//! `audit.retention` are deleted by [`prune`], a few at a time.

use std::future::Future;

use diesel::prelude::*;
use serde::Serialize;

use super::schema::audit_events;
use super::{AnyConnection, Store, StoreError};

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
pub struct NewAuditRecord {
    pub occurred_at_ms: i64,
    pub actor_id: Option<String>,
    pub actor_kind: String,
    pub action: String,
    pub target: Option<String>,
    pub client_id: Option<String>,
    pub remote_addr: Option<String>,
    pub outcome: String,
    pub details: String,
    /// When the actor is a credential (a personal or machine token), who
    /// stands behind it: the user or service user that owns it.
    pub actor_owner: Option<String>,
}

impl NewAuditRecord {
    /// The event with `members` added to its details (a JSON object; a
    /// row whose details are not one starts from an empty object).
    pub(crate) fn with_details(
        mut self,
        members: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
    ) -> NewAuditRecord {
        let mut details = serde_json::from_str::<serde_json::Value>(&self.details)
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        for (name, value) in members {
            details[name] = value;
        }
        self.details = details.to_string();
        self
    }

    /// The row as printable ASCII (every other character escaped), each
    /// value bounded, its details kept as an escaped string: what the
    /// writer stores when the database refused the row as it was.
    pub fn safe_form(&self) -> NewAuditRecord {
        let text = |value: &str| -> String {
            let escaped: String = value.chars().flat_map(char::escape_default).collect();
            match escaped.char_indices().nth(SAFE_FIELD_CHARS) {
                Some((cut, _)) => format!("{}...", &escaped[..cut]),
                None => escaped,
            }
        };
        let optional = |value: &Option<String>| value.as_deref().map(text);
        NewAuditRecord {
            occurred_at_ms: self.occurred_at_ms,
            actor_id: optional(&self.actor_id),
            actor_kind: text(&self.actor_kind),
            action: text(&self.action),
            target: optional(&self.target),
            client_id: optional(&self.client_id),
            remote_addr: optional(&self.remote_addr),
            actor_owner: optional(&self.actor_owner),
            outcome: text(&self.outcome),
            details: serde_json::json!({
                "refused_by_database": true,
                "details": text(&self.details),
            })
            .to_string(),
        }
    }
}

const SAFE_FIELD_CHARS: usize = 512;

/// The actions whose target may be a personal or machine token, as the
/// partial index `audit_events_token_target` lists them: the lifecycle,
/// and refused uses (`auth.failed`).
pub const TOKEN_TARGET_ACTIONS: [&str; 7] = [
    "token.created",
    "token.disabled",
    "token.enabled",
    "token.rolled",
    "token.revoked",
    "token.transferred",
    "auth.failed",
];

/// The one action left out of the `(action, id)` index (migration
/// 2026-12-01-000010): nearly every row is one, and the primary key serves it.
const UNINDEXED_ACTION: &str = "token.issued";

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = audit_events)]
pub struct AuditRecord {
    pub id: i64,
    pub occurred_at_ms: i64,
    pub actor_id: Option<String>,
    pub actor_kind: String,
    pub action: String,
    pub target: Option<String>,
    pub client_id: Option<String>,
    pub remote_addr: Option<String>,
    pub outcome: String,
    pub details: String,
    pub actor_owner: Option<String>,
}

/// Filters for listing; `before_id` is the paging cursor (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    /// Events of one personal or machine token: as actor, or as the
    /// target of one of [`TOKEN_TARGET_ACTIONS`].
    pub token: Option<String>,
    pub actor_id: Option<String>,
    pub actor_kind: Option<String>,
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

pub trait AuditStore {
    fn append_audit(
        &self,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn list_audit(
        &self,
        filter: AuditFilter,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;
}

/// Appends inside a caller's transaction, so an action and its event commit
/// together or not at all.
pub(crate) fn append_in(conn: &mut AnyConnection, event: &NewAuditRecord) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(event)
        .execute(conn)
        .map(drop)
}

/// Appends many events inside the caller's transaction, as multi-row
/// INSERTs of 64, then 8, then single rows. Fixed sizes keep each statement
/// in the connection's prepared-statement cache: an INSERT of any other
/// length is parsed and planned anew, which was a fifth of the writer
/// thread's CPU on SQLite. Absent values are bound as NULL (not DEFAULT), so
/// every row has the same shape.
pub(crate) fn append_all(conn: &mut AnyConnection, events: &[NewAuditRecord]) -> QueryResult<()> {
    let rest = append_chunks::<64>(conn, events)?;
    let rest = append_chunks::<8>(conn, rest)?;
    append_chunks::<1>(conn, rest).map(drop)
}

/// Inserts `events` in statements of exactly `N` rows; returns the rows
/// left over.
fn append_chunks<'a, const N: usize>(
    conn: &mut AnyConnection,
    events: &'a [NewAuditRecord],
) -> QueryResult<&'a [NewAuditRecord]> {
    let mut chunks = events.chunks_exact(N);
    for chunk in &mut chunks {
        let rows: &[NewAuditRecord; N] = chunk.try_into().expect("chunks_exact yields N rows");
        let insert = diesel::insert_into(audit_events::table).values(rows);
        // MultiConnection has no multi-row VALUES, so the statement goes to
        // the backend's own connection.
        match &mut *conn {
            AnyConnection::Postgresql(pg) => insert.execute(pg),
            AnyConnection::Sqlite(lite) => insert.execute(lite),
        }?;
    }
    Ok(chunks.remainder())
}

/// Deletes up to `batch` of the oldest events that occurred before
/// `cutoff_ms`; returns how many. Only the first `batch` rows by id are
/// looked at, through the primary key, so a round costs the same however
/// large the table is and whether or not anything is due.
pub(crate) fn prune(conn: &mut AnyConnection, cutoff_ms: i64, batch: i64) -> QueryResult<usize> {
    use audit_events::dsl as a;
    let oldest: Vec<(i64, i64)> = a::audit_events
        .select((a::id, a::occurred_at_ms))
        .order(a::id.asc())
        .limit(batch)
        .load(conn)?;
    let Some(last) = oldest
        .iter()
        .filter(|(_, at)| *at < cutoff_ms)
        .map(|(id, _)| *id)
        .max()
    else {
        return Ok(0);
    };
    diesel::delete(
        a::audit_events
            .filter(a::id.le(last))
            .filter(a::occurred_at_ms.lt(cutoff_ms)),
    )
    .execute(conn)
}

impl AuditStore for Store {
    async fn append_audit(&self, event: NewAuditRecord) -> Result<(), StoreError> {
        self.run(move |conn| append_in(conn, &event).map_err(StoreError::from))
            .await
    }

    async fn list_audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.run(move |conn| {
            use audit_events::dsl as a;
            let mut query = a::audit_events
                .select(AuditRecord::as_select())
                .into_boxed();
            if let Some(action) = filter.action {
                if action != UNINDEXED_ACTION {
                    // Repeats the partial index's condition, so that SQLite
                    // (which cannot infer it from `action = …`) uses it.
                    query = query.filter(a::action.ne(UNINDEXED_ACTION));
                }
                query = query.filter(a::action.eq(action));
            }
            if let Some(token) = filter.token {
                // Repeats the partial index's condition (migration
                // 2026-12-06-000120), so that SQLite uses it.
                query = query.filter(
                    a::actor_id.eq(token.clone()).or(a::target
                        .eq(token)
                        .and(a::action.eq_any(TOKEN_TARGET_ACTIONS))),
                );
            }
            if let Some(actor) = filter.actor_id {
                query = query.filter(a::actor_id.eq(actor));
            }
            if let Some(kind) = filter.actor_kind {
                query = query.filter(a::actor_kind.eq(kind));
            }
            if let Some(outcome) = filter.outcome {
                query = query.filter(a::outcome.eq(outcome));
            }
            if let Some(since) = filter.since_ms {
                query = query.filter(a::occurred_at_ms.ge(since));
            }
            if let Some(until) = filter.until_ms {
                query = query.filter(a::occurred_at_ms.lt(until));
            }
            if let Some(before) = filter.before_id {
                query = query.filter(a::id.lt(before));
            }
            query
                .order(a::id.desc())
                .limit(filter.limit)
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_form_is_bounded_printable_ascii() {
        let hostile = "\0é\"\\\u{7f}".repeat(200);
        let row = NewAuditRecord {
            occurred_at_ms: 1,
            actor_id: Some(hostile.clone()),
            actor_kind: "service".into(),
            action: "client.auth_failed".into(),
            target: None,
            client_id: Some(hostile.clone()),
            remote_addr: Some("127.0.0.1".into()),
            outcome: "failure".into(),
            details: format!("{{\"reason\":\"{hostile}\"}}"),
            actor_owner: None,
        };
        let safe = row.safe_form();
        for text in [
            safe.actor_id.as_deref().unwrap(),
            safe.client_id.as_deref().unwrap(),
            &safe.details,
        ] {
            assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
        }
        assert!(safe.actor_id.unwrap().len() <= SAFE_FIELD_CHARS + 3);
        let details: serde_json::Value = serde_json::from_str(&safe.details).unwrap();
        assert_eq!(details["refused_by_database"], true);
        assert_eq!(safe.action, "client.auth_failed");
        assert_eq!(safe.occurred_at_ms, 1);
    }
}
