//! `tessera login`, `whoami` and `logout` as a person uses them: the
//! command runs in a pseudo-terminal (expectrl) while headless Chromium
//! approves the device code or signs in through the authorization URL it
//! prints; the loopback listener's `state` check and single answer; ten
//! commands refreshing one login at once; Ctrl-C; a login ended at the
//! server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use expectrl::session::OsSession as Session;
use expectrl::{ControlCode, Eof, Expect, Regex};
use serde_json::Value;

use crate::authorization::{PASSWORD, create_user};
use crate::cli::{run, stderr, tessera};
use crate::common::browser::Browser;
use crate::common::pages::{Visitor, location};
use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    login_by_device_code_in_a_terminal,
    login_through_the_browser_in_a_terminal,
    the_loopback_listener_takes_one_answer_with_its_state,
    ten_commands_at_once_keep_the_login,
    ctrl_c_leaves_nothing_behind,
    a_login_ended_at_the_server_says_so,
    an_administrator_works_as_themselves,
);

/// A `tessera` command for a person whose config directory is `home`,
/// with the login kept in the 0600 file (no keyring service runs here).
pub(crate) fn person(home: &Path) -> Command {
    let mut command = tessera(home);
    command
        .env("TESSERA_CONFIG_DIR", home.join("config"))
        .env("TESSERA_CREDENTIAL_STORE", "file")
        .env_remove("BROWSER")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    command
}

pub(crate) fn login_file(home: &Path, app: &TestApp) -> PathBuf {
    let port = url::Url::parse(&app.url).unwrap().port().unwrap();
    home.join(format!("config/logins/http_127.0.0.1_{port}.json"))
}

fn saved(home: &Path, app: &TestApp) -> Value {
    serde_json::from_slice(&std::fs::read(login_file(home, app)).unwrap()).unwrap()
}

/// Runs `tessera <args> --url <app>` for `home` to completion.
fn tessera_as(home: &Path, app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut command = person(home);
    command.args(args).args(["--url", &app.url]);
    tokio::task::block_in_place(|| run(&mut command))
}

/// `tessera login` in a pseudo-terminal.
fn spawn_in_terminal(home: &Path, app: &TestApp, args: &[&str]) -> Session {
    let mut command = person(home);
    command.arg("login").args(args).args(["--url", &app.url]);
    let mut session = Session::spawn(command).expect("a pty");
    session.set_expect_timeout(Some(Duration::from_secs(60)));
    session
}

/// Waits (off the runtime) for `pattern` and returns its first group.
async fn capture(session: Session, pattern: &'static str) -> (Session, String) {
    tokio::task::spawn_blocking(move || {
        let mut session = session;
        let found = session
            .expect(Regex(pattern))
            .unwrap_or_else(|e| panic!("waiting for {pattern}: {e}"));
        let group = String::from_utf8_lossy(found.get(1).unwrap_or_default()).into_owned();
        (session, group)
    })
    .await
    .unwrap()
}

/// Waits for the end of the output and returns the exit code.
async fn finish(session: Session) -> i32 {
    tokio::task::spawn_blocking(move || {
        let mut session = session;
        session.expect(Eof).expect("the command ends");
        match session.get_process().wait().expect("exit status") {
            ptyprocess::WaitStatus::Exited(_, code) => code,
            other => panic!("ended by {other:?}"),
        }
    })
    .await
    .unwrap()
}

/// The browser part of the sign-in: the login form for alice.
async fn sign_in_as_alice(browser: &Browser) {
    assert_eq!(browser.path().await, "/login");
    browser.fill("#username", "alice").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#submit").await;
}

fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
}

