//! Where `tessera login` keeps a login: the OS keyring (the `keyring`
//! crate: Secret Service, Keychain, Credential Manager), or, where no
//! keyring service answers, a file only its owner can read (mode 0600)
//! under the user's config directory, as `gh` does.
//!
//! The record holds the refresh token and, beside it, the access token
//! last issued, so that commands started within its lifetime need no
//! request. Refreshing is serialised by a lock file next to the record
//! ([`lock`]): a refresh token is never presented twice, which reuse
//! detection would rightly answer by revoking the whole login.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::secret::Secret;

/// The keyring service name every login is stored under; the account is
/// the server's URL.
const KEYRING_SERVICE: &str = "tessera";

/// A login to one server: what refreshing and revoking need, and the
/// tokens themselves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub url: Url,
    pub client_id: String,
    pub token_endpoint: Url,
    pub revocation_endpoint: Option<Url>,
    pub scope: String,
    pub refresh_token: Secret,
    pub access_token: Secret,
    /// Unix seconds.
    pub access_expires_at: i64,
    /// Unix seconds: when the refresh token expires unused.
    pub session_ends_at: Option<i64>,
}

/// Which store holds a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Keyring,
    File(PathBuf),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Keyring => f.write_str("the OS keyring"),
            Place::File(path) => write!(f, "{} (readable only by you)", path.display()),
        }
    }
}

/// `TESSERA_CREDENTIAL_STORE`: `keyring`, `file`, or `auto` (the
/// default: the keyring when one answers, else the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    Keyring,
    File,
}

fn mode() -> anyhow::Result<Mode> {
    match std::env::var("TESSERA_CREDENTIAL_STORE").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(Mode::Auto),
        Ok("keyring") => Ok(Mode::Keyring),
        Ok("file") => Ok(Mode::File),
        Ok(other) => Err(anyhow!(
            "TESSERA_CREDENTIAL_STORE is `{other}`: use auto, keyring or file"
        )),
    }
}

/// `TESSERA_CONFIG_DIR`, else `$XDG_CONFIG_HOME/tessera`, else
/// `~/.config/tessera` (`%APPDATA%\tessera` on Windows).
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("TESSERA_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("tessera"));
    }
    if cfg!(windows)
        && let Some(dir) = var("APPDATA")
    {
        return Ok(PathBuf::from(dir).join("tessera"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".config").join("tessera"))
        .ok_or_else(|| anyhow!("no config directory: set HOME or TESSERA_CONFIG_DIR"))
}

/// The file name a server's login gets: its scheme, host and port, with
/// anything else replaced, so that no URL can name a path.
fn file_stem(url: &Url) -> String {
    let port = url.port_or_known_default().unwrap_or(0);
    let host = url.host_str().unwrap_or("host");
    format!("{}_{host}_{port}", url.scheme())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn logins_dir() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("logins"))
}

fn file_path(url: &Url) -> anyhow::Result<PathBuf> {
    Ok(logins_dir()?.join(format!("{}.json", file_stem(url))))
}

/// The keyring account of a server: its URL without a trailing slash.
fn account(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Runs a keyring call on a thread of its own: the Secret Service client
/// blocks on an async runtime that must not be this one's.
async fn on_keyring_thread<T: Send + 'static>(
    call: impl FnOnce() -> keyring::Result<T> + Send + 'static,
) -> keyring::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.await.unwrap_or_else(|_| {
        Err(keyring::Error::PlatformFailure(
            "keyring thread died".into(),
        ))
    })
}

fn entry(url: &Url) -> keyring::Result<keyring::Entry> {
    keyring::Entry::new(KEYRING_SERVICE, &account(url))
}

/// The login saved for `url`, and where it was.
pub async fn load(url: &Url) -> anyhow::Result<Option<(Login, Place)>> {
    let mode = mode()?;
    // A file is written only when the keyring failed, and removed when the
    // keyring takes a login: where one exists, it is the current record.
    if let Some(found) = load_file(url, mode)? {
        return Ok(Some(found));
    }
    load_keyring(url, mode).await
}

/// Every login saved for `url`, in the file and in the keyring: a file
/// written while the keyring was away (over SSH, say) leaves an older
/// login in the keyring, which logging out must end too. The second
/// value says why the keyring could not be read, when it could not.
pub async fn load_everywhere(url: &Url) -> anyhow::Result<(Vec<(Login, Place)>, Option<String>)> {
    let mode = mode()?;
    let mut found: Vec<_> = load_file(url, mode)?.into_iter().collect();
    let mut unreadable = None;
    match load_keyring(url, mode).await {
        Ok(login) => found.extend(login),
        Err(e) => unreadable = Some(e.to_string()),
    }
    Ok((found, unreadable))
}

fn load_file(url: &Url, mode: Mode) -> anyhow::Result<Option<(Login, Place)>> {
    if mode == Mode::Keyring {
        return Ok(None);
    }
    let path = file_path(url)?;
    let Some(bytes) = read_private(&path)? else {
        return Ok(None);
    };
    let login = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a saved login", path.display()))?;
    Ok(Some((login, Place::File(path))))
}

async fn load_keyring(url: &Url, mode: Mode) -> anyhow::Result<Option<(Login, Place)>> {
    if mode == Mode::File {
        return Ok(None);
    }
    let url_owned = url.clone();
    match on_keyring_thread(move || entry(&url_owned)?.get_password()).await {
        Ok(text) => {
            let login = serde_json::from_str(&text)
                .context("the keyring's entry for this server is not a saved login")?;
            Ok(Some((login, Place::Keyring)))
        }
        Err(keyring::Error::NoEntry) => Ok(None),
        // No keyring service: nothing was ever stored there.
        Err(keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_))
            if mode == Mode::Auto =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow!("cannot read the OS keyring: {e}")),
    }
}

