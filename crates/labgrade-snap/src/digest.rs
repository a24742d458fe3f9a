//! Content digests, computed once per file version. A 50 MiB layer file is otherwise hashed at
//! every check that looks at it.
//!
//! A file's version is (device, inode, size, mtime, ctime). Before Linux 6.13 those times come
//! from the coarse clock, which moves once per timer tick, so a same-size rewrite within the tick
//! the digest was taken in keeps the version and would be served the old digest. Git's
//! racily-clean rule answers it: a digest is kept only if it was taken when the clock files are
//! stamped by had already moved past the file's times; otherwise it is used once and dropped.
//!
//! That clock is `CLOCK_REALTIME_COARSE`, not the fine clock: under TCG a guest's coarse clock
//! can stand still for tens of milliseconds while the fine one runs on, so a rule on the fine
//! clock with any fixed window still served stale digests on a 6.1 guest (58 of 2000 rewrites).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::{SnapError, io_err};

/// Files at least this big are worth waiting for the file clock to move past (up to one tick:
/// 4 ms at HZ=250): hashing one again at its next look (a 50 MiB layer, ~30 ms) costs more than
/// the wait. Below it a second hash costs less than the wait (SHA-256 runs at 1-2 GB/s here:
/// 16 MiB in about 10 ms, 1 MiB in under one), and a file looked at once never pays it; at 1 MiB
/// the wait alone made the host lesson 14% slower (scripts/bench-lesson).
const WAIT_FOR_AT_LEAST: u64 = 16 << 20;

/// The longest a big file's digest waits for the file clock; past it, it is used once.
const LONGEST_WAIT: Duration = Duration::from_millis(100);

/// The clock the kernel stamps file times with (before multigrain timestamps; with them, file
/// times are at least this): the coarse real-time clock.
fn file_clock() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE) {
        Ok(t) => since_epoch(t.tv_sec(), t.tv_nsec()),
        // Never: it exists since 2.6.32. A zero time keeps nothing, which is safe.
        Err(_) => Duration::ZERO,
    }
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

    /// May a digest read when the file clock showed `hashed_at` be reused for this version?
    /// Only if the clock had moved past both times: every later write is stamped at least
    /// `hashed_at`, so it changes the version.
    fn settled_at(&self, hashed_at: Duration) -> bool {
        hashed_at > self.mtime.max(self.ctime)
    }
}

impl DigestCache {
    /// The hex SHA-256 of `path`, whose metadata is `meta`.
    pub(crate) fn digest(&mut self, path: &Path, meta: &fs::Metadata) -> Result<String, SnapError> {
        let mut version = FileVersion::of(meta);
        if let Some(d) = self.known.get(&version) {
            return Ok(d.clone());
        }
        // The clock is read before the content: a write after this moment is stamped at least
        // this, so if the file's times are older, any such write changes the version.
        let mut hashed_at = file_clock();
        if version.size >= WAIT_FOR_AT_LEAST && !version.settled_at(hashed_at) {
            // A big file written this tick: wait for the next one, so this digest is the one
            // kept (instead of hashing it again at the next look).
            let waited = std::time::Instant::now();
            while !version.settled_at(hashed_at) && waited.elapsed() < LONGEST_WAIT {
                std::thread::sleep(Duration::from_millis(1));
                hashed_at = file_clock();
            }
            version = FileVersion::of(&fs::symlink_metadata(path).map_err(io_err(path))?);
            if let Some(d) = self.known.get(&version) {
                return Ok(d.clone());
            }
            hashed_at = file_clock();
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

/// What [`probe_same_tick_rewrites`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewriteProbe {
    /// Rewrites made.
    pub rounds: u32,
    /// Rewrites that kept the file's version (same size, mtime and ctime): the kernel's clock
    /// did not move between the two writes, so only the racily-clean rule stood between the
    /// cache and a stale digest.
    pub same_version: u32,
    /// Digests that did not match the content they were asked for. Must be 0.
    pub stale: u32,
}

/// Writes `rounds` pairs of same-size contents to a file in `dir`, digesting each through one
/// cache right after it is written, and counts what a coarse clock would make go wrong. It is
/// run inside a guest (`labgrade __probe-digest-cache`) to show the cache is safe on that kernel.
pub fn probe_same_tick_rewrites(dir: &Path, rounds: u32) -> Result<RewriteProbe, SnapError> {
    let path = dir.join("labgrade-rewrite-probe");
    let mut cache = DigestCache::default();
    let mut probe = RewriteProbe::default();
    for round in 0..rounds {
        let mut before = None;
        for (i, text) in [b"aaaa", b"bbbb"].into_iter().enumerate() {
            let content = [&text[..], &round.to_le_bytes()].concat();
            fs::write(&path, &content).map_err(io_err(&path))?;
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let version = FileVersion::of(&meta);
            if i == 1 && before == Some(version) {
                probe.same_version += 1;
            }
            before = Some(version);
            if cache.digest(&path, &meta)? != crate::sha256_bytes(&content) {
                probe.stale += 1;
            }
        }
        probe.rounds += 1;
    }
    fs::remove_file(&path).map_err(io_err(&path))?;
    Ok(probe)
}

/// Hex SHA-256 of a file's content, read in 1 MiB pieces.
pub(crate) fn sha256_file(path: &Path) -> Result<String, SnapError> {
    let file = File::open(path).map_err(io_err(path))?;
    crate::sha256_keeping(file, 0)
        .map(|(digest, _, _)| digest)
        .map_err(io_err(path))
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
        // A coarse clock: the file was written at t, hashed while the clock still showed t, then
        // rewritten (same size) in the same tick, so its version does not change. The first
        // digest must not be served.
        let t = Duration::from_secs(1_700_000_000);
        let mut cache = DigestCache::default();
        cache.remember(version(t), t, "stale");
        assert!(cache.known.is_empty(), "a racy digest was kept");
        // Hashed well after the last write: nothing can change without changing the version.
        cache.remember(version(t), t + Duration::from_secs(2), "settled");
        assert_eq!(
            cache.known.get(&version(t)).map(String::as_str),
            Some("settled")
        );
    }

    #[test]
    fn rewrites_in_one_tick_never_get_a_stale_digest_here() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let probe = probe_same_tick_rewrites(dir.path(), 500).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(probe.rounds, 500);
        assert_eq!(probe.stale, 0, "{probe:?}");
    }

    #[test]
    fn times_in_the_future_or_before_1970_are_never_trusted() {
        let t = Duration::from_secs(1_700_000_000);
        assert!(!version(t + Duration::from_secs(5)).settled_at(t));
        assert_eq!(since_epoch(-5, 0), Duration::ZERO);
    }
}
