//! What the checks may ask of the files: does a path exist, as what, and would a clone get it
//! executable. The checks take a [`RepoView`], so they are pure functions over a map in tests
//! and over the disk (and git's index) in the tool.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (or a symlink to one).
    File,
    /// A directory.
    Dir,
}

/// The files as the checks see them. Paths are absolute and lexically normal.
pub trait RepoView {
    /// What is at `path`, if anything.
    fn kind(&self, path: &Path) -> Option<EntryKind>;
    /// Whether a student's clone gets `path` with its exec bit.
    fn executable(&self, path: &Path) -> bool;
}

/// `path` with `.` and `..` resolved lexically (no symlinks followed, nothing read): a link
/// `../x` is resolved the way a browser resolves it.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The disk, with exec bits from git's index when the repository is one.
#[derive(Debug, Default)]
pub struct DiskView {
    /// Absolute path -> executable, for every file git tracks; empty when no git index.
    git_modes: HashMap<PathBuf, bool>,
}

impl DiskView {
    /// Exec bits from file modes only.
    pub fn file_modes() -> DiskView {
        DiskView::default()
    }

    /// Exec bits from the index of the git work tree at `top` (as `git ls-files -s` lists it);
    /// `None` when git cannot list it.
    pub fn git_index(top: &Path) -> Option<DiskView> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(top)
            .args(["ls-files", "-s", "-z"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(DiskView {
            git_modes: parse_ls_files(&String::from_utf8_lossy(&out.stdout), top),
        })
    }

    /// Whether any mode came from git.
    pub fn has_git_modes(&self) -> bool {
        !self.git_modes.is_empty()
    }
}

/// `git ls-files -s -z` output (`MODE OBJECT STAGE\tPATH\0`...) -> absolute path -> executable.
pub fn parse_ls_files(out: &str, top: &Path) -> HashMap<PathBuf, bool> {
    out.split('\0')
        .filter_map(|entry| {
            let (meta, path) = entry.split_once('\t')?;
            let mode = meta.split_whitespace().next()?;
            Some((top.join(path), mode == "100755"))
        })
        .collect()
}

impl RepoView for DiskView {
    fn kind(&self, path: &Path) -> Option<EntryKind> {
        let meta = std::fs::metadata(path).ok()?;
        if meta.is_dir() {
            Some(EntryKind::Dir)
        } else {
            Some(EntryKind::File)
        }
    }

    fn executable(&self, path: &Path) -> bool {
        if let Some(&x) = self.git_modes.get(path) {
            return x;
        }
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o100 != 0)
    }
}

/// A view made of a list, for tests.
#[derive(Debug, Default)]
pub struct MapView {
    /// Path -> (kind, executable).
    pub entries: HashMap<PathBuf, (EntryKind, bool)>,
}

impl MapView {
    /// Adds a file and every directory above it.
    pub fn file(mut self, path: &str, executable: bool) -> MapView {
        let p = PathBuf::from(path);
        let mut dir = p.parent();
        while let Some(d) = dir {
            self.entries
                .entry(d.to_path_buf())
                .or_insert((EntryKind::Dir, false));
            dir = d.parent();
        }
        self.entries.insert(p, (EntryKind::File, executable));
        self
    }
}

impl RepoView for MapView {
    fn kind(&self, path: &Path) -> Option<EntryKind> {
        self.entries.get(path).map(|(k, _)| *k)
    }

    fn executable(&self, path: &Path) -> bool {
        self.entries.get(path).is_some_and(|(_, x)| *x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_resolves_dots_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("a/../../x")), PathBuf::from("../x"));
    }

    #[test]
    fn git_modes_say_executable_for_100755_only() {
        let modes = parse_ls_files(
            "100755 0123 0\ta/run.sh\x00100644 4567 0\ta/lib.sh\x00120000 89ab 0\tlink\0",
            Path::new("/r"),
        );
        assert_eq!(modes.get(Path::new("/r/a/run.sh")), Some(&true));
        assert_eq!(modes.get(Path::new("/r/a/lib.sh")), Some(&false));
        assert_eq!(modes.get(Path::new("/r/link")), Some(&false));
    }
}
