//! Reading what a sandboxed task left, as the student could and no further.
//!
//! The agent is real root; the tree it reads was made by hostile code. So every fact is read in
//! a forked child that first becomes what the student was (the sandbox's uid, root only inside
//! the sandbox's user namespace), then resolves each path from `$LAB` with `openat2`, refusing
//! symlinks, magic links and `..` out of it. A bind mount of `/etc/shadow` onto a checked file
//! is then read with the student's rights (refused), a symlink to `/root` is not followed, and a
//! file that is not data (a FIFO, a device, anything on /proc or /sys) is described, never
//! opened for reading. Every read and listing is bounded, and the child is killed at a
//! deadline: a path that never answers costs the grader [`READ_DEADLINE`], not a hang.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::statfs::{FsType, fstatfs};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pipe2};

use labgrade_proto::options::{split_escaped, unescape};
use labgrade_proto::{MountEntry, PathFacts, TEXT_LIMIT};
use labgrade_snap::SnapError;

/// How long reading one task's facts may take before the reader is killed and every path not
/// yet answered is reported unreadable (the student's doing: nothing of the grader's blocks).
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Most names of a directory listed; past it the listing says it was cut.
pub(crate) const MAX_CHILDREN: usize = 10_000;

/// Largest file hashed; a bigger one is described by its size alone.
const MAX_HASHED: u64 = 256 << 20;

/// Most bytes of facts one reader may send back (text of content checks, escaped as JSON).
const MAX_REPLY: usize = 256 << 20;

/// Filesystems whose regular files hold data a lab made and can be read without side effects:
/// tmpfs, ramfs, overlay, ext2/3/4, XFS, btrfs, f2fs. Anything else (proc, sysfs, debugfs,
/// FUSE, 9p of the host...) is described, never read.
const DATA_FILESYSTEMS: [i64; 7] = [
    0x0102_1994, // tmpfs
    0x8584_58f6, // ramfs
    0x794c_7630, // overlay
    0xef53,      // ext2/3/4
    0x5846_5342, // xfs
    0x9123_683e, // btrfs
    0xf2f5_2010, // f2fs
];

/// Who the reader becomes before it resolves anything.
#[derive(Debug)]
pub(crate) struct StudentView {
    /// The sandbox's root directory (its keeper's `/proc/PID/root`), opened by the agent.
    pub root: OwnedFd,
    /// The sandbox's user namespace, if it has one of its own.
    pub user_ns: Option<OwnedFd>,
    /// The uid (and gid) the sandbox's root is outside, when the agent is real root.
    pub uid: Option<u32>,
}

/// `$LAB` relative to the sandbox's root.
fn lab_in_root() -> &'static str {
    crate::LAB_DIR.trim_start_matches('/')
}

/// Reads `paths` (relative to `$LAB`) as the student could, the text of those in `text_of`.
/// Never fails and never blocks past [`READ_DEADLINE`]: a path that could not be read says why.
pub(crate) fn read_facts(
    view: &StudentView,
    paths: &[String],
    text_of: &[String],
) -> Vec<PathFacts> {
    let unread = |why: &str| -> Vec<PathFacts> {
        paths
            .iter()
            .map(|p| PathFacts {
                path: p.clone(),
                entry: None,
                text: None,
                children: None,
                error: Some(why.to_owned()),
            })
            .collect()
    };
    match in_child(view, READ_DEADLINE, |view| {
        let facts = read_all(view, paths, text_of);
        serde_json::to_vec(&facts).unwrap_or_default()
    }) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| unread(&format!("the grader's reader sent no facts ({e})"))),
        Err(why) => unread(&why),
    }
}

