//! What the generated admin API document cannot say by itself (issue 8,
//! item 19): JSON Schema 2020-12 (OpenAPI 3.1) constraints that the schema
//! derive has no words for, and the links between operations. Each rule
//! here is one the server enforces, so that the document is the contract.

use serde_json::{Value, json};

use crate::oauth::client::uri_patterns;

/// Refines the generated document in place.
pub fn refine(doc: &mut Value, max_lifetime_secs: u64) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["Jwk"] = jwk();
    schemas["JwkSet"] = jwk_set();
    for name in ["ClientSpec", "ClientRegistration"] {
        let properties = &mut schemas[name]["properties"];
        let redirect = uri_list(&uri_patterns().redirect.source);
        properties["redirect_uris"] = redirect.clone();
        properties["post_logout_redirect_uris"] = redirect;
        properties["jwks"] = json!({
            "description": "A JWK Set (RFC 7517 section 5) for private_key_jwt.",
            "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/JwkSet"}]
        });
        properties["jwks_uri"] = json!({
            "type": ["string", "null"],
            "pattern": uri_patterns().jwks.source,
        });
        properties["scope"] = json!({
            "type": ["string", "null"],
            "description": "Scope tokens (RFC 6749 section 3.3) separated by white space.",
            "pattern": SCOPE_LIST,
        });
        properties["default_audience"] = json!({
            "type": ["string", "null"],
            "description": "One of the audiences (added to them); empty clears it.",
            "pattern": "^[!-~]*$",
        });
        properties["access_token_lifetime"]["maximum"] = max_lifetime_secs.into();
    }
    schemas["ClientRegistration"]["anyOf"] = registration_branches();
    // RFC 6749 §3.1.2.2: a client of the authorization endpoint registers
    // where codes may go. `contains` holds for anything but an array, so
    // the type is said: `grant_types: null` takes the default grant.
    schemas["ClientRegistration"]["if"] = json!({
        "required": ["grant_types"],
        "properties": {"grant_types": {"type": "array", "contains": {"const": "authorization_code"}}}
    });
    schemas["ClientRegistration"]["then"] = json!({
        "required": ["redirect_uris"],
        "properties": {"redirect_uris": {"type": "array", "minItems": 1}}
    });
    schemas["KeySpec"]["properties"]["public_key"] = json!({
        "description": "A JWK, or text: a PEM SubjectPublicKeyInfo or a JWK as JSON. \
            Never a private key: it stays with its owner.",
        "oneOf": [{"$ref": "#/components/schemas/Jwk"}, {"type": "string", "minLength": 1}]
    });
    trust(schemas);
    for (name, schema) in schemas.as_object_mut().into_iter().flatten() {
        if !["Jwk", "JwkSet", "TrustJwk"].contains(&name.as_str()) {
            forbid_nul(schema);
        }
    }
    issuer_path_parameter(&mut doc["paths"]);
    parameters_without_nul(&mut doc["paths"]);
    add_links(&mut doc["paths"]);
}

/// Every text field the API stores as text refuses NUL (U+0000), which
/// PostgreSQL cannot store (`extract::json_body`); key documents are
/// stored as JSON and may carry anything.
fn forbid_nul(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let is_string = match object.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    if is_string {
        object.insert(
            "not".into(),
            json!({"type": "string", "pattern": "\\u0000"}),
        );
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if !super::extract::JSON_DOCUMENT_MEMBERS.contains(&name.as_str()) {
                forbid_nul(property);
            }
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let Some(inner) = object.get_mut(nested) {
            forbid_nul(inner);
        }
    }
    for list in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(branches)) = object.get_mut(list) {
            branches.iter_mut().for_each(forbid_nul);
        }
    }
}

