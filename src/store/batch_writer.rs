//! The token endpoints' writes, batched on one connection of their own.
//!
//! Two writes sit on the hot path: the audit event of every issuance and the
//! single-use `jti` of every assertion (RFC 7523 §3 item 7). Both must reach
//! the shared database, but neither needs a commit of its own. Requests hand
//! them to one writer thread, which owns a connection and stores whatever has
//! gathered in a single transaction: no thread hop to the blocking pool per
//! write, one commit per batch, and, on SQLite, no second writer waiting for
//! the write lock (PERFORMANCE.md: one batching writer beats a pool of them).
//!
//! The two travel on separate queues because they differ in urgency. A
//! request waits for its `jti` verdict, so a `jti` wakes the writer at once.
//! Nobody waits for an audit event, so audit events do not wake it: they
//! are collected every `AUDIT_LINGER`, or with the next `jti` round, which
//! spares a thread wake-up per issuance.
//!
//! Audit events are never dropped: a failed batch stays pending and is
//! retried with backoff, and a full queue makes callers wait. A `jti` is
//! answered from its own round: a replay is `Ok(false)`, a database outage
//! an error, and nothing is accepted unless its row was committed.

use std::time::Duration;

use diesel::Connection;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::connection::PooledConn;
use super::{NewAuditRecord, Store, StoreError, assertions, audit};

const AUDIT_QUEUE: usize = 65_536;
const URGENT_QUEUE: usize = 16_384;
const MAX_BATCH: usize = 1_024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long audit events may wait for company: tens of thousands of
/// issuances a second then cost a hundred commits and wake-ups, not one
/// each. An event is no more at risk waiting 10 ms in memory than 1 ms.
const AUDIT_LINGER: Duration = Duration::from_millis(10);

type Verdict = oneshot::Sender<Result<bool, StoreError>>;

/// What a request waits for.
enum Urgent {
    Consume {
        key: String,
        expires_at: i64,
        verdict: Verdict,
    },
    Flush(oneshot::Sender<()>),
}

/// A cheap handle; the writer thread stops when the last one is dropped,
/// after storing what was queued.
#[derive(Clone)]
pub struct BatchWriter {
    audits: mpsc::Sender<NewAuditRecord>,
    urgent: mpsc::Sender<Urgent>,
}

impl BatchWriter {
    pub fn spawn(store: Store) -> BatchWriter {
        let (audits, audit_rx) = mpsc::channel(AUDIT_QUEUE);
        let (urgent, urgent_rx) = mpsc::channel(URGENT_QUEUE);
        std::thread::Builder::new()
            .name("tessera-writer".into())
            .spawn(move || Writer::new(store).run(audit_rx, urgent_rx))
            .expect("the writer thread starts");
        BatchWriter { audits, urgent }
    }

    /// Queues an audit event; it is stored within `AUDIT_LINGER`.
    pub async fn append_audit(&self, record: NewAuditRecord) {
        if self.audits.send(record).await.is_err() {
            tracing::error!("the audit writer has stopped; an event was not recorded");
        }
    }

