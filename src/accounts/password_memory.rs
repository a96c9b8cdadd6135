//! argon2's working memory, kept between hashes.
//!
//! A hash at the default parameters fills 19 MiB. Allocating that afresh
//! for each login means a zeroing pass and about 4,900 page faults before
//! argon2 starts, on whichever blocking thread the login landed on: the
//! load benchmark measured 29 ms of server CPU a login against 23 ms a
//! hash. argon2 writes every block before it reads it (RFC 9106 §3.2,
//! the first pass computes each block from earlier ones), so memory left
//! by an earlier hash can be handed to the next one as it is
//! (`Argon2::hash_password_into_with_memory` exists for this).
//!
//! At most `keep` arrays are kept (one per hashing thread of
//! [`Passwords`](super::passwords::Passwords), up to four): no more than
//! are in use at once under load, so keeping them adds nothing to the
//! peak. They hold what the last hashes computed, as freed memory would
//! until reused; nothing reads them but the next hash, which overwrites
//! them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::{Argon2, Block};

pub struct PasswordMemory {
    free: Mutex<Vec<Vec<Block>>>,
    /// The block count of the configured parameters: only arrays of this
    /// size go back on the shelf (a stored hash made at other parameters
    /// gets an array of its own, dropped after use).
    blocks: usize,
    keep: usize,
    /// Hashes running now, and the most seen at once: what the hashing
    /// threads bound (a test checks it).
    running: AtomicUsize,
    most: AtomicUsize,
}

impl PasswordMemory {
    pub fn new(blocks: usize, keep: usize) -> Self {
        PasswordMemory {
            free: Mutex::new(Vec::with_capacity(keep)),
            blocks,
            keep,
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        }
    }

    /// `argon2` over `password` and `salt` into `out`, in kept memory when
    /// the parameters are the configured ones.
    pub fn hash_into(
        &self,
        argon2: &Argon2<'_>,
        blocks: usize,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> argon2::Result<()> {
        let kept = if blocks == self.blocks {
            self.shelf().pop()
        } else {
            None
        };
        let mut memory = kept.unwrap_or_else(|| vec![Block::default(); blocks]);
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.most.fetch_max(now, Ordering::Relaxed);
        let result = argon2.hash_password_into_with_memory(password, salt, out, &mut memory);
        self.running.fetch_sub(1, Ordering::Relaxed);
        if memory.len() == self.blocks {
            let mut shelf = self.shelf();
            if shelf.len() < self.keep {
                shelf.push(memory);
            }
        }
        result
    }

    /// The most hashes that ran at once so far.
    #[cfg(test)]
    pub fn most_at_once(&self) -> usize {
        self.most.load(Ordering::Relaxed)
    }

    /// How many arrays are kept now (for tests).
    pub fn kept(&self) -> usize {
        self.shelf().len()
    }

    fn shelf(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        // A panic while holding the lock leaves a Vec of whole arrays.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for PasswordMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordMemory")
            .field("blocks", &self.blocks)
            .field("kept", &self.kept())
            .finish()
    }
}
