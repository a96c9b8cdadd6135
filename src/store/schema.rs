//! Table definitions shared by both backends (see `migrations/`).

diesel::table! {
    instance (id) {
        id -> BigInt,
        initialized_at -> BigInt,
        admin_user_id -> Text,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        generation -> BigInt,
        public_jwk -> Text,
        private_key -> Binary,
        master_key_id -> Text,
        created_at -> BigInt,
        activates_at -> BigInt,
    }
}

diesel::table! {
    service_users (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        owner -> Text,
        is_admin -> Bool,
        created_at -> BigInt,
        scopes -> Text,
        audiences -> Text,
        enabled -> Bool,
        max_token_lifetime -> Nullable<BigInt>,
    }
}

diesel::table! {
    access_tokens (id) {
        id -> Text,
        kind -> Text,
        lookup -> Text,
        digest -> Binary,
        owner_id -> Text,
        owner_kind -> Text,
        name -> Text,
        scopes -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        disabled_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at_ms -> BigInt,
        actor_id -> Nullable<Text>,
        actor_kind -> Text,
        action -> Text,
        target -> Nullable<Text>,
        client_id -> Nullable<Text>,
        remote_addr -> Nullable<Text>,
        outcome -> Text,
        details -> Text,
    }
}

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        confidential -> Bool,
        grant_types -> Text,
        auth_method -> Text,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        scopes -> Text,
        audiences -> Text,
        default_audience -> Nullable<Text>,
        access_token_lifetime -> Nullable<BigInt>,
        access_token_alg -> Text,
        jwks -> Nullable<Text>,
        jwks_uri -> Nullable<Text>,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    client_secrets (id) {
        id -> Text,
        client_id -> Text,
        digest -> Binary,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    used_assertion_ids (jti_key) {
        expires_at -> BigInt,
        jti_key -> Text,
    }
}

diesel::table! {
    service_user_keys (id) {
        id -> Text,
        user_id -> Text,
        public_jwk -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    trusted_issuers (issuer) {
        issuer -> Text,
        algorithms -> Text,
        max_token_age -> BigInt,
        jwks -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    trust_policies (name) {
        name -> Text,
        issuer -> Text,
        audience -> Text,
        allow_multiple_audiences -> Bool,
        service_user -> Text,
        scopes -> Text,
        lifetime -> BigInt,
        conditions -> Text,
        refused_events -> Text,
        name_only -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(client_secrets -> clients (client_id));
diesel::joinable!(trust_policies -> trusted_issuers (issuer));

diesel::allow_tables_to_appear_in_same_query!(
    instance,
    signing_keys,
    service_users,
    access_tokens,
    audit_events,
    clients,
    client_secrets,
    used_assertion_ids,
    service_user_keys,
    revoked_tokens,
    trusted_issuers,
    trust_policies,
);
