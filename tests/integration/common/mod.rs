//! The `TestApp` builder: a real Tessera server, in-process, on an
//! ephemeral port, with a fresh database (a SQLite file in a temporary
//! folder, or a fresh PostgreSQL schema when TESSERA_TEST_DATABASE_URL is
//! set), plus helpers every test shares.

#![allow(dead_code)]

pub mod browser;
pub mod pages;
pub mod proxy;
pub mod relying_party;
pub mod signing;
pub mod test_issuer;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::Value;
use tessera::config::Config;
use tessera::keys::MasterKey;
use tessera::server::{AppState, Server, StartError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PG_ENV: &str = "TESSERA_TEST_DATABASE_URL";

/// Which database a test runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// `sqlite` or `postgres`: keeps the two runs' screenshots apart.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// PostgreSQL when TESSERA_TEST_DATABASE_URL is set.
    pub fn postgres() -> Option<Backend> {
        std::env::var(PG_ENV)
            .ok()
            .filter(|u| !u.is_empty())
            .map(Backend::Postgres)
    }
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
/// The PostgreSQL variant says it was skipped when no URL is configured
/// (`.ci/run` always sets one, and fails if PostgreSQL is unreachable).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::common::Backend::postgres() {
                        Some(backend) => super::$name(backend).await,
                        None => eprintln!("skipped: {} is not set", $crate::common::PG_ENV),
                    }
                }
            )*
        }
    };
}

/// Holds the database's write lock on one table until released: on SQLite
/// the whole file's (`BEGIN IMMEDIATE`), on PostgreSQL the table's
/// (`EXCLUSIVE` mode: reads go on, writes wait).
pub enum TableLock {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
}

impl TableLock {
    pub fn take(db: &TestDb, table: &str) -> TableLock {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        match db.url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut conn = diesel::SqliteConnection::establish(path).unwrap();
                conn.batch_execute("BEGIN IMMEDIATE").unwrap();
                TableLock::Sqlite(conn)
            }
            None => {
                let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
                conn.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE"))
                    .unwrap();
                TableLock::Postgres(conn)
            }
        }
    }

    pub fn release(self) {
        use diesel::connection::SimpleConnection;
        match self {
            TableLock::Sqlite(mut conn) => conn.batch_execute("COMMIT").unwrap(),
            TableLock::Postgres(mut conn) => conn.batch_execute("COMMIT").unwrap(),
        }
    }
}

