//! The one-row `instance` table that says the database was initialised.

use std::future::Future;

use diesel::prelude::*;

use super::audit::NewAuditRecord;
use super::credentials::{AccessTokenRecord, ServiceUserRecord, insert_token};
use super::schema::{access_tokens, instance, service_users};
use super::{Store, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = instance)]
pub struct InstanceRecord {
    pub id: i64,
    pub initialized_at: i64,
    pub admin_user_id: String,
}

pub trait InstanceStore {
    fn instance(&self) -> impl Future<Output = Result<Option<InstanceRecord>, StoreError>> + Send;

    /// Creates the instance row, the administrator and its token in one
    /// transaction. `Conflict` when the database is already initialised
    /// (another replica won the race, or an operator ran `init` twice).
    fn initialize(
        &self,
        admin: ServiceUserRecord,
        token: AccessTokenRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes every bootstrap token of `token`'s owner and stores `token`,
    /// in one transaction.
    fn replace_admin_token(
        &self,
        token: AccessTokenRecord,
        now: i64,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl InstanceStore for Store {
    async fn instance(&self) -> Result<Option<InstanceRecord>, StoreError> {
        self.run(|conn| {
            instance::table
                .select(InstanceRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn initialize(
        &self,
        admin: ServiceUserRecord,
        token: AccessTokenRecord,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                let row = InstanceRecord {
                    id: 1,
                    initialized_at: admin.created_at,
                    admin_user_id: admin.id.clone(),
                };
                diesel::insert_into(instance::table)
                    .values(&row)
                    .execute(conn)?;
                diesel::insert_into(service_users::table)
                    .values(&admin)
                    .execute(conn)?;
                insert_token(conn, &token, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn replace_admin_token(
        &self,
        token: AccessTokenRecord,
        now: i64,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                use access_tokens::dsl as t;
                diesel::update(
                    t::access_tokens
                        .filter(t::owner_id.eq(&token.owner_id))
                        .filter(t::kind.eq(&token.kind))
                        .filter(t::revoked_at.is_null()),
                )
                .set(t::revoked_at.eq(now))
                .execute(conn)?;
                insert_token(conn, &token, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }
}
