//! `tessera trust …` and `tessera service-user update` (issue 9 items 1,
//! 2): presets expanded as documented, `--json` printing the stored
//! object, refusals as one line; on both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{run, stderr, tessera};
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;
use crate::trust_admin::{GITHUB, LOCAL, add_issuer, etag, new_service_user, policy_body, send};

on_both_backends!(
    trust_from_the_cli_with_presets,
    service_user_enable_disable_and_cap,
);

/// `tessera ARGS` against `app`; its stdout as JSON when it succeeded.
fn cli(app: &TestApp, dir: &std::path::Path, args: &[&str]) -> Result<Value, String> {
    let token_file = app.admin_token_file();
    let output = tokio::task::block_in_place(|| {
        run(tessera(dir)
            .args([
                "--url",
                &app.url,
                "--token-file",
                token_file.to_str().unwrap(),
            ])
            .args(args))
    });
    if !output.status.success() {
        return Err(stderr(&output));
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn pairs(policy: &Value) -> Vec<(String, String, String)> {
    policy["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["claim"].as_str().unwrap().to_owned(),
                c["match"].as_str().unwrap().to_owned(),
                c["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn exact(claim: &str, value: &str) -> (String, String, String) {
    (claim.to_owned(), "exact".to_owned(), value.to_owned())
}

async fn trust_from_the_cli_with_presets(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let user = cli(
        &app,
        dir.path(),
        &[
            "service-user",
            "create",
            "ci",
            "--scope",
            "deploy read",
            "--json",
        ],
    )
    .unwrap();
    let user = user["id"].as_str().unwrap().to_owned();

    let github = cli(
        &app,
        dir.path(),
        &["trust", "issuer", "add", "--github", "--json"],
    )
    .unwrap();
    assert_eq!(github["issuer"], GITHUB);
    assert_eq!(github["algorithms"], json!(["RS256", "ES256"]));
    let gitlab = cli(
        &app,
        dir.path(),
        &["trust", "issuer", "add", "--gitlab", "--json"],
    )
    .unwrap();
    assert_eq!(gitlab["issuer"], "https://gitlab.com");
    assert_eq!(gitlab["max_token_age"], 7200);
    let ghe = cli(
        &app,
        dir.path(),
        &[
            "trust",
            "issuer",
            "add",
            "--github-enterprise",
            "ghe.example.com",
            "--alg",
            "ES256",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(ghe["issuer"], "https://ghe.example.com/_services/token");
    assert_eq!(ghe["algorithms"], json!(["ES256"]));
    let error = cli(
        &app,
        dir.path(),
        &["trust", "issuer", "add", "http://ci.example.com"],
    )
    .unwrap_err();
    assert!(error.contains("loopback"), "{error}");
    let list = cli(&app, dir.path(), &["trust", "issuer", "list", "--json"]).unwrap();
    assert_eq!(list["issuers"].as_array().unwrap().len(), 3);

    // The GitHub preset: the issuer, the visible conditions, the refused event.
    let deploy = cli(
        &app,
        dir.path(),
        &[
            "trust",
            "create",
            "deploy",
            "--github-repo",
            "octo-org/octo-repo",
            "--github-repo-id",
            "42",
            "--github-owner-id",
            "7",
            "--ref",
            "refs/heads/main",
            "--environment",
            "prod",
            "--workflow",
            "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
            "--service-user",
            &user,
            "--scope",
            "deploy",
            "--lifetime",
            "10m",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(deploy["issuer"], GITHUB);
    assert_eq!(deploy["lifetime"], 600);
    assert_eq!(deploy["scopes"], json!(["deploy"]));
    assert_eq!(deploy["refused_events"], json!(["pull_request_target"]));
    assert_eq!(deploy["name_only"], false);
    assert_eq!(
        pairs(&deploy),
        [
            exact("repository", "octo-org/octo-repo"),
            exact("repository_id", "42"),
            exact("repository_owner_id", "7"),
            exact("ref", "refs/heads/main"),
            exact("environment", "prod"),
            exact(
                "workflow_ref",
                "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main"
            ),
        ]
    );
    let prs = cli(
        &app,
        dir.path(),
        &[
            "trust",
            "create",
            "prs",
            "--github-repo",
            "octo-org/octo-repo",
            "--github-repo-id",
            "42",
            "--github-owner-id",
            "7",
            "--allow-event",
            "pull_request_target",
            "--glob",
            "ref=refs/pull/*",
            "--service-user",
            &user,
            "--scope",
            "read",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(prs["refused_events"], json!([]));
    assert_eq!(
        pairs(&prs)[3],
        ("ref".into(), "glob".into(), "refs/pull/*".into())
    );

    // The GitLab preset.
    let gl = cli(
        &app,
        dir.path(),
        &[
            "trust",
            "create",
            "gl",
            "--gitlab-project",
            "group/sub/project",
            "--gitlab-project-id",
            "99",
            "--ref",
            "main",
            "--protected-ref",
            "--service-user",
            &user,
            "--scope",
            "deploy",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(gl["issuer"], "https://gitlab.com");
    assert_eq!(
        pairs(&gl),
        [
            exact("project_path", "group/sub/project"),
            exact("project_id", "99"),
            exact("ref", "main"),
            exact("ref_protected", "true"),
        ]
    );
    // The server's default (GitLab tokens carry no event_name).
    assert_eq!(gl["refused_events"], json!(["pull_request_target"]));

    // Names alone: refused, then forced.
    let names = [
        "trust",
        "create",
        "names",
        "--issuer",
        GITHUB,
        "--match",
        "repository=octo-org/octo-repo",
        "--ignore-case",
        "repository",
        "--service-user",
        &user,
        "--scope",
        "read",
        "--json",
    ];
    let error = cli(&app, dir.path(), &names).unwrap_err();
    assert!(
        error.contains("re-registered") && error.contains("force-name-only"),
        "{error}"
    );
    let forced = cli(
        &app,
        dir.path(),
        &[&names[..], &["--force-name-only"]].concat(),
    )
    .unwrap();
    assert_eq!(forced["name_only"], true);
    assert_eq!(forced["conditions"][0]["ignore_case"], true);
    let error = cli(
        &app,
        dir.path(),
        &[
            "trust",
            "create",
            "bad",
            "--issuer",
            GITHUB,
            "--regex",
            "ref=(",
            "--match",
            "repository_id=1",
            "--service-user",
            &user,
        ],
    )
    .unwrap_err();
    assert!(
        error.contains("condition 2") && error.contains("regex"),
        "{error}"
    );

    // Update keeps what it is not given; condition options replace all.
    let updated = cli(
        &app,
        dir.path(),
        &["trust", "update", "deploy", "--lifetime", "5m", "--json"],
    )
    .unwrap();
    assert_eq!(updated["lifetime"], 300);
    assert_eq!(pairs(&updated).len(), 6);
    let updated = cli(
        &app,
        dir.path(),
        &[
            "trust",
            "update",
            "deploy",
            "--match",
            "repository_id=43",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(pairs(&updated), [exact("repository_id", "43")]);
    assert_eq!(updated["refused_events"], json!(["pull_request_target"]));

    // Human output shows the expanded conditions.
    let shown = cli(&app, dir.path(), &["trust", "show", "gl"]).unwrap();
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("project_id = \"99\"") && shown.contains("ref_protected = \"true\""),
        "{shown}"
    );
    let list = cli(&app, dir.path(), &["trust", "list", "--json"]).unwrap();
    assert_eq!(list["policies"].as_array().unwrap().len(), 4);
    let show = cli(&app, dir.path(), &["trust", "show", "prs", "--json"]).unwrap();
    assert_eq!(show, prs);

    // `trust test --token-file` reads the job's token; the admin's token
    // comes from the environment.
    let job = dir.path().join("job.jwt");
    std::fs::write(&job, "not.a.jwt").unwrap();
    let output = tokio::task::block_in_place(|| {
        run(tessera(dir.path())
            .env("TESSERA_TOKEN_FILE", app.admin_token_file())
            .args(["--url", &app.url, "trust", "test", "--token-file"])
            .arg(&job))
    });
    assert!(!output.status.success());
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("refused"), "{report}{}", stderr(&output));
    let error = cli(
        &app,
        dir.path(),
        &["trust", "test", "--token-file", job.to_str().unwrap()],
    )
    .unwrap_err();
    assert!(error.contains("TESSERA_TOKEN_FILE"), "{error}");

    // An issuer a policy names stays; then it goes.
    let error = cli(
        &app,
        dir.path(),
        &["trust", "issuer", "remove", "https://gitlab.com"],
    )
    .unwrap_err();
    assert!(error.contains("gl"), "{error}");
    cli(&app, dir.path(), &["trust", "delete", "gl"]).unwrap();
    cli(
        &app,
        dir.path(),
        &["trust", "issuer", "remove", "https://gitlab.com"],
    )
    .unwrap();
    let error = cli(&app, dir.path(), &["trust", "show", "gl"]).unwrap_err();
    assert!(error.contains("no trust policy"), "{error}");
}

async fn service_user_enable_disable_and_cap(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let user = new_service_user(&app, "ci", "deploy").await;
    let path = format!("/admin/v1/service-users/{user}");

    let disabled = cli(
        &app,
        dir.path(),
        &["service-user", "update", &user, "--disable", "--json"],
    )
    .unwrap();
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["max_token_lifetime"], Value::Null);
    let enabled = cli(
        &app,
        dir.path(),
        &[
            "service-user",
            "update",
            &user,
            "--enable",
            "--max-token-lifetime",
            "30m",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["max_token_lifetime"], 1800);
    let read: Value = app.admin_get(&path).await.json().await.unwrap();
    assert_eq!(read, enabled);

    // A policy cannot outlive the user's cap.
    add_issuer(&app, LOCAL).await;
    let mut long = policy_body("long", &user);
    long["lifetime"] = json!(3600);
    let refused = app.admin_post("/admin/v1/trust/policies", &long).await;
    let body = fail_with(refused, 400, "invalid_request").await;
    assert!(
        body["error_description"].as_str().unwrap().contains("1800"),
        "{body}"
    );

    let cleared = cli(
        &app,
        dir.path(),
        &[
            "service-user",
            "update",
            &user,
            "--max-token-lifetime",
            "none",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(cleared["max_token_lifetime"], Value::Null);
    let error = cli(
        &app,
        dir.path(),
        &[
            "service-user",
            "update",
            &user,
            "--max-token-lifetime",
            "30s",
        ],
    )
    .unwrap_err();
    assert!(error.contains("60"), "{error}");

    // The API: If-Match, bounds, the administrator stays enabled.
    let tag = etag(&app.admin_get(&path).await);
    let patch = json!({"enabled": false, "description": "paused"});
    let stale = send(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some("\"stale\""),
        Some(&patch),
    )
    .await;
    fail_with(stale, 412, "precondition_failed").await;
    let patched = send(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some(&tag),
        Some(&patch),
    )
    .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        (patched["enabled"].clone(), patched["description"].clone()),
        (json!(false), json!("paused"))
    );
    for bad in [
        json!({"max_token_lifetime": 86401}),
        json!({"max_token_lifetime": 59}),
        json!({"is_admin": true}),
    ] {
        let refused = send(&app, reqwest::Method::PATCH, &path, None, Some(&bad)).await;
        fail_with(refused, 400, "invalid_request").await;
    }
    let me: Value = app
        .admin_get("/admin/v1/whoami")
        .await
        .json()
        .await
        .unwrap();
    let admin_path = format!("/admin/v1/service-users/{}", me["id"].as_str().unwrap());
    let refused = send(
        &app,
        reqwest::Method::PATCH,
        &admin_path,
        None,
        Some(&json!({"enabled": false})),
    )
    .await;
    fail_with(refused, 409, "conflict").await;
    let missing = send(
        &app,
        reqwest::Method::PATCH,
        "/admin/v1/service-users/su_nope",
        None,
        Some(&json!({"enabled": true})),
    )
    .await;
    fail_with(missing, 404, "not_found").await;

    let audit: Value = app
        .admin_get("/admin/v1/audit?action=service_user.updated")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 4, "{audit}");
}
