//! The one place that knows there are two backends: URL parsing, connecting,
//! per-backend pragmas and per-backend migration sets.

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::StoreError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Serialises concurrent migrations from several replicas on PostgreSQL.
const MIGRATION_LOCK_ID: i64 = 0x0074_6573_7365_7261; // "tessera"

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// `database.url`, checked once at start-up.
#[derive(Clone)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    // A PostgreSQL URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(_) => write!(f, "postgres://…"),
        }
    }
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("a sqlite:// URL needs a file path".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else {
            Err("expected sqlite://PATH or postgres://…".into())
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }

    /// Creates the SQLite file's folder so that a fresh clone just works.
    pub fn prepare(&self) -> Result<(), String> {
        if let DatabaseUrl::Sqlite(path) = self
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        Ok(())
    }

    fn connect(&self) -> Result<AnyConnection, diesel::ConnectionError> {
        match self {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
                // WAL lets readers run beside the one writer; busy_timeout
                // makes concurrent writers wait instead of failing. The
                // checkpoint thread copies the WAL back; a commit does it
                // only past the backstop (`checkpointer.rs`).
                conn.batch_execute(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = {SQLITE_WAL_BACKSTOP_PAGES}; \
                     PRAGMA journal_size_limit = {SQLITE_WAL_KEPT_BYTES};",
                    SQLITE_BUSY_TIMEOUT.as_millis()
                ))
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                Ok(AnyConnection::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(&with_defaults(url))?;
                // No statement of the request path takes seconds: one that
                // does is stuck (a lock held by a hand-run session), and
                // failing it frees the pooled connection. Migrations lift it.
                conn.batch_execute(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                Ok(AnyConnection::Postgresql(conn))
            }
        }
    }
}

/// The WAL size, in pages, past which a commit checkpoints by itself: 40 MB
/// at SQLite's 4 KiB pages, against its default of 1,000 pages. Reached
/// only when the checkpoint thread falls behind or fails. (With
/// `synchronous = NORMAL` the WAL is synced at checkpoints: the thread
/// syncs every few milliseconds under load; the backstop bounds how much
/// a power cut could take when it fails.)
pub(crate) const SQLITE_WAL_BACKSTOP_PAGES: u32 = 10_000;
/// What a WAL file that grew to the backstop shrinks back to once reset.
const SQLITE_WAL_KEPT_BYTES: u64 = 8 << 20;

/// How long a SQLite connection waits for the write lock (its busy
/// handler), and at least how long a caller waits for the in-process turn.
pub(crate) const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Statements on pooled PostgreSQL connections fail after this long.
const STATEMENT_TIMEOUT_MS: u64 = 30_000;

/// The URL with libpq's TCP keep-alive and user-timeout parameters
/// (PostgreSQL docs, §34.1.2), unless it sets them: a server that vanishes
/// without a FIN or RST (a partition, a failed-over address) is noticed in
/// about a minute, not after the kernel's two hours. On a loopback address
/// it also turns TLS off unless anything says otherwise.
pub(super) fn with_defaults(url: &str) -> String {
    with_defaults_in(url, libpq_environment_decides())
}

/// [`with_defaults`], told whether libpq's environment decides TLS.
fn with_defaults_in(url: &str, environment_decides: bool) -> String {
    let mut url = url.to_owned();
    for (name, value) in [
        ("keepalives", "1"),
        ("keepalives_idle", "30"),
        ("keepalives_interval", "10"),
        ("keepalives_count", "3"),
        ("tcp_user_timeout", "60000"),
    ] {
        add_unless_set(&mut url, name, value);
    }
    if on_loopback(&url) && !environment_decides {
        // libpq's default, `prefer`, would wrap every round trip in TLS
        // that never leaves the machine and authenticates no one (`prefer`
        // checks no certificate): OpenSSL's share was 2–3% of the machine
        // under token load, on both sides of the socket.
        add_unless_set(&mut url, "sslmode", "disable");
    }
    url
}

/// Whether libpq's environment says anything of TLS, or could send the
/// connection somewhere other than the URL's host: a parameter the URL
/// leaves unset is taken from these (PostgreSQL docs, §34.15), and a
/// `hostaddr` is dialled instead of the host.
fn libpq_environment_decides() -> bool {
    std::env::vars_os().any(|(name, _)| {
        let name = name.to_string_lossy();
        name.starts_with("PGSSL")
            || [
                "PGREQUIRESSL",
                "PGCHANNELBINDING",
                "PGHOSTADDR",
                "PGSERVICE",
                "PGSERVICEFILE",
            ]
            .contains(&name.as_ref())
    })
}

