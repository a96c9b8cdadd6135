//! The OpenAPI document says what the server does (issue 8, item 19): the
//! concrete status codes of every operation with the error body, enums and
//! bounds the server enforces. `.ci/schemathesis` checks the document
//! against a running server; these checks pin what it relies on.

use serde_json::{Value, json};

use crate::common::signing::TestKey;
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    every_operation_lists_its_statuses_with_the_error_body,
    constraints_in_the_document_are_the_servers,
    cross_field_rules_and_forms_are_in_the_document,
);

async fn document(app: &TestApp) -> Value {
    app.get("/admin/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap()
}

fn responses<'a>(spec: &'a Value, path: &str, method: &str) -> &'a Value {
    &spec["paths"][path][method]["responses"]
}

async fn every_operation_lists_its_statuses_with_the_error_body(backend: Backend) {
    let app = TestApp::start(backend).await;
    let spec = document(&app).await;
    let error_ref = json!("#/components/schemas/ErrorBody");
    for (path, item) in spec["paths"].as_object().unwrap() {
        if path.ends_with("openapi.json") {
            continue;
        }
        assert!(
            item.get("parameters").is_none(),
            "{path}: parameters on each operation, where the NUL rule reaches them"
        );
        for (method, operation) in item.as_object().unwrap() {
            let responses = &operation["responses"];
            assert!(
                responses.get("default").is_none(),
                "{method} {path}: no catch-all"
            );
            for status in ["401", "403", "503"] {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"], error_ref,
                    "{method} {path} documents {status} with the error body"
                );
            }
            // `nul_guard` refuses a NUL in any path or query parameter.
            let in_url: Vec<&Value> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path" || p["in"] == "query")
                .collect();
            for parameter in &in_url {
                let schema = &parameter["schema"];
                let text = schema["type"] == "string"
                    || schema["type"]
                        .as_array()
                        .is_some_and(|t| t.contains(&json!("string")));
                if text {
                    assert_eq!(
                        schema["not"]["pattern"], "\\u0000",
                        "{method} {path}: {} refuses NUL",
                        parameter["name"]
                    );
                }
            }
            if !in_url.is_empty() {
                assert_eq!(
                    responses["400"]["content"]["application/json"]["schema"]["$ref"], error_ref,
                    "{method} {path} documents 400 for a malformed parameter"
                );
            }
        }
    }
    let patch = responses(&spec, "/admin/v1/clients/{client_id}", "patch");
    for status in ["200", "400", "404", "409", "412"] {
        assert!(
            patch.get(status).is_some(),
            "PATCH client documents {status}"
        );
    }
    assert!(patch["200"]["headers"].get("ETag").is_some());
    let create = responses(&spec, "/admin/v1/service-users", "post");
    assert!(
        create.get("409").is_some(),
        "a duplicate name is a conflict"
    );
    let delete = responses(&spec, "/admin/v1/service-users/{id}", "delete");
    assert!(
        delete.get("409").is_some(),
        "the administrator cannot be deleted"
    );
}

