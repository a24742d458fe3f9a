//! Fetches in progress: scratch directories that become a kernel only by rename, and the sweep
//! of those a dead fetch left.

use super::*;

impl KernelCache {
    /// `.KIND-RELEASE-PID-N` in the cache root: on the same filesystem, so rename works.
    pub(super) fn scratch_path(&self, kind: &str, release: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(format!(".{kind}-{release}-{}-{n}", std::process::id()))
    }

    /// A fresh scratch directory, removed when dropped unless it was renamed away.
    pub(super) fn scratch(&self, kind: &str, release: &str) -> Result<Scratch, KernelError> {
        let path = self.scratch_path(kind, release);
        std::fs::create_dir_all(&path).map_err(KernelError::io("create", &path))?;
        Ok(Scratch { path })
    }

    /// Removes scratch directories left by fetches that died (older than an hour).
    pub(super) fn sweep_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !SCRATCH_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old || owner_is_gone(&name) {
                tracing::debug!(dir = %entry.path().display(), "removing a stale scratch dir");
                let path = entry.path();
                if path.is_dir() {
                    let _ = std::fs::remove_dir_all(&path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

/// Was the scratch directory `.KIND-RELEASE-PID-N` made by a process that has since died?
pub(super) fn owner_is_gone(name: &str) -> bool {
    let mut fields = name.rsplitn(3, '-');
    let (Some(_n), Some(pid), Some(_)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    match pid.parse::<u32>() {
        Ok(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

/// A scratch directory, removed on drop unless it has been renamed away.
#[derive(Debug)]
pub(super) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// After a rename the path is gone (or someone else's): removing it would be wrong.
    pub(super) fn disarm_if_moved(self) {
        if self.path.exists() {
            drop(self);
        } else {
            std::mem::forget(self);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
