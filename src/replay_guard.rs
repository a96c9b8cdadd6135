//! Single-use assertion ids, checked against the shared store in batches.
//!
//! Every replica must refuse a replayed `jti`, so the check cannot be a
//! local cache: it is an insert into the shared database. Concurrent
//! requests hand their ids to one writer task, which inserts whatever has
//! gathered in a single transaction and answers each request (PERFORMANCE.md:
//! batching is what makes a shared replay store affordable).

use tokio::sync::{mpsc, oneshot};

use crate::store::{ReplayStore, Store, StoreError};

const QUEUE: usize = 16_384;
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<bool, StoreError>>;

#[derive(Clone)]
pub struct ReplayGuard {
    tx: mpsc::Sender<(String, i64, Reply)>,
}

impl ReplayGuard {
    pub fn spawn(store: Store) -> ReplayGuard {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        ReplayGuard { tx }
    }

    /// Records `key` until `expires_at`: `Ok(true)` the first time,
    /// `Ok(false)` for a replay.
    pub async fn consume(&self, key: String, expires_at: i64) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((key, expires_at, reply))
            .await
            .map_err(|_| StoreError::Other("the replay guard has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Other("the replay guard has stopped".into()))?
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<(String, i64, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let ids = batch
            .iter()
            .map(|(key, exp, _)| (key.clone(), *exp))
            .collect();
        match store.consume_jtis(ids).await {
            Ok(fresh) => {
                for ((_, _, reply), fresh) in batch.into_iter().zip(fresh) {
                    let _ = reply.send(Ok(fresh));
                }
            }
            Err(e) => {
                // Nothing was stored: every caller gets the error (503 for an
                // unreachable database) and no assertion is accepted.
                let message = e.to_string();
                let unavailable = matches!(e, StoreError::Unavailable(_));
                for (_, _, reply) in batch {
                    let error = if unavailable {
                        StoreError::Unavailable(message.clone())
                    } else {
                        StoreError::Other(message.clone())
                    };
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}
