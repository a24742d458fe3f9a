//! Content digests, computed once per file version. A 50 MiB layer file is otherwise hashed at
//! every check that looks at it.
//!
//! A file's version is (device, inode, size, mtime, ctime). Before Linux 6.13 those times advance
//! once per scheduler tick, so a same-size rewrite within the tick the digest was taken in keeps
//! the version and would be served the old digest. Git's racily-clean rule answers it: a digest
//! taken while the file's times were too close to the clock is used once but not kept.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::{SnapError, hex, io_err};

/// How close to the clock a file's times may be for its digest to be kept: more than twice the
/// longest tick of a coarse clock (HZ=100 is 10 ms), so no rewrite can hide inside it.
pub const RACY_WINDOW: Duration = Duration::from_millis(25);

/// Files at least this big are worth waiting out [`RACY_WINDOW`] for: hashing one twice (a
/// 50 MiB layer) costs more than the wait; smaller ones are hashed again instead.
const WAIT_FOR_AT_LEAST: u64 = 1 << 20;

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Digests already computed, keyed by what changes whenever content can have changed.
#[derive(Debug, Default)]
pub struct DigestCache {
    known: std::collections::HashMap<FileVersion, String>,
}

/// Device, inode, size, mtime and ctime (each as time since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Duration,
    ctime: Duration,
}

fn since_epoch(secs: i64, nsec: i64) -> Duration {
    match (u64::try_from(secs), u32::try_from(nsec)) {
        (Ok(s), Ok(n)) => Duration::new(s, n.min(999_999_999)),
        // Before 1970: never close to now, and never mistaken for another version.
        _ => Duration::ZERO,
    }
}

impl FileVersion {
    fn of(meta: &fs::Metadata) -> FileVersion {
        FileVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: since_epoch(meta.mtime(), meta.mtime_nsec()),
            ctime: since_epoch(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// May a digest read at `hashed_at` be reused for this version? Only if neither time was
    /// within [`RACY_WINDOW`] of it: a later write in the same tick cannot change them then.
    fn settled_at(&self, hashed_at: Duration) -> bool {
        let latest = self.mtime.max(self.ctime);
        hashed_at
            .checked_sub(latest)
            .is_some_and(|age| age > RACY_WINDOW)
    }
}

impl DigestCache {
    /// The hex SHA-256 of `path`, whose metadata is `meta`.
    pub(crate) fn digest(&mut self, path: &Path, meta: &fs::Metadata) -> Result<String, SnapError> {
        let mut version = FileVersion::of(meta);
        if let Some(d) = self.known.get(&version) {
            return Ok(d.clone());
        }
        // The clock is read before the content: a write after this moment that keeps the
        // version must have times within the window, and then nothing is kept.
        let mut hashed_at = now();
        if version.size >= WAIT_FOR_AT_LEAST && !version.settled_at(hashed_at) {
            // A big file written a moment ago: wait until no write can keep its version, so
            // this digest is the one kept (instead of hashing it again at the next look).
            let latest = version.mtime.max(version.ctime);
            std::thread::sleep(
                (latest + RACY_WINDOW + Duration::from_millis(1)).saturating_sub(hashed_at),
            );
            version = FileVersion::of(&fs::symlink_metadata(path).map_err(io_err(path))?);
            if let Some(d) = self.known.get(&version) {
                return Ok(d.clone());
            }
            hashed_at = now();
        }
        let d = sha256_file(path)?;
        self.remember(version, hashed_at, &d);
        Ok(d)
    }

    fn remember(&mut self, version: FileVersion, hashed_at: Duration, digest: &str) {
        if version.settled_at(hashed_at) {
            self.known.insert(version, digest.to_owned());
        }
    }
}

/// Hex SHA-256 of a file's content, read in 1 MiB pieces.
pub(crate) fn sha256_file(path: &Path) -> Result<String, SnapError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(ctime: Duration) -> FileVersion {
        FileVersion {
            dev: 1,
            ino: 2,
            size: 4,
            mtime: ctime,
            ctime,
        }
    }

    #[test]
    fn a_digest_taken_in_the_tick_of_the_last_write_is_not_kept() {
        // A coarse clock: the file was written at t, hashed 1 ms later, then rewritten (same size)
        // in the same tick, so its version does not change. The first digest must not be served.
        let t = Duration::from_secs(1_700_000_000);
        let mut cache = DigestCache::default();
        cache.remember(version(t), t + Duration::from_millis(1), "stale");
        assert!(cache.known.is_empty(), "a racy digest was kept");
        // Hashed well after the last write: nothing can change without changing the version.
        cache.remember(version(t), t + Duration::from_secs(2), "settled");
        assert_eq!(
            cache.known.get(&version(t)).map(String::as_str),
            Some("settled")
        );
    }

    #[test]
    fn times_in_the_future_or_before_1970_are_never_trusted() {
        let t = Duration::from_secs(1_700_000_000);
        assert!(!version(t + Duration::from_secs(5)).settled_at(t));
        assert_eq!(since_epoch(-5, 0), Duration::ZERO);
    }
}