/// Runs `work` in a forked child that has become the student first; returns what it wrote, or
/// why there is nothing (killed at `deadline`, could not drop privilege...).
fn in_child(
    view: &StudentView,
    deadline: Duration,
    work: impl FnOnce(&StudentView) -> Vec<u8>,
) -> Result<Vec<u8>, String> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot make a pipe: {e}"))?;
    // SAFETY: the agent is single-threaded; the child only computes, writes and `_exit`s.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(r);
            let bytes = match become_student(view) {
                Ok(()) => work(view),
                Err(e) => {
                    let mut b = b"E".to_vec();
                    b.extend_from_slice(e.as_bytes());
                    b
                }
            };
            let mut out = File::from(w);
            let _ = std::io::Write::write_all(&mut out, &bytes);
            // SAFETY: ends the forked child without running the agent's destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(format!("cannot fork the fact reader: {e}")),
    };
    drop(w);
    let result = drain(&r, deadline);
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    let bytes = result?;
    match bytes.first() {
        Some(b'E') => Err(format!(
            "the grader could not take the student's identity to read its files: {}",
            String::from_utf8_lossy(&bytes[1..])
        )),
        _ => Ok(bytes),
    }
}

/// Reads the pipe to its end, at most [`MAX_REPLY`] bytes, until `deadline`.
fn drain(r: &OwnedFd, deadline: Duration) -> Result<Vec<u8>, String> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "reading the task's files did not finish in {} s (something the task left \
                 never answers); the rest was not read",
                deadline.as_secs()
            ));
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("cannot poll the fact reader: {e}")),
        }
        match nix::unistd::read(r, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() + n > MAX_REPLY {
                    return Err(format!(
                        "the facts to read exceed {} MiB; not read",
                        MAX_REPLY >> 20
                    ));
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(format!("cannot read the fact reader: {e}")),
        }
    }
}

/// In the child: the sandbox's uid, then its user namespace (root there, with no right over
/// anything the host owns).
fn become_student(view: &StudentView) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if let Some(uid) = view.uid {
        let id = nix::unistd::Uid::from_raw(uid);
        let gid = nix::unistd::Gid::from_raw(uid);
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
        nix::unistd::setresuid(id, id, id).map_err(|e| format!("setresuid: {e}"))?;
    }
    if let Some(ns) = &view.user_ns {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWUSER).map_err(|e| format!("setns: {e}"))?;
    }
    Ok(())
}

/// Resolution that never leaves the directory it starts from: no symlinks, no magic links, no
/// `..` above it.
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn open_dir_beneath(dir: impl AsFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        dir,
        rel,
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(beneath()),
    )
}

fn read_all(view: &StudentView, paths: &[String], text_of: &[String]) -> Vec<PathFacts> {
    let lab = open_dir_beneath(&view.root, Path::new(lab_in_root()));
    paths
        .iter()
        .map(|p| {
            let mut facts = PathFacts {
                path: p.clone(),
                entry: None,
                text: None,
                children: None,
                error: None,
            };
            match &lab {
                Ok(lab) => inspect(lab, p, text_of.contains(p), &mut facts),
                Err(e) => facts.error = Some(format!("$LAB cannot be opened: {}", errno_words(*e))),
            }
            facts
        })
        .collect()
}

/// What an errno means for a path a student left, in words.
fn errno_words(e: Errno) -> String {
    match e {
        Errno::ELOOP => "it goes through a symbolic link, which is not followed".into(),
        Errno::EXDEV => "it leads out of $LAB, which is not followed".into(),
        Errno::EACCES | Errno::EPERM => "permission denied (to the student too)".into(),
        other => other.desc().to_owned(),
    }
}