async fn constraints_in_the_document_are_the_servers(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[tokens]\nmax_lifetime = \"2h\"")
        .start()
        .await;
    let spec = document(&app).await;
    let schemas = &spec["components"]["schemas"];
    let lifetime = &schemas["ClientSpec"]["properties"]["access_token_lifetime"];
    assert_eq!(lifetime["minimum"], 1);
    assert_eq!(
        lifetime["maximum"], 7200,
        "the configured tokens.max_lifetime"
    );
    assert!(
        schemas["ClientRegistration"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("name"))
    );
    assert_eq!(
        schemas["GrantType"]["enum"],
        json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"
        ])
    );
    let audit_parameter = |name: &str| {
        spec["paths"]["/admin/v1/audit"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let limit = audit_parameter("limit");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 500);
    // A NUL in a path or query parameter is refused before any handler
    // (schemathesis seed 1 sent one in `actor_id`), and the document says so.
    let actor = audit_parameter("actor_id");
    assert_eq!(actor["schema"]["not"]["pattern"], "\\u0000");
    for method in ["get", "delete"] {
        let issuer = &spec["paths"]["/admin/v1/trust/issuers/{issuer}"][method]["parameters"][0];
        assert_eq!(issuer["schema"]["pattern"], "^https?://[!-~]+$");
        assert_eq!(issuer["schema"]["maxLength"], 255);
    }
    let refused = app.admin_get("/admin/v1/audit?actor_id=%C3%A6%00").await;
    assert_eq!(refused.status(), 400, "a NUL in a query parameter");
    let refused = app.admin_get("/admin/v1/tokens/%00").await;
    assert_eq!(refused.status(), 400, "a NUL in a path parameter");
    assert!(
        responses(&spec, "/admin/v1/tokens/{id}", "get")
            .get("400")
            .is_some()
    );

    // The server holds to the same numbers: a whole number written as
    // 60.0 is an integer, 7201 is over the bound.
    let ok = app
        .admin_post(
            "/admin/v1/clients",
            &json!({"name": "n", "access_token_lifetime": 60.0}),
        )
        .await;
    assert_eq!(ok.status(), 201);
    let over = app
        .admin_post(
            "/admin/v1/clients",
            &json!({"name": "n", "access_token_lifetime": 7201}),
        )
        .await;
    fail_with(over, 400, "invalid_request").await;
    for cursor in ["+5", "0000000000000000001", "-1"] {
        let response = app
            .admin_get(&format!("/admin/v1/audit?cursor={cursor}"))
            .await;
        fail_with(response, 400, "invalid_request").await;
    }
    let offset = app
        .admin_get("/admin/v1/audit?since=2026-01-01T00:00:00%2B02:00")
        .await;
    assert_eq!(offset.status(), 200, "an RFC 3339 offset is a date-time");
}

