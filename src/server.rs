//! Starting, supervising and stopping a Tessera server.
//!
//! The listener is bound before the database is reached: a database that is
//! down at start leaves the server up, answering `/readyz` with 503, while a
//! supervisor retries with backoff and logs one line per change of state.
//! Errors no retry can fix (a wrong master key, a damaged key) stop it.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::accounts::passwords::Passwords;
use crate::accounts::users::UserCache;
use crate::bootstrap::{self, BootstrapError};
use crate::config::Config;
use crate::federation::issuer_keys::IssuerKeys;
use crate::federation::trust_cache::TrustCache;
use crate::http;
use crate::keys::{KeyManager, KeysError, MasterKey};
use crate::metrics::Metrics;
use crate::oauth::Core;
use crate::oauth::client_cache::ClientCache;
use crate::oauth::client_keys::ClientKeys;
use crate::oauth::service_user_cache::ServiceUserCache;
use crate::oauth::token_cache::TokenCache;
use crate::store::{
    AuthorizationStore, BatchWriter, Change, DeviceStore, ReplayStore, RevocationStore, Store,
    StoreError,
};

/// What every handler shares. Cloning is cheap.
#[derive(Clone)]
pub struct AppState(Arc<Core>);

impl Deref for AppState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Fatal(String),
}

/// Why one preparation attempt failed.
enum PrepareError {
    /// The database is not reachable: retry.
    Unavailable(String),
    /// Retrying cannot help.
    Fatal(String),
}

impl From<StoreError> for PrepareError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => PrepareError::Unavailable(reason),
            other => PrepareError::Fatal(other.to_string()),
        }
    }
}

impl From<KeysError> for PrepareError {
    fn from(e: KeysError) -> Self {
        match e {
            KeysError::Store(e) => e.into(),
            other => PrepareError::Fatal(other.to_string()),
        }
    }
}

pub struct Server {
    state: AppState,
    listener: TcpListener,
}

impl Server {
    /// Binds `server.listen`, then as [`Server::with_listener`].
    pub async fn bind(config: Config, master: MasterKey) -> Result<Server, StartError> {
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        Self::with_listener(config, master, listener).await
    }