/// Facts about `rel` below `lab`, filled into `facts`.
fn inspect(lab: &OwnedFd, rel: &str, with_text: bool, facts: &mut PathFacts) {
    let path = Path::new(rel);
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        // `$LAB` itself, `.` or a path ending in `..`: read it as a directory of its own.
        _ => (path, OsStr::new(".")),
    };
    let dir = match open_dir_beneath(lab, parent) {
        Ok(d) => d,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return,
        Err(e) => {
            facts.error = Some(format!("cannot read {rel}: {}", errno_words(e)));
            return;
        }
    };
    if let Err(e) = nix::unistd::fchdir(&dir) {
        facts.error = Some(format!("cannot read {rel}: {}", errno_words(e)));
        return;
    }
    let name = Path::new(name);
    let mut text = None;
    let mut note = None;
    let entry = labgrade_snap::read_entry_with(name, rel, |meta| {
        let (digest, t, n) = read_file(name, meta, with_text);
        text = t;
        note = n;
        Ok(digest)
    });
    match entry {
        Ok(entry) => {
            if entry.kind == labgrade_proto::EntryKind::Dir {
                match list(name) {
                    Ok((names, cut)) => {
                        facts.children = Some(names);
                        if cut {
                            note = Some(format!(
                                "{rel} has more than {MAX_CHILDREN} entries; only the first \
                                 {MAX_CHILDREN} (by name) were read"
                            ));
                        }
                    }
                    Err(e) => note = Some(format!("cannot list {rel}: {}", errno_words(e))),
                }
            }
            facts.entry = Some(entry);
            facts.text = text;
            facts.error = note;
        }
        Err(SnapError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) => {}
        Err(SnapError::Io { source, .. }) => {
            facts.error = Some(format!(
                "cannot read {rel}: {}",
                source
                    .raw_os_error()
                    .map_or_else(|| source.to_string(), |e| errno_words(Errno::from_raw(e)))
            ));
        }
    }
}

/// A regular file's digest, its text when asked for and small enough, and a note when it was
/// not read (not data, too big, unreadable). Opened without following a link, without
/// blocking, and read only from a filesystem that holds data.
fn read_file(
    name: &Path,
    meta: &std::fs::Metadata,
    with_text: bool,
) -> (Option<String>, Option<String>, Option<String>) {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::open(name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            return (
                None,
                None,
                Some(format!("cannot open it: {}", errno_words(e))),
            );
        }
    };
    let file = File::from(fd);
    let same = file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.dev() == meta.dev() && m.ino() == meta.ino());
    if !same {
        return (None, None, Some("it changed while it was read".into()));
    }
    match fstatfs(&file) {
        Ok(fs) if is_data(fs.filesystem_type()) => {}
        Ok(fs) => {
            return (
                None,
                None,
                Some(format!(
                    "it is a file of a {} filesystem, not data the task made; its content is not read",
                    fs_name(fs.filesystem_type())
                )),
            );
        }
        Err(e) => return (None, None, Some(format!("cannot stat its filesystem: {e}"))),
    }
    if meta.len() > MAX_HASHED {
        return (
            None,
            None,
            Some(format!(
                "it is {} bytes; files over {} MiB are not read",
                meta.len(),
                MAX_HASHED >> 20
            )),
        );
    }
    let keep = if with_text && meta.len() <= TEXT_LIMIT {
        usize::try_from(TEXT_LIMIT).unwrap_or(usize::MAX)
    } else {
        0
    };
    match labgrade_snap::sha256_keeping(file.take(MAX_HASHED), keep) {
        Ok((digest, kept, _)) => {
            let text = (keep > 0).then(|| String::from_utf8_lossy(&kept).into_owned());
            (Some(digest), text, None)
        }
        Err(e) => (None, None, Some(format!("cannot read it: {e}"))),
    }
}

fn is_data(t: FsType) -> bool {
    DATA_FILESYSTEMS.contains(&t.0)
}

fn fs_name(t: FsType) -> String {
    match t.0 {
        0x9fa0 => "proc".into(),
        0x6265_6572 => "sysfs".into(),
        0x6462_6720 => "debugfs".into(),
        0x7472_6163 => "tracefs".into(),
        0x1373 => "devtmpfs".into(),
        0x6573_5546 => "FUSE".into(),
        0x0102_1997 => "9p".into(),
        0x2702_2021 | 0x6367_7270 => "cgroup".into(),
        other => format!("0x{other:x}"),
    }
}

