//! The token endpoints' writes, batched on one connection of their own.
//!
//! Three writes sit on the hot path: the audit event of every issuance, the
//! single-use `jti` of every assertion (RFC 7523 §3 item 7) and the claim of
//! every authorization code (RFC 6749 §4.1.2, `code_claims.rs`). All must
//! reach the shared database, but none needs a commit of its own. Requests hand
//! them to one writer thread, which owns a connection and stores whatever has
//! gathered in a single transaction: no thread hop to the blocking pool per
//! write, one commit per batch, and, on SQLite, no second writer waiting for
//! the write lock (PERFORMANCE.md: one batching writer beats a pool of them).
//!
//! They travel on two queues because they differ in urgency. A request
//! waits for its `jti` verdict or its claim, so those wake the writer at
//! once (on PostgreSQL a claim then waits `CLAIM_LINGER` for others to
//! share its commit, and a `jti` taken with it waits as long); a round's
//! claims go ahead of the round's `jti`s, in a statement that also stores
//! the audit events queued so far, up to `MAX_BATCH` and not while they
//! wait out a backoff (a claim's own issuance event comes after its
//! answer, so a later round carries it). Nobody
//! waits for an audit event, so audit events do not wake it: they are
//! collected every `AUDIT_LINGER`, or with the next round of `jti`s or
//! claims, which spares a thread wake-up per issuance and, under a stream
//! of redemptions, a commit of their own.
//!
//! A failed batch is told apart by its cause. A lost connection is
//! transient: the events stay pending and are retried with backoff. A row
//! the database refuses (PostgreSQL refuses NUL in `text`) is permanent: the
//! batch is split until the row is alone, the rest is stored, and the row
//! is stored in a safe form, counted and logged once; one bad row never
//! holds up the others. When even the safe form is refused, the fault is
//! not the row's, and it is treated as transient.
//!
//! A full queue makes callers wait up to `audit.queue_wait`, then refuses
//! them (an issuance answers 503), and the writer reports itself backlogged
//! (`/readyz` 503) until the queue has drained. A `jti` is answered from its
//! own round: a replay is `Ok(false)`, a database outage an error, and
//! nothing is accepted unless its row was committed.
//!
//! When idle, the writer also deletes events past `audit.retention`, a few
//! hundred rows at a time, so pruning never competes with issuance for the
//! database's write lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::Connection;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::code_claims::{self, CodeClaim};
use super::connection::PooledConn;
use super::{CodeRecord, NewAuditRecord, Store, StoreError, assertions, audit, writer_round};
use crate::config::AuditConfig;
use crate::metrics::AuditCounters;

const URGENT_QUEUE: usize = 16_384;
/// Rows deleted per pruning statement, and the pause between statements
/// while there is more to delete.
const PRUNE_BATCH: i64 = 500;
const PRUNE_PAUSE: Duration = Duration::from_millis(20);
/// How long a read-your-writes flush (the admin audit listing) waits.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// How long a request waits for the verdict on a single-use value or
/// a claim.
const VERDICT_WAIT: Duration = Duration::from_secs(10);
const MAX_BATCH: usize = 1_024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long audit events may wait for company: tens of thousands of
/// issuances a second then cost a hundred commits and wake-ups, not one
/// each. An event is no more at risk waiting 10 ms in memory than 1 ms.
const AUDIT_LINGER: Duration = Duration::from_millis(10);
/// How long, on PostgreSQL, a round of code claims waits for company
/// once the first has come. Each round is a commit and a WAL flush
/// whatever it holds: with it, PostgreSQL spent 48–55 µs of CPU a
/// redemption in the redemption benchmark instead of 59–75 µs, for 1 ms
/// more on each redemption. Not on SQLite, whose commits are in process.
const CLAIM_LINGER: Duration = Duration::from_millis(1);

type Verdict = oneshot::Sender<Result<bool, StoreError>>;
type ClaimAnswer = oneshot::Sender<Result<Option<CodeRecord>, StoreError>>;

/// What a request waits for.
enum Urgent {
    Consume {
        key: String,
        expires_at: i64,
        verdict: Verdict,
    },
    Claim {
        claim: CodeClaim,
        answer: ClaimAnswer,
    },
    Flush(oneshot::Sender<()>),
}

/// A cheap handle; the writer thread stops when the last one is dropped,
/// after storing what was queued.
#[derive(Clone)]
pub struct BatchWriter {
    audits: mpsc::Sender<NewAuditRecord>,
    urgent: mpsc::Sender<Urgent>,
    shared: Arc<Shared>,
}