    /// Records `key` as used until `expires_at`: `Ok(true)` the first time,
    /// `Ok(false)` for a replay.
    pub async fn consume(&self, key: String, expires_at: i64) -> Result<bool, StoreError> {
        let stopped = || StoreError::Other("the writer has stopped".into());
        let (verdict, answer) = oneshot::channel();
        let message = Urgent::Consume {
            key,
            expires_at,
            verdict,
        };
        self.urgent.send(message).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Resolves once every audit event queued before the call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.urgent.send(Urgent::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The writer thread's state: its connection and what is not stored yet.
struct Writer {
    store: Store,
    conn: Option<PooledConn>,
    audits: Vec<NewAuditRecord>,
    /// The round's `jti`s (key, expiry) and, at the same index, who waits.
    jtis: Vec<(String, i64)>,
    verdicts: Vec<Verdict>,
    flushes: Vec<oneshot::Sender<()>>,
    /// When the pending audit events are to be collected and written.
    audit_due: Option<Instant>,
    backoff: Duration,
    /// Set after a failed batch: the pending events wait until then.
    retry_at: Option<Instant>,
}

impl Writer {
    fn new(store: Store) -> Self {
        Writer {
            store,
            conn: None,
            audits: Vec::with_capacity(MAX_BATCH),
            jtis: Vec::new(),
            verdicts: Vec::new(),
            flushes: Vec::new(),
            audit_due: None,
            backoff: Duration::ZERO,
            retry_at: None,
        }
    }

    /// The thread's loop. Database calls block this thread, which is its
    /// own: the small runtime is only there to wait with a deadline.
    fn run(
        mut self,
        mut audit_rx: mpsc::Receiver<NewAuditRecord>,
        mut urgent_rx: mpsc::Receiver<Urgent>,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("the writer's runtime starts");
        runtime.block_on(async {
            let mut open = true;
            while open {
                let deadline = self.retry_at.or(self.audit_due);
                let idle = deadline.is_none();
                tokio::select! {
                    biased;
                    urgent = urgent_rx.recv() => match urgent {
                        Some(message) => self.take(message),
                        None => open = false,
                    },
                    // Only an idle writer listens for audit events; one
                    // starts the linger, the rest wait in the queue.
                    record = audit_rx.recv(), if idle => match record {
                        Some(record) => {
                            self.audits.push(record);
                            self.audit_due = Some(Instant::now() + AUDIT_LINGER);
                        }
                        None => open = false,
                    },
                    () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if !idle => {}
                }
                while self.jtis.len() < MAX_BATCH {
                    match urgent_rx.try_recv() {
                        Ok(message) => self.take(message),
                        Err(_) => break,
                    }
                }
                let now = Instant::now();
                let waiting = !self.jtis.is_empty() || !self.flushes.is_empty();
                if waiting || !open || deadline.is_some_and(|at| at <= now) {
                    // A flush waits for everything queued before it.
                    let limit = if self.flushes.is_empty() { MAX_BATCH } else { usize::MAX };
                    while self.audits.len() < limit {
                        match audit_rx.try_recv() {
                            Ok(record) => self.audits.push(record),
                            Err(_) => break,
                        }
                    }
                    self.write();
                    if self.retry_at.is_none() && !audit_rx.is_empty() {
                        // A backlog longer than a batch: no need to linger.
                        self.audit_due = Some(now);
                    }
                }
            }
        });
    }

    fn take(&mut self, message: Urgent) {
        match message {
            Urgent::Consume {
                key,
                expires_at,
                verdict,
            } => {
                self.jtis.push((key, expires_at));
                self.verdicts.push(verdict);
            }
            Urgent::Flush(done) => self.flushes.push(done),
        }
    }

    /// One transaction for the round's `jti`s and every pending audit event.
    fn write(&mut self) {
        let keys = std::mem::take(&mut self.jtis);
        let verdicts = std::mem::take(&mut self.verdicts);
        if keys.is_empty() && self.audits.is_empty() {
            self.release_flushes();
            return;
        }
        let audits = std::mem::take(&mut self.audits);
        let mut outcome = self.transaction(|conn| {
            let fresh = assertions::insert_all(conn, &keys)?;
            audit::append_all(conn, &audits)?;
            Ok(fresh)
        });
        self.audits = audits;
        if outcome.is_ok() {
            self.audits.clear();
            self.audit_due = None;
            self.backoff = Duration::ZERO;
            self.retry_at = None;
            self.release_flushes();
        } else if !self.audits.is_empty() {
            tracing::warn!(
                pending = self.audits.len(),
                "audit batch not stored yet; retrying"
            );
            self.backoff = (self.backoff * 2).clamp(Duration::from_millis(50), MAX_BACKOFF);
            self.retry_at = Some(Instant::now() + self.backoff);
            if matches!(outcome, Err(StoreError::Other(_))) && !keys.is_empty() {
                // Not an outage: keep a fault in the audit rows from
                // refusing every client assertion behind it.
                outcome = self.transaction(|conn| assertions::insert_all(conn, &keys));
            }
        }
        answer(verdicts, outcome);
    }

    fn release_flushes(&mut self) {
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
    }

    fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut super::AnyConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, StoreError> {
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => self.conn.insert(self.store.checkout()?),
        };
        let result = conn.connection.transaction(work).map_err(StoreError::from);
        if matches!(result, Err(StoreError::Unavailable(_))) {
            // Dropped rather than returned: the pool must not reuse it.
            conn.broken = true;
            self.conn = None;
        }
        result
    }
}

fn answer(verdicts: Vec<Verdict>, outcome: Result<Vec<bool>, StoreError>) {
    match outcome {
        Ok(fresh) => {
            for (verdict, fresh) in verdicts.into_iter().zip(fresh) {
                let _ = verdict.send(Ok(fresh));
            }
        }
        Err(e) => {
            // Nothing was stored: every caller gets the error (503 for an
            // unreachable database) and no assertion is accepted.
            let unavailable = matches!(e, StoreError::Unavailable(_));
            let message = e.to_string();
            for verdict in verdicts {
                let _ = verdict.send(Err(if unavailable {
                    StoreError::Unavailable(message.clone())
                } else {
                    StoreError::Other(message.clone())
                }));
            }
        }
    }
}
