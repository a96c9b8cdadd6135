//! `tessera token …` against a running server (issue 12 item 5): create
//! with `--json` prints `id` and `token`; the token works from
//! `TESSERA_TOKEN`; disable (403), enable, roll, revoke, list, transfer,
//! and `tessera audit list --token`.

use std::process::Output;

use serde_json::Value;

use crate::cli::{run, stderr, tessera};
use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(a_machine_token_through_the_cli);

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

async fn a_machine_token_through_the_cli(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = app.admin_token_file();
    let admin = |args: &[&str]| {
        let mut command = tessera(dir.path());
        command
            .args([
                "--url",
                &app.url,
                "--token-file",
                token_file.to_str().unwrap(),
            ])
            .args(args);
        tokio::task::block_in_place(|| run(&mut command))
    };
    let with_token = |token: &str, args: &[&str]| {
        let mut command = tessera(dir.path());
        command
            .env("TESSERA_TOKEN", token)
            .args(["--url", &app.url])
            .args(args);
        tokio::task::block_in_place(|| run(&mut command))
    };

    // Without --scope the CLI says what the token can do.
    let text = ok(admin(&[
        "token",
        "create",
        "deploy bot",
        "--expires",
        "7d",
        "--env",
        "prod",
    ]));
    assert!(text.contains("It has no scopes"), "{text}");
    assert!(text.contains("tsr_mt_prod_"), "{text}");

    let created: Value = serde_json::from_str(&ok(admin(&[
        "token",
        "create",
        "reader",
        "--expires",
        "1d",
        "--env",
        "dev",
        "--scope",
        "admin:read",
        "--json",
    ])))
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tsr_mt_dev_"));

    // Headless use: TESSERA_TOKEN.
    let me = ok(with_token(&token, &["whoami"]));
    assert!(me.contains("(service,"), "{me}");
    ok(with_token(&token, &["client", "list"]));

    // The list shows the token without its value.
    let list = ok(admin(&["token", "list"]));
    assert!(list.contains(&id) && !list.contains(&token), "{list}");
    let shown = ok(admin(&["token", "show", &id]));
    assert!(shown.contains("status:       active"), "{shown}");

    // Disabled: 403, and the CLI says the token is disabled.
    ok(admin(&["token", "disable", &id]));
    let refused = with_token(&token, &["client", "list"]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("token disabled") && message.contains("403"),
        "{message}"
    );
    ok(admin(&["token", "enable", &id]));
    ok(with_token(&token, &["client", "list"]));

    // Roll: a new value; the old one is refused at once.
    let rolled: Value =
        serde_json::from_str(&ok(admin(&["token", "roll", &id, "--json"]))).unwrap();
    let new_id = rolled["id"].as_str().unwrap().to_owned();
    let new_token = rolled["token"].as_str().unwrap().to_owned();
    assert!(!with_token(&token, &["whoami"]).status.success());
    ok(with_token(&new_token, &["whoami"]));

    ok(admin(&["token", "revoke", &new_id]));
    let revoked = with_token(&new_token, &["whoami"]);
    assert!(stderr(&revoked).contains("401"), "{}", stderr(&revoked));

    // The audit by token: its lifecycle.
    let events = ok(admin(&["audit", "list", "--token", &id]));
    for action in [
        "token.created",
        "token.disabled",
        "token.enabled",
        "token.rolled",
    ] {
        assert!(events.contains(action), "{action}: {events}");
    }
    let events = ok(admin(&["audit", "list", "--token", &new_id]));
    assert!(events.contains("token.revoked"), "{events}");

    // Refused input says why.
    let bad = admin(&["token", "create", "x", "--expires", "5d", "--env", "dev"]);
    assert!(
        stderr(&bad).contains("expires must be one of"),
        "{}",
        stderr(&bad)
    );
    let bad = admin(&["token", "show", "../users"]);
    assert!(stderr(&bad).contains("not a token id"), "{}", stderr(&bad));
}
