//! Audit events from the token hot path, written in batches.
//!
//! A request hands its event to a bounded queue and goes on; one writer
//! task inserts whatever has gathered in a single transaction. With 64
//! concurrent requests that turns 64 single-row commits into one, which is
//! what keeps the database off the token endpoint's critical path
//! (PERFORMANCE.md: batched inserts run several times faster). Nothing is
//! dropped: a failed batch is retried with backoff until the database takes
//! it, and a full queue makes callers wait rather than lose events.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audit::Event;
use crate::clock;
use crate::store::{AuditStore, NewAuditRecord, Store};

const QUEUE: usize = 65_536;
const MAX_BATCH: usize = 1_024;

enum Message {
    Event(NewAuditRecord),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Message>,
}

impl AuditSink {
    /// Starts the writer on the current runtime.
    pub fn spawn(store: Store) -> AuditSink {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        AuditSink { tx }
    }

    pub async fn record(&self, event: Event) {
        let record = event.into_record(clock::now_ms());
        if self.tx.send(Message::Event(record)).await.is_err() {
            tracing::error!("the audit writer has stopped; an event was not recorded");
        }
    }

    /// Resolves once every event queued before the call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(record) => batch.push(record),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let mut backoff = Duration::from_millis(50);
        while !batch.is_empty() {
            match store.append_audit_batch(batch.clone()).await {
                Ok(()) => batch.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, pending = batch.len(), "audit batch not stored yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