/// A directory's names, sorted, at most [`MAX_CHILDREN`]; `true` when there were more. `name`
/// was just seen to be a directory, not a link, and nothing of the task runs any more.
fn list(name: &Path) -> Result<(Vec<String>, bool), Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut names = Vec::new();
    let mut cut = false;
    for entry in std::fs::read_dir(name).map_err(errno)? {
        let entry = entry.map_err(errno)?;
        if names.len() == MAX_CHILDREN {
            cut = true;
            break;
        }
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok((names, cut))
}

/// Opens what the reader needs of a sandbox while the agent is still root: its root directory
/// and its user namespace, through the keeper's `/proc` entry.
pub(crate) fn open_view(
    keeper_in_proc: i32,
    uid: Option<u32>,
    own_user_ns: bool,
) -> Result<StudentView, String> {
    let open = |p: String, flags: OFlag| -> Result<OwnedFd, String> {
        nix::fcntl::open(p.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("cannot open {p}: {e}"))
    };
    let root = open(
        format!("/proc/{keeper_in_proc}/root"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )?;
    let user_ns = if own_user_ns {
        Some(open(
            format!("/proc/{keeper_in_proc}/ns/user"),
            OFlag::O_RDONLY,
        )?)
    } else {
        None
    };
    Ok(StudentView { root, user_ns, uid })
}

/// Most bytes of a mount table read (a student may make thousands of mounts).
const MOUNTINFO_CAP: u64 = 16 << 20;

/// Reads a mount table (`/proc/PID/mountinfo`), at most [`MOUNTINFO_CAP`] bytes of it, bytes
/// that are not UTF-8 replaced: a mount point named with any bytes never makes it unreadable.
pub(crate) fn read_mountinfo(pid: i32) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    File::open(format!("/proc/{pid}/mountinfo"))?
        .take(MOUNTINFO_CAP)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Names each overlay layer of `mounts` that is the same directory (device and inode) as one
/// of `layers` (relative to `$LAB`) as `$LAB/<that name>`, resolving the path the kernel shows
/// as the student's mount would have: from the sandbox's root, symlinks followed but never out
/// of it, `..` kept inside it; a relative path from `$LAB`, the task's working directory. A
/// layer that is none of them keeps its text. Read as the student, with the same deadline as
/// facts; on any trouble the mounts come back as they were.
pub(crate) fn name_layers(
    view: &StudentView,
    mounts: Vec<MountEntry>,
    layers: &[String],
) -> Vec<MountEntry> {
    let fallback = mounts.clone();
    match in_child(view, READ_DEADLINE, |view| {
        serde_json::to_vec(&name_layers_here(view, mounts, layers)).unwrap_or_default()
    }) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(fallback),
        Err(_) => fallback,
    }
}

fn identity(fd: &OwnedFd) -> Option<(u64, u64)> {
    nix::sys::stat::fstat(fd)
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

/// A directory as a mounter named it, resolved in the sandbox's root.
fn resolve_in_root(view: &StudentView, path: &str) -> Option<(u64, u64)> {
    let inside = path.trim_start_matches('/');
    let inside = if inside.is_empty() { "." } else { inside };
    let fd = openat2(
        &view.root,
        inside,
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
    .ok()?;
    identity(&fd)
}

/// Working directories a relative layer path may have been given from, most likely first:
/// `$LAB` (the task's own), its ancestors, then its subdirectories. The kernel shows a relative
/// layer as the mounter wrote it and nothing says where the mounter stood.
fn likely_cwds(view: &StudentView) -> Vec<String> {
    let lab = crate::LAB_DIR.to_owned();
    let mut out = vec![lab.clone()];
    let mut up = Path::new(crate::LAB_DIR).parent();
    while let Some(p) = up {
        out.push(p.display().to_string());
        up = p.parent();
    }
    let subdirs = open_dir_beneath(&view.root, Path::new(lab_in_root()))
        .ok()
        .filter(|dir| nix::unistd::fchdir(dir).is_ok())
        .and_then(|_| std::fs::read_dir(".").ok());
    if let Some(entries) = subdirs {
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .take(MAX_CHILDREN)
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| format!("{lab}/{n}")));
    }
    out
}