/// Appends `name=value` to the URL's query unless it names `name` already.
fn add_unless_set(url: &mut String, name: &str, value: &str) {
    let present = url
        .split(['?', '&'])
        .skip(1)
        .any(|pair| pair.split('=').next() == Some(name));
    if !present {
        // After a query's trailing separator, none more: libpq refuses
        // `?&`. (An `&` before any `?` is the path's.)
        match (url.contains('?'), url.ends_with(['?', '&'])) {
            (true, true) => {}
            (true, false) => url.push('&'),
            (false, _) => url.push('?'),
        }
        url.push_str(name);
        url.push('=');
        url.push_str(value);
    }
}

/// Whether the URL's one host is a loopback IP literal (`127.0.0.0/8`,
/// `[::1]`), no query parameter names another (`host`, `hostaddr`, or a
/// `service` that could), and none says anything of TLS (`ssl…`,
/// `requiressl`, `channel_binding`, which needs TLS). A name, even
/// `localhost`, is resolved by libpq, not here: it is left alone. So is any
/// URL that libpq's parser might read otherwise than the URL standard's:
/// libpq knows no `#` fragment, decodes `%` escapes in names, and ends the
/// user at the first `@` before the path where the standard takes the last
/// one before a `?`.
fn on_loopback(url: &str) -> bool {
    // What libpq searches for the user's `@`: all before the first `/`.
    let before_path = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
    let query_before_user = before_path
        .find('@')
        .is_some_and(|at| before_path[..at].contains('?'));
    // The URL standard drops tabs and line breaks; libpq keeps them and
    // would resolve `127.0.0.1\t` as a name.
    let ambiguous = url.contains(['#', '%'])
        || url.chars().any(|c| c.is_ascii_control() || c == ' ')
        || before_path.matches('@').count() > 1
        || query_before_user;
    if ambiguous {
        return false;
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let decided = parsed.query_pairs().any(|(name, _)| {
        name.starts_with("ssl")
            || [
                "requiressl",
                "channel_binding",
                "host",
                "hostaddr",
                "service",
            ]
            .contains(&name.as_ref())
    });
    // `postgres:` is not a special scheme to the URL standard: an IPv4
    // address comes back as an opaque host name.
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    loopback && !decided
}

pub(super) fn run_migrations(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let outcome = match conn {
        // Replicas started at once on one file would each find the same
        // migrations pending and the losers fail on tables that now exist:
        // the write lock is taken first (the busy handler waits for it),
        // as PostgreSQL's advisory lock does below. Each migration keeps
        // its own transaction, nested as a savepoint.
        AnyConnection::Sqlite(c) => c
            .immediate_transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|c| {
                c.run_pending_migrations(SQLITE_MIGRATIONS).map(drop)
            }),
        AnyConnection::Postgresql(c) => {
            // A migration may rewrite a large table: no statement timeout.
            c.batch_execute("SET statement_timeout = 0")?;
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))?;
            let outcome = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop);
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))?;
            c.batch_execute(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))?;
            outcome
        }
    };
    outcome.map_err(|e| {
        let message = e.to_string();
        if super::looks_like_lost_connection(&message) {
            StoreError::Unavailable(message)
        } else {
            StoreError::Other(format!("migrations failed: {message}"))
        }
    })
}

/// A pooled connection plus a flag set when it lost its server, so the pool
/// drops it instead of handing it out again.
pub struct PooledConnection {
    pub connection: AnyConnection,
    pub broken: bool,
}

pub type PooledConn = r2d2::PooledConnection<Manager>;

pub struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    pub fn new(url: DatabaseUrl) -> Self {
        Manager { url }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConnection;
    type Error = diesel::ConnectionError;

    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        Ok(PooledConnection {
            connection: self.url.connect()?,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.connection
            .batch_execute("SELECT 1")
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
    }

    /// Flagged after a lost connection; or given back by a call that
    /// panicked, or inside a transaction, or with one diesel no longer
    /// knows the state of: diesel does not roll back a transaction whose
    /// closure panicked, and a connection left inside one would make every
    /// later call's commit a savepoint's release (diesel's own r2d2 manager
    /// checks much the same).
    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.broken || std::thread::panicking() || !outside_any_transaction(&mut conn.connection)
    }
}

