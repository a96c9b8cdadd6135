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

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::StoreError;

/// The turn, given in the order it was asked for (a ticket lock). The
/// SQLite thread runs calls back to back: were a freed turn free for
/// anyone, it would take it again before the woken batch writer ran, for
/// as long as calls kept coming, while the writer's wait ran out.
#[derive(Default)]
pub struct SqliteTurn {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    /// The ticket the next caller draws.
    next: u64,
    /// The ticket whose turn it is: held when `taken`, else its holder's
    /// to take.
    serving: u64,
    taken: bool,
    /// Tickets whose holders stopped waiting: skipped when their turn comes.
    abandoned: BTreeSet<u64>,
}

/// The turn, held until dropped.
pub struct Turn<'a>(&'a SqliteTurn);

impl SqliteTurn {
    /// Waits up to `timeout` for the turn, after those who asked before.
    pub fn take(&self, timeout: Duration) -> Result<Turn<'_>, StoreError> {
        // Before drawing a ticket: a ticket drawn and never served or
        // abandoned would stop every later caller.
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.state();
        let ticket = state.next;
        state.next += 1;
        loop {
            if state.serving == ticket && !state.taken {
                state.taken = true;
                return Ok(Turn(self));
            }
            // A bound past what `Instant` holds is no bound.
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                state.abandoned.insert(ticket);
                return Err(busy());
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The state holds no invariant a panic could break mid-way (every
    /// change is made whole under the lock): a poisoned lock is used as it
    /// is.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The error of a call that waited past its bound.
pub fn busy() -> StoreError {
    StoreError::Unavailable("the SQLite database stayed busy past its timeout".into())
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut guard = self.0.state();
        let state = &mut *guard;
        state.taken = false;
        state.serving += 1;
        while state.abandoned.remove(&state.serving) {
            state.serving += 1;
        }
        drop(guard);
        // Only the next ticket's holder may go on; there are few waiters
        // (the SQLite thread, the batch writer).
        self.0.freed.notify_all();
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

    /// The SQLite thread frees and takes the turn again at once, call after
    /// call: a caller waiting meanwhile gets it in between.
    #[test]
    fn a_freed_turn_goes_to_the_waiter_before_a_new_taker() {
        let turns = std::sync::Arc::new(SqliteTurn::default());
        let held = turns.take(Duration::from_millis(10)).unwrap();
        let waiter = {
            let turns = turns.clone();
            std::thread::spawn(move || {
                let turn = turns.take(Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(20));
                turn.is_ok()
            })
        };
        while turns.state().next < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(held);
        // Taken right after freeing: the waiter has it, so this waits.
        assert!(turns.take(Duration::from_millis(5)).is_err(), "handed on");
        assert!(waiter.join().unwrap());
        assert!(turns.take(Duration::from_millis(10)).is_ok(), "freed again");
    }
}