    /// Builds the state on a bound listener and makes one attempt to
    /// migrate, load keys and bootstrap. A fatal error is returned here; an
    /// unreachable database is left to the supervisor.
    pub async fn with_listener(
        config: Config,
        master: MasterKey,
        listener: TcpListener,
    ) -> Result<Server, StartError> {
        // Both jsonwebtoken back ends are compiled into test builds, so the
        // process default is chosen here: aws-lc-rs (docs/architecture.md).
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let store = Store::new(
            &config.database.url,
            config.database.pool_size,
            config.database.connect_timeout,
        )
        .map_err(|e| StartError::Fatal(e.to_string()))?;
        let master = Arc::new(master);
        let keys = KeyManager::new(
            store.clone(),
            master.clone(),
            config.tokens.max_lifetime,
            config.keys.rotation_period,
        );
        let metrics = Metrics::new();
        let state = AppState(Arc::new(Core {
            digest_key: master.token_digest_key(),
            writer: BatchWriter::spawn(store.clone(), &config.audit, metrics.audit.clone()),
            metrics,
            auth_failures: Default::default(),
            client_cache: ClientCache::new(config.clients.cache_ttl),
            service_user_cache: ServiceUserCache::new(config.clients.cache_ttl),
            trust: TrustCache::new(config.clients.cache_ttl),
            issuer_keys: IssuerKeys::new(config.federation.keys_cache),
            client_keys: ClientKeys::new(
                config.clients.jwks_cache,
                config.clients.jwks_refetch_cooldown,
            ),
            prepared: AtomicBool::new(false),
            passwords: Passwords::new(&config.passwords)
                .map_err(|e| StartError::Fatal(format!("passwords: {e}")))?,
            user_cache: UserCache::new(config.clients.cache_ttl),
            token_uses: Default::default(),
            agent_token_times: Default::default(),
            token_cache: TokenCache::new(config.clients.cache_ttl),
            config,
            store,
            keys,
        }));
        match prepare(&state).await {
            Ok(()) => {}
            Err(PrepareError::Fatal(reason)) => return Err(StartError::Fatal(reason)),
            Err(PrepareError::Unavailable(reason)) => {
                tracing::warn!(
                    backend = state.store.backend(),
                    %reason,
                    "database unavailable at start; serving /readyz 503 and retrying"
                );
            }
        }
        Ok(Server { state, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish
    /// (up to `server.shutdown_timeout`). Returns an error if the
    /// supervisor met a fatal condition.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Server { state, listener } = self;
        let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(state.clone(), fatal_tx, stop_rx));

        let (drain_tx, drain_rx) = watch::channel(false);
        let mut fatal = None;
        let serve = http::listener::serve(
            listener,
            http::router(state.clone()),
            &state.config.server,
            async move {
                let mut drain_rx = drain_rx;
                let _ = drain_rx.wait_for(|d| *d).await;
            },
        );
        let mut serve = std::pin::pin!(serve);
        tokio::select! {
            () = &mut serve => {
                let _ = stop_tx.send(true);
                return Ok(());
            }
            () = shutdown => tracing::info!("shutting down: finishing in-flight requests"),
            Some(reason) = fatal_rx.recv() => fatal = Some(reason),
        }
        let _ = drain_tx.send(true);
        let _ = stop_tx.send(true);
        // One budget for requests and audit events together, so SIGTERM is
        // done within it (a container runtime kills after its own).
        let give_up_at = tokio::time::Instant::now() + state.config.server.shutdown_timeout;
        if tokio::time::timeout(state.config.server.shutdown_timeout, &mut serve)
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
        }
        let _ = supervisor.await;
        // Bounded like the audit flush below: a database that is away must
        // not keep the process alive.
        let left = give_up_at.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left.max(MIN_FLUSH), state.token_uses.flush(&state))
            .await
            .is_err()
        {
            tracing::warn!("shutdown: token uses of the last interval could not be written");
        }
        // Bounded: a database that is away must not keep the process alive.
        let left = give_up_at.saturating_duration_since(tokio::time::Instant::now());
        if !state.writer.flush_within(left.max(MIN_FLUSH)).await {
            tracing::error!("shutdown: some audit events could not be stored");
        }
        match fatal {
            Some(reason) => Err(StartError::Fatal(reason)),
            None => Ok(()),
        }
    }
}

/// One attempt at what a replica needs before it is ready.
async fn prepare(state: &AppState) -> Result<(), PrepareError> {
    let outcome = prepare_once(state).await;
    if outcome.is_ok() {
        state.prepared.store(true, Ordering::Release);
    }
    outcome
}

