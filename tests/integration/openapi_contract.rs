//! The OpenAPI document says what the server does (issue 8, item 19): the
//! concrete status codes of every operation with the error body, enums and
//! bounds the server enforces. `.ci/schemathesis` checks the document
//! against a running server; these checks pin what it relies on.

use serde_json::{Value, json};

use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    every_operation_lists_its_statuses_with_the_error_body,
    constraints_in_the_document_are_the_servers,
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
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ])
    );
    let limit = spec["paths"]["/admin/v1/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 500);

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
