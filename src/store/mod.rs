//! Persistence. One diesel implementation serves SQLite and PostgreSQL
//! through `AnyConnection` (diesel's `MultiConnection`), so every query is
//! written once. Blocking diesel calls take connections from an r2d2 pool,
//! on tokio's blocking pool for PostgreSQL and on the store's own thread
//! for SQLite (`sqlite_thread.rs`); see `docs/architecture.md` for why.
//!
//! The rest of the crate sees small per-aggregate traits (`KeyStore`,
//! `CredentialStore`, `AuditStore`, `InstanceStore`) and plain records; no
//! backend branch exists outside this module.
//!
//! Reads of one row use `get_result`, not `first`: `first` adds a `LIMIT`
//! bound as a parameter, and SQLite (3.50) marks a statement whose `LIMIT`
//! is a parameter to be prepared again after every new binding (it may plan
//! by the value), so a cached statement was parsed on every call (5–6% of
//! the server's CPU in the redemption benchmark). Keep `first` for reads
//! that sort, where the limit matters.

mod agents;
mod assertions;
mod audit;
mod authorization;
mod batch_writer;
mod checkpointer;
mod clients;
mod code_claims;
mod connection;
mod credentials;
mod device;
mod device_poll;
mod instance;
mod keys;
mod login_throttle;
mod mfa;
mod notify;
mod personal_tokens;
mod prepared;
mod revocations;
pub mod schema;
mod service_users;
mod sessions;
mod sqlite_thread;
mod sqlite_turn;
mod trust;
mod users;
mod writer_round;

use std::sync::Arc;
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub use agents::{
    AgentChange, AgentRecord, AgentStore, AgentWithClient, BOOTSTRAP_KIND, BootstrapRefused,
};
pub use assertions::ReplayStore;
pub use audit::{AuditFilter, AuditRecord, AuditStore, NewAuditRecord};
pub use authorization::{
    AuthorizationStore, CodeAccess, CodeRecord, Finish, REVOKED_KEPT_SECS, Redemption,
    RefreshTokenRecord, Rotation,
};
pub use batch_writer::BatchWriter;
pub use clients::{ClientChange, ClientRecord, ClientSecretRecord, ClientStore, NewSecret};
pub use code_claims::CodeClaim;
pub use connection::{AnyConnection, DatabaseUrl};
pub use credentials::{AccessTokenRecord, CredentialStore, ServiceUserRecord};
pub use device::{Decided, DeviceDecision, DeviceRecord, DeviceState, DeviceStore, Polled};
pub use instance::{InstanceRecord, InstanceStore};
pub use keys::{KeyStore, ResealedKey, SigningKeyRecord};
pub use login_throttle::{Admission, BucketPolicy, Settlement, ThrottleRecord, ThrottleStore};
pub use mfa::{MfaStore, ResealedTotp, TotpRecord};
pub use notify::{APPLICATION_NAME as LISTENER_APPLICATION_NAME, Change};
pub use personal_tokens::{
    Changed, LimitReached, PERSONAL_KINDS, PersonalTokenStore, Responsible, TokenListing,
    TokenScope, TokenUses,
};
pub use revocations::RevocationStore;
pub use service_users::{ServiceUserKeyRecord, ServiceUserStore, ServiceUserWithKeys};
pub use sessions::{SessionRecord, SessionStore};
pub use trust::{
    TrustForIssuer, TrustPolicyChange, TrustPolicyRecord, TrustStore, TrustedIssuerRecord,
};
pub use users::{Ended, UserRecord, UserStore, username_key};

use connection::{Manager, PooledConn};
use sqlite_thread::SqliteThread;
use sqlite_turn::{SqliteTurn, Turn};

/// The most rows one purge statement deletes.
pub(crate) const PURGE_BATCH: i64 = 1000;
/// How long one sweep of a purge that runs until done may go on.
pub(crate) const PURGE_BUDGET: Duration = Duration::from_secs(10);

/// Failures the rest of the crate can act on. `Unavailable` means "try
/// again later" (503); the others are request- or server-level faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("a record with that key already exists")]
    Conflict,
    #[error("not found")]
    NotFound,
    /// The record cannot be deleted while another names it (the value
    /// says which, e.g. "trust policy `deploy`").
    #[error("still used by {0}")]
    InUse(String),
    #[error("database error: {0}")]
    Other(String),
    /// The owner already holds this many live personal or machine tokens.
    #[error("the owner already holds {0} live tokens")]
    LimitReached(u32),
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => StoreError::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::Conflict
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(_, info) if looks_like_lost_connection(info.message()) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            other => StoreError::Other(other.to_string()),
        }
    }
}

/// Either the caller's refusal or a database error, inside a read-modify-
/// write transaction: the refusal rolls the transaction back like an error,
/// but reaches the caller as its own answer.
enum Refusal<E> {
    By(E),
    Database(DieselError),
}