/// No path or query parameter holds NUL either: `nul_guard` refuses a
/// request with one before any handler sees it (the 400 it answers is
/// added in `admin::CommonResponses`). utoipa puts parameters on each
/// operation, never on the path item.
fn parameters_without_nul(paths: &mut Value) {
    let operations = paths
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|methods| methods.values_mut())
        .filter_map(Value::as_object_mut);
    for operation in operations {
        let parameters = operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut);
        for parameter in parameters.into_iter().flatten() {
            let in_url = parameter["in"] == "path" || parameter["in"] == "query";
            if in_url && let Some(schema) = parameter.get_mut("schema") {
                forbid_nul(schema);
            }
        }
    }
}

/// Trusted issuers and trust policies (`federation::admin` enforces each
/// rule; anything narrower, such as whether an issuer or service user
/// exists or a regular expression compiles, is beyond JSON Schema).
fn trust(schemas: &mut Value) {
    use crate::federation::model::ALLOWED_ALGORITHMS;
    schemas["TrustJwk"] = trust_jwk();
    let issuer = issuer_schema();
    let spec = &mut schemas["TrustedIssuerSpec"]["properties"];
    spec["issuer"] = issuer.clone();
    spec["algorithms"] = json!({
        "type": ["array", "null"],
        "minItems": 1,
        "items": {"enum": ALLOWED_ALGORITHMS},
        "description": "Default RS256 and ES256. Asymmetric only: never none or HMAC.",
    });
    spec["jwks"] = json!({
        "description": "A static JWK Set (RFC 7517 section 5) of public keys, used instead of \
            discovery; at least one must verify one of the algorithms.",
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "required": ["keys"],
                "properties": {"keys": {
                    "type": "array", "minItems": 1, "maxItems": 100,
                    "items": {"$ref": "#/components/schemas/TrustJwk"}
                }}
            }
        ]
    });
    let audience = json!({"type": ["string", "null"], "minLength": 1, "maxLength": 1024, "pattern": "^[!-~]+$"});
    let events = json!({
        "type": ["array", "null"],
        "maxItems": 32,
        "items": {"type": "string", "pattern": "^[!-~]{1,100}$"},
    });
    let scope = json!({
        "type": ["string", "null"],
        "description": "Scope tokens (RFC 6749 section 3.3) separated by white space, \
            each one the service user may ask for.",
        "pattern": SCOPE_LIST,
    });
    for name in ["TrustPolicySpec", "TrustPolicyPatch"] {
        let properties = &mut schemas[name]["properties"];
        properties["audience"] = audience.clone();
        properties["refused_events"] = events.clone();
        properties["scope"] = scope.clone();
        properties["conditions"]["minItems"] = 1.into();
        properties["conditions"]["maxItems"] = 64.into();
    }
    schemas["TrustPolicySpec"]["properties"]["issuer"] = issuer.clone();
    let mut optional_issuer = issuer;
    optional_issuer["type"] = json!(["string", "null"]);
    schemas["TrustPolicyPatch"]["properties"]["issuer"] = optional_issuer;
    let condition = &mut schemas["Condition"]["properties"];
    condition["claim"] = json!({"type": "string", "pattern": "^[!-~]{1,255}$"});
    condition["value"]["maxLength"] = 1024.into();
}

/// An issuer URL as `federation::issuers::is_acceptable_url` takes it.
fn issuer_schema() -> Value {
    json!({
        "type": "string",
        "maxLength": crate::federation::issuers::MAX_ISSUER_LEN,
        "pattern": "^https?://[!-~]+$",
        "description": "https, or http on a loopback address; no credentials, query or fragment.",
    })
}

/// The `{issuer}` path segment holds an issuer URL, percent-encoded: the
/// same rules as the issuer a trusted issuer is created with.
fn issuer_path_parameter(paths: &mut Value) {
    let parameters = paths
        .get_mut("/admin/v1/trust/issuers/{issuer}")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|methods| methods.values_mut())
        .filter_map(|operation| operation.get_mut("parameters"))
        .filter_map(Value::as_array_mut)
        .flatten();
    for parameter in parameters {
        if parameter["name"] == "issuer" {
            parameter["schema"] = issuer_schema();
        }
    }
}

