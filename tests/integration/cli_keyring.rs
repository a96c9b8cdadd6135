//! `tessera login` with a real OS keyring: a private D-Bus session bus
//! and an unlocked gnome-keyring (the Secret Service of most Linux
//! desktops). The login goes there, not to a file, by default; `whoami`
//! reads it back and `logout` removes it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cli::stderr;
use crate::cli_login::{logged_in_with, login_file, person};
use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(the_login_goes_to_the_os_keyring);

const KEYRING_DAEMON: &str = "/usr/bin/gnome-keyring-daemon";

/// A session bus and a Secret Service on it, stopped when dropped.
struct SecretService {
    address: String,
    bus: Child,
    keyring: Option<Child>,
}

impl SecretService {
    /// The bus first, and only once it answers the keyring daemon, which
    /// exits at once if it cannot reach the bus. A daemon that exits all
    /// the same is started again, twice at most; its stderr goes to a file
    /// that the failure message shows.
    fn start(dir: &Path) -> SecretService {
        assert!(
            Path::new(KEYRING_DAEMON).exists(),
            "{KEYRING_DAEMON} is missing: this test needs a Secret Service. \
             On Debian: `sudo apt-get install gnome-keyring` (.ci/run does this)."
        );
        let address = format!("unix:path={}", dir.join("bus").display());
        let bus = Command::new("dbus-daemon")
            .args([
                "--session",
                "--nofork",
                "--nopidfile",
                "--address",
                &address,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        // Built now, so that a failure below stops what was started.
        let mut service = SecretService {
            address,
            bus,
            keyring: None,
        };
        let address = service.address.clone();
        let answers =
            within_30_s(|| ask_bus(&address, "org.freedesktop.DBus.GetId", &[]).is_some());
        assert!(answers, "the session bus did not come up on {address}");
        let mut attempts = 0;
        let runtime = dir.join("run");
        std::fs::create_dir_all(&runtime).unwrap();
        service.keyring = Some(loop {
            attempts += 1;
            let log = dir.join(format!("keyring-{attempts}.log"));
            let mut daemon = Command::new(KEYRING_DAEMON)
                .args(["--foreground", "--unlock", "--components=secrets"])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .env("HOME", dir)
                .env("XDG_DATA_HOME", dir.join("data"))
                .env("XDG_RUNTIME_DIR", &runtime)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("gnome-keyring-daemon starts");
            // The login keyring's password, then end of input: it is unlocked.
            use std::io::Write;
            let mut stdin = daemon.stdin.take().unwrap();
            // A daemon already gone closes the pipe: the check below says so.
            let _ = stdin.write_all(b"test keyring password");
            drop(stdin);
            let mut exited = false;
            let up = within_30_s(|| {
                exited = daemon.try_wait().is_ok_and(|status| status.is_some());
                exited || owns_the_secrets_name(&address)
            });
            if up && !exited {
                break daemon;
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                exited && attempts < 3,
                "the Secret Service did not come up on {address} \
                 (attempt {attempts}, daemon exited: {exited}): {said}"
            );
            eprintln!("gnome-keyring-daemon exited at start; starting it again: {said}");
        });
        service
    }
}

/// Polls `ready` every 100 ms for up to 30 s: on a loaded two-core machine
/// (a build beside the tests) the daemon once took longer than 10 s to
/// claim its name.
fn within_30_s(mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Calls a method of the bus itself; its reply, if it gave one.
fn ask_bus(address: &str, method: &str, args: &[&str]) -> Option<String> {
    let asked = Command::new("dbus-send")
        .args([
            &format!("--bus={address}"),
            "--print-reply",
            "--reply-timeout=1000",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            method,
        ])
        .args(args)
        .output()
        .ok()?;
    asked
        .status
        .success()
        .then(|| String::from_utf8_lossy(&asked.stdout).into_owned())
}

fn owns_the_secrets_name(address: &str) -> bool {
    ask_bus(
        address,
        "org.freedesktop.DBus.NameHasOwner",
        &["string:org.freedesktop.secrets"],
    )
    .is_some_and(|reply| reply.contains("boolean true"))
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in self.keyring.iter_mut().chain([&mut self.bus]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn the_login_goes_to_the_os_keyring(backend: Backend) {
    let app = TestApp::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let service = tokio::task::block_in_place(|| SecretService::start(home.path()));
    let env = [
        ("TESSERA_CREDENTIAL_STORE", "auto"),
        ("DBUS_SESSION_BUS_ADDRESS", service.address.as_str()),
    ];
    let said = logged_in_with(home.path(), &app, &env).await;
    assert!(
        said.contains("The login is stored in the OS keyring."),
        "{said}"
    );
    assert!(!login_file(home.path(), &app).exists(), "no file beside it");

    let tessera = |args: &[&str]| {
        let mut command = person(home.path());
        command.envs(env).args(args).args(["--url", &app.url]);
        tokio::task::block_in_place(|| crate::cli::run(&mut command))
    };
    let whoami = tessera(&["whoami"]);
    assert!(whoami.status.success(), "{}", stderr(&whoami));
    let shown = String::from_utf8_lossy(&whoami.stdout);
    assert!(shown.starts_with("alice (human, "), "{shown}");
    assert!(shown.contains("Stored in the OS keyring"), "{shown}");

    let logout = tessera(&["logout"]);
    assert!(logout.status.success(), "{}", stderr(&logout));
    assert!(
        stderr(&logout).contains("removed from the OS keyring"),
        "{}",
        stderr(&logout)
    );
    let whoami = tessera(&["whoami"]);
    assert!(!whoami.status.success(), "logged out");
    assert!(
        stderr(&whoami).contains("run `tessera login`"),
        "{}",
        stderr(&whoami)
    );
}