impl<E> From<DieselError> for Refusal<E> {
    fn from(e: DieselError) -> Self {
        Refusal::Database(e)
    }
}

impl<E> Refusal<E> {
    /// The transaction's outcome as the store traits report it: the
    /// caller's refusal inside, a database failure outside.
    fn settle<T>(outcome: Result<T, Refusal<E>>) -> Result<Result<T, E>, StoreError> {
        match outcome {
            Ok(value) => Ok(Ok(value)),
            Err(Refusal::By(e)) => Ok(Err(e)),
            Err(Refusal::Database(e)) => Err(e.into()),
        }
    }
}

/// libpq reports a dropped server as an "unknown" error with these words;
/// SQLite reports a write lock held past `busy_timeout` as "locked". Both
/// pass, so both are "try again later", never a refusal of the data.
fn looks_like_lost_connection(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "server closed the connection",
        "connection refused",
        "no connection to the server",
        "could not receive data",
        "could not send data",
        "terminating connection",
        "connection to server",
        "ssl syscall",
        "eof detected",
        "database is locked",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Gives a queued SQLite call up when its caller's future is dropped.
struct GiveUpOnDrop(Arc<sqlite_thread::Ticket>);

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        self.0.give_up();
    }
}

/// The handle every component shares. Cloning is cheap.
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<Manager>,
    url: DatabaseUrl,
    /// SQLite only: one database call at a time in this process
    /// (`sqlite_turn.rs` says why).
    sqlite_turn: Option<Arc<SqliteTurn>>,
    /// SQLite only: the thread `run` sends calls to (`sqlite_thread.rs`
    /// says why).
    sqlite_thread: Option<SqliteThread>,
    /// SQLite only: WAL checkpoints off the writers' path
    /// (`checkpointer.rs` says why).
    checkpoints: Option<checkpointer::Checkpoints>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.url.backend())
            .finish()
    }
}