/// The rules schemathesis found the server enforcing beyond the first
/// document: each is in the document now, and the server holds to exactly
/// what the document says.
async fn cross_field_rules_and_forms_are_in_the_document(backend: Backend) {
    let app = TestApp::start(backend).await;
    let spec = document(&app).await;
    let schemas = &spec["components"]["schemas"];

    // private_key_jwt needs keys: the registration's branch says so.
    let branches = schemas["ClientRegistration"]["anyOf"].as_array().unwrap();
    let jwt_branch = branches
        .iter()
        .find(|b| b["properties"]["token_endpoint_auth_method"]["const"] == "private_key_jwt")
        .expect("a private_key_jwt branch");
    assert_eq!(jwt_branch["anyOf"][0]["required"], json!(["jwks"]));
    assert_eq!(jwt_branch["anyOf"][1]["required"], json!(["jwks_uri"]));
    let refused = app
        .admin_post(
            "/admin/v1/clients",
            &json!({"name": "n", "token_endpoint_auth_method": "private_key_jwt"}),
        )
        .await;
    fail_with(refused, 400, "invalid_request").await;

    // Codes need a redirect URI only when authorization_code is asked for:
    // `grant_types: null` takes the default grant, in the document too
    // (`contains` alone holds for null; schemathesis seed 3 found it).
    let code_rule = &schemas["ClientRegistration"]["if"]["properties"]["grant_types"];
    assert_eq!(code_rule["type"], "array");
    let defaulted = app
        .admin_post(
            "/admin/v1/clients",
            &json!({"name": "n", "grant_types": null, "redirect_uris": []}),
        )
        .await;
    assert_eq!(defaulted.status(), 201);

    // A JWK Set schema, with the member types the server checks.
    let jwk = &schemas["Jwk"];
    assert_eq!(jwk["properties"]["d"], json!(false), "no private members");
    assert_eq!(jwk["properties"]["kid"]["type"], "string");
    assert_eq!(
        schemas["ClientSpec"]["properties"]["jwks"]["oneOf"][1]["$ref"],
        "#/components/schemas/JwkSet"
    );
    let mut key = TestKey::es256("k").jwk;
    key["kid"] = json!(5);
    let mistyped = app
        .admin_post(
            "/admin/v1/clients",
            &json!({"name": "n", "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": {"keys": [key]}}),
        )
        .await;
    fail_with(mistyped, 400, "invalid_request").await;

    // Redirect URIs: the server accepts exactly what the pattern matches.
    let pattern = schemas["ClientRegistration"]["properties"]["redirect_uris"]["items"]["pattern"]
        .as_str()
        .expect("redirect_uris has a pattern");
    let pattern = regex_automata::meta::Regex::new(pattern).unwrap();
    for uri in [
        "https://app.example.com/cb?x=1",
        "http://127.0.0.1:8080/cb",
        "http://[::1]/cb",
        "com.example.app:/cb",
        "https://example.com/cb#frag",
        "http://localhost/cb",
        "https://user@example.com/cb",
        "https://example.com/%zz",
        "https://999999999999/",
    ] {
        let response = app
            .admin_post(
                "/admin/v1/clients",
                &json!({"name": "n", "redirect_uris": [uri]}),
            )
            .await;
        let documented = pattern.is_match(uri);
        assert_eq!(
            response.status().as_u16(),
            if documented { 201 } else { 400 },
            "{uri}: the server agrees with the document"
        );
    }

    // The default audience joins the space-separated audiences: no spaces.
    let default_audience = &schemas["ClientSpec"]["properties"]["default_audience"];
    assert_eq!(default_audience["pattern"], "^[!-~]*$");
    let spaced = app
        .admin_post(
            "/admin/v1/clients",
            &json!({"name": "n", "default_audience": "api one"}),
        )
        .await;
    fail_with(spaced, 400, "invalid_request").await;

    // Bodies are objects: serde alone would read a struct from an array.
    let client: Value = app
        .admin_post("/admin/v1/clients", &json!({"name": "n"}))
        .await
        .json()
        .await
        .unwrap();
    let client_id = client["client_id"].as_str().unwrap();
    let secret = format!("/admin/v1/clients/{client_id}/secret");
    fail_with(
        app.admin_post(&secret, &json!([])).await,
        400,
        "invalid_request",
    )
    .await;
    let as_array = app
        .admin_post("/admin/v1/service-users", &json!(["array"]))
        .await;
    fail_with(as_array, 400, "invalid_request").await;

    // A key's lifetime is relative, so the document can bound it.
    let key_spec = &schemas["KeySpec"]["properties"];
    assert!(key_spec.get("expires_at").is_none());
    assert_eq!(key_spec["expires_in"]["minimum"], 1);
    let user: Value = app
        .admin_post("/admin/v1/service-users", &json!({"name": "contract"}))
        .await
        .json()
        .await
        .unwrap();
    let keys = format!(
        "/admin/v1/service-users/{}/keys",
        user["id"].as_str().unwrap()
    );
    let added = app
        .admin_post(
            &keys,
            &json!({"public_key": TestKey::es256("k").jwk, "expires_in": 60}),
        )
        .await;
    assert_eq!(added.status(), 201);
    let zero = app
        .admin_post(
            &keys,
            &json!({"public_key": TestKey::es256("k").jwk, "expires_in": 0}),
        )
        .await;
    fail_with(zero, 400, "invalid_request").await;

    // Explicit links from each creation to the operations that use its id.
    let operation_ids: Vec<&Value> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| &operation["operationId"])
        .collect();
    let links = &spec["paths"]["/admin/v1/clients"]["post"]["responses"]["201"]["links"];
    for name in [
        "GetClient",
        "UpdateClient",
        "DeleteClient",
        "RotateClientSecret",
    ] {
        assert_eq!(
            links[name]["parameters"]["client_id"],
            "$response.body#/client_id"
        );
    }
    for path in [
        "/admin/v1/clients",
        "/admin/v1/service-users",
        "/admin/v1/service-users/{id}/keys",
    ] {
        let links = spec["paths"][path]["post"]["responses"]["201"]["links"]
            .as_object()
            .unwrap_or_else(|| panic!("POST {path} links its result"));
        for link in links.values() {
            assert_eq!(
                operation_ids
                    .iter()
                    .filter(|id| ***id == link["operationId"])
                    .count(),
                1,
                "{link} names one operation"
            );
        }
    }
}
