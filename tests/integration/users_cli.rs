//! `tessera user …` against a running server (issue 10 item 1): the
//! lifecycle, and passwords read from standard input, never from an
//! argument, and never printed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tessera::store::UserStore;

use crate::cli::{stderr, tessera};
use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    user_lifecycle_from_the_cli,
    passwords_come_from_stdin_or_a_terminal
);

const PASSWORD: &str = "tr0ub4dor & 3 horses";

/// Runs `command` with `input` on its standard input.
fn run_with_input(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tessera");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn cli(app: &TestApp, dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = tessera(dir);
    command
        .args([
            "--url",
            &app.url,
            "--token-file",
            app.admin_token_file().to_str().unwrap(),
        ])
        .args(args);
    command
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!text.contains(PASSWORD) && !stderr(&output).contains(PASSWORD));
    text
}

async fn user_lifecycle_from_the_cli(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], input: &str| {
        tokio::task::block_in_place(|| run_with_input(&mut cli(&app, dir.path(), args), input))
    };

    let created = ok(run(
        &[
            "user",
            "create",
            "alice",
            "--email",
            "alice@example.com",
            "--display-name",
            "Alice L",
            "--admin",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    ));
    assert!(
        created.contains("created user alice") && created.contains("administrator"),
        "{created}"
    );
    ok(run(
        &["user", "create", "bob", "--no-password", "--json"],
        "",
    ));

    // Case-insensitive uniqueness, as the server says it.
    let clash = run(&["user", "create", "ALICE", "--no-password"], "");
    assert!(!clash.status.success());
    assert!(stderr(&clash).contains("409"), "{}", stderr(&clash));

    let list: Value = serde_json::from_str(&ok(run(&["user", "list", "--json"], ""))).unwrap();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let table = ok(run(&["user", "list"], ""));
    assert!(
        table.contains("USERNAME") && table.contains("alice@example.com"),
        "{table}"
    );

    let shown = ok(run(&["user", "show", "ALICE"], ""));
    assert!(
        shown.contains("administrator:  true") && shown.contains("has password:   true"),
        "{shown}"
    );
    let bob: Value =
        serde_json::from_str(&ok(run(&["user", "show", "bob", "--json"], ""))).unwrap();
    assert_eq!(bob["has_password"], false);

    let updated: Value = serde_json::from_str(&ok(run(
        &[
            "user",
            "update",
            "bob",
            "--email",
            "bob@example.com",
            "--email-verified",
            "--admin",
            "--json",
        ],
        "",
    )))
    .unwrap();
    assert_eq!(
        (
            updated["email_verified"].as_bool(),
            updated["admin"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let demoted: Value = serde_json::from_str(&ok(run(
        &[
            "user",
            "update",
            "bob",
            "--no-admin",
            "--no-email",
            "--json",
        ],
        "",
    )))
    .unwrap();
    assert_eq!(
        (demoted["admin"].as_bool(), demoted["email"].is_null()),
        (Some(false), true)
    );
    let nothing = run(&["user", "update", "bob"], "");
    assert!(stderr(&nothing).contains("nothing to change"));

    assert!(ok(run(&["user", "disable", "bob"], "")).contains("disabled"));
    let enabled: Value =
        serde_json::from_str(&ok(run(&["user", "enable", "bob", "--json"], ""))).unwrap();
    assert_eq!(enabled["disabled"], false);

    ok(run(
        &["user", "set-password", "bob", "--password-stdin"],
        &format!("{PASSWORD}\r\n"),
    ));
    let bob = app.state.store.user_by_username("bob".into()).await;
    let hash = bob.unwrap().unwrap().password_hash.unwrap();
    assert_eq!(
        app.state
            .passwords
            .verify(&hash, &tessera::secret::Secret::new(PASSWORD)),
        tessera::accounts::passwords::Verdict::Ok {
            needs_rehash: false
        },
        "the line ending is not part of the password"
    );

    assert!(ok(run(&["user", "delete", "bob"], "")).contains("deleted user bob"));
    let gone = run(&["user", "show", "bob"], "");
    assert!(
        !gone.status.success() && stderr(&gone).contains("404"),
        "{}",
        stderr(&gone)
    );
    // An argument that is no username never reaches another path.
    let traversal = run(&["user", "delete", "../clients"], "");
    assert!(!traversal.status.success() && stderr(&traversal).contains("not a username"));
}

async fn passwords_come_from_stdin_or_a_terminal(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], input: &str| {
        tokio::task::block_in_place(|| run_with_input(&mut cli(&app, dir.path(), args), input))
    };
    // No terminal, no --password-stdin, no --no-password: a clear refusal,
    // and no user.
    let refused = run(&["user", "create", "carol"], "");
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("--password-stdin") && message.contains("--no-password"),
        "{message}"
    );
    assert!(
        app.state
            .store
            .user_by_username("carol".into())
            .await
            .unwrap()
            .is_none()
    );
    let refused = run(&["user", "set-password", "carol"], "");
    assert!(stderr(&refused).contains("--password-stdin"));
    // An empty standard input is no password.
    let empty = run(&["user", "create", "carol", "--password-stdin"], "");
    assert!(!empty.status.success() && stderr(&empty).contains("no password"));
    // A password the server refuses is refused without being quoted.
    let short = run(
        &["user", "create", "carol", "--password-stdin"],
        "hunter2\n",
    );
    assert!(!short.status.success());
    assert!(stderr(&short).contains("at least 8") && !stderr(&short).contains("hunter2"));
    // There is no option that takes the password as an argument.
    let argument = run(&["user", "create", "carol", "--password", PASSWORD], "");
    assert!(!argument.status.success());
    assert!(
        stderr(&argument).contains("unexpected argument"),
        "{}",
        stderr(&argument)
    );
    ok(run(
        &["user", "create", "carol", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    ));
    let carol = app
        .state
        .store
        .user_by_username("carol".into())
        .await
        .unwrap()
        .unwrap();
    assert!(carol.password_hash.is_some());
}
