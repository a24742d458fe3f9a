//! Where labgrade keeps what is slow to make: one root, one directory per kind of thing in it.
//! Kernels, disk images, initramfs images and timings all live here, so `LABGRADE_CACHE_DIR`
//! moves all of them and no crate invents a path of its own.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// What the cache holds, one directory each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheDir {
    /// Unpacked kernels and their index (the kernel crate's own layout).
    Kernels,
    /// Formatted disk images and filesystem probes, copied per session.
    Disks,
    /// Initramfs images built for a kernel and an agent.
    Initramfs,
    /// How long labs and guests took last time, for ordering the next run.
    Timings,
    /// Container images labgrade builds (the busybox rootfs tar the engine labs import).
    Images,
    /// Working directories of Vagrant machines labgrade brings up (their Vagrantfile, state).
    Vagrant,
    /// Verdicts of `bash -n` and shellcheck on course scripts, by tool version and content
    /// digest (shellcheck takes seconds over a whole course; a script that did not change is
    /// not checked again).
    ScriptChecks,
}

impl CacheDir {
    /// The directory's name under the cache root.
    pub fn name(self) -> &'static str {
        match self {
            CacheDir::Kernels => "kernels",
            CacheDir::Disks => "disks",
            CacheDir::Initramfs => "initramfs",
            CacheDir::Timings => "timings",
            CacheDir::Images => "images",
            CacheDir::Vagrant => "vagrant",
            CacheDir::ScriptChecks => "script-checks",
        }
    }
}

/// The cache's root, and the directories under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDirs {
    root: PathBuf,
}

impl CacheDirs {
    /// A cache rooted at `root`.
    pub fn at(root: PathBuf) -> CacheDirs {
        CacheDirs { root }
    }

    /// The cache every labgrade command shares: `$LABGRADE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/labgrade`, else `~/.cache/labgrade`.
    pub fn default_location() -> CacheDirs {
        CacheDirs::at(location(|k| std::env::var_os(k)))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `what` is kept (not created).
    pub fn dir(&self, what: CacheDir) -> PathBuf {
        self.root.join(what.name())
    }

    /// Like [`CacheDirs::dir`], but a directory this user can write, created: the cache's own,
    /// or, when that cannot be written (an unprivileged run that kept root's HOME), one under a
    /// private per-user directory in the temp dir. What is kept there gets mounted and booted,
    /// so that directory must be this user's alone (mode 0700); any other is refused.
    pub fn writable(&self, what: CacheDir) -> std::io::Result<PathBuf> {
        let dir = self.dir(what);
        if fs::create_dir_all(&dir).is_ok()
            && nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok()
        {
            return Ok(dir);
        }
        let private = private_dir(&std::env::temp_dir())?;
        tracing::debug!(cache = %dir.display(), instead = %private.display(), "cache not writable");
        let dir = private.join(what.name());
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// `labgrade-UID` in `tmp`, made with mode 0700; refused unless it is this user's and private,
/// since another local user could have made it first.
fn private_dir(tmp: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = nix::unistd::geteuid().as_raw();
    let dir = tmp.join(format!("labgrade-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private directory of uid {uid}; remove it or set LABGRADE_CACHE_DIR",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// The cache root from environment lookups (see [`CacheDirs::default_location`]).
fn location(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("LABGRADE_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return dir.join("labgrade");
    }
    if let Some(home) = set("HOME") {
        return home.join(".cache").join("labgrade");
    }
    std::env::temp_dir().join("labgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_cache_dir_is_private_or_refused() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let dir = private_dir(tmp.path())?;
        assert_eq!(fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        assert_eq!(private_dir(tmp.path())?, dir, "found again");
        // Someone else's (here: one anybody can write) is never used.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
        let err = private_dir(tmp.path()).err().map(|e| e.kind());
        assert_eq!(err, Some(std::io::ErrorKind::PermissionDenied));
        Ok(())
    }

    #[test]
    fn cache_location_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            location(env(&[("LABGRADE_CACHE_DIR", "/c"), ("HOME", "/h")])),
            PathBuf::from("/c")
        );
        assert_eq!(
            location(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/labgrade")
        );
        assert_eq!(
            location(env(&[
                ("LABGRADE_CACHE_DIR", ""),
                ("XDG_CACHE_HOME", "rel"),
                ("HOME", "/h")
            ])),
            PathBuf::from("/h/.cache/labgrade")
        );
    }

    #[test]
    fn every_kind_has_its_own_directory_under_the_root() {
        let c = CacheDirs::at(PathBuf::from("/c"));
        let all = [
            CacheDir::Kernels,
            CacheDir::Disks,
            CacheDir::Initramfs,
            CacheDir::Timings,
            CacheDir::Images,
            CacheDir::Vagrant,
        ];
        let dirs: std::collections::HashSet<PathBuf> = all.iter().map(|k| c.dir(*k)).collect();
        assert_eq!(dirs.len(), all.len());
        assert!(dirs.iter().all(|d| d.parent() == Some(Path::new("/c"))));
    }
}
