//! A per-replica cache of records the token endpoint reads on every request
//! (clients, service users), each entry kept for at most a short TTL.
//!
//! DESIGN.md allows a short bounded TTL where staleness is harmless and
//! never caches revocation past a second: a record disabled, deleted or
//! given new credentials on another replica is seen here within the TTL,
//! and at once on the replica that made the change (it invalidates the
//! entry). Unknown ids are cached too, so a flood of made-up ids does not
//! reach the database once per request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::StoreError;

const MAX_ENTRIES: usize = 10_000;
/// Refreshes of different ids run in parallel unless their ids share one of
/// these locks.
const FETCH_LOCKS: usize = 16;

/// Until when an entry may be used, and the record (`None`: no such id).
type Entry<V> = (Instant, Option<Arc<V>>);

pub struct TtlCache<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry<V>>>,
    /// One read per id at a time: when a busy entry expires, the requests
    /// that find it stale wait for the first one's read instead of all
    /// going to the database at once.
    fetching: [tokio::sync::Mutex<()>; FETCH_LOCKS],
    /// Bumped by every invalidation, so a read that began before one does
    /// not store what it read (it may predate the change).
    generation: AtomicU64,
}

impl<V> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            fetching: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached record, or what `fetch` reads. `fetch` may shorten the
    /// entry's life by returning an instant (a key that expires sooner).
    pub async fn get<Fut>(
        &self,
        id: &str,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Option<Arc<V>>, StoreError>
    where
        Fut: Future<Output = Result<Option<(V, Option<Instant>)>, StoreError>>,
    {
        if let Some(fresh) = self.fresh(id) {
            return Ok(fresh);
        }
        let _fetching = self.fetching[lock_index(id)].lock().await;
        if let Some(fresh) = self.fresh(id) {
            return Ok(fresh);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let now = Instant::now();
        let (record, until) = match fetch().await? {
            Some((record, cap)) => {
                let until = cap.map_or(now + self.ttl, |cap| cap.min(now + self.ttl));
                (Some(Arc::new(record)), until)
            }
            None => (None, now + self.ttl),
        };
        let mut entries = self.entries.lock().expect("ttl cache");
        if self.generation.load(Ordering::SeqCst) != generation {
            return Ok(record);
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id.to_owned(), (until, record.clone()));
        Ok(record)
    }

    fn fresh(&self, id: &str) -> Option<Option<Arc<V>>> {
        let entries = self.entries.lock().expect("ttl cache");
        let (until, entry) = entries.get(id)?;
        (Instant::now() < *until).then(|| entry.clone())
    }

    /// Called by this replica after it changes the record.
    pub fn invalidate(&self, id: &str) {
        let mut entries = self.entries.lock().expect("ttl cache");
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(id);
    }
}

fn lock_index(id: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id) as usize % FETCH_LOCKS
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A cache in front of a counter of reads.
    async fn read(
        cache: &TtlCache<&'static str>,
        reads: &AtomicUsize,
        found: bool,
        cap: Option<Instant>,
    ) -> Option<&'static str> {
        cache
            .get("id", || async {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(found.then_some(("record", cap)))
            })
            .await
            .unwrap()
            .map(|r| *r)
    }

    #[tokio::test]
    async fn entries_live_for_the_ttl_unless_invalidated() {
        let cache = TtlCache::new(Duration::from_millis(200));
        let reads = AtomicUsize::new(0);
        assert_eq!(read(&cache, &reads, true, None).await, Some("record"));
        assert_eq!(read(&cache, &reads, true, None).await, Some("record"));
        assert_eq!(reads.load(Ordering::SeqCst), 1, "the second get is cached");
        cache.invalidate("id");
        read(&cache, &reads, true, None).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "invalidation forces a read"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        read(&cache, &reads, true, None).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            3,
            "an entry expires after the TTL"
        );
    }

    #[tokio::test]
    async fn unknown_ids_are_cached_and_a_cap_shortens_an_entry() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let reads = AtomicUsize::new(0);
        assert_eq!(read(&cache, &reads, false, None).await, None);
        assert_eq!(read(&cache, &reads, false, None).await, None);
        assert_eq!(reads.load(Ordering::SeqCst), 1, "a miss is cached too");
        cache.invalidate("id");
        let cap = Some(Instant::now() + Duration::from_millis(50));
        read(&cache, &reads, true, cap).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        read(&cache, &reads, true, None).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            3,
            "the cap ended the entry early"
        );
    }

    #[tokio::test]
    async fn concurrent_misses_read_once_and_invalidation_beats_a_read_in_flight() {
        let cache = Arc::new(TtlCache::new(Duration::from_secs(60)));
        let reads = Arc::new(AtomicUsize::new(0));
        let slow_read = |cache: Arc<TtlCache<&'static str>>, reads: Arc<AtomicUsize>| async move {
            cache
                .get("id", || async {
                    reads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some(("old", None)))
                })
                .await
        };
        let waiting: Vec<_> = (0..8)
            .map(|_| tokio::spawn(slow_read(cache.clone(), reads.clone())))
            .collect();
        for task in waiting {
            task.await.unwrap().unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read served all eight");

        cache.invalidate("id");
        let in_flight = tokio::spawn(slow_read(cache.clone(), reads.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        cache.invalidate("id");
        in_flight.await.unwrap().unwrap();
        assert_eq!(read(&cache, &reads, true, None).await, Some("record"));
        assert_eq!(
            reads.load(Ordering::SeqCst),
            3,
            "the read in flight was not kept"
        );
    }
}