/// A fresh database, dropped with the last handle to it.
pub struct TestDb {
    pub url: String,
    /// Where SQLite files, keys and token files of this test live.
    pub dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    pub fn fresh(backend: &Backend) -> Arc<TestDb> {
        let dir = tempfile::tempdir().expect("temporary folder");
        match backend {
            Backend::Sqlite => Arc::new(TestDb {
                url: format!("sqlite://{}", dir.path().join("tessera.db").display()),
                dir,
                pg_schema: None,
            }),
            Backend::Postgres(base) => {
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::establish(base)
                    .unwrap_or_else(|e| panic!("PostgreSQL at {PG_ENV} is unreachable: {e}"));
                conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .expect("create schema");
                Arc::new(TestDb {
                    url: with_search_path(base, &schema),
                    dir,
                    pg_schema: Some((base.clone(), schema)),
                })
            }
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.pg_schema
            && let Ok(mut conn) = PgConnection::establish(base)
        {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// Points a PostgreSQL URL at one schema (libpq's `options` parameter).
pub fn with_search_path(base: &str, schema: &str) -> String {
    let mut url = url::Url::parse(base).expect("PostgreSQL URL");
    url.query_pairs_mut()
        .append_pair("options", &format!("-csearch_path={schema}"));
    url.to_string()
}

pub struct TestAppBuilder {
    backend: Backend,
    db: Option<Arc<TestDb>>,
    database_url: Option<String>,
    master: Option<MasterKey>,
    issuer: Option<String>,
    toml: String,
}

impl TestAppBuilder {
    /// Another replica of `app`: same database, same issuer.
    pub fn replica_of(self, app: &TestApp) -> Self {
        let mut builder = self.database(&app.db);
        builder.issuer = Some(app.state.config.issuer().to_owned());
        builder
    }

    /// Extra configuration, TOML applied over the test defaults.
    pub fn config(mut self, toml: &str) -> Self {
        self.toml.push('\n');
        self.toml.push_str(toml);
        self
    }

    /// Shares another app's database: a second replica.
    pub fn database(mut self, db: &Arc<TestDb>) -> Self {
        self.db = Some(db.clone());
        self
    }

    /// Connects through another URL (a proxy) to this test's database.
    pub fn database_url(mut self, url: String) -> Self {
        self.database_url = Some(url);
        self
    }

    pub fn master_key(mut self, key: [u8; 32]) -> Self {
        self.master = Some(MasterKey::from_bytes(key));
        self
    }

    /// A master key that may carry the previous one (a re-key under way).
    pub fn master(mut self, key: MasterKey) -> Self {
        self.master = Some(key);
        self
    }

    pub fn db(&mut self) -> Arc<TestDb> {
        self.db
            .get_or_insert_with(|| TestDb::fresh(&self.backend))
            .clone()
    }

    fn build_config(&mut self, port: u16) -> Config {
        let db = self.db();
        let url = self.database_url.clone().unwrap_or_else(|| db.url.clone());
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
issuer = "{issuer}"
shutdown_timeout = "5s"
[database]
url = "{url}"
pool_size = 4
connect_timeout = "500ms"
max_retry_backoff = "500ms"
[keys]
master_key_file = "{master}"
[admin]
token_file = "{token}"
"#,
            issuer = self
                .issuer
                .clone()
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}")),
            master = db.path("master.key").display(),
            token = db.path("admin.token").display(),
        );
        Config::from_toml_layers(&[&toml, &self.toml]).expect("test configuration")
    }

    /// Binds an ephemeral port and starts the server; `Err` carries a
    /// fatal start-up error (what `tessera serve` would print).
    pub async fn try_start(mut self) -> Result<TestApp, StartError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let config = self.build_config(port);
        let master = self
            .master
            .take()
            .unwrap_or_else(|| MasterKey::from_bytes(DEFAULT_MASTER_KEY));
        let server = Server::with_listener(config, master, listener).await?;
        let state = server.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let db = self.db();
        Ok(TestApp {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            state,
            db,
            stop: Some(stop),
            handle: Some(handle),
        })
    }

    pub async fn start(self) -> TestApp {
        self.try_start().await.expect("Tessera starts")
    }
}

pub const DEFAULT_MASTER_KEY: [u8; 32] = [7; 32];

pub struct TestApp {
    pub url: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub db: Arc<TestDb>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), StartError>>>,
}

impl TestApp {
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            db: None,
            database_url: None,
            master: None,
            issuer: None,
            toml: String::new(),
        }
    }

    pub async fn start(backend: Backend) -> TestApp {
        Self::builder(backend).start().await
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// The bootstrap administrator token written on first start.
    pub fn admin_token(&self) -> String {
        read_token(&self.db.path("admin.token"))
    }

    pub fn admin_token_file(&self) -> PathBuf {
        self.db.path("admin.token")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.endpoint(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.endpoint(path))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.endpoint(path))
            .bearer_auth(self.admin_token())
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Stops the server as SIGTERM would and returns how `run` ended.
    pub async fn stop(mut self) -> Result<(), StartError> {
        self.shutdown().await
    }

    async fn shutdown(&mut self) -> Result<(), StartError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.handle.take() {
            Some(handle) => handle.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("token file {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Asserts an RFC 6749 §5.2 error: status, `error` code, a non-empty
/// `error_description`, and `Cache-Control: no-store`. Returns the body.
pub async fn fail_with(response: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "error responses are not cached"
    );
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"], error, "error code in {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "error_description in {body}"
    );
    body
}

/// Polls `check` until it returns true or `seconds` pass.
pub async fn eventually<F, Fut>(seconds: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