/// What the handles and the writer thread both see.
struct Shared {
    /// Set when a caller found the queue full; cleared once it drained.
    backlogged: AtomicBool,
    queue_wait: Duration,
    counters: AuditCounters,
}

impl BatchWriter {
    pub fn spawn(store: Store, config: &AuditConfig, counters: AuditCounters) -> BatchWriter {
        let (audits, audit_rx) = mpsc::channel(config.queue_capacity);
        let (urgent, urgent_rx) = mpsc::channel(URGENT_QUEUE);
        let shared = Arc::new(Shared {
            backlogged: AtomicBool::new(false),
            queue_wait: config.queue_wait,
            counters,
        });
        let writer = Writer::new(store, shared.clone(), config);
        std::thread::Builder::new()
            .name("tessera-writer".into())
            .spawn(move || writer.run(audit_rx, urgent_rx))
            .expect("the writer thread starts");
        BatchWriter {
            audits,
            urgent,
            shared,
        }
    }

    /// Queues an audit event; it is stored within `AUDIT_LINGER`. When the
    /// queue is full, waits up to `audit.queue_wait` for room, then gives
    /// up with `Unavailable` (and counts the event as unrecorded).
    pub async fn append_audit(&self, record: NewAuditRecord) -> Result<(), StoreError> {
        let record = match self.audits.try_send(record) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(stopped()),
            Err(TrySendError::Full(record)) => record,
        };
        self.shared.backlogged.store(true, Ordering::Release);
        match tokio::time::timeout(self.shared.queue_wait, self.audits.send(record)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(StoreError::Unavailable(
                "the audit log is not keeping up".into(),
            )),
        }
    }

    /// As [`append_audit`](Self::append_audit), for an event that gates no
    /// answer: one that cannot be queued is counted and logged (the first
    /// and every thousandth, so an overload does not flood the log too).
    pub async fn append_audit_or_count(&self, record: NewAuditRecord) {
        let action = record.action.clone();
        if let Err(error) = self.append_audit(record).await {
            let before = self.shared.counters.unrecorded.inc();
            if before.is_multiple_of(1_000) {
                tracing::error!(%action, %error, lost = before + 1, "audit events not recorded");
            }
        }
    }

    /// True from the moment a caller found the audit queue full until the
    /// writer has emptied it: the replica should not take new traffic.
    pub fn is_backlogged(&self) -> bool {
        self.shared.backlogged.load(Ordering::Acquire)
    }

    /// Records `key` as used until `expires_at`: `Ok(true)` the first time,
    /// `Ok(false)` for a replay.
    pub async fn consume(&self, key: String, expires_at: i64) -> Result<bool, StoreError> {
        self.ask(|verdict| Urgent::Consume {
            key,
            expires_at,
            verdict,
        })
        .await
    }

    /// Claims a fresh authorization code in the next round
    /// (`code_claims.rs`): its record when this claim took it, `None` when
    /// it did not (unknown, used, or its session ended), which
    /// `AuthorizationStore::redeem_code` then tells apart.
    pub async fn claim_code(&self, claim: CodeClaim) -> Result<Option<CodeRecord>, StoreError> {
        self.ask(|answer| Urgent::Claim { claim, answer }).await
    }

    /// Sends the writer a message that carries its answer's sender, and
    /// waits for the answer.
    async fn ask<T>(
        &self,
        message: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Urgent,
    ) -> Result<T, StoreError> {
        let (sender, answer) = oneshot::channel();
        let decided = async {
            self.urgent
                .send(message(sender))
                .await
                .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        };
        // A database that stops answering (a network partition the TCP
        // keep-alives have not noticed yet) must not hold the request for
        // ever: past this, it is 503 and the client retries.
        tokio::time::timeout(VERDICT_WAIT, decided)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the database did not answer in time".into(),
                ))
            })
    }

    /// Resolves once every audit event queued before the call is stored,
    /// or after a few seconds (the database may be away).
    pub async fn flush(&self) {
        self.flush_within(FLUSH_WAIT).await;
    }

    /// As [`flush`](Self::flush), waiting at most `limit`; false when the
    /// events were not all stored by then (what shutdown reports).
    pub async fn flush_within(&self, limit: Duration) -> bool {
        let flushed = async {
            let (done, wait) = oneshot::channel();
            self.urgent.send(Urgent::Flush(done)).await.is_ok() && wait.await.is_ok()
        };
        tokio::time::timeout(limit, flushed).await.unwrap_or(false)
    }
}