/// Whether diesel knows `conn` to be outside any transaction (false inside
/// one, or when its transaction state is broken).
pub(crate) fn outside_any_transaction(conn: &mut AnyConnection) -> bool {
    use diesel::connection::TransactionManager;
    type Transactions = <AnyConnection as Connection>::TransactionManager;
    matches!(
        Transactions::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(None)
    )
}

#[cfg(test)]
mod tests {
    use super::{with_defaults, with_defaults_in};

    #[test]
    fn keepalives_are_added_unless_set() {
        assert_eq!(
            with_defaults("postgres://u@h/db"),
            "postgres://u@h/db?keepalives=1&keepalives_idle=30&keepalives_interval=10\
             &keepalives_count=3&tcp_user_timeout=60000"
        );
        let own = with_defaults("postgres://u@h/db?sslmode=require&keepalives_idle=5");
        assert!(
            own.starts_with("postgres://u@h/db?sslmode=require&keepalives_idle=5&keepalives=1")
        );
        assert_eq!(own.matches("keepalives_idle").count(), 1);
    }

    #[test]
    fn loopback_literals_skip_tls_unless_anything_says_otherwise() {
        for plain in [
            "postgres://u@127.0.0.1:5432/db",
            "postgresql://u@127.0.0.2/db?application_name=x",
            "postgres://u@[::1]:5432/db",
            "postgres://u:p@127.0.0.1",
        ] {
            let url = with_defaults_in(plain, false);
            assert!(url.ends_with("&sslmode=disable"), "{plain}: {url}");
            let decided = with_defaults_in(plain, true);
            assert!(!decided.contains("sslmode"), "{plain}: {decided}");
        }
        for kept in [
            // Another host, or one libpq resolves itself.
            "postgres://u@localhost/db",
            "postgres://u@db.internal/db",
            "postgres://u@10.0.0.5/db",
            "postgres://u@127.0.0.1,10.0.0.5/db",
            "postgres://u@127.0.0.1/db?host=db.internal",
            "postgres://u@127.0.0.1/db?hostaddr=10.0.0.5",
            "postgres://u@127.0.0.1/db?service=elsewhere",
            // Read otherwise by libpq than by the URL standard.
            "postgres://127.0.0.1#@db.example.com/db",
            "postgres://u@127.0.0.1/db#?host=db.example.com",
            "postgres://u@127.0.0.1/db?application_name=a#&host=db.example.com",
            "postgres://u@db.example.com,x@127.0.0.1/db",
            "postgres://127.0.0.1?x=@db.example.com/db?application_name=a",
            "postgres://127.0.0.1?application_name=a@db.example.com",
            "postgres://u@127.0.0.1/db?ho%73t=db.example.com",
            // Anything said of TLS.
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@127.0.0.1/db?ssl=true",
            "postgres://u@127.0.0.1/db?ssl%6dode=require",
            "postgres://u@127.0.0.1/db?sslrootcert=system",
            "postgres://u@127.0.0.1/db?sslnegotiation=direct",
            "postgres://u@127.0.0.1/db?sslcert=c.pem&sslkey=k.pem",
            "postgres://u@127.0.0.1/db?requiressl=1",
            "postgres://u@127.0.0.1/db?channel_binding=require",
            // Whitespace the URL standard drops and libpq keeps.
            "postgres://u@127.0.0.1\t/db",
            "postgres://u@127.0.0.1\r",
            "postgres://u@[::\n1]/db",
        ] {
            let url = with_defaults_in(kept, false);
            assert!(!url.contains("sslmode=disable"), "{kept}: {url}");
        }
        // A trailing separator is not doubled (libpq refuses `?&`).
        for trailing in ["postgres://u@h/db?", "postgres://u@h/db?a=b&"] {
            let url = with_defaults_in(trailing, false);
            assert!(!url.contains("?&") && !url.contains("&&"), "{url}");
        }
        // An `&` in the path is the database name's.
        let url = with_defaults_in("postgres://u@h/db&", false);
        assert!(url.starts_with("postgres://u@h/db&?keepalives=1&"), "{url}");
    }
}
