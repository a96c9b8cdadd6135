//! SQLite's database calls, on one thread of their own.
//!
//! SQLite serves one call at a time in this process anyway
//! (`sqlite_turn.rs`). Run on tokio's blocking pool, each call took a
//! blocking thread that then queued for the turn: under load dozens of
//! threads slept on the turn's condition variable, and every call paid for
//! a wake-up to start and another to hand the turn on. The redemption
//! benchmark spent 13–15% of the server's CPU on those switches. Here the
//! calls queue in a channel instead, and one thread runs them back to
//! back, still taking the turn for each (the batch writer takes it too,
//! and gets it as soon as the call running ends: `sqlite_turn.rs`).
//!
//! A call that waited in the queue past its bound is not run: its caller
//! gets `Unavailable`, as one that waited for the turn too long did, and
//! the call is skipped when its turn in the queue comes ([`Ticket`]); so
//! is the call of a caller that went away. A call that started is awaited
//! to its end. The queue holds the calls of
//! requests in flight (each makes its calls one after another) and of
//! background tasks, and calls given up leave it as fast as they are
//! skipped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

/// A call, boxed: it carries its own connection handling and its answer's
/// channel.
pub(crate) type Call = Box<dyn FnOnce() + Send>;

/// The handle calls are sent through. The thread ends when the last handle
/// is gone and the queue is empty.
#[derive(Clone)]
pub(crate) struct SqliteThread {
    calls: Sender<Call>,
}

impl SqliteThread {
    pub(crate) fn spawn() -> std::io::Result<SqliteThread> {
        let (calls, queue) = channel();
        std::thread::Builder::new()
            .name("tessera-sqlite".into())
            .spawn(move || run(&queue))?;
        Ok(SqliteThread { calls })
    }

    /// Queues `call`; false if the thread is gone (it never ends while a
    /// handle exists, short of a panic outside any call).
    pub(crate) fn send(&self, call: Call) -> bool {
        self.calls.send(call).is_ok()
    }
}

/// Whether a queued call starts or is given up: whichever comes first.
#[derive(Default)]
pub(crate) struct Ticket(AtomicU8);

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const GIVEN_UP: u8 = 2;

impl Ticket {
    /// The thread's side: true if the call may run.
    pub(crate) fn start(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The caller's side: true if the call will never run.
    pub(crate) fn give_up(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

fn run(queue: &Receiver<Call>) {
    while let Ok(call) = queue.recv() {
        // A call that panics drops its answer's sender, so its caller gets
        // an error; the thread goes on with the next.
        let _ = catch_unwind(AssertUnwindSafe(call));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_run_in_order_and_a_panic_does_not_stop_the_thread() {
        let thread = SqliteThread::spawn().unwrap();
        let (done, finished) = channel();
        for n in 0..3 {
            let done = done.clone();
            assert!(thread.send(Box::new(move || {
                if n == 1 {
                    panic!("a failing call");
                }
                done.send(n).unwrap();
            })));
        }
        assert_eq!(finished.recv().unwrap(), 0);
        assert_eq!(finished.recv().unwrap(), 2);
    }

    #[test]
    fn a_call_either_starts_or_is_given_up() {
        let started = Ticket::default();
        assert!(started.start());
        assert!(!started.give_up(), "too late: it runs");
        let given_up = Ticket::default();
        assert!(given_up.give_up());
        assert!(!given_up.start(), "skipped");
    }
}
