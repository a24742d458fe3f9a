//! The sandbox's own root: what a task needs of the machine and nothing else.
//!
//! A student's code must not see `/root`, `/home`, the assignment (its hidden checks, its
//! reference solution), other submissions, the grader's output or the labgrade checkout. So the
//! sandbox's init builds a root of its own on a small tmpfs: the programs and libraries
//! (`/usr`, and `/bin`, `/sbin`, `/lib*` as the machine lays them out) bound read-only, a few
//! files of `/etc` that programs read (users, groups, the loader's cache, alternatives), the
//! basic devices, a fresh `/proc` of its pid namespace, and private tmpfs on `/tmp` (which holds
//! `$LAB`), `/var/tmp`, `/run` and `/dev/shm`. Then it pivots into it and lets go of the old
//! root entirely. The same root is made on every guest; in a VM the host files it binds are the
//! ones the VM was given.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

/// Files and directories of `/etc` that programs a lab uses read: user and group names (`ls
/// -l`), the dynamic loader's cache and configuration, `update-alternatives` links (`awk`),
/// name service and time zone, the system's name, and mkfs defaults. Never shadow, ssh keys
/// or anything else.
const ETC_ENTRIES: [&str; 21] = [
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "mtab",
    "os-release",
    "debian_version",
    "lsb-release",
    "redhat-release",
    "system-release",
    "services",
    "protocols",
    "shells",
    "mke2fs.conf",
    "profile",
];

/// Device nodes bound from the machine's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the new root is assembled before the pivot (the old `/tmp`, hidden by it).
const NEW_ROOT: &str = "/tmp";

fn err(what: String) -> impl FnOnce(nix::errno::Errno) -> String {
    move |e| format!("{what}: {e}")
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// The mount flags a remount of a bind of `path` must keep: the kernel refuses to clear the
/// nosuid, nodev, noexec or atime flags a less privileged mount namespace inherited.
fn kept_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (from, to) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(from) {
            out |= to;
        }
    }
    out
}

/// Binds `from` onto `to` (which exists), read-only.
fn bind_read_only(from: &Path, to: &Path) -> Result<(), String> {
    mount(
        Some(from),
        to,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err(format!("cannot bind {}", from.display())))?;
    mount(
        None::<&str>,
        to,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept_flags(from),
        None::<&str>,
    )
    .map_err(err(format!("cannot make {} read-only", to.display())))
}

/// Puts `name` of the machine's directory `from_dir` into `to_dir`: a symlink as the same
/// symlink, a directory or file bound read-only onto a new one; nothing if it is missing.
fn carry(from_dir: &Path, to_dir: &Path, name: &str) -> Result<(), String> {
    let from = from_dir.join(name);
    let to = to_dir.join(name);
    let Ok(meta) = fs::symlink_metadata(&from) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(&from).map_err(io(format!("cannot read {}", from.display())))?;
        return symlink(&target, &to).map_err(io(format!("cannot link {}", to.display())));
    }
    if meta.is_dir() {
        fs::create_dir(&to).map_err(io(format!("cannot create {}", to.display())))?;
    } else {
        fs::write(&to, b"").map_err(io(format!("cannot create {}", to.display())))?;
    }
    bind_read_only(&from, &to)
}

fn tmpfs(at: &Path, options: &str) -> Result<(), String> {
    mount(
        Some("labgrade-sandbox"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(err(format!("cannot mount a tmpfs on {}", at.display())))
}

fn mkdir(p: &Path, mode: u32) -> Result<(), String> {
    fs::create_dir_all(p).map_err(io(format!("cannot create {}", p.display())))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(io(format!("cannot chmod {}", p.display())))
}

/// Builds the sandbox's root and pivots into it. Runs in the sandbox's init, in its own mount
/// (and, on a host, user) namespace, before anything else. `tmp_mib` sizes `/tmp`.
pub(super) fn enter_own_root(tmp_mib: u64) -> Result<(), String> {
    let new = Path::new(NEW_ROOT);
    tmpfs(new, "size=1m,mode=0755")?;
    for d in labgrade_proto::PROGRAM_DIRS {
        carry(Path::new("/"), new, d)?;
    }
    let etc = new.join("etc");
    mkdir(&etc, 0o755)?;
    for e in ETC_ENTRIES {
        carry(Path::new("/etc"), &etc, e)?;
    }
    let dev = new.join("dev");
    mkdir(&dev, 0o755)?;
    tmpfs(&dev, "size=64k,mode=0755")?;
    for d in DEVICES {
        let (from, to) = (Path::new("/dev").join(d), dev.join(d));
        if from.exists() {
            fs::write(&to, b"").map_err(io(format!("cannot create {}", to.display())))?;
            mount(
                Some(&from),
                &to,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(err(format!("cannot bind {}", from.display())))?;
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(io(format!("cannot link /dev/{name}")))?;
    }
    let shm = dev.join("shm");
    mkdir(&shm, 0o1777)?;
    tmpfs(&shm, "size=1m,mode=1777")?;
    let proc = new.join("proc");
    mkdir(&proc, 0o555)?;
    mount(
        Some("proc"),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(err("cannot mount a proc for the sandbox".into()))?;
    // sysfs shows the machine's devices, which some tools look at; where the kernel refuses it
    // (an older kernel in a user namespace), the sandbox goes without.
    let sys = new.join("sys");
    mkdir(&sys, 0o555)?;
    let _ = mount(
        Some("sysfs"),
        &sys,
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    let tmp = new.join("tmp");
    mkdir(&tmp, 0o755)?;
    tmpfs(&tmp, &format!("size={tmp_mib}m,mode=0755"))?;
    for (dir, mode, size) in [("var/tmp", 0o1777, "1m"), ("run", 0o755, "1m")] {
        let p = new.join(dir);
        mkdir(&p, mode)?;
        tmpfs(&p, &format!("size={size},mode={mode:o}"))?;
    }
    mkdir(&new.join("run/lock"), 0o1777)?;
    for dir in ["mnt", "root", "home"] {
        mkdir(&new.join(dir), 0o755)?;
    }
    let old = new.join(".old-root");
    mkdir(&old, 0o700)?;
    nix::unistd::pivot_root(new, &old)
        .map_err(err("cannot pivot into the sandbox's root".into()))?;
    nix::unistd::chdir("/").map_err(err("cannot chdir to the new root".into()))?;
    umount2("/.old-root", MntFlags::MNT_DETACH)
        .map_err(err("cannot let go of the machine's root".into()))?;
    fs::remove_dir("/.old-root").map_err(io("cannot remove the old root's mount point".into()))?;
    Ok(())
}
