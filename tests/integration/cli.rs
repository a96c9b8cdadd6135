//! The `tessera` binary: serve with SIGTERM, configuration errors, and the
//! admin commands against a running server.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Backend, TestApp, TestDb, read_token};
use crate::on_both_backends;

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");
pub const MASTER_KEY_B64: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="; // [7; 32]

on_both_backends!(
    keys_list_and_rotate_through_the_admin_api,
    init_creates_the_admin_once,
    migrate_command_is_idempotent,
    client_lifecycle_from_the_cli,
);

/// The binary, run in a private folder with a clean TESSERA_* environment.
pub fn tessera(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_remove("TESSERA_TOKEN")
        .env_remove("TESSERA_URL");
    for (key, _) in std::env::vars() {
        if key.starts_with("TESSERA_") {
            command.env_remove(key);
        }
    }
    command
}

pub fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run tessera")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn keys_list_and_rotate_through_the_admin_api(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = app.admin_token_file();
    let cli = |args: &[&str]| {
        let mut command = tessera(dir.path());
        command
            .args([
                "--url",
                &app.url,
                "--token-file",
                token_file.to_str().unwrap(),
            ])
            .args(args);
        command
    };
    let list = tokio::task::block_in_place(|| run(&mut cli(&["keys", "list", "--json"])));
    assert!(list.status.success(), "{}", stderr(&list));
    let keys: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);

    let rotate = tokio::task::block_in_place(|| {
        run(&mut cli(&["keys", "rotate", "--alg", "RS256", "--json"]))
    });
    assert!(rotate.status.success(), "{}", stderr(&rotate));
    let rotated: Value = serde_json::from_slice(&rotate.stdout).unwrap();
    assert_eq!(rotated["rotated"][0]["alg"], "RS256");

    let table = tokio::task::block_in_place(|| run(&mut cli(&["keys", "list"])));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("next") && text.contains("active"), "{text}");

    // A bad token: one clear line, non-zero exit.
    let mut bad = tessera(dir.path());
    bad.env("TESSERA_TOKEN", "tsr_bt_nope")
        .args(["--url", &app.url, "keys", "list"]);
    let output = tokio::task::block_in_place(|| run(&mut bad));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("invalid_token"), "{message}");

    // No server there: also one line.
    let mut unreachable = tessera(dir.path());
    unreachable.args([
        "--url",
        "http://127.0.0.1:9",
        "--token",
        "x",
        "keys",
        "list",
    ]);
    let output = tokio::task::block_in_place(|| run(&mut unreachable));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot reach Tessera"),
        "{}",
        stderr(&output)
    );

    // Plain http beyond loopback needs --insecure (0.0.0.0 reaches this
    // machine, but is not a loopback address).
    let port = app.url.rsplit(':').next().unwrap();
    let cleartext = format!("http://0.0.0.0:{port}");
    let beyond = |insecure: &[&str]| {
        let mut command = tessera(dir.path());
        command
            .args(["--url", &cleartext, "--token-file"])
            .arg(&token_file)
            .args(insecure)
            .args(["keys", "list"]);
        tokio::task::block_in_place(|| run(&mut command))
    };
    let refused = beyond(&[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--insecure"),
        "{}",
        stderr(&refused)
    );
    let allowed = beyond(&["--insecure"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));

    // A token in the arguments works, with a warning; from the
    // environment, silently.
    let admin_token = app.admin_token();
    let mut flag = tessera(dir.path());
    flag.args(["--url", &app.url, "keys", "list", "--token", &admin_token]);
    let output = tokio::task::block_in_place(|| run(&mut flag));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("warning") && stderr(&output).contains("TESSERA_TOKEN"));
    let mut env = tessera(dir.path());
    env.env("TESSERA_TOKEN", &admin_token)
        .args(["--url", &app.url, "keys", "list"]);
    let output = tokio::task::block_in_place(|| run(&mut env));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("warning"), "{}", stderr(&output));
}

/// `serve` lists its own options, not the admin client's.
#[test]
fn serve_help_lists_only_serve_options() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(tessera(dir.path()).args(["serve", "--help"]));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("--listen") && help.contains("--config"),
        "{help}"
    );
    for admin_only in ["--url", "--token", "--token-file", "--json", "--insecure"] {
        assert!(!help.contains(admin_only), "{admin_only} in {help}");
    }
    // Admin options still go before or after the command.
    let output = run(tessera(dir.path()).args(["--json", "whoami", "--help"]));
    assert!(output.status.success(), "{}", stderr(&output));
}

pub fn database_env(command: &mut Command, db: &TestDb) {
    command
        .env("TESSERA_DATABASE__URL", &db.url)
        .env("TESSERA_MASTER_KEY", MASTER_KEY_B64)
        .env("TESSERA_LOG", "warn");
}

