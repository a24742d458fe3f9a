//! What is known about one path, and a whole tree of them: the typed facts a snapshot and a check
//! share. Times, inode numbers and link counts are deliberately absent: they change from run to
//! run, or from kernel to kernel. Reading them from a filesystem is `labgrade-snap`'s job.

use std::fmt::{self, Write as _};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The type of a directory entry, as `stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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
    /// Every kind, for parsing lab files and listing choices in errors.
    pub const ALL: [EntryKind; 7] = [
        EntryKind::File,
        EntryKind::Dir,
        EntryKind::Symlink,
        EntryKind::Char,
        EntryKind::Block,
        EntryKind::Fifo,
        EntryKind::Socket,
    ];

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
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An overlayfs extended attribute (`trusted.overlay.*` as root, `user.overlay.*` with `userxattr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// The value a snapshot keeps for the raw bytes of the xattr `short_name`.
    pub fn normalise(short_name: &str, raw: &[u8]) -> XattrValue {
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

/// What a snapshot (and a check) knows about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

    /// Everything a snapshot shows but the path, as text: `kind mode uid:gid [whiteout | rdev=]
    /// [size=] [-> target] [xattrs] [sha256=]`. Two entries with the same path differ in a
    /// snapshot exactly when these differ.
    pub fn render_facts(&self) -> String {
        let mut line = format!("{} {:04o} {}:{}", self.kind, self.mode, self.uid, self.gid);
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

    /// One snapshot line: the path, then [`Entry::render_facts`].
    pub fn render_line(&self) -> String {
        format!("{} {}", self.path, self.render_facts())
    }
}

/// A whole tree, entries sorted by path, the root first as `.`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TreeSnapshot {
    /// Every entry below the root, depth first in byte order of names.
    pub entries: Vec<Entry>,
}

impl TreeSnapshot {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
