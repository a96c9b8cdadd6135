//! OAuth clients and their secrets.

use std::future::Future;

use diesel::prelude::*;

use super::audit::{NewAuditRecord, append_in};
use super::schema::{client_secrets, clients};
use super::{AnyConnection, Refusal, Store, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients, treat_none_as_null = true)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    pub confidential: bool,
    pub grant_types: String,
    pub auth_method: String,
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub scopes: String,
    pub audiences: String,
    pub default_audience: Option<String>,
    pub access_token_lifetime: Option<i64>,
    pub access_token_alg: String,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub first_party: bool,
    pub id_token_alg: String,
    pub require_pkce: bool,
}

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = client_secrets)]
pub struct ClientSecretRecord {
    pub id: String,
    pub client_id: String,
    pub digest: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for ClientSecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecretRecord")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A client and the digests of its secrets, each with its expiry.
pub type ClientWithSecrets = (ClientRecord, Vec<(Vec<u8>, Option<i64>)>);

pub trait ClientStore {
    fn create_client(
        &self,
        client: ClientRecord,
        secret: Option<ClientSecretRecord>,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn client(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<ClientRecord>, StoreError>> + Send;

    fn list_clients(&self) -> impl Future<Output = Result<Vec<ClientRecord>, StoreError>> + Send;

    /// Reads the client, lets `change` decide what to write, and writes it,
    /// in one transaction that locks the client's row before reading it:
    /// concurrent changes of one client queue up instead of overwriting each
    /// other (no lost update), on both backends. `Ok(Err(_))` when `change`
    /// refused (nothing is written); `NotFound` when there is no such client.
    fn change_client<T, E, F>(
        &self,
        id: String,
        change: F,
    ) -> impl Future<Output = Result<Result<T, E>, StoreError>> + Send
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(ClientRecord) -> Result<(ClientChange, T), E> + Send + 'static;

    /// Deletes the client if `precondition` accepts it as it is, read with
    /// the client locked (an `If-Match` cannot race a concurrent change).
    fn delete_client<E, F>(
        &self,
        id: String,
        event: NewAuditRecord,
        precondition: F,
    ) -> impl Future<Output = Result<Result<(), E>, StoreError>> + Send
    where
        E: Send + 'static,
        F: FnOnce(ClientRecord) -> Result<(), E> + Send + 'static;

    /// The client and every stored secret digest with its expiry.
    fn client_with_secrets(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<ClientWithSecrets>, StoreError>> + Send;
}

/// What one change of a client writes.
#[derive(Debug)]
pub struct ClientChange {
    pub client: ClientRecord,
    pub new_secret: Option<NewSecret>,
    pub event: NewAuditRecord,
}

/// A secret that becomes the current one. The previous current secret then
/// works until `previous_until`; secrets expired by then are dropped.
#[derive(Debug)]
pub struct NewSecret {
    pub secret: ClientSecretRecord,
    pub previous_until: i64,
}

/// Takes the client's row lock (PostgreSQL) or the write lock (SQLite) as
/// the transaction's first statement, so that what it reads next cannot be
/// changed by another writer before it commits.
pub(super) fn lock_client(conn: &mut AnyConnection, id: &str) -> Result<(), diesel::result::Error> {
    let locked = diesel::update(clients::table.find(id))
        .set(clients::updated_at.eq(clients::updated_at))
        .execute(conn)?;
    if locked == 0 {
        return Err(diesel::result::Error::NotFound);
    }
    Ok(())
}

fn replace_current_secret(
    conn: &mut AnyConnection,
    new: &NewSecret,
) -> Result<(), diesel::result::Error> {
    use client_secrets::dsl as s;
    let client_id = &new.secret.client_id;
    diesel::delete(
        s::client_secrets
            .filter(s::client_id.eq(client_id))
            .filter(s::expires_at.le(new.secret.created_at)),
    )
    .execute(conn)?;
    diesel::update(
        s::client_secrets
            .filter(s::client_id.eq(client_id))
            .filter(s::expires_at.is_null()),
    )
    .set(s::expires_at.eq(new.previous_until))
    .execute(conn)?;
    diesel::insert_into(s::client_secrets)
        .values(&new.secret)
        .execute(conn)?;
    Ok(())
}

impl ClientStore for Store {
    async fn create_client(
        &self,
        client: ClientRecord,
        secret: Option<ClientSecretRecord>,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::insert_into(clients::table)
                    .values(&client)
                    .execute(conn)?;
                if let Some(secret) = &secret {
                    diesel::insert_into(client_secrets::table)
                        .values(secret)
                        .execute(conn)?;
                }
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn client(&self, id: String) -> Result<Option<ClientRecord>, StoreError> {
        self.run(move |conn| {
            clients::table
                .find(id)
                .select(ClientRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.run(|conn| {
            clients::table
                .select(ClientRecord::as_select())
                .order(clients::created_at.asc())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn change_client<T, E, F>(
        &self,
        id: String,
        change: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(ClientRecord) -> Result<(ClientChange, T), E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                lock_client(conn, &id)?;
                let current = clients::table
                    .find(&id)
                    .select(ClientRecord::as_select())
                    .get_result(conn)?;
                let (change, value) = change(current).map_err(Refusal::By)?;
                diesel::update(clients::table.find(&id))
                    .set(&change.client)
                    .execute(conn)?;
                if let Some(new) = &change.new_secret {
                    replace_current_secret(conn, new)?;
                }
                append_in(conn, &change.event)?;
                Ok(value)
            });
            Refusal::settle(outcome)
        })
        .await
    }

    async fn delete_client<E, F>(
        &self,
        id: String,
        event: NewAuditRecord,
        precondition: F,
    ) -> Result<Result<(), E>, StoreError>
    where
        E: Send + 'static,
        F: FnOnce(ClientRecord) -> Result<(), E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                lock_client(conn, &id)?;
                let current = clients::table
                    .find(&id)
                    .select(ClientRecord::as_select())
                    .get_result(conn)?;
                precondition(current).map_err(Refusal::By)?;
                diesel::delete(client_secrets::table.filter(client_secrets::client_id.eq(&id)))
                    .execute(conn)?;
                diesel::delete(clients::table.find(&id)).execute(conn)?;
                append_in(conn, &event)?;
                Ok(())
            });
            Refusal::settle(outcome)
        })
        .await
    }

    async fn client_with_secrets(
        &self,
        id: String,
    ) -> Result<Option<ClientWithSecrets>, StoreError> {
        self.run(move |conn| {
            let Some(client) = clients::table
                .find(&id)
                .select(ClientRecord::as_select())
                .get_result(conn)
                .optional()?
            else {
                return Ok(None);
            };
            let digests = client_secrets::table
                .filter(client_secrets::client_id.eq(&id))
                .select((client_secrets::digest, client_secrets::expires_at))
                .load::<(Vec<u8>, Option<i64>)>(conn)?;
            Ok(Some((client, digests)))
        })
        .await
    }
}
