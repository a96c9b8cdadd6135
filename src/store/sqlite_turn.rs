//! SQLite's one turn at the database per process.
//!
//! SQLite has one writer. A second connection that wants to write while
//! the lock is held goes to SQLite's busy handler, which sleeps 1, 2, 5,
//! 10, 15… ms between tries: under load, requests slept while the cores
//! idled (the `authorization_code` benchmark, two writes a request, had a
//! p99 of 122 ms and reached 36% of its limit; taking turns here, 43–46 ms
//! and 42–47%). Waiting here wakes the next caller the moment the last one
//! is done. Reads take turns too: which calls write is not known at this
//! level, and a read costs microseconds. Another process on the same file
//! (the CLI) still meets the busy handler.
//!
//! A wait is bounded by the pool's connect timeout, and by no less than
//! SQLite's own busy timeout (5 s), as the waits for a pooled connection
//! and then for the lock were before: past it the caller gets
//! `Unavailable` (503) instead of queueing without end. (A 2 s bound alone
//! turned a checkpoint's slow fsync on a busy CI machine into 503s.)

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::StoreError;

#[derive(Default)]
pub struct SqliteTurn {
    taken: Mutex<bool>,
    freed: Condvar,
}

/// The turn, held until dropped.
pub struct Turn<'a>(&'a SqliteTurn);

impl SqliteTurn {
    /// Waits up to `timeout` for the turn.
    pub fn take(&self, timeout: Duration) -> Result<Turn<'_>, StoreError> {
        let (mut taken, _) = self
            .freed
            .wait_timeout_while(self.flag(), timeout, |taken| *taken)
            .unwrap_or_else(|e| e.into_inner());
        if *taken {
            return Err(busy());
        }
        *taken = true;
        Ok(Turn(self))
    }

    /// The flag holds no invariant a panic could break: a poisoned lock
    /// is used as it is.
    fn flag(&self) -> MutexGuard<'_, bool> {
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The error of a call that waited past its bound.
pub fn busy() -> StoreError {
    StoreError::Unavailable("the SQLite database stayed busy past its timeout".into())
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.flag() = false;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_turn_at_a_time_and_a_bounded_wait() {
        let turns = SqliteTurn::default();
        let held = turns.take(Duration::from_millis(10)).unwrap();
        assert!(turns.take(Duration::from_millis(20)).is_err(), "taken");
        drop(held);
        let again = turns.take(Duration::from_millis(10));
        assert!(again.is_ok(), "freed on drop");
    }

    #[test]
    fn a_waiter_gets_the_turn_when_it_is_freed() {
        let turns = std::sync::Arc::new(SqliteTurn::default());
        let held = turns.take(Duration::from_millis(10)).unwrap();
        let waiter = {
            let turns = turns.clone();
            std::thread::spawn(move || turns.take(Duration::from_secs(10)).is_ok())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
    }
}