/// A refresh grant with `refresh_token`: the HTTP status and error code.
async fn refresh(app: &TestApp, refresh_token: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "tessera-cli"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn login_by_device_code_in_a_terminal(backend: Backend) {
    let name = format!("cli-device-{}", backend.name());
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let home = tempfile::tempdir().unwrap();

    let terminal = spawn_in_terminal(home.path(), &app, &["--device", "--no-browser"]);
    let (terminal, user_code) = capture(terminal, r"one-time code: ([B-Z]{4}-[B-Z]{4})").await;
    let (terminal, link) = capture(terminal, r"or open (\S+) to have it filled in").await;
    assert!(link.ends_with(&format!("user_code={user_code}")), "{link}");

    let browser = Browser::start(&name).await;
    browser.goto(&link).await;
    sign_in_as_alice(&browser).await;
    assert_eq!(browser.text("#user-code").await, user_code);
    browser.click("#approve").await;
    assert_eq!(browser.h1().await, "Device connected");
    browser.close().await;

    let (terminal, stored) = capture(terminal, r"stored in (\S+) \(readable only by you\)").await;
    let (terminal, _) = capture(terminal, r"(✓ Logged in to \S+ as alice)").await;
    assert_eq!(finish(terminal).await, 0);
    assert_eq!(Path::new(&stored), login_file(home.path(), &app));
    assert_private(Path::new(&stored));
    let refresh_token = saved(home.path(), &app)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let whoami = tessera_as(home.path(), &app, &["whoami"]);
    assert!(whoami.status.success(), "{}", stderr(&whoami));
    let shown = String::from_utf8_lossy(&whoami.stdout);
    assert!(shown.starts_with("alice (human, "), "{shown}");
    assert!(shown.contains("Session ends "), "{shown}");
    // admin:read is for administrators: the server left it out.
    assert!(
        shown.contains("Scopes: openid offline_access tokens:self\n"),
        "{shown}"
    );

    let logout = tessera_as(home.path(), &app, &["logout"]);
    assert!(logout.status.success(), "{}", stderr(&logout));
    assert!(stderr(&logout).contains("the login is revoked"));
    assert!(!login_file(home.path(), &app).exists());
    let (status, error) = refresh(&app, &refresh_token).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let whoami = tessera_as(home.path(), &app, &["whoami"]);
    assert!(!whoami.status.success());
    assert!(
        stderr(&whoami).contains("run `tessera login`"),
        "{}",
        stderr(&whoami)
    );
}

async fn login_through_the_browser_in_a_terminal(backend: Backend) {
    let name = format!("cli-web-{}", backend.name());
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let home = tempfile::tempdir().unwrap();

    let terminal = spawn_in_terminal(home.path(), &app, &["--web", "--no-browser"]);
    let (terminal, address) = capture(terminal, r"to sign in:\s+(http\S+)").await;
    let authorize = url::Url::parse(&address).unwrap();
    let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], "tessera-cli");
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(
        query["redirect_uri"].starts_with("http://127.0.0.1:")
            && query["redirect_uri"].ends_with("/callback"),
        "{query:?}"
    );

    let browser = Browser::start(&name).await;
    browser.goto(&address).await;
    sign_in_as_alice(&browser).await;
    // Every time a click (RFC 8252 §8.6), with what a local program gets.
    assert_eq!(browser.h1().await, "Allow Tessera CLI?");
    assert!(
        browser
            .text("#warning")
            .await
            .contains("Only allow if you started this yourself")
    );
    browser.screenshot("consent").await;
    browser.click("#allow").await;
    assert_eq!(browser.h1().await, "Signed in");
    browser.close().await;

    let (terminal, _) = capture(terminal, r"(✓ Logged in to \S+ as alice)").await;
    assert_eq!(finish(terminal).await, 0);
    assert_private(&login_file(home.path(), &app));

    let whoami = tessera_as(home.path(), &app, &["whoami", "--json"]);
    assert!(whoami.status.success(), "{}", stderr(&whoami));
    let me: Value = serde_json::from_slice(&whoami.stdout).unwrap();
    assert_eq!(me["name"], "alice");
    assert_eq!(me["login"]["client_id"], "tessera-cli");
    assert!(me["login"]["session_ends_at"].is_string(), "{me}");

    let logout = tessera_as(home.path(), &app, &["logout"]);
    assert!(logout.status.success(), "{}", stderr(&logout));
}

