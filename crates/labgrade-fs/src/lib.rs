//! Files others read (reports, results, cache entries) are written beside their final place and
//! renamed into it, so no reader ever sees half of one. The scratch names carry the writer's pid,
//! so what a killed labgrade left can be told from what a live one is writing, and swept.

mod cache_dirs;

pub use cache_dirs::{CacheDir, CacheDirs};

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh scratch path in `dir` for writing `what` (`.WHAT.PID.N.tmp`): unique to this
/// process and call, so concurrent builders of the same entry never share one.
pub fn scratch_path(dir: &Path, what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    dir.join(format!(
        ".{what}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Replaces `path` with `bytes` atomically: a reader sees the old file or the new one, never
/// half of either. A file that existed keeps its permissions; a new one is 0644 (a temporary
/// file starts 0600). The temporary file is removed on every error path, and one a killed
/// labgrade left is swept by [`remove_stale_scratch`].
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, Durability::Synced)
}

/// Like [`write_atomically`], for a file that is only a hint (the timings that order the next
/// run's labs): not synced to disk first, so a run does not wait a disk flush at its end (an
/// fdatasync, 2-5 ms here, 10% of a short run). After a crash it may be lost, never half there.
pub fn write_hint_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, Durability::Hint)
}

/// Whether a replaced file must be on disk before it takes the old one's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Synced,
    Hint,
}

fn replace(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let what = path
        .file_name()
        .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{what}.{}.", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    let permissions = fs::metadata(path).map_or_else(
        |_| std::os::unix::fs::PermissionsExt::from_mode(0o644),
        |m| m.permissions(),
    );
    tmp.as_file().set_permissions(permissions)?;
    if durability == Durability::Synced {
        tmp.as_file().sync_data()?;
    }
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

/// Removes the scratch files and directories in `dir` whose writer is gone.
pub fn remove_stale_scratch(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // From the end: WHAT may itself hold dots (a kernel release).
        let mut parts = name.rsplitn(4, '.');
        let (Some("tmp"), Some(n), Some(pid), Some(what)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let ours = what.starts_with('.') && !n.is_empty() && pid.parse::<u32>().is_ok();
        if ours && !Path::new("/proc").join(pid).exists() {
            tracing::debug!(path = %entry.path().display(), "removing what a killed labgrade left");
            let path = entry.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    fn an_atomic_write_replaces_the_file_and_leaves_no_scratch(
        #[values(write_atomically, write_hint_atomically)] write_atomically: fn(
            &Path,
            &[u8],
        )
            -> std::io::Result<
            (),
        >,
    ) -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("results.json");
        write_atomically(&path, b"old")?;
        write_atomically(&path, b"new")?;
        assert_eq!(fs::read(&path)?, b"new");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path)?.permissions().mode() & 0o777,
            0o644,
            "a new file is 0644"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
        write_atomically(&path, b"newer")?;
        assert_eq!(
            fs::metadata(&path)?.permissions().mode() & 0o777,
            0o640,
            "kept"
        );
        let names: Vec<_> = fs::read_dir(dir.path())?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("results.json")]);
        // Into a directory that does not exist: an error, and nothing half-written anywhere.
        assert!(write_atomically(&dir.path().join("no/such/dir/x"), b"x").is_err());
        Ok(())
    }

    #[test]
    fn what_a_dead_writer_left_is_swept_and_the_rest_stays() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let dead_file = dir.path().join(".xfs.999999999.0.tmp");
        let dead_dir = dir.path().join(".initramfs-6.1.0-50-amd64.999999999.3.tmp");
        let alive = scratch_path(dir.path(), "xfs");
        let other = dir.path().join("xfs-0123.img");
        fs::write(&dead_file, "")?;
        fs::create_dir(&dead_dir)?;
        fs::write(dead_dir.join("inside"), "")?;
        fs::write(&alive, "")?;
        fs::write(&other, "")?;
        remove_stale_scratch(dir.path());
        assert!(
            !dead_file.exists() && !dead_dir.exists(),
            "a dead writer's scratch goes"
        );
        assert!(alive.exists() && other.exists(), "the rest stays");
        assert_ne!(
            scratch_path(dir.path(), "xfs"),
            alive,
            "each call a new name"
        );
        Ok(())
    }
}
