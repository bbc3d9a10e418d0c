//! What an account stores, and how far one of its files may grow.
//!
//! The count of bytes an account stores follows the file system, not what
//! a handle believes: every change of a file's size (WRITE, SETSTAT or
//! FSETSTAT size, OPEN with TRUNC, REMOVE, RENAME over a file) runs inside
//! [`Usage::change`], which measures the file before and after the change
//! with the account's count locked. Two handles (or sessions) changing the
//! same file therefore never interleave between a measure and its effect,
//! and the count can neither drift below the disk nor go negative.
//!
//! Sizes are apparent sizes (`st_size`): a sparse file counts as its
//! apparent size, so holes can never slip past the quota. Holes themselves
//! are bounded too ([`Limits::max_hole`]): the sha256 taken at completion
//! reads every byte of the apparent size, so a 1-byte WRITE at offset 2^40
//! would otherwise cost an hour of hashing zeros.

use std::sync::Mutex;

/// The bytes one account stores in its jail, shared by all its sessions.
pub(crate) struct Usage {
    bytes: Mutex<u64>,
}

impl Usage {
    pub(crate) fn new(bytes: u64) -> Usage {
        Usage {
            bytes: Mutex::new(bytes),
        }
    }

    pub(crate) fn current(&self) -> u64 {
        *self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op`, a change to one of the account's files, with the count
    /// locked: `op` sees the count, measures the file itself, and returns
    /// its result with the change in stored bytes it made (size after less
    /// size before). Blocking: call from a blocking thread.
    pub(crate) fn change<T, E>(&self, op: impl FnOnce(u64) -> Result<(T, i64), E>) -> Result<T, E> {
        let mut bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let (out, delta) = op(*bytes)?;
        *bytes = bytes.saturating_add_signed(delta);
        Ok(out)
    }

    /// [`Usage::change`] when the count is free right now; `None` when
    /// another change holds it (which may be waiting for a disk), so that an
    /// async caller never waits for the lock.
    pub(crate) fn try_change<T, E>(
        &self,
        op: impl FnOnce(u64) -> Result<(T, i64), E>,
    ) -> Option<Result<T, E>> {
        let mut bytes = match self.bytes.try_lock() {
            Ok(b) => b,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(op(*bytes).map(|(out, delta)| {
            *bytes = bytes.saturating_add_signed(delta);
            out
        }))
    }
}

/// How far one account's files may grow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_file_size: Option<u64>,
    pub(crate) quota: Option<u64>,
    /// Largest part of a file's apparent size that may be unwritten (holes).
    pub(crate) max_hole: u64,
}

/// Why a file of `size` bytes (of which `allocated` are on disk) may not
/// become `new_size` bytes by writing `written` new bytes, if it may not;
/// `used` is what the account stores now. Shrinking is always allowed.
/// The message is for the client.
pub(crate) fn growth_refusal(
    l: &Limits,
    used: u64,
    size: u64,
    allocated: u64,
    new_size: u64,
    written: u64,
) -> Option<String> {
    if new_size <= size {
        return None;
    }
    if let Some(max) = l.max_file_size.filter(|&m| new_size > m) {
        return Some(format!("Files over {max} bytes are not accepted"));
    }
    if let Some(quota) = l
        .quota
        .filter(|&q| used.saturating_add(new_size - size) > q)
    {
        return Some(format!("Quota of {quota} bytes exceeded"));
    }
    let unwritten = new_size.saturating_sub(allocated.saturating_add(written));
    if unwritten > l.max_hole {
        return Some(format!(
            "Refused: the file would have {unwritten} bytes never written (at most {} allowed); \
             write it in order",
            l.max_hole
        ));
    }
    None
}

/// Apparent size of every regular file under `dir` (the count's start).
pub(crate) fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn try_change_never_waits_for_a_change_in_progress() {
        let usage = Usage::new(7);
        usage
            .change(|_| {
                assert!(usage.try_change(|_| Ok::<_, ()>(((), 1))).is_none());
                Ok::<_, ()>(((), 2))
            })
            .unwrap();
        assert_eq!(usage.try_change(|u| Ok::<_, ()>((u, 3))), Some(Ok(9)));
        assert_eq!(usage.current(), 12);
    }

    use super::*;

    const MIB: u64 = 1 << 20;

    fn limits() -> Limits {
        Limits {
            max_file_size: Some(100 * MIB),
            quota: Some(200 * MIB),
            max_hole: 64 * MIB,
        }
    }

    #[test]
    fn in_order_writes_and_shrinking_pass() {
        let l = limits();
        assert_eq!(growth_refusal(&l, 0, 0, 0, 256 * 1024, 256 * 1024), None);
        assert_eq!(
            growth_refusal(&l, 0, 10 * MIB, 10 * MIB, 11 * MIB, MIB),
            None
        );
        // Out of order within the allowance (parallel-chunk clients).
        assert_eq!(growth_refusal(&l, 0, MIB, MIB, 33 * MIB, MIB), None);
        // Shrinking, even of a file over every limit.
        assert_eq!(growth_refusal(&l, 999 * MIB, 500 * MIB, 0, 0, 0), None);
    }

    #[test]
    fn each_limit_refuses_with_its_own_message() {
        let l = limits();
        let big = growth_refusal(&l, 0, 0, 0, 100 * MIB + 1, 1).unwrap();
        assert!(big.contains("Files over"), "{big}");
        let quota = growth_refusal(&l, 150 * MIB, 0, 0, 60 * MIB, 60 * MIB).unwrap();
        assert!(quota.contains("Quota"), "{quota}");
        let l = Limits {
            max_file_size: None,
            quota: None,
            ..l
        };
        let hole = growth_refusal(&l, 0, 0, 0, (1 << 40) + 1, 1).unwrap();
        assert!(hole.contains("never written"), "{hole}");
        // A truncate-up (nothing written) counts its whole growth as hole,
        // and so does stepping the end forward one allowance at a time.
        assert!(growth_refusal(&l, 0, 0, 0, 65 * MIB, 0).is_some());
        assert!(growth_refusal(&l, 0, 64 * MIB, 4096, 128 * MIB, 1).is_some());
    }

    #[test]
    fn the_count_follows_changes_and_never_goes_negative() {
        let u = Usage::new(10);
        u.change(|_| Ok::<_, ()>(((), 5))).unwrap();
        assert_eq!(u.current(), 15);
        u.change(|_| Ok::<_, ()>(((), -100))).unwrap();
        assert_eq!(u.current(), 0);
        assert!(u.change(|_| Err::<((), i64), _>("refused")).is_err());
        assert_eq!(u.current(), 0);
    }
}