/// A public key a static trusted-issuer key set may hold (RFC 7517 §4):
/// RSA, EC or OKP, never with private or symmetric members.
fn trust_jwk() -> Value {
    let mut key = jwk();
    key["oneOf"][1]["properties"]["crv"] = json!({"enum": ["P-256", "P-384", "P-521"]});
    key
}

/// RFC 6749 §3.3 scope tokens (`%x21 / %x23-5B / %x5D-7E`) between runs of
/// Unicode `White_Space`, which is what the server splits on.
const SCOPE_LIST: &str = "^[!#-\\[\\]-~\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$";

fn uri_list(pattern: &str) -> Value {
    json!({
        "type": ["array", "null"],
        "items": {"type": "string", "pattern": pattern},
        "description": "https; http on 127.0.0.1 or [::1] (RFC 8252 section 7.3); \
            or a private-use reverse-domain scheme such as com.example.app:/cb \
            (RFC 8252 section 7.1). No fragment (RFC 6749 section 3.1.2)."
    })
}

/// A registration is one of these, by the authentication method it ends up
/// with (RFC 6749 §2.3, OIDC Core §9); the server refuses the rest.
fn registration_branches() -> Value {
    let without_client_credentials = json!({
        "type": "array",
        "items": {"not": {"const": "client_credentials"}}
    });
    json!([
        {
            "description": "client_secret_basic or client_secret_post: a secret is generated",
            "required": ["token_endpoint_auth_method"],
            "properties": {"token_endpoint_auth_method": {"enum": ["client_secret_basic", "client_secret_post"]}}
        },
        {
            "description": "no method and not public: client_secret_basic",
            "properties": {"token_endpoint_auth_method": {"type": "null"}, "public": {"const": false}}
        },
        {
            "description": "private_key_jwt: needs its keys, inline or by URI",
            "required": ["token_endpoint_auth_method"],
            "properties": {"token_endpoint_auth_method": {"const": "private_key_jwt"}},
            "anyOf": [
                {"required": ["jwks"], "properties": {"jwks": {"type": "object"}}},
                {"required": ["jwks_uri"], "properties": {"jwks_uri": {"type": "string"}}}
            ]
        },
        {
            "description": "a public client (none) cannot use client_credentials (RFC 6749 section 4.4) and must use PKCE (RFC 7636)",
            "required": ["grant_types"],
            "properties": {"grant_types": without_client_credentials},
            "not": {"required": ["require_pkce"], "properties": {"require_pkce": {"const": false}}},
            "anyOf": [
                {"required": ["token_endpoint_auth_method"], "properties": {"token_endpoint_auth_method": {"const": "none"}}},
                {"required": ["public"], "properties": {"public": {"const": true}, "token_endpoint_auth_method": {"type": "null"}}}
            ]
        }
    ])
}

/// RFC 7517 §5: a set of at least one key.
fn jwk_set() -> Value {
    json!({
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Jwk"}}
        }
    })
}

