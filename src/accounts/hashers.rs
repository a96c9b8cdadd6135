//! The threads that hash passwords for requests.
//!
//! One argon2id hash is tens of milliseconds of one core, and under a
//! stream of logins the hashes queue. `threads` threads of their own (one
//! per core) take them from one queue in arrival order, and a thread that
//! finishes a hash takes the next at once. With a permit and
//! `spawn_blocking` per hash, the next hash started only after three
//! thread wake-ups (the blocking thread wakes the finished login's task,
//! whose dropped permit wakes the next login's task, which wakes a blocking
//! thread); in a virtual machine each can wait for an idle vCPU to be
//! woken by the host. The load benchmark measured both cores 3% idle under
//! a full queue of logins that way.
//!
//! A hash whose caller has gone (its client hung up while the login
//! waited) is dropped unrun, as a login waiting for a permit was: a flood
//! of abandoned logins costs no hashing. Its work, which holds the
//! password, is dropped when the caller goes, not when a thread reaches
//! it in the queue.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// Work waiting in the queue, taken by whoever comes first: the thread
/// that runs it, or its caller going away.
type Slot<F> = Arc<Mutex<Option<F>>>;

/// A lock whose holder panicked is taken anyway: a slot or the queue's
/// receiver is whole either way.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Empties the slot when the caller's future is dropped, finished or not.
struct DropUnrun<'a, F>(&'a Mutex<Option<F>>);

impl<F> Drop for DropUnrun<'_, F> {
    fn drop(&mut self) {
        let unrun = lock(self.0).take();
        drop(unrun);
    }
}

pub struct Hashers {
    threads: usize,
    /// The queue, and its threads, start on first use: a CLI command that
    /// builds `Passwords` to hash one password does not start them. When
    /// the last handle goes, the queue closes and the threads end.
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl Hashers {
    pub fn new(threads: usize) -> Self {
        Hashers {
            threads: threads.max(1),
            queue: OnceLock::new(),
        }
    }

    /// Runs `work` on a hashing thread, after the work queued before it.
    /// `None` when it did not finish (it panicked).
    pub async fn run<T, F>(&self, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let slot: Slot<F> = Arc::new(Mutex::new(Some(work)));
        let _unrun = DropUnrun(&slot);
        let queued = Arc::clone(&slot);
        let job: Job = Box::new(move || {
            let work = lock(&queued).take();
            if let Some(work) = work {
                let _ = answer.send(work());
            }
        });
        self.queue().send(job).ok()?;
        answered.await.ok()
    }

    fn queue(&self) -> &mpsc::Sender<Job> {
        self.queue.get_or_init(|| {
            let (queue, jobs) = mpsc::channel::<Job>();
            let jobs = Arc::new(Mutex::new(jobs));
            for n in 0..self.threads {
                let jobs = Arc::clone(&jobs);
                std::thread::Builder::new()
                    .name(format!("tessera-hash-{n}"))
                    .spawn(move || work_through(&jobs))
                    .expect("a hashing thread starts");
            }
            queue
        })
    }
}

/// One thread's loop: the next job, until the queue closes. The lock is
/// held only while waiting for a job, never while running one.
fn work_through(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let next = lock(jobs).recv();
        let Ok(job) = next else { return };
        // A panicking job drops its answer (its caller gets `None`); the
        // thread stays.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::Hashers;

    /// Work whose caller has gone before a thread reached it never runs,
    /// and is dropped when the caller goes; a panic answers `None` and
    /// leaves the thread working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_work_is_skipped_and_a_panic_is_survived() {
        let hashers = Arc::new(Hashers::new(1));
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let blocked = {
            let hashers = Arc::clone(&hashers);
            let job = move || {
                started.send(()).unwrap();
                gate.recv().is_ok()
            };
            tokio::spawn(async move { hashers.run(job).await })
        };
        // The gate's job holds the only thread from here on.
        while running.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let ran = Arc::new(AtomicBool::new(false));
        let held = Arc::new(());
        let mut abandoned = Box::pin({
            let ran = Arc::clone(&ran);
            let held = Arc::clone(&held);
            hashers.run(move || {
                let _held = held;
                ran.store(true, Ordering::SeqCst)
            })
        });
        assert!(futures_util::poll!(&mut abandoned).is_pending(), "queued");
        assert_eq!(Arc::strong_count(&held), 2, "the queued work holds it");
        drop(abandoned);
        assert_eq!(Arc::strong_count(&held), 1, "dropped with its caller");
        open.send(()).unwrap();
        assert_eq!(blocked.await.unwrap(), Some(true));
        assert_eq!(hashers.run(|| -> u8 { panic!("on purpose") }).await, None);
        assert_eq!(hashers.run(|| 7).await, Some(7), "the thread survived");
        assert!(!ran.load(Ordering::SeqCst), "abandoned work never ran");
    }
}
