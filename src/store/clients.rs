//! OAuth clients and their secrets.

use std::future::Future;

use diesel::prelude::*;

use super::audit::{NewAuditRecord, append_in};
use super::schema::{client_secrets, clients};
use super::{Store, StoreError};

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

    /// `NotFound` when the client does not exist.
    fn update_client(
        &self,
        client: ClientRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn delete_client(
        &self,
        id: String,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The client and every stored secret digest with its expiry.
    fn client_with_secrets(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<ClientWithSecrets>, StoreError>> + Send;

    /// Ends the current secret at `grace_until`, drops expired ones, and
    /// stores `secret` as the new current one, atomically.
    fn rotate_client_secret(
        &self,
        secret: ClientSecretRecord,
        grace_until: i64,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
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
                .first(conn)
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

    async fn update_client(
        &self,
        client: ClientRecord,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                let updated = diesel::update(clients::table.find(&client.id))
                    .set(&client)
                    .execute(conn)?;
                if updated == 0 {
                    return Err(diesel::result::Error::NotFound);
                }
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn delete_client(&self, id: String, event: NewAuditRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::delete(client_secrets::table.filter(client_secrets::client_id.eq(&id)))
                    .execute(conn)?;
                let deleted = diesel::delete(clients::table.find(&id)).execute(conn)?;
                if deleted == 0 {
                    return Err(diesel::result::Error::NotFound);
                }
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
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
                .first(conn)
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

    async fn rotate_client_secret(
        &self,
        secret: ClientSecretRecord,
        grace_until: i64,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                use client_secrets::dsl as s;
                let exists =
                    diesel::select(diesel::dsl::exists(clients::table.find(&secret.client_id)))
                        .get_result::<bool>(conn)?;
                if !exists {
                    return Err(diesel::result::Error::NotFound);
                }
                diesel::delete(
                    s::client_secrets
                        .filter(s::client_id.eq(&secret.client_id))
                        .filter(s::expires_at.le(secret.created_at)),
                )
                .execute(conn)?;
                diesel::update(
                    s::client_secrets
                        .filter(s::client_id.eq(&secret.client_id))
                        .filter(s::expires_at.is_null()),
                )
                .set(s::expires_at.eq(grace_until))
                .execute(conn)?;
                diesel::insert_into(s::client_secrets)
                    .values(&secret)
                    .execute(conn)?;
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }
}