async fn prepare_once(state: &AppState) -> Result<(), PrepareError> {
    state.store.migrate().await?;
    state.keys.ensure_keys().await?;
    if state.config.admin.bootstrap {
        let admin = &state.config.admin;
        let (file, lifetime) = (&admin.token_file, admin.token_lifetime);
        match bootstrap::initialize(&state.store, &state.digest_key, file, lifetime).await {
            Ok(done) => tracing::info!(
                path = %done.token_file.display(),
                "initialised an empty database: the administrator token is in this file"
            ),
            Err(BootstrapError::AlreadyInitialized) => {}
            Err(BootstrapError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(PrepareError::Fatal(e.to_string())),
        }
    }
    Ok(())
}

const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired rows are purged: on its own clock, not the key
/// check's, so a long `keys.check_interval` cannot let a backlog grow
/// past what a sweep's time budget drains.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Retries preparation until it succeeds, then watches the database and
/// keeps the key ring fresh (reload, scheduled rotation).
async fn supervise(state: AppState, fatal: mpsc::Sender<String>, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    while !state.prepared.load(Ordering::Acquire) {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        match prepare(&state).await {
            Ok(()) => tracing::info!("database reachable: ready"),
            Err(PrepareError::Fatal(reason)) => {
                let _ = fatal.send(reason).await;
                return;
            }
            Err(PrepareError::Unavailable(_)) => {
                backoff = (backoff * 2).min(state.config.database.max_retry_backoff);
            }
        }
    }

    // Once migrations made the tables.
    tokio::spawn(purge_loop(state.clone(), stop.clone()));
    // Started once migrations created the channel; it says `Missed` first,
    // so nothing cached before it listened outlives that.
    let mut changes = state
        .store
        .listen_for_changes(state.config.database.max_retry_backoff);
    let mut database_up = true;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    // The keys were loaded just now: the first check is one interval away.
    let check_every = state.config.keys.check_interval;
    let mut key_check =
        tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
    let flush_every = state.config.personal_tokens.usage_flush_interval;
    let mut usage_flush =
        tokio::time::interval_at(tokio::time::Instant::now() + flush_every, flush_every);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = usage_flush.tick() => {
                state.token_uses.flush(&state).await;
                crate::oauth::agents::bootstrap::record_expiries(&state).await;
            }
            _ = ping.tick() => {
                match state.store.ping().await {
                    Ok(()) if !database_up => {
                        tracing::info!("database connection restored");
                        database_up = true;
                    }
                    Err(e) if database_up => {
                        tracing::warn!(error = %e, "database connection lost; retrying");
                        database_up = false;
                    }
                    _ => {}
                }
            }
            _ = key_check.tick() => {
                if let Err(e) = maintain_keys(&state).await {
                    if e.is_fatal() {
                        let _ = fatal.send(e.to_string()).await;
                        return;
                    }
                    tracing::debug!(error = %e, "key maintenance postponed");
                }
            }
            change = next_change(&mut changes) => {
                let Some(change) = change else {
                    changes = None;
                    continue;
                };
                if let Err(e) = state.apply_change(change).await {
                    if e.is_fatal() {
                        let _ = fatal.send(e.to_string()).await;
                        return;
                    }
                    tracing::warn!(error = %e, "a change heard from another replica is not applied yet; the cache TTL bounds it");
                }
            }
        }
    }
}

/// The next change heard from the database; never, on SQLite.
async fn next_change(changes: &mut Option<mpsc::Receiver<Change>>) -> Option<Change> {
    match changes {
        Some(changes) => changes.recv().await,
        None => std::future::pending().await,
    }
}

/// Purges expired rows [`PURGE_INTERVAL`] after start and after each sweep
/// ends, in a task of its own: a sweep can take seconds and must hold up
/// neither the database ping nor the changes heard from other replicas.
/// Shutdown does not wait for a sweep: each batch is its own call, so one
/// cut short loses nothing.
async fn purge_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        // From the end of the last sweep: one that ran long is not
        // followed by another at once.
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = purge_expired(&state) => {}
        }
    }
}

async fn purge_expired(state: &AppState) {
    let now = crate::clock::now();
    if let Err(e) = state.store.purge_used_assertions(now).await {
        tracing::debug!(error = %e, "purging used assertion ids postponed");
    }
    if let Err(e) = state.store.purge_revocations(now).await {
        tracing::debug!(error = %e, "purging expired revocations postponed");
    }
    if let Err(e) = state.store.purge_refresh_tokens(now).await {
        tracing::debug!(error = %e, "purging dead refresh tokens postponed");
    }
    if let Err(e) = state.store.purge_codes(now).await {
        tracing::debug!(error = %e, "purging old authorization codes postponed");
    }
    if let Err(e) = state.store.purge_devices(now).await {
        tracing::debug!(error = %e, "purging old device authorizations postponed");
    }
    if let Err(e) = crate::accounts::sessions::purge(state).await {
        tracing::debug!(error = %e, "purging expired sessions postponed");
    }
    if let Err(e) = crate::accounts::throttle::purge(state).await {
        tracing::debug!(error = %e, "purging idle login throttle buckets postponed");
    }
}

async fn maintain_keys(state: &AppState) -> Result<(), KeysError> {
    state.keys.reload().await?;
    for rotated in state.keys.rotate_due().await? {
        tracing::info!(alg = %rotated.alg, kid = %rotated.kid, "scheduled key rotation");
    }
    Ok(())
}

/// What the audit writer gets at shutdown even when requests took the
/// whole `server.shutdown_timeout`.
const MIN_FLUSH: Duration = Duration::from_secs(1);

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