fn stopped() -> StoreError {
    StoreError::Other("the writer has stopped".into())
}

/// The writer thread's state: its connection and what is not stored yet.
struct Writer {
    store: Store,
    shared: Arc<Shared>,
    conn: Option<PooledConn>,
    audits: Vec<NewAuditRecord>,
    /// The round's `jti`s (key, expiry) and, at the same index, who waits.
    jtis: Vec<(String, i64)>,
    verdicts: Vec<Verdict>,
    /// The round's code claims and, at the same index, who waits.
    claims: Vec<CodeClaim>,
    claim_answers: Vec<ClaimAnswer>,
    flushes: Vec<oneshot::Sender<()>>,
    /// When the pending audit events are to be collected and written.
    audit_due: Option<Instant>,
    backoff: Duration,
    /// Set after a failed batch: the pending events wait until then.
    retry_at: Option<Instant>,
    retention: Option<Duration>,
    prune_interval: Duration,
    prune_at: Instant,
    /// Whether claims wait [`CLAIM_LINGER`] for company (PostgreSQL).
    linger_for_claims: bool,
}

impl Writer {
    fn new(store: Store, shared: Arc<Shared>, config: &AuditConfig) -> Self {
        Writer {
            linger_for_claims: store.is_postgres(),
            store,
            shared,
            conn: None,
            audits: Vec::with_capacity(MAX_BATCH),
            jtis: Vec::new(),
            verdicts: Vec::new(),
            claims: Vec::new(),
            claim_answers: Vec::new(),
            flushes: Vec::new(),
            audit_due: None,
            backoff: Duration::ZERO,
            retry_at: None,
            retention: Some(config.retention).filter(|r| !r.is_zero()),
            prune_interval: config.prune_interval,
            prune_at: Instant::now() + config.prune_interval,
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
                // Pruning is due by the clock, whatever the queues hold: the
                // urgent branch below wins every select under steady
                // assertion traffic, so waiting for an idle turn could
                // starve retention for ever. One batch, then a pause.
                if self.retention.is_some() && Instant::now() >= self.prune_at {
                    self.prune();
                }
                let deadline = self.retry_at.or(self.audit_due);
                let idle = deadline.is_none();
                let mut prune = false;
                tokio::select! {
                    biased;
                    urgent = urgent_rx.recv() => match urgent {
                        Some(message) => self.take(message),
                        None => open = false,
                    },
                    // Before new events: under steady load the queue is
                    // never empty, and pruning must still get its turn.
                    () = tokio::time::sleep_until(self.prune_at), if idle && self.retention.is_some() => prune = true,
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
                if prune {
                    self.prune();
                    continue;
                }
                self.take_waiting(&mut urgent_rx);
                if self.linger_for_claims
                    && !self.claims.is_empty()
                    && !self.round_is_full()
                {
                    // Group commit for claims (PostgreSQL's `commit_delay`,
                    // for this one connection). The thread sleeps rather
                    // than listening, so the claims that arrive meanwhile
                    // do not wake it one by one. Single-use ids and
                    // flushes taken with a claim wait as long too.
                    std::thread::sleep(CLAIM_LINGER);
                    self.take_waiting(&mut urgent_rx);
                }
                if !self.claims.is_empty() {
                    self.claim_round(&mut audit_rx);
                    // Under a steady stream of claims the select above never
                    // reaches the audit queue: what came in during the round
                    // starts its linger here (the next round may carry it).
                    if self.audit_due.is_none()
                        && let Ok(record) = audit_rx.try_recv()
                    {
                        self.audits.push(record);
                        self.audit_due = Some(Instant::now() + AUDIT_LINGER);
                    }
                }
                let now = Instant::now();
                let waiting = !self.jtis.is_empty() || !self.flushes.is_empty();
                // Read again: a claim round may have stored the pending
                // events, or left them refused, to be stored now.
                let deadline = self.retry_at.or(self.audit_due);
                if waiting || !open || deadline.is_some_and(|at| at <= now) {
                    // A flush waits for everything queued before it.
                    let limit = if self.flushes.is_empty() { MAX_BATCH } else { usize::MAX };
                    self.collect_audits(&mut audit_rx, limit);
                    self.write();
                    if self.retry_at.is_none() {
                        if !audit_rx.is_empty() {
                            // A backlog longer than a batch: no need to linger.
                            self.audit_due = Some(now);
                        } else {
                            self.shared.backlogged.store(false, Ordering::Release);
                        }
                    }
                }
            }
        });
    }

    /// Takes what waits in the urgent queue, up to a full round.
    fn take_waiting(&mut self, urgent_rx: &mut mpsc::Receiver<Urgent>) {
        while !self.round_is_full() {
            match urgent_rx.try_recv() {
                Ok(message) => self.take(message),
                Err(_) => break,
            }
        }
    }

    fn round_is_full(&self) -> bool {
        self.jtis.len() + self.claims.len() >= MAX_BATCH
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
            Urgent::Claim { claim, answer } => {
                self.claims.push(claim);
                self.claim_answers.push(answer);
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
        let outcome = self.on_connection(|conn| writer_round::store(conn, &keys, &audits));
        self.audits = audits;
        let audits_stored = match outcome {
            Ok(fresh) => {
                answer(verdicts, Ok(fresh));
                self.audits.clear();
                Ok(())
            }
            Err(StoreError::Unavailable(reason)) => {
                answer(verdicts, Err(StoreError::Unavailable(reason.clone())));
                match self.audits.is_empty() {
                    true => Ok(()),
                    false => Err(StoreError::Unavailable(reason)),
                }
            }
            Err(refused) if self.audits.is_empty() => {
                answer(verdicts, Err(refused));
                Ok(())
            }
            Err(_) => {
                // The database refused something: the `jti`s go on their
                // own, the audit rows are split until the culprit is alone.
                if !keys.is_empty() {
                    let outcome = self.transaction(|conn| assertions::insert_all(conn, &keys));
                    answer(verdicts, outcome);
                }
                self.store_splitting()
            }
        };
        match audits_stored {
            Ok(()) => self.stored(),
            Err(e) => self.retry_later(&e),
        }
    }

    /// The round's code claims, in one statement with the audit events
    /// queued so far (not while they wait out a backoff). A claim whose
    /// caller has gone (it hung up, or gave up at `VERDICT_WAIT`) is
    /// dropped unclaimed: claiming it would only spend the code. A round
    /// the database refused answers every claim "not claimed", so each
    /// goes on to `redeem_code`, which tells what happened and never
    /// claims a code twice (even if the refusal came after the round
    /// committed); its events are stored on their own at once, split
    /// until a refused row is alone, so that a bad row does not ride
    /// along and fail the next round too.
    fn claim_round(&mut self, audit_rx: &mut mpsc::Receiver<NewAuditRecord>) {
        let (claims, answers): (Vec<CodeClaim>, Vec<ClaimAnswer>) =
            std::mem::take(&mut self.claims)
                .into_iter()
                .zip(std::mem::take(&mut self.claim_answers))
                .filter(|(_, answer)| !answer.is_closed())
                .unzip();
        if claims.is_empty() {
            return;
        }
        let events = match self.retry_at {
            None => {
                self.collect_audits(audit_rx, MAX_BATCH);
                std::mem::take(&mut self.audits)
            }
            Some(_) => Vec::new(),
        };
        let outcome = self.on_connection(|conn| code_claims::claim_all(conn, &claims, &events));
        let carried = !events.is_empty();
        if carried {
            // Taken whole above: nothing else was queued meanwhile.
            self.audits = events;
        }
        match outcome {
            Ok(records) => {
                for (answer, record) in answers.into_iter().zip(records) {
                    let _ = answer.send(Ok(record));
                }
                if carried {
                    // A full round means a backlog: the rest goes at
                    // once. Otherwise what comes in meanwhile lingers,
                    // and the next claim round likely carries it.
                    self.audit_due = (self.audits.len() >= MAX_BATCH).then(Instant::now);
                    self.audits.clear();
                    if audit_rx.is_empty() {
                        self.shared.backlogged.store(false, Ordering::Release);
                    }
                }
            }
            Err(StoreError::Unavailable(reason)) => {
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Unavailable(reason.clone())));
                }
                if carried {
                    self.retry_later(&StoreError::Unavailable(reason));
                }
            }
            Err(error) => {
                tracing::warn!(%error, claims = claims.len(), "a round of code claims was refused; each goes on alone");
                for answer in answers {
                    let _ = answer.send(Ok(None));
                }
                if carried {
                    self.audit_due = Some(Instant::now());
                }
            }
        }
    }

    /// Moves queued audit events into the round, up to `limit` pending.
    fn collect_audits(&mut self, audit_rx: &mut mpsc::Receiver<NewAuditRecord>, limit: usize) {
        while self.audits.len() < limit {
            match audit_rx.try_recv() {
                Ok(record) => self.audits.push(record),
                Err(_) => break,
            }
        }
    }

    /// Stores the pending audit rows in halves, and a row refused on its
    /// own in its safe form. Stops at a transient failure, keeping the rows
    /// not stored yet pending (they are always the tail: halves go in order).
    fn store_splitting(&mut self) -> Result<(), StoreError> {
        let rows = std::mem::take(&mut self.audits);
        let mut stored = 0;
        let outcome = self.store_halves(&rows, &mut stored);
        self.audits = rows;
        self.audits.drain(..stored);
        outcome
    }

    fn store_halves(
        &mut self,
        rows: &[NewAuditRecord],
        stored: &mut usize,
    ) -> Result<(), StoreError> {
        match self.transaction(|conn| audit::append_all(conn, rows)) {
            Ok(()) => {
                *stored += rows.len();
                Ok(())
            }
            Err(e @ StoreError::Unavailable(_)) => Err(e),
            Err(refusal) if rows.len() == 1 => {
                self.store_safe_form(&rows[0], &refusal)?;
                *stored += 1;
                Ok(())
            }
            Err(_) => {
                let (first, second) = rows.split_at(rows.len() / 2);
                self.store_halves(first, stored)?;
                self.store_halves(second, stored)
            }
        }
    }

    /// A row refused as it was: stored as printable ASCII, counted and
    /// logged once. If that is refused too, the row was not the problem.
    fn store_safe_form(
        &mut self,
        row: &NewAuditRecord,
        refusal: &StoreError,
    ) -> Result<(), StoreError> {
        let safe = row.safe_form();
        self.transaction(|conn| audit::append_in(conn, &safe))?;
        self.shared.counters.refused.inc();
        tracing::warn!(
            action = %safe.action,
            error = %refusal,
            "the database refused an audit event; stored it in escaped form"
        );
        Ok(())
    }

    fn stored(&mut self) {
        if !self.backoff.is_zero() {
            tracing::info!("audit events are being stored again");
        }
        self.audit_due = None;
        self.backoff = Duration::ZERO;
        self.retry_at = None;
        self.release_flushes();
    }

    /// Keeps the pending events and tries again after a backoff. Logged
    /// when an outage starts, not on every attempt.
    fn retry_later(&mut self, error: &StoreError) {
        if self.backoff.is_zero() {
            tracing::warn!(
                pending = self.audits.len(),
                %error,
                "audit events not stored yet; retrying with backoff"
            );
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(50), MAX_BACKOFF);
        self.retry_at = Some(Instant::now() + self.backoff);
    }

    /// One round of retention: the next round comes soon while there is
    /// more to delete, after `audit.prune_interval` otherwise.
    fn prune(&mut self) {
        let Some(retention) = self.retention else {
            return;
        };
        let cutoff = crate::clock::now_ms().saturating_sub(retention.as_millis() as i64);
        let pause = match self.transaction(|conn| audit::prune(conn, cutoff, PRUNE_BATCH)) {
            Ok(deleted) if deleted as i64 >= PRUNE_BATCH => PRUNE_PAUSE,
            Ok(_) => self.prune_interval,
            Err(e) => {
                tracing::debug!(error = %e, "audit pruning postponed");
                self.prune_interval
            }
        };
        self.prune_at = Instant::now() + pause;
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
        self.on_connection(|conn| conn.transaction(work))
    }

    /// Runs `work` on the writer's connection, as it is: `work` brings its
    /// own transaction.
    fn on_connection<T>(
        &mut self,
        work: impl FnOnce(&mut super::AnyConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, StoreError> {
        let _turn = self.store.sqlite_turn()?;
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => self.conn.insert(self.store.checkout()?),
        };
        let result = work(&mut conn.connection).map_err(StoreError::from);
        self.store.committed();
        // A lost connection, or one left in a transaction (diesel's state
        // for it broken), is dropped rather than returned: the pool must
        // not reuse it, and the next round gets a fresh one.
        if matches!(result, Err(StoreError::Unavailable(_)))
            || !super::connection::outside_any_transaction(&mut conn.connection)
        {
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