/// RFC 7517 §4 public keys the server verifies with: RSA, EC P-256 or OKP
/// Ed25519, never with private members. Other members are ignored (§4).
fn jwk() -> Value {
    let text = json!({"type": "string"});
    let mut properties = json!({
        "kty": {"enum": ["RSA", "EC", "OKP"]},
        "use": text,
        "kid": text,
        "x5u": text,
        "x5t": text,
        "x5t#S256": text,
        "alg": text,
        "key_ops": {"type": "array", "items": {"type": "string"}},
        "x5c": {"type": "array", "items": {"type": "string"}}
    });
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        properties[private] = json!(false);
    }
    let string = json!({"type": "string"});
    json!({
        "type": "object",
        "required": ["kty"],
        "properties": properties,
        "oneOf": [
            {"required": ["n", "e"], "properties": {"kty": {"const": "RSA"}, "n": string, "e": string}},
            {"required": ["crv", "x", "y"], "properties": {"kty": {"const": "EC"}, "crv": {"const": "P-256"}, "x": string, "y": string}},
            {"required": ["crv", "x"], "properties": {"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "x": string}}
        ]
    })
}

/// OpenAPI 3.1 §4.8.20: where the identifiers a creation returns are used.
fn add_links(paths: &mut Value) {
    let link = |operation: &str, parameters: Value| json!({"operationId": operation, "parameters": parameters});
    let client = json!({"client_id": "$response.body#/client_id"});
    paths["/admin/v1/clients"]["post"]["responses"]["201"]["links"] = json!({
        "GetClient": link("get_client", client.clone()),
        "UpdateClient": link("update_client", client.clone()),
        "RotateClientSecret": link("rotate_client_secret", client.clone()),
        "DeleteClient": link("delete_client", client),
    });
    let user = json!({"id": "$response.body#/id"});
    paths["/admin/v1/service-users"]["post"]["responses"]["201"]["links"] = json!({
        "GetServiceUser": link("get_service_user", user.clone()),
        "UpdateServiceUser": link("update_service_user", user.clone()),
        "AddKey": link("add_key", user.clone()),
        "ListServiceUserKeys": link("list_service_user_keys", user.clone()),
        "DeleteServiceUser": link("delete_service_user", user),
    });
    let issuer = json!({"issuer": "$response.body#/issuer"});
    paths["/admin/v1/trust/issuers"]["post"]["responses"]["201"]["links"] = json!({
        "GetTrustedIssuer": link("get_trusted_issuer", issuer.clone()),
        "DeleteTrustedIssuer": link("delete_trusted_issuer", issuer),
    });
    let policy = json!({"name": "$response.body#/name"});
    paths["/admin/v1/trust/policies"]["post"]["responses"]["201"]["links"] = json!({
        "GetTrustPolicy": link("get_trust_policy", policy.clone()),
        "UpdateTrustPolicy": link("update_trust_policy", policy.clone()),
        "DeleteTrustPolicy": link("delete_trust_policy", policy),
    });
    paths["/admin/v1/service-users/{id}/keys"]["post"]["responses"]["201"]["links"] = json!({
        "RemoveKey": link("remove_key", json!({
            "id": "$response.body#/userId",
            "key_id": "$response.body#/keyId"
        })),
    });
}

/// The token operations' bodies as this server's configuration has them:
/// the environments and expiry choices it takes, the API scopes a token
/// may carry, a name with a visible character, a username.
pub fn refine_tokens(doc: &mut Value, config: &crate::config::PersonalTokensConfig) {
    let schemas = &mut doc["components"]["schemas"];
    let mut expires: Vec<&str> = config.expiry_choices.iter().map(String::as_str).collect();
    if config.allow_non_expiring_machine_tokens {
        expires.push("never");
    }
    let scope = "(admin|admin:read|audit:read|tokens:self)";
    let properties = &mut schemas["TokenSpec"]["properties"];
    properties["name"] =
        serde_json::to_value(crate::oauth::client::name_schema()).unwrap_or_default();
    properties["env"] = json!({"type": "string", "enum": config.environments});
    properties["expires"] = json!({"type": "string", "enum": expires});
    properties["scope"] = json!({
        "type": ["string", "null"],
        "description": "Space-separated; Tessera's API scopes (a machine token may also carry its service user's own).",
        "pattern": format!("^ *({scope}( +{scope})*)? *$"),
    });
    schemas["TransferSpec"]["properties"]["owner"] =
        json!({"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"});
}

/// The bootstrap token rules the server enforces (`oauth::agents::
/// bootstrap`): environments and the most uses from the configuration.
pub fn refine_agents(doc: &mut Value, config: &crate::config::Config) {
    let properties = &mut doc["components"]["schemas"]["BootstrapSpec"]["properties"];
    properties["env"] = json!({
        "type": ["string", "null"],
        "enum": config.personal_tokens.environments.iter().map(String::as_str)
            .chain([""]).map(Value::from).chain([Value::Null]).collect::<Vec<_>>(),
    });
    properties["uses"] = json!({
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": config.agents.bootstrap_max_uses,
    });
}
