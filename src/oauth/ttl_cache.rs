//! A per-replica cache of records the token endpoint reads on every request
//! (clients, service users), each entry kept for at most a short TTL.
//!
//! DESIGN.md allows a short bounded TTL where staleness is harmless and
//! never caches revocation past a second: a record disabled, deleted or
//! given new credentials on another replica is seen here within the TTL,
//! and at once on the replica that made the change (it invalidates the
//! entry). Unknown ids are cached too, so a flood of made-up ids does not
//! reach the database once per request.
//!
//! Found records and unknown ids live in two bounded caches (quick_cache,
//! S3-FIFO eviction: an entry read again outlives entries read once), so a
//! flood of made-up ids evicts only other unknown ids, never the clients
//! in use.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use crate::store::StoreError;

/// Records kept at most, and unknown ids kept at most.
const FOUND_CAPACITY: usize = 10_000;
const MISSING_CAPACITY: usize = 10_000;

/// Until when a record may be used.
type Found<V> = (Instant, Arc<V>);

pub struct TtlCache<V> {
    ttl: Duration,
    found: Cache<String, Found<V>>,
    /// Ids the store did not know, until when that answer may be used.
    missing: Cache<String, Instant>,
    /// Bumped by every invalidation, so a read that began before one does
    /// not store what it read (it may predate the change).
    generation: AtomicU64,
}

impl<V: Send + Sync> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, FOUND_CAPACITY, MISSING_CAPACITY)
    }

    fn with_capacity(ttl: Duration, found: usize, missing: usize) -> Self {
        TtlCache {
            ttl,
            found: Cache::new(found),
            missing: Cache::new(missing),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached record, or what `fetch` reads. `fetch` may shorten the
    /// entry's life by returning an instant (a key that expires sooner).
    ///
    /// One read per id at a time: when a busy entry expires, the requests
    /// that find it stale wait for the first one's read instead of all
    /// going to the database at once.
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
        let now = Instant::now();
        self.found.remove_if(id, |(until, _)| *until <= now);
        let guard = loop {
            match self.found.get_value_or_guard_async(id).await {
                Ok((until, record)) if Instant::now() < until => return Ok(Some(record)),
                // Stale already (a read that outlived the TTL): read again.
                Ok(_) => {
                    let now = Instant::now();
                    self.found.remove_if(id, |(until, _)| *until <= now);
                }
                Err(guard) => break guard,
            }
        };
        // The read before ours, if we waited for one, may have found nothing.
        if let Some(fresh) = self.fresh(id) {
            return Ok(fresh);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let now = Instant::now();
        let fetched = fetch().await?;
        if self.generation.load(Ordering::SeqCst) != generation {
            return Ok(fetched.map(|(record, _)| Arc::new(record)));
        }
        let record = match fetched {
            Some((record, cap)) => {
                let until = cap.map_or(now + self.ttl, |cap| cap.min(now + self.ttl));
                let record = Arc::new(record);
                let _ = guard.insert((until, record.clone()));
                Some(record)
            }
            None => {
                self.missing.insert(id.to_owned(), now + self.ttl);
                None
            }
        };
        // An invalidation between the check above and the insert: undo it.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.found.remove(id);
            self.missing.remove(id);
        }
        Ok(record)
    }

    /// `Some(record)`, `Some(None)` for an id known to be missing, `None` if
    /// the cache cannot say.
    fn fresh(&self, id: &str) -> Option<Option<Arc<V>>> {
        let now = Instant::now();
        if let Some((until, record)) = self.found.get(id)
            && now < until
        {
            return Some(Some(record));
        }
        let until = self.missing.get(id)?;
        (now < until).then_some(None)
    }

    /// Called by this replica after it changes the record.
    pub fn invalidate(&self, id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.found.remove(id);
        self.missing.remove(id);
    }

    /// Forgets every entry: when changes may have been missed.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.found.clear();
        self.missing.clear();
    }
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

    /// Reads `id` through the cache, counting store reads; ids starting
    /// with `unknown` are not in the store.
    async fn read_id(cache: &TtlCache<String>, reads: &AtomicUsize, id: &str) -> bool {
        cache
            .get(id, || async {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok((!id.starts_with("unknown")).then(|| (id.to_owned(), None)))
            })
            .await
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn a_flood_of_unknown_ids_does_not_evict_the_records_in_use() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let hot_reads = AtomicUsize::new(0);
        let other_reads = AtomicUsize::new(0);
        assert!(read_id(&cache, &hot_reads, "hot").await);
        for i in 0..25_000 {
            assert!(!read_id(&cache, &other_reads, &format!("unknown-{i}")).await);
        }
        assert!(read_id(&cache, &hot_reads, "hot").await);
        assert_eq!(hot_reads.load(Ordering::SeqCst), 1, "still cached");
        assert_eq!(other_reads.load(Ordering::SeqCst), 25_000);
        // The latest unknown ids are still answered from the cache.
        assert!(!read_id(&cache, &other_reads, "unknown-24999").await);
        assert_eq!(other_reads.load(Ordering::SeqCst), 25_000);
    }

    #[tokio::test]
    async fn records_read_once_make_way_for_a_record_in_use() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let hot_reads = AtomicUsize::new(0);
        let other_reads = AtomicUsize::new(0);
        for i in 0..25_000 {
            if i % 500 == 0 {
                assert!(read_id(&cache, &hot_reads, "hot").await);
            }
            assert!(read_id(&cache, &other_reads, &format!("client-{i}")).await);
        }
        assert!(read_id(&cache, &hot_reads, "hot").await);
        assert_eq!(hot_reads.load(Ordering::SeqCst), 1, "never evicted");
        assert!(cache.found.len() <= FOUND_CAPACITY, "bounded");
    }

    #[tokio::test]
    async fn an_invalidated_miss_is_read_again_at_once() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let reads = AtomicUsize::new(0);
        assert!(!read_id(&cache, &reads, "unknown-1").await);
        assert!(!read_id(&cache, &reads, "unknown-1").await);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        cache.invalidate("unknown-1");
        assert!(!read_id(&cache, &reads, "unknown-1").await);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        cache.invalidate_all();
        assert!(!read_id(&cache, &reads, "unknown-1").await);
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }
}