async fn init_creates_the_admin_once(backend: Backend) {
    let db = TestDb::fresh(&backend);
    let token_file = db.path("ops/admin.token");
    let mut init = tessera(db.dir.path());
    database_env(&mut init, &db);
    init.args(["init", "--admin-token-file", token_file.to_str().unwrap()]);
    let first = tokio::task::block_in_place(|| run(&mut init));
    assert!(first.status.success(), "{}", stderr(&first));
    let token = read_token(&token_file);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        !stdout.contains(&token) && !stderr(&first).contains(&token),
        "the token is never printed"
    );

    let second = tokio::task::block_in_place(|| run(&mut init));
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already initialised"),
        "{}",
        stderr(&second)
    );
    assert_eq!(read_token(&token_file), token, "the first token is kept");

    // The server started on that database honours the token.
    let app = TestApp::builder(backend)
        .database(&db)
        .config("[admin]\nbootstrap = false")
        .start()
        .await;
    let me = app
        .http
        .get(app.endpoint("/admin/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

async fn migrate_command_is_idempotent(backend: Backend) {
    let db = TestDb::fresh(&backend);
    for _ in 0..2 {
        let mut migrate = tessera(db.dir.path());
        database_env(&mut migrate, &db);
        migrate.arg("migrate");
        let output = tokio::task::block_in_place(|| run(&mut migrate));
        assert!(output.status.success(), "{}", stderr(&output));
    }
}

#[test]
fn configuration_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[server]\nlisten_port = 1\n").unwrap();
    let output = run(tessera(dir.path()).args(["serve", "--config", "bad.toml"]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("listen_port"),
        "{}",
        stderr(&output)
    );

    let output = run(tessera(dir.path())
        .env("TESSERA_DATABASE__POOL", "3")
        .arg("serve"));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("pool"), "{}", stderr(&output));

    let output = run(tessera(dir.path()).args(["serve", "--issuer", "http://id.example.com"]));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("https"), "{}", stderr(&output));

    let output = run(tessera(dir.path())
        .env("TESSERA_MASTER_KEY", "short")
        .arg("serve"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("TESSERA_MASTER_KEY"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("data").exists() || !dir.path().join("keys/admin.token").exists());
}

/// The embedded default end to end: a fresh folder, `tessera serve`,
/// discovery and JWKS answer, the token file exists, the log never holds
/// the token, and SIGTERM stops it with exit code 0.
#[test]
fn serve_on_the_embedded_default_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tessera(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut lines = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "server exited early:\n{lines}"
        );
        lines.push_str(&line);
        if line.contains("Tessera is listening") {
            let start = line.find("addr=").unwrap() + 5;
            break line[start..].split_whitespace().next().unwrap().to_owned();
        }
    };
    let base = format!("http://{addr}");
    let http = reqwest::blocking::Client::new();
    let discovery = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .unwrap();
    assert_eq!(discovery.status(), 200);
    assert_eq!(
        http.get(format!("{base}/oauth/jwks"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let token = read_token(&dir.path().join("keys/admin.token"));
    for private in ["keys/admin.token", "keys/master.key"] {
        let mode = std::fs::metadata(dir.path().join(private))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{private} is private");
    }
    assert!(dir.path().join("data/tessera.db").exists());

    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut log, &mut rest).unwrap();
    lines.push_str(&rest);
    assert!(
        lines.contains("keys/admin.token"),
        "the log names the token file:\n{lines}"
    );
    assert!(!lines.contains(&token), "the log never holds the token");
}

async fn client_lifecycle_from_the_cli(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = app.admin_token_file();
    let cli = |args: &[&str]| {
        let mut command = tessera(dir.path());
        command
            .args([
                "--url",
                &app.url,
                "--token-file",
                token_file.to_str().unwrap(),
                "--json",
            ])
            .args(args);
        tokio::task::block_in_place(|| run(&mut command))
    };
    let created = cli(&[
        "client",
        "create",
        "--name",
        "ci-bot",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read write",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let token = |secret: &str| {
        let http = app.http.clone();
        let url = app.endpoint("/oauth/token");
        let (id, secret) = (id.clone(), secret.to_owned());
        async move {
            http.post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("scope", "read")])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(token(&secret).await, 200);

    let listed: Value = serde_json::from_slice(&cli(&["client", "list"]).stdout).unwrap();
    assert!(
        listed["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == id.as_str()),
        "{listed}"
    );
    let shown: Value = serde_json::from_slice(&cli(&["client", "show", &id]).stdout).unwrap();
    assert_eq!(shown["scopes"], serde_json::json!(["read", "write"]));

    let rotated = cli(&["client", "rotate-secret", &id, "--grace", "10m"]);
    let rotated: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(token(&secret).await, 200, "old secret within its grace");
    assert_eq!(token(&new_secret).await, 200);

    assert!(
        cli(&["client", "update", &id, "--disable"])
            .status
            .success()
    );
    assert_eq!(token(&new_secret).await, 401);
    assert!(cli(&["client", "delete", &id]).status.success());
    let gone = cli(&["client", "show", &id]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("not_found"), "{}", stderr(&gone));
}
