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
    keyring: Child,
}

impl SecretService {
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
        let runtime = dir.join("run");
        std::fs::create_dir_all(&runtime).unwrap();
        let mut keyring = Command::new(KEYRING_DAEMON)
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon starts");
        // The login keyring's password, then end of input: it is unlocked.
        use std::io::Write;
        let mut stdin = keyring.stdin.take().unwrap();
        stdin.write_all(b"test keyring password").unwrap();
        drop(stdin);
        let service = SecretService {
            address,
            bus,
            keyring,
        };
        service.wait_until_it_answers();
        service
    }

    /// Up to 30 s: on a loaded two-core machine (a build beside the tests)
    /// the daemon once took longer than 10 s to claim its name.
    fn wait_until_it_answers(&self) {
        for _ in 0..300 {
            let asked = Command::new("dbus-send")
                .args([
                    &format!("--bus={}", self.address),
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output();
            if asked.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Secret Service did not come up on {}", self.address);
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in [&mut self.keyring, &mut self.bus] {
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
