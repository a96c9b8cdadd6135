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
        owner_id -> Nullable<Text>,
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
        env -> Text,
        responsible_id -> Nullable<Text>,
        lifetime_secs -> Nullable<BigInt>,
        last_used_ip -> Nullable<Text>,
        use_count -> BigInt,
        replaced_by -> Nullable<Text>,
        last_four -> Text,
        max_uses -> Nullable<BigInt>,
        expiry_audited_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    agents (client_id) {
        client_id -> Text,
        service_user_id -> Text,
        bootstrap_id -> Nullable<Text>,
        registered_ip -> Nullable<Text>,
        key_expires_at -> BigInt,
        previous_jwks -> Nullable<Text>,
        previous_key_expires_at -> Nullable<BigInt>,
        registration_digest -> Binary,
        previous_registration_digest -> Nullable<Binary>,
        rotated_at -> Nullable<BigInt>,
        last_token_at -> Nullable<BigInt>,
        created_at -> BigInt,
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
        actor_owner -> Nullable<Text>,
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
        first_party -> Bool,
        id_token_alg -> Text,
        require_pkce -> Bool,
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

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        username_key -> Text,
        email -> Nullable<Text>,
        email_verified -> Bool,
        display_name -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        disabled -> Bool,
        admin -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    authorization_codes (digest) {
        digest -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        code_challenge -> Nullable<Text>,
        user_id -> Text,
        session_id -> Text,
        auth_time -> BigInt,
        amr -> Text,
        nonce -> Nullable<Text>,
        scopes -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        access_jti -> Nullable<Text>,
        access_exp -> Nullable<BigInt>,
        refresh_family -> Nullable<Text>,
        reused_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    consents (user_id, client_id) {
        user_id -> Text,
        client_id -> Text,
        scopes -> Text,
        granted_at -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        lookup -> Text,
        digest -> Binary,
        family_id -> Text,
        client_id -> Text,
        user_id -> Text,
        session_id -> Nullable<Text>,
        scopes -> Text,
        auth_time -> BigInt,
        amr -> Text,
        created_at -> BigInt,
        idle_expires_at -> BigInt,
        family_expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        access_jti -> Nullable<Text>,
        access_exp -> Nullable<BigInt>,
    }
}

diesel::joinable!(client_secrets -> clients (client_id));
diesel::joinable!(agents -> clients (client_id));
diesel::joinable!(trust_policies -> trusted_issuers (issuer));

diesel::allow_tables_to_appear_in_same_query!(
    instance,
    signing_keys,
    service_users,
    access_tokens,
    audit_events,
    clients,
    client_secrets,
    agents,
    used_assertion_ids,
    service_user_keys,
    revoked_tokens,
    trusted_issuers,
    trust_policies,
    users,
);

diesel::table! {
    sessions (id) {
        id -> Text,
        secret_digest -> Binary,
        user_id -> Text,
        auth_time -> BigInt,
        amr -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
    }
}

diesel::table! {
    login_throttle (bucket) {
        bucket -> Text,
        failures -> BigInt,
        blocked_until -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    totp_credentials (user_id) {
        user_id -> Text,
        sealed_secret -> Binary,
        master_key_id -> Text,
        confirmed_at -> Nullable<BigInt>,
        last_step -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    recovery_codes (user_id, digest) {
        user_id -> Text,
        digest -> Binary,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    device_authorizations (device_digest) {
        device_digest -> Text,
        user_code_digest -> Text,
        client_id -> Text,
        scopes -> Text,
        requested_at -> BigInt,
        requested_from -> Nullable<Text>,
        expires_at -> BigInt,
        interval_secs -> BigInt,
        last_polled_ms -> Nullable<BigInt>,
        slowed -> Bool,
        status -> Text,
        claim -> Nullable<Text>,
        user_id -> Nullable<Text>,
        auth_time -> Nullable<BigInt>,
        amr -> Nullable<Text>,
        decided_at -> Nullable<BigInt>,
        decided_from -> Nullable<Text>,
        access_jti -> Nullable<Text>,
        access_exp -> Nullable<BigInt>,
    }
}

// A code's claim asks, in the same statement, whether its session is alive
// (`authorization::claim_in_one_statement`).
diesel::allow_tables_to_appear_in_same_query!(authorization_codes, sessions);

// A login's password step reads the user and whether they confirmed TOTP
// in one statement (`UserStore::user_for_login`).
diesel::allow_tables_to_appear_in_same_query!(users, totp_credentials);