/// Starts `tessera login` with pipes; returns it and the address it
/// printed for the browser (`--web`) or its user code (`--device`).
pub(crate) fn start_login(
    home: &Path,
    app: &TestApp,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut command = person(home);
    command
        .envs(env.iter().copied())
        .arg("login")
        .args(args)
        .args(["--no-browser", "--url", &app.url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let wanted = loop {
        let line = lines.next().expect("a line").unwrap();
        if let Some(address) = line.trim().strip_prefix("http") {
            break format!("http{address}");
        }
        if let Some(code) = line.strip_prefix("! First copy your one-time code: ") {
            break code.to_owned();
        }
    };
    // The rest of the output, read on its own thread.
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    (child, wanted, rest)
}

pub(crate) fn wait(child: &mut Child) -> i32 {
    tokio::task::block_in_place(|| child.wait())
        .unwrap()
        .code()
        .unwrap_or(-1)
}

async fn the_loopback_listener_takes_one_answer_with_its_state(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let home = tempfile::tempdir().unwrap();
    let (mut child, address, _) = start_login(home.path(), &app, &["--web"], &[]);
    let authorize = url::Url::parse(&address).unwrap();
    let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    let callback = &query["redirect_uri"];
    let plain = reqwest::Client::new();

    // An answer without this sign-in's state is refused, and changes nothing.
    for forged in [
        format!("{callback}?code=stolen&state=guess"),
        format!("{callback}?code=stolen"),
        format!("{callback}?error=access_denied&state="),
    ] {
        let response = plain.get(&forged).send().await.unwrap();
        assert_eq!(response.status(), 400, "{forged}");
    }
    assert!(child.try_wait().unwrap().is_none(), "still waiting");

    let visitor = Visitor::new(&app);
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
    let consent = visitor
        .get(&address[address.find("/oauth").unwrap()..])
        .await;
    assert_eq!(
        consent.status(),
        200,
        "a loopback client is asked every time"
    );
    let page = consent.text().await.unwrap();
    let redirect = crate::authorization::submit_consent(&visitor, &page, "allow").await;
    let back = location(&redirect);
    assert!(back.starts_with(callback.as_str()), "{back}");
    let answered = plain.get(&back).send().await.unwrap();
    assert_eq!(answered.status(), 200);
    assert!(answered.text().await.unwrap().contains("Signed in"));
    assert_eq!(wait(&mut child), 0);
    // One answer only: the listener is gone.
    assert!(plain.get(&back).send().await.is_err());
    assert!(login_file(home.path(), &app).exists());
}

/// Logs alice in by the device flow with pipes, approving over HTTP.
async fn logged_in(home: &Path, app: &TestApp) {
    let said = logged_in_with(home, app, &[]).await;
    assert!(said.contains("(readable only by you)"), "{said}");
}

/// Returns what `tessera login` said after the code.
pub(crate) async fn logged_in_with(home: &Path, app: &TestApp, env: &[(&str, &str)]) -> String {
    create_user(app, "alice", false).await;
    device_login(home, app, "alice", &["--device"], env).await
}

/// `tessera login <args>` by the device flow, approved by `username`.
async fn device_login(
    home: &Path,
    app: &TestApp,
    username: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let (mut child, user_code, said) = start_login(home, app, args, env);
    let visitor = Visitor::new(app);
    assert_eq!(visitor.login(username, PASSWORD).await.status(), 303);
    let approved = crate::device::answer(&visitor, &user_code, "approve").await;
    assert_eq!(approved.status(), 200);
    assert_eq!(wait(&mut child), 0);
    said.join().unwrap()
}

/// Makes the cached access token look expired, so the next command
/// refreshes.
fn expire_access_token(home: &Path, app: &TestApp) {
    let mut login = saved(home, app);
    login["access_expires_at"] = 0.into();
    std::fs::write(login_file(home, app), login.to_string()).unwrap();
}

async fn ten_commands_at_once_keep_the_login(backend: Backend) {
    let app = TestApp::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    logged_in(home.path(), &app).await;
    let first = saved(home.path(), &app)["refresh_token"].clone();

    expire_access_token(home.path(), &app);
    let commands: Vec<Child> = (0..10)
        .map(|_| {
            let mut command = person(home.path());
            command
                .args(["whoami", "--json", "--url", &app.url])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for command in commands {
        let output = tokio::task::block_in_place(|| command.wait_with_output()).unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let me: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(me["name"], "alice");
    }
    // One refresh among the ten, and the rotated token is the live one.
    let second = saved(home.path(), &app)["refresh_token"].clone();
    assert_ne!(first, second);
    let audit: Value = app
        .admin_get("/admin/v1/audit?action=refresh.reused")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"], serde_json::json!([]), "{audit}");
    expire_access_token(home.path(), &app);
    let again = tessera_as(home.path(), &app, &["whoami"]);
    assert!(again.status.success(), "{}", stderr(&again));
}

async fn ctrl_c_leaves_nothing_behind(backend: Backend) {
    let app = TestApp::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let terminal = spawn_in_terminal(home.path(), &app, &["--device", "--no-browser"]);
    let (terminal, _) = capture(
        terminal,
        r"(Waiting for the approval \(checking every \d+ s)",
    )
    .await;
    let code = tokio::task::spawn_blocking(move || {
        let mut terminal = terminal;
        terminal.send(ControlCode::EndOfText).unwrap();
        terminal
            .expect("Login cancelled; nothing was stored.")
            .unwrap();
        terminal
    })
    .await
    .unwrap();
    assert_eq!(finish(code).await, 130);
    assert!(!login_file(home.path(), &app).exists());
}

async fn a_login_ended_at_the_server_says_so(backend: Backend) {
    let app = TestApp::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    logged_in(home.path(), &app).await;
    let refresh_token = saved(home.path(), &app)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Revoked elsewhere (RFC 7009, as the public client itself may).
    let revoked = app
        .http
        .post(app.endpoint("/oauth/revoke"))
        .form(&[
            ("client_id", "tessera-cli"),
            ("token", refresh_token.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    expire_access_token(home.path(), &app);
    let whoami = tessera_as(home.path(), &app, &["whoami"]);
    assert!(!whoami.status.success());
    let said = stderr(&whoami);
    assert!(
        said.contains("has ended") && said.contains("tessera login"),
        "{said}"
    );
    assert!(!login_file(home.path(), &app).exists(), "forgotten");
}

async fn an_administrator_works_as_themselves(backend: Backend) {
    let app = TestApp::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let bob = create_user(&app, "bob", true).await;
    device_login(home.path(), &app, "bob", &["--device", "--admin"], &[]).await;
    assert_eq!(
        saved(home.path(), &app)["scope"],
        "openid offline_access admin:read tokens:self admin"
    );

    // No token given, no keys/admin.token here: the login is the identity.
    let mut create = person(home.path());
    create
        .args([
            "user",
            "create",
            "carol",
            "--password-stdin",
            "--url",
            &app.url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = create.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let created = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let audit: Value = app
        .admin_get("/admin/v1/audit?action=user.created")
        .await
        .json()
        .await
        .unwrap();
    let carol = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["details"]["username"] == "carol")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(carol["actor_id"], bob.as_str(), "{carol}");
    assert_eq!(carol["actor_kind"], "human", "{carol}");
}
