//! Link breaking. A file with several links, or one whose inode is sealed
//! as an acknowledged deposit, shares its bytes with an archive: before the
//! customer's name changes in place, it gets a fresh copy of its own, so
//! writing to it never changes what was ingested.

use crate::jail::{Jail, JailError, JailPath, OpenOptions};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file with several links is also an archived copy of an ingested
/// deposit: give the customer's name a fresh copy (empty when about to be
/// truncated) so writing to it never changes the archive.
pub(super) fn break_link(jail: &Jail, p: &JailPath, empty: bool) -> Result<(), JailError> {
    // A short temporary name: derived from a 255-byte name it would be
    // too long (regression: the jail escape test's long hard link).
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    let tmp = p
        .parent()
        .unwrap_or_else(JailPath::root)
        .join(&format!(".depot-copy-{}-{n}", std::process::id()))?;
    let mut out = jail.open_file(
        &tmp,
        &OpenOptions {
            write: true,
            create: true,
            truncate: true,
            mode: 0o644,
            ..Default::default()
        },
    )?;
    if !empty {
        let mut src = jail.open_file(
            p,
            &OpenOptions {
                read: true,
                ..Default::default()
            },
        )?;
        std::io::copy(&mut src, &mut out)?;
    }
    out.sync_all()?;
    jail.rename(&tmp, p, true)
}