impl Store {
    /// Builds the pool without connecting: a database that is down at start
    /// must not stop the server (it answers `/readyz` 503 and retries).
    pub fn new(url: &str, pool_size: u32, connect_timeout: Duration) -> Result<Self, StoreError> {
        let url = DatabaseUrl::parse(url).map_err(StoreError::Other)?;
        url.prepare().map_err(StoreError::Other)?;
        let pool = r2d2::Pool::builder()
            // The batching writer keeps one connection for itself: with
            // one in all, every other call would wait out the timeout.
            .max_size(pool_size.max(2))
            .min_idle(Some(0))
            .connection_timeout(connect_timeout)
            // A `SELECT 1` on every checkout halves write throughput
            // (PERFORMANCE.md); broken connections are flagged instead.
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Manager::new(url.clone()));
        let sqlite_turn = matches!(url, DatabaseUrl::Sqlite(_)).then(Default::default);
        let sqlite_thread =
            match url {
                DatabaseUrl::Sqlite(_) => Some(SqliteThread::spawn().map_err(|e| {
                    StoreError::Other(format!("cannot start the SQLite thread: {e}"))
                })?),
                DatabaseUrl::Postgres(_) => None,
            };
        let checkpoints = match &url {
            DatabaseUrl::Sqlite(path) => {
                Some(checkpointer::Checkpoints::spawn(path.clone()).map_err(|e| {
                    StoreError::Other(format!("cannot start the checkpoint thread: {e}"))
                })?)
            }
            DatabaseUrl::Postgres(_) => None,
        };
        Ok(Store {
            pool,
            url,
            sqlite_turn,
            sqlite_thread,
            checkpoints,
        })
    }

    pub fn backend(&self) -> &'static str {
        self.url.backend()
    }

    /// Whether this store is on PostgreSQL (decided by the URL's type, not
    /// by comparing [`backend`](Self::backend)'s name).
    pub fn is_postgres(&self) -> bool {
        matches!(self.url, DatabaseUrl::Postgres(_))
    }

    /// Runs `f` on a pooled connection: on SQLite on the store's own thread
    /// (`sqlite_thread.rs`), on PostgreSQL on the blocking pool. A
    /// connection that failed with a lost-connection error is dropped, not
    /// reused.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let Some(thread) = &self.sqlite_thread else {
            return tokio::task::spawn_blocking(move || store.call(f, Duration::ZERO))
                .await
                .map_err(|e| StoreError::Other(format!("database task failed: {e}")))?;
        };
        let (answer, mut answered) = tokio::sync::oneshot::channel();
        let queued = std::time::Instant::now();
        let ticket = Arc::new(sqlite_thread::Ticket::default());
        let started = ticket.clone();
        let sent = thread.send(Box::new(move || {
            if started.start() {
                let _ = answer.send(store.call(f, queued.elapsed()));
            }
        }));
        if !sent {
            return Err(StoreError::Other("the SQLite thread has stopped".into()));
        }
        // A caller that goes away (a timed-out readiness probe, a client
        // that hung up) gives its call up too, unless it started.
        let _abandoned = GiveUpOnDrop(ticket.clone());
        // The sender is dropped unanswered only if the call panicked.
        let panicked = |_| StoreError::Other("database task failed: it panicked".into());
        // Queued past the bound, the call is given up and never runs; once
        // running it is awaited to its end, as on the blocking pool.
        match tokio::time::timeout(self.sqlite_wait(), &mut answered).await {
            Ok(answer) => answer.map_err(panicked)?,
            Err(_) if ticket.give_up() => Err(sqlite_turn::busy()),
            Err(_) => answered.await.map_err(panicked)?,
        }
    }

    /// Deletes in batches, each `batch` its own call of at most
    /// [`PURGE_BATCH`] rows, until one comes back short or
    /// [`PURGE_BUDGET`] has passed; the rows deleted. Rows made at
    /// thousands a second cannot wait for a fixed number of batches a
    /// sweep, and one statement deleting a whole backlog held SQLite's one
    /// thread, and every call queued behind it, for as long as it ran.
    pub(crate) async fn purge_until_done<F>(&self, batch: F) -> Result<usize, StoreError>
    where
        F: Fn(&mut AnyConnection) -> Result<usize, StoreError> + Clone + Send + 'static,
    {
        let started = std::time::Instant::now();
        let mut purged = 0;
        loop {
            let deleted = self.run(batch.clone()).await?;
            purged += deleted;
            if deleted < PURGE_BATCH as usize || started.elapsed() > PURGE_BUDGET {
                return Ok(purged);
            }
        }
    }

    /// `f` on a pooled connection, in this process's SQLite turn, for a
    /// call that already `waited` that long in a queue.
    fn call<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
        waited: Duration,
    ) -> Result<T, StoreError> {
        let _turn = self.sqlite_turn_after(waited)?;
        let mut conn = self.checkout()?;
        let result = f(&mut conn.connection);
        if matches!(result, Err(StoreError::Unavailable(_))) {
            conn.broken = true;
        }
        self.committed();
        result
    }

    /// On SQLite, says that a call may have committed: its pages are
    /// copied from the WAL in the background (`checkpointer.rs`).
    pub(crate) fn committed(&self) {
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.poke();
        }
    }

    /// On SQLite, this process's turn at the database (`sqlite_turn.rs`):
    /// hold it over every use of a connection. On PostgreSQL, none. Waits
    /// as long as a checkout may, and at least as long as SQLite's own
    /// busy handler would have for the lock: the turn's holder may be
    /// waiting on a slow disk (a checkpoint's fsync) or on another process.
    pub(crate) fn sqlite_turn(&self) -> Result<Option<Turn<'_>>, StoreError> {
        self.sqlite_turn_after(Duration::ZERO)
    }

    /// How long a SQLite call may wait for its turn, queue included.
    fn sqlite_wait(&self) -> Duration {
        self.pool
            .connection_timeout()
            .max(connection::SQLITE_BUSY_TIMEOUT)
    }

    /// The turn, for a call that already `waited` that long for it in
    /// the SQLite thread's queue: the two waits share one bound.
    fn sqlite_turn_after(&self, waited: Duration) -> Result<Option<Turn<'_>>, StoreError> {
        let Some(turns) = &self.sqlite_turn else {
            return Ok(None);
        };
        match self.sqlite_wait().checked_sub(waited) {
            Some(left) => turns.take(left).map(Some),
            None => Err(sqlite_turn::busy()),
        }
    }

    /// A pooled connection, for code already on a blocking thread. Waits up
    /// to the connect timeout.
    pub(crate) fn checkout(&self) -> Result<PooledConn, StoreError> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.run(connection::run_migrations).await
    }

    /// Changes made through any replica, as they commit (PostgreSQL only:
    /// SQLite serves one process, which invalidates its own caches).
    pub fn listen_for_changes(
        &self,
        max_backoff: Duration,
    ) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        match &self.url {
            DatabaseUrl::Postgres(url) => Some(notify::listen(url.clone(), max_backoff)),
            DatabaseUrl::Sqlite(_) => None,
        }
    }

    /// A round trip to the database, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("SELECT 1").map_err(StoreError::from)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{PURGE_BATCH, Store};

    /// Full batches are followed by another; the first short one ends the
    /// sweep.
    #[tokio::test]
    async fn a_purge_goes_on_until_a_batch_comes_back_short() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::new(&url, 2, Duration::from_secs(5)).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let purged = store
            .purge_until_done(move |_| {
                let full = counted.fetch_add(1, Ordering::Relaxed) < 3;
                Ok(if full { PURGE_BATCH as usize } else { 7 })
            })
            .await
            .unwrap();
        assert_eq!(purged, 3 * PURGE_BATCH as usize + 7);
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }
}
