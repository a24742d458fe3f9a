//! The guest's locales, as one archive.
//!
//! Labs run with `LC_ALL=C.UTF-8`, as a student's UTF-8 terminal does. Debian keeps C.UTF-8 as a
//! directory of a dozen files, and every program that calls `setlocale` opens and maps each of
//! them: about 25 ms per command under TCG. From a `locale-archive` (one file, mapped once)
//! the same locale costs what `LC_ALL=C` does. So labgrade adds the host's locales, unchanged,
//! to an archive (with the host's own `localedef --add-to-archive`) and the guest binds it over
//! `/usr/lib/locale`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const LOCALES: &str = "/usr/lib/locale";

/// A directory holding a `locale-archive` with every locale of the host, made once in
/// `cache_dir`; `None` (the guest keeps the host's files) when it cannot be made.
pub(crate) fn locale_dir(cache_dir: &Path) -> Option<PathBuf> {
    let entries: Vec<fs::DirEntry> = fs::read_dir(LOCALES).ok()?.flatten().collect();
    let mut key = crate::initramfs::fnv1a(b"locale");
    for e in &entries {
        let meta = e.metadata().ok()?;
        key ^= crate::initramfs::fnv1a(e.file_name().as_encoded_bytes())
            .wrapping_add(meta.mtime() as u64)
            .wrapping_add(meta.size())
            .rotate_left(7);
    }
    let dir = cache_dir.join(format!("locale-{key:016x}"));
    if dir.join("locale-archive").is_file() {
        return Some(dir);
    }
    match build(&entries, cache_dir, &dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::debug!(error = %e, "no locale archive for the guest; it reads the locale files");
            None
        }
    }
}

fn build(entries: &[fs::DirEntry], cache_dir: &Path, dir: &Path) -> std::io::Result<()> {
    let prefix = labgrade_fs::scratch_path(cache_dir, "locale");
    let _ = fs::remove_dir_all(&prefix);
    let archive_dir = prefix.join("usr/lib/locale");
    fs::create_dir_all(&archive_dir)?;
    let result = (|| {
        let host_archive = Path::new(LOCALES).join("locale-archive");
        if host_archive.is_file() {
            fs::copy(&host_archive, archive_dir.join("locale-archive"))?;
        }
        for e in entries {
            if !e.path().is_dir() {
                continue;
            }
            let out = Command::new("localedef")
                .arg("--prefix")
                .arg(&prefix)
                .arg("--add-to-archive")
                .arg(e.path())
                .output()?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "localedef --add-to-archive {}: {}",
                    e.path().display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        if !archive_dir.join("locale-archive").is_file() {
            return Err(std::io::Error::other("the host has no locales"));
        }
        match fs::rename(&archive_dir, dir) {
            // Another labgrade made it meanwhile.
            Err(_) if dir.join("locale-archive").is_file() => Ok(()),
            other => other,
        }
    })();
    let _ = fs::remove_dir_all(&prefix);
    result
}