/// Saves `login`: in the keyring when one answers (and the mode allows),
/// else in the 0600 file. Returns where, and why the keyring was passed
/// over when it was.
pub async fn save(login: &Login) -> anyhow::Result<(Place, Option<String>)> {
    let mode = mode()?;
    let text = serde_json::to_string(login).context("cannot encode the login")?;
    let mut passed_over = None;
    if mode != Mode::File {
        let url = login.url.clone();
        let secret = text.clone();
        match on_keyring_thread(move || entry(&url)?.set_password(&secret)).await {
            Ok(()) => {
                remove_file(&file_path(&login.url)?)?;
                return Ok((Place::Keyring, None));
            }
            Err(e) if mode == Mode::Auto => passed_over = Some(e.to_string()),
            Err(e) => return Err(anyhow!("cannot write to the OS keyring: {e}")),
        }
    }
    let path = file_path(&login.url)?;
    write_private(&path, text.as_bytes())?;
    Ok((Place::File(path), passed_over))
}

/// Forgets the login for `url`, wherever it is.
pub async fn delete(url: &Url, place: &Place) -> anyhow::Result<()> {
    match place {
        Place::File(path) => remove_file(path),
        Place::Keyring => {
            let url = url.clone();
            match on_keyring_thread(move || entry(&url)?.delete_credential()).await {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(anyhow!("cannot delete the login from the OS keyring: {e}")),
            }
        }
    }
}

fn remove_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).context(format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Options for this module's files: mode 0600, and never through a
/// symbolic link (one planted where a login file goes would redirect it).
fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Writes `bytes` to `path` readable and writable by its owner only, by
/// way of a new temporary file with a random name renamed over it, so
/// that a reader never sees half a record and nobody can have made the
/// file beforehand.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().expect("a login file has a directory");
    create_private_dir(dir)?;
    let temporary = dir.join(format!(".{}.tmp", crate::random::random_base62(16)));
    let written = private_options()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
    written
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("cannot write {}", path.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}

/// Reads a login file, not through a symbolic link; `None` when absent.
fn read_private(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::Read;
    match private_options().read(true).open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(format!("cannot read {}", path.display())),
    }
}

/// Creates `dir` (mode 0700) if needed, then checks that it is a real
/// directory that only this user can reach, in a parent nobody else can
/// write to, as ssh checks `~/.ssh`: another user who could write there
/// could swap or read the login.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        check_owned(dir, 0o077)?;
        if let Some(parent) = dir.parent() {
            check_owned(parent, 0o022)?;
        }
    }
    Ok(())
}

/// `path` is a directory (not a link) owned by this user, or by root,
/// with none of `forbidden`'s permission bits.
#[cfg(unix)]
fn check_owned(path: &Path, forbidden: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let owner_ok = meta.uid() == me || meta.uid() == 0;
    if !meta.is_dir() || !owner_ok || meta.mode() & forbidden != 0 {
        anyhow::bail!(
            "{} must be a directory owned by you with no access for others \
             (chmod {:o}): refusing to keep a login there",
            path.display(),
            0o777 & !forbidden
        );
    }
    Ok(())
}

/// Holds the lock on a server's login until dropped.
pub struct Lock(#[allow(dead_code)] std::fs::File);

/// Waits for the exclusive lock on `url`'s login: one `tessera` process
/// at a time reads, refreshes and writes it.
pub async fn lock(url: &Url) -> anyhow::Result<Lock> {
    let dir = logins_dir()?;
    let path = dir.join(format!("{}.lock", file_stem(url)));
    tokio::task::spawn_blocking(move || {
        create_private_dir(&dir)?;
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Lock(file))
    })
    .await
    .context("the lock task failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_scheme_host_and_port_only() {
        let stem = |url: &str| file_stem(&Url::parse(url).unwrap());
        assert_eq!(stem("http://127.0.0.1:8080"), "http_127.0.0.1_8080");
        assert_eq!(stem("https://id.example.com/"), "https_id.example.com_443");
        assert_eq!(
            stem("https://id.example.com/../../etc"),
            "https_id.example.com_443"
        );
        assert_eq!(stem("http://[::1]:9000"), "http____1__9000");
    }

    #[cfg(unix)]
    #[test]
    fn logins_stay_out_of_directories_others_can_reach() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let logins = root.path().join("tessera/logins");
        create_private_dir(&logins).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&logins), 0o700);
        write_private(&logins.join("a.json"), b"{}").unwrap();
        assert_eq!(mode(&logins.join("a.json")), 0o600);

        std::fs::set_permissions(&logins, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(create_private_dir(&logins).is_err(), "group can enter");
        std::fs::set_permissions(&logins, std::fs::Permissions::from_mode(0o700)).unwrap();
        let parent = root.path().join("tessera");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(create_private_dir(&logins).is_err(), "others can swap it");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700)).unwrap();

        // A link planted where a login goes is not followed.
        let elsewhere = root.path().join("elsewhere.json");
        std::fs::write(&elsewhere, b"{}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, logins.join("b.json")).unwrap();
        assert!(read_private(&logins.join("b.json")).is_err());
        assert_eq!(read_private(&logins.join("absent.json")).unwrap(), None);
    }
}