fn name_layers_here(
    view: &StudentView,
    mut mounts: Vec<MountEntry>,
    layers: &[String],
) -> Vec<MountEntry> {
    let Ok(lab) = open_dir_beneath(&view.root, Path::new(lab_in_root())) else {
        return mounts;
    };
    let known: Vec<((u64, u64), String)> = layers
        .iter()
        .filter_map(|l| {
            let name = l.trim_matches('/');
            let fd = open_dir_beneath(&lab, Path::new(name)).ok()?;
            Some((identity(&fd)?, format!("{}/{name}", crate::LAB_DIR)))
        })
        .collect();
    let cwds = likely_cwds(view);
    let known_as = |id: (u64, u64)| known.iter().find(|(k, _)| *k == id).map(|(_, n)| n.clone());
    let name_of = |path: &str| -> Option<String> {
        if path.starts_with('/') {
            return known_as(resolve_in_root(view, path)?);
        }
        // From $LAB if it leads to a layer there; else from any other likely directory, but
        // only when every one that leads to an expected layer leads to the same one.
        if let Some(name) = resolve_in_root(view, &format!("{}/{path}", cwds[0])).and_then(known_as)
        {
            return Some(name);
        }
        let mut found: Vec<String> = cwds[1..]
            .iter()
            .filter_map(|c| resolve_in_root(view, &format!("{c}/{path}")).and_then(known_as))
            .collect();
        found.sort();
        found.dedup();
        (found.len() == 1).then(|| found.remove(0))
    };
    for m in mounts.iter_mut().filter(|m| m.fstype == "overlay") {
        for opt in &mut m.super_options {
            *opt = rename_layers(opt, &name_of);
        }
    }
    mounts
}

/// One overlay option with its layer paths renamed by `name_of` where it knows them.
/// `lowerdir=` lists layers split at `:` not escaped with a backslash (an empty one marks the
/// data-only layers after `::`); the other layer options hold one path.
pub(crate) fn rename_layers(opt: &str, name_of: &dyn Fn(&str) -> Option<String>) -> String {
    if let Some(list) = opt.strip_prefix("lowerdir=") {
        let renamed: Vec<String> = split_escaped(list, ':')
            .into_iter()
            .map(|raw| {
                if raw.is_empty() {
                    return raw;
                }
                name_of(&unescape(&raw)).unwrap_or(raw)
            })
            .collect();
        return format!("lowerdir={}", renamed.join(":"));
    }
    for key in ["upperdir=", "workdir=", "lowerdir+=", "datadir+="] {
        if let Some(raw) = opt.strip_prefix(key) {
            return match name_of(&unescape(raw)) {
                Some(name) => format!("{key}{name}"),
                None => opt.to_owned(),
            };
        }
    }
    opt.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &str) -> Option<String> {
        match p {
            "//tmp/lab/lower" | "/tmp/lab/../lab/lower" | "lower" => Some("/tmp/lab/lower".into()),
            "/tmp/lab/a:b" => Some("/tmp/lab/ab".into()),
            _ => None,
        }
    }

    #[test]
    fn layers_are_renamed_where_they_resolve_and_kept_where_not() {
        assert_eq!(
            rename_layers("lowerdir=//tmp/lab/lower:/etc", &names),
            "lowerdir=/tmp/lab/lower:/etc"
        );
        assert_eq!(
            rename_layers("upperdir=/tmp/lab/../lab/lower", &names),
            "upperdir=/tmp/lab/lower"
        );
        assert_eq!(
            rename_layers(r"lowerdir=/tmp/lab/a\:b::lower", &names),
            "lowerdir=/tmp/lab/ab::/tmp/lab/lower"
        );
        assert_eq!(rename_layers("xino=off", &names), "xino=off");
    }

    proptest::proptest! {
        #[test]
        fn any_option_text_is_renamed_without_panicking(opt in "\\PC*") {
            let _ = rename_layers(&opt, &names);
        }
    }
}
