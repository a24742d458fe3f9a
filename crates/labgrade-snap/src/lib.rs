//! Normalised snapshots of directory trees.
//!
//! An overlay upper dir is where a lab's effects land: copied-up files, whiteouts, opaque
//! directories, metacopy inodes. [`TreeSnapshot`] records what a reader of the lesson cares about
//! (path, type, mode, owner, size, device numbers, overlay xattrs and a content digest) and leaves
//! out what changes from run to run (times, inode numbers, link counts, file handles), so the
//! rendered text can be compared with insta across runs and across kernels.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use labgrade_proto::{Entry, EntryKind, OverlayXattr, TreeSnapshot, XattrValue};
use sha2::{Digest, Sha256};

mod digest;

pub use digest::{DigestCache, RewriteProbe, probe_same_tick_rewrites};

/// Why a tree or a path could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    /// The path itself, or one of its entries, could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapError + '_ {
    move |source| SnapError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The kind of entry a file type is.
fn kind_of(ft: fs::FileType) -> EntryKind {
    if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_char_device() {
        EntryKind::Char
    } else if ft.is_block_device() {
        EntryKind::Block
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_socket() {
        EntryKind::Socket
    } else {
        EntryKind::File
    }
}

/// Reads one path without following a final symlink. `name` is what the entry is called in
/// the output (a path relative to some root). A file whose identity and times have not
/// changed since `cache` last hashed it is not read again (a 50 MiB layer file is otherwise
/// hashed at every check).
pub fn read_entry(path: &Path, name: &str, cache: &mut DigestCache) -> Result<Entry, SnapError> {
    read_entry_with(path, name, |meta| cache.digest(path, meta).map(Some))
}

/// Like [`read_entry`], with a regular file's digest made by `digest` (given its metadata), or
/// left out where it returns `None`: a reader of a tree someone else made decides what it dares
/// open (never a FIFO, never a file of /proc that blocks) and how much of it it reads.
pub fn read_entry_with(
    path: &Path,
    name: &str,
    digest: impl FnOnce(&fs::Metadata) -> Result<Option<String>, SnapError>,
) -> Result<Entry, SnapError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    let kind = kind_of(meta.file_type());
    let rdev = matches!(kind, EntryKind::Char | EntryKind::Block).then(|| {
        let dev = meta.rdev();
        (libc::major(dev), libc::minor(dev))
    });
    let size = matches!(kind, EntryKind::File | EntryKind::Symlink).then(|| meta.len());
    let link_target = if kind == EntryKind::Symlink {
        Some(
            fs::read_link(path)
                .map_err(io_err(path))?
                .to_string_lossy()
                .into_owned(),
        )
    } else {
        None
    };
    let sha256 = if kind == EntryKind::File {
        digest(&meta)?
    } else {
        None
    };
    Ok(Entry {
        path: name.to_owned(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
        rdev,
        link_target,
        xattrs: overlay_xattrs(path)?,
        sha256,
    })
}

/// Streams `reader` through SHA-256 and keeps its first `keep` bytes: one pass gives a file's
/// digest and, when it is small enough, its text. Returns the hex digest, the kept bytes and
/// the bytes read in all.
pub fn sha256_keeping(
    mut reader: impl io::Read,
    keep: usize,
) -> io::Result<(String, Vec<u8>, u64)> {
    let mut hasher = Sha256::new();
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        let room = keep.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), kept, total))
}

/// Hex SHA-256 of bytes in memory, for expected values computed from lab files.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn overlay_xattrs(path: &Path) -> Result<Vec<OverlayXattr>, SnapError> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        // Filesystems without xattr support simply have none.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")) {
            continue;
        }
        // An xattr can vanish between list and get; that is not an error for a snapshot.
        let Some(raw) = xattr::get(path, name).map_err(io_err(path))? else {
            continue;
        };
        let mut x = OverlayXattr {
            name: name.to_owned(),
            value: XattrValue::Text(String::new()),
        };
        x.value = XattrValue::normalise(x.short_name(), &raw);
        out.push(x);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Walks `root` without following symlinks or crossing into other filesystems' mounts.
pub fn take(root: &Path) -> Result<TreeSnapshot, SnapError> {
    take_cached(root, &mut DigestCache::default())
}

/// Like [`take`], reusing digests from `cache`.
pub fn take_cached(root: &Path, cache: &mut DigestCache) -> Result<TreeSnapshot, SnapError> {
    let mut entries = Vec::new();
    let root_dev = fs::symlink_metadata(root).map_err(io_err(root))?.dev();
    walk(root, ".", root_dev, cache, &mut entries)?;
    Ok(TreeSnapshot { entries })
}

fn walk(
    dir: &Path,
    name: &str,
    root_dev: u64,
    cache: &mut DigestCache,
    out: &mut Vec<Entry>,
) -> Result<(), SnapError> {
    let entry = read_entry(dir, name, cache)?;
    let is_dir = entry.kind == EntryKind::Dir;
    out.push(entry);
    if !is_dir {
        return Ok(());
    }
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|r| r.map(|d| d.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    children.sort();
    for child in children {
        let path = dir.join(&child);
        let child_name = if name == "." {
            child.to_string_lossy().into_owned()
        } else {
            format!("{name}/{}", child.to_string_lossy())
        };
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() && meta.dev() != root_dev {
            // A mount point inside the tree (a volume, say): record it, do not descend.
            out.push(read_entry(&path, &child_name, cache)?);
            continue;
        }
        walk(&path, &child_name, root_dev, cache, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn renders_files_dirs_and_symlinks_without_times_or_inodes()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir(root.join("etc"))?;
        fs::write(root.join("etc/app.conf"), "modified by container\n")?;
        fs::set_permissions(root.join("etc/app.conf"), fs::Permissions::from_mode(0o640))?;
        fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        symlink("etc/app.conf", root.join("link"))?;
        let snap = take(root)?;
        let uid = nix_uid(root)?;
        let text = snap.render().replace(&format!(" {uid}:{uid}"), " [owner]");
        insta::assert_snapshot!(text, @r"
        . dir 0700 [owner]
        etc dir 0755 [owner]
        etc/app.conf file 0640 [owner] size=22 sha256=c09f33ec4f2b4d22
        link symlink 0777 [owner] size=12 -> etc/app.conf
        ");
        Ok(())
    }

    fn nix_uid(p: &Path) -> io::Result<u32> {
        Ok(fs::metadata(p)?.uid())
    }

    #[test]
    fn the_digest_cache_never_serves_a_stale_digest() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("f");
        fs::write(&f, "aaaa")?;
        let mut cache = DigestCache::default();
        let first = read_entry(&f, "f", &mut cache)?;
        assert_eq!(read_entry(&f, "f", &mut cache)?, first);
        // Same size, new content: the change time moves, so the digest is computed again.
        fs::write(&f, "bbbb")?;
        let second = read_entry(&f, "f", &mut cache)?;
        assert_eq!(
            second.sha256.as_deref(),
            Some(sha256_bytes(b"bbbb").as_str())
        );
        Ok(())
    }

    #[test]
    fn sha256_matches_the_known_digest_of_abc() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
