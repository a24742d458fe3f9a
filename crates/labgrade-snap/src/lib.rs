//! Normalised snapshots of directory trees.
//!
//! An overlay upper dir is where a lab's effects land: copied-up files, whiteouts, opaque
//! directories, metacopy inodes. [`TreeSnapshot`] records what a reader of the lesson cares about
//! (path, type, mode, owner, size, device numbers, overlay xattrs and a content digest) and leaves
//! out what changes from run to run (times, inode numbers, link counts, file handles), so the
//! rendered text can be compared with insta across runs and across kernels.

use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// The type of a directory entry, as `stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A character device; overlayfs whiteouts are character devices 0:0.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

impl EntryKind {
    /// The lowercase word used in snapshots and in lab files (`kind = "dir"`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Char => "char",
            EntryKind::Block => "block",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }

    fn of(ft: fs::FileType) -> EntryKind {
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
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An overlayfs extended attribute (`trusted.overlay.*` as root, `user.overlay.*` with `userxattr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayXattr {
    /// The full name, e.g. `trusted.overlay.opaque`.
    pub name: String,
    /// The value, or a stand-in where it differs on every run.
    pub value: XattrValue,
}

impl OverlayXattr {
    /// The name without its namespace prefix: `opaque`, `metacopy`, `origin`...
    pub fn short_name(&self) -> &str {
        self.name
            .strip_prefix("trusted.overlay.")
            .or_else(|| self.name.strip_prefix("user.overlay."))
            .unwrap_or(&self.name)
    }
}

/// An xattr value as a snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XattrValue {
    /// Printable text, kept as is (`y` for opaque, a path for redirect, empty for metacopy).
    Text(String),
    /// A file handle, UUID or other binary value that changes from run to run: only its length.
    Redacted {
        /// Length of the real value in bytes.
        len: usize,
    },
}

/// Overlay xattrs whose values encode file handles or UUIDs: present or not is a fact, the bytes
/// are not.
const VOLATILE_XATTRS: &[&str] = &["origin", "uuid", "upper", "fh"];

impl XattrValue {
    fn normalise(short_name: &str, raw: &[u8]) -> XattrValue {
        if VOLATILE_XATTRS.contains(&short_name) {
            return XattrValue::Redacted { len: raw.len() };
        }
        match std::str::from_utf8(raw) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => XattrValue::Text(s.to_owned()),
            _ => XattrValue::Redacted { len: raw.len() },
        }
    }
}

impl fmt::Display for XattrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XattrValue::Text(s) => write!(f, "{s:?}"),
            XattrValue::Redacted { len } => write!(f, "[{len} bytes]"),
        }
    }
}

/// What a snapshot (and a check) knows about one path. Times, inode numbers and link counts are
/// deliberately absent: they change from run to run, or from kernel to kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the snapshot root, `.` for the root itself.
    pub path: String,
    /// File type.
    pub kind: EntryKind,
    /// Permission bits, including setuid / setgid / sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner as the reader sees it (inside a user namespace: the mapped id).
    pub uid: u32,
    /// Group as the reader sees it.
    pub gid: u32,
    /// Size in bytes, for regular files and symlinks only (directory sizes vary by filesystem).
    pub size: Option<u64>,
    /// Major and minor device number, for character and block devices.
    pub rdev: Option<(u32, u32)>,
    /// Target of a symlink.
    pub link_target: Option<String>,
    /// Overlay xattrs, sorted by name.
    pub xattrs: Vec<OverlayXattr>,
    /// Hex SHA-256 of a regular file's content.
    pub sha256: Option<String>,
}

impl Entry {
    /// A whiteout is a character device with device number 0:0. Never judged by link count,
    /// which differs between filesystems and kernels.
    pub fn is_whiteout(&self) -> bool {
        self.kind == EntryKind::Char && self.rdev == Some((0, 0))
    }

    /// An opaque directory hides everything below it in the lower layers.
    pub fn is_opaque(&self) -> bool {
        self.kind == EntryKind::Dir && self.xattr("opaque").is_some_and(|v| v == "y")
    }

    /// The text value of an overlay xattr by short name (`opaque`, `metacopy`...), whichever
    /// namespace (trusted or user) it lives in. Redacted values read as an empty string.
    pub fn xattr(&self, short_name: &str) -> Option<&str> {
        self.xattrs
            .iter()
            .find(|x| x.short_name() == short_name)
            .map(|x| match &x.value {
                XattrValue::Text(s) => s.as_str(),
                XattrValue::Redacted { .. } => "",
            })
    }

    /// Reads one path without following a final symlink. `name` is what the entry is called in
    /// the output (a path relative to some root). A file whose identity and times have not
    /// changed since `cache` last hashed it is not read again (a 50 MiB layer file is otherwise
    /// hashed at every check).
    pub fn read_cached(
        path: &Path,
        name: &str,
        cache: &mut DigestCache,
    ) -> Result<Entry, SnapError> {
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        let kind = EntryKind::of(meta.file_type());
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
            Some(cache.digest(path, &meta)?)
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

    /// One snapshot line: `path  kind mode uid:gid [size=] [rdev=] [-> target] [xattrs] [sha256=]`.
    pub fn render_line(&self) -> String {
        let mut line = format!(
            "{} {} {:04o} {}:{}",
            self.path, self.kind, self.mode, self.uid, self.gid
        );
        if self.is_whiteout() {
            line.push_str(" whiteout");
        } else if let Some((major, minor)) = self.rdev {
            let _ = write!(line, " rdev={major}:{minor}");
        }
        if let Some(size) = self.size {
            let _ = write!(line, " size={size}");
        }
        if let Some(target) = &self.link_target {
            let _ = write!(line, " -> {target}");
        }
        for x in &self.xattrs {
            let _ = write!(line, " {}={}", x.name, x.value);
        }
        if let Some(digest) = &self.sha256 {
            let _ = write!(line, " sha256={}", &digest[..digest.len().min(16)]);
        }
        line
    }
}

/// Digests already computed, keyed by what changes whenever content can have changed: device,
/// inode, size, and modification and change times to the nanosecond.
#[derive(Debug, Default)]
pub struct DigestCache {
    known: std::collections::HashMap<FileVersion, String>,
}

/// Device, inode, size, mtime (s, ns) and ctime (s, ns): a file whose content can have changed
/// has a different version.
type FileVersion = (u64, u64, u64, i64, i64, i64, i64);

impl DigestCache {
    fn digest(&mut self, path: &Path, meta: &fs::Metadata) -> Result<String, SnapError> {
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        );
        if let Some(d) = self.known.get(&key) {
            return Ok(d.clone());
        }
        let d = sha256_file(path)?;
        self.known.insert(key, d.clone());
        Ok(d)
    }
}

/// Hex SHA-256 of a file's content, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> Result<String, SnapError> {
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

/// A whole tree, entries sorted by path, the root first as `.`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeSnapshot {
    /// Every entry below the root, depth first in byte order of names.
    pub entries: Vec<Entry>,
}

impl TreeSnapshot {
    /// Walks `root` without following symlinks or crossing into other filesystems' mounts.
    pub fn take(root: &Path) -> Result<TreeSnapshot, SnapError> {
        TreeSnapshot::take_cached(root, &mut DigestCache::default())
    }

    /// Like [`TreeSnapshot::take`], reusing digests from `cache`.
    pub fn take_cached(root: &Path, cache: &mut DigestCache) -> Result<TreeSnapshot, SnapError> {
        let mut entries = Vec::new();
        let root_dev = fs::symlink_metadata(root).map_err(io_err(root))?.dev();
        walk(root, ".", root_dev, cache, &mut entries)?;
        Ok(TreeSnapshot { entries })
    }

    /// The normalised text compared by insta: one line per entry.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&e.render_line());
            out.push('\n');
        }
        out
    }
}

fn walk(
    dir: &Path,
    name: &str,
    root_dev: u64,
    cache: &mut DigestCache,
    out: &mut Vec<Entry>,
) -> Result<(), SnapError> {
    let entry = Entry::read_cached(dir, name, cache)?;
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
            out.push(Entry::read_cached(&path, &child_name, cache)?);
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
        let snap = TreeSnapshot::take(root)?;
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
    fn a_whiteout_is_char_0_0_and_never_judged_by_link_count() {
        let mut e = Entry {
            path: "x".into(),
            kind: EntryKind::Char,
            mode: 0,
            uid: 0,
            gid: 0,
            size: None,
            rdev: Some((0, 0)),
            link_target: None,
            xattrs: vec![],
            sha256: None,
        };
        assert!(e.is_whiteout());
        assert_eq!(e.render_line(), "x char 0000 0:0 whiteout");
        e.rdev = Some((1, 3));
        assert!(!e.is_whiteout());
        assert_eq!(e.render_line(), "x char 0000 0:0 rdev=1:3");
    }

    #[test]
    fn volatile_xattrs_are_redacted_and_text_ones_kept() {
        assert_eq!(
            XattrValue::normalise("origin", b"\x00\xfb\x21"),
            XattrValue::Redacted { len: 3 }
        );
        assert_eq!(
            XattrValue::normalise("opaque", b"y"),
            XattrValue::Text("y".into())
        );
        assert_eq!(
            XattrValue::normalise("metacopy", b""),
            XattrValue::Text(String::new())
        );
        assert_eq!(
            XattrValue::normalise("metacopy", b"\x00\x01"),
            XattrValue::Redacted { len: 2 }
        );
    }

    #[test]
    fn the_digest_cache_never_serves_a_stale_digest() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("f");
        fs::write(&f, "aaaa")?;
        let mut cache = DigestCache::default();
        let first = Entry::read_cached(&f, "f", &mut cache)?;
        assert_eq!(Entry::read_cached(&f, "f", &mut cache)?, first);
        // Same size, new content: the change time moves, so the digest is computed again.
        fs::write(&f, "bbbb")?;
        let second = Entry::read_cached(&f, "f", &mut cache)?;
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
