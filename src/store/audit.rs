//! The append-only audit log. Nothing here updates or deletes a row.

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
}

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
}

/// Filters for listing; `before_id` is the paging cursor (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
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
                query = query.filter(a::action.eq(action));
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
