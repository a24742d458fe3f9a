//! The guest's root when it runs untrusted code ([`crate::RootExport::Minimal`]).
//!
//! Graded code is root in its VM, and root mounts whatever 9p tag the VM has, read-only or not,
//! wherever it likes: whatever QEMU exports is what the student can read. Exporting the host's
//! `/` would hand it `/etc/shadow`, `/root`, the assignment's hidden checks and reference
//! solution and every classmate's submission. So the 9p root of such a VM is a staging
//! directory made for it, and the only other exports are the host's program directories, all
//! read-only:
//!
//! ```text
//! STAGE/                      exported as the 9p root (tag `root`)
//!   bin -> usr/bin ...        the host's symlinks, as they are (merged /usr)
//!   usr/  (mount point)       the host's /usr, tag `usr`; a real /bin, /lib... of a layout
//!                             without merged /usr gets a tag of its own the same way
//!   etc/                      made here: passwd, group, nsswitch.conf naming root and nobody
//!                             only; the host's ld.so.cache, ld.so.conf(.d), alternatives
//!                             (links), localtime; nothing else (no shadow, no ssh keys)
//!   labgrade/agent            a copy (or hard link) of the agent binary
//!   labgrade/modules/         the on-demand kernel modules and their aliases
//!   labgrade/locale/          the locale archive init binds over /usr/lib/locale
//!   proc sys dev tmp run/lock var/tmp root   empty mount points
//! ```
//!
//! One staging directory per VM, removed with it; a copy is hard links where it can be (the
//! modules and the locale archive sit in the same cache directory), so it costs milliseconds.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Where the guest finds the agent inside a staged root.
pub(crate) const AGENT: &str = "/labgrade/agent";
/// Where the guest finds the on-demand modules inside a staged root.
pub(crate) const MODULES: &str = "/labgrade/modules";
/// Where the guest finds the locale archive's directory inside a staged root.
pub(crate) const LOCALE: &str = "/labgrade/locale";

/// Empty directories the guest mounts on (init: proc, sys, dev; the sandbox: tmpfs on /tmp,
/// /var/tmp, /run/lock) or that programs expect (root's home).
const MOUNT_POINTS: [&str; 8] = [
    "proc", "sys", "dev", "tmp", "run/lock", "var/tmp", "root", "labgrade",
];

/// Users and groups of the guest: programs (ls, stat, getfattr) name files' owners, and root is
/// all that runs there. The host's own accounts are none of the guest's business.
const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
/// Files only: the host's may name sss, ldap or systemd modules that would look elsewhere.
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files\n";

/// A host directory exported read-only on its own 9p tag, mounted at `guest` by init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Export {
    /// The 9p mount tag.
    pub(crate) tag: String,
    /// The host directory.
    pub(crate) host: PathBuf,
    /// Where init mounts it (absolute, inside the guest's root).
    pub(crate) guest: String,
}

/// A staged root: its directory (removed on drop) and the exports beside it.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The directory exported as the guest's root.
    pub(crate) dir: PathBuf,
    /// The host's program directories, each on a tag of its own.
    pub(crate) exports: Vec<Export>,
    /// A locale archive was staged at [`LOCALE`].
    pub(crate) has_locale: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cannot remove a staged guest root");
        }
    }
}

/// What goes into a staged root.
#[derive(Debug, Clone)]
pub(crate) struct StageInputs<'a> {
    /// The host root whose programs, libraries and /etc files are taken (`/`; a fake one in
    /// tests).
    pub(crate) host_root: &'a Path,
    /// The agent binary.
    pub(crate) agent: &'a Path,
    /// The on-demand modules directory the initramfs's modprobe reads.
    pub(crate) modules: &'a Path,
    /// The directory holding `locale-archive`, if there is one.
    pub(crate) locale: Option<&'a Path>,
}

/// Stages a root in a fresh scratch directory of `parent`. One a killed labgrade left (its VM
/// died with it) is swept here first: [`labgrade_fs::remove_stale_scratch`] keeps what a live
/// process is using.
pub(crate) fn stage(inputs: &StageInputs<'_>, parent: &Path) -> io::Result<Staged> {
    fs::create_dir_all(parent)?;
    labgrade_fs::remove_stale_scratch(parent);
    let dir = labgrade_fs::scratch_path(parent, "guest-root");
    fs::create_dir(&dir)?;
    // From here the directory goes on every error path: Staged removes it on drop.
    let mut staged = Staged {
        dir,
        exports: Vec::new(),
        has_locale: false,
    };
    fill(&mut staged, inputs)?;
    Ok(staged)
}

fn fill(staged: &mut Staged, inputs: &StageInputs<'_>) -> io::Result<()> {
    let dir = staged.dir.clone();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    for d in MOUNT_POINTS {
        fs::create_dir_all(dir.join(d))?;
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::set_permissions(dir.join("var/tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::set_permissions(dir.join("root"), fs::Permissions::from_mode(0o700))?;
    for name in labgrade_proto::PROGRAM_DIRS {
        let host = inputs.host_root.join(name);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&host)?, dir.join(name))?;
        } else if meta.is_dir() {
            fs::create_dir(dir.join(name))?;
            staged.exports.push(Export {
                tag: if name == "usr" {
                    "usr".to_owned()
                } else {
                    format!("sys-{name}")
                },
                host,
                guest: format!("/{name}"),
            });
        }
    }
    stage_etc(&inputs.host_root.join("etc"), &dir.join("etc"))?;
    link_or_copy(inputs.agent, &dir.join(AGENT.trim_start_matches('/')))?;
    fs::set_permissions(
        dir.join(AGENT.trim_start_matches('/')),
        fs::Permissions::from_mode(0o755),
    )?;
    let modules = dir.join(MODULES.trim_start_matches('/'));
    fs::create_dir(&modules)?;
    for entry in fs::read_dir(inputs.modules)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            link_or_copy(&entry.path(), &modules.join(entry.file_name()))?;
        }
    }
    if let Some(locale) = inputs.locale {
        let archive = locale.join("locale-archive");
        if archive.is_file() {
            let to = dir.join(LOCALE.trim_start_matches('/'));
            fs::create_dir(&to)?;
            link_or_copy(&archive, &to.join("locale-archive"))?;
            staged.has_locale = true;
        }
    }
    Ok(())
}

/// The guest's /etc: made here, with only the host files that programs need to start (the
/// dynamic linker's cache and configuration, the alternatives links, the time zone).
fn stage_etc(host: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::write(to.join("passwd"), PASSWD)?;
    fs::write(to.join("group"), GROUP)?;
    fs::write(to.join("nsswitch.conf"), NSSWITCH)?;
    // What `mount` and `df` read where there is no /etc/mtab of their own.
    symlink("../proc/self/mounts", to.join("mtab"))?;
    for file in ["ld.so.cache", "ld.so.conf"] {
        let from = host.join(file);
        if fs::symlink_metadata(&from).is_ok_and(|m| m.is_file()) {
            fs::copy(&from, to.join(file))?;
        }
    }
    copy_dir_entries(&host.join("ld.so.conf.d"), &to.join("ld.so.conf.d"), |t| {
        t.is_file()
    })?;
    // Links only: the directory's README says nothing a program needs.
    copy_dir_entries(&host.join("alternatives"), &to.join("alternatives"), |t| {
        t.is_symlink()
    })?;
    let localtime = host.join("localtime");
    match fs::symlink_metadata(&localtime) {
        Ok(m) if m.file_type().is_symlink() => {
            symlink(fs::read_link(&localtime)?, to.join("localtime"))?
        }
        Ok(m) if m.is_file() => {
            fs::copy(&localtime, to.join("localtime"))?;
        }
        _ => {}
    }
    Ok(())
}

/// Copies the entries of `from` that `keep` accepts (by their own type: links stay links),
/// when `from` is a directory.
fn copy_dir_entries(
    from: &Path,
    to: &Path,
    keep: impl Fn(&fs::FileType) -> bool,
) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(());
    };
    fs::create_dir(to)?;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if !keep(&kind) {
            continue;
        }
        let target = to.join(entry.file_name());
        if kind.is_symlink() {
            symlink(fs::read_link(entry.path())?, target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// A hard link where `from` and `to` share a filesystem (and the kernel allows it), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) -> io::Result<()> {
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        fs::write(path, text)
    }

    /// Every path under `dir`, relative, sorted, links shown with their targets.
    fn tree(dir: &Path) -> io::Result<Vec<String>> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
            for e in fs::read_dir(dir)? {
                let e = e?;
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let t = e.file_type()?;
                if t.is_symlink() {
                    out.push(format!("{rel} -> {}", fs::read_link(e.path())?.display()));
                } else if t.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &e.path(), out)?;
                } else {
                    out.push(rel);
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out)?;
        out.sort();
        Ok(out)
    }

    /// A host root with secrets beside what a guest needs.
    fn fake_host(root: &Path, merged: bool) -> io::Result<()> {
        write(&root.join("usr/bin/sh"), "sh")?;
        write(&root.join("usr/lib/libc.so.6"), "libc")?;
        if merged {
            symlink("usr/bin", root.join("bin"))?;
            symlink("usr/lib", root.join("lib"))?;
            symlink("/usr/lib64", root.join("lib64"))?;
        } else {
            write(&root.join("bin/mount"), "mount")?;
            write(&root.join("sbin/modprobe"), "modprobe")?;
            write(&root.join("lib/ld.so"), "ld.so")?;
        }
        write(&root.join("etc/shadow"), "root:SECRET-HASH:1::::::\n")?;
        write(
            &root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        )?;
        write(&root.join("etc/ssh/ssh_host_ed25519_key"), "SECRET-KEY")?;
        write(&root.join("etc/nsswitch.conf"), "passwd: files sss\n")?;
        write(&root.join("etc/ld.so.cache"), "cache")?;
        write(
            &root.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )?;
        write(
            &root.join("etc/ld.so.conf.d/x86_64-linux-gnu.conf"),
            "/usr/lib/x86_64-linux-gnu\n",
        )?;
        write(&root.join("etc/alternatives/README"), "readme")?;
        symlink("/usr/bin/mawk", root.join("etc/alternatives/awk"))?;
        symlink("/usr/share/zoneinfo/Etc/UTC", root.join("etc/localtime"))?;
        write(&root.join("root/.ssh/id_ed25519"), "SECRET-KEY")?;
        write(&root.join("home/alice/submission/mount.sh"), "peer's work")?;
        write(
            &root.join("work/assignment/reference/mount.sh"),
            "reference",
        )?;
        Ok(())
    }

    fn inputs_in(dir: &Path) -> io::Result<(PathBuf, PathBuf, PathBuf)> {
        let agent = dir.join("target/labgrade");
        write(&agent, "agent")?;
        let modules = dir.join("cache/modules-x");
        write(&modules.join("overlay.ko"), "ko")?;
        write(&modules.join("aliases"), "fs-overlay overlay.ko\n")?;
        let locale = dir.join("cache/locale-x");
        write(&locale.join("locale-archive"), "archive")?;
        Ok((agent, modules, locale))
    }

    #[test]
    fn a_merged_usr_host_stages_its_links_usr_as_an_export_and_a_made_etc_only() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let host = tmp.path().join("host");
        fake_host(&host, true)?;
        let (agent, modules, locale) = inputs_in(tmp.path())?;
        let cache = tmp.path().join("cache");
        let staged = stage(
            &StageInputs {
                host_root: &host,
                agent: &agent,
                modules: &modules,
                locale: Some(&locale),
            },
            &cache,
        )?;
        assert_eq!(
            tree(&staged.dir)?,
            [
                "bin -> usr/bin",
                "dev/",
                "etc/",
                "etc/alternatives/",
                "etc/alternatives/awk -> /usr/bin/mawk",
                "etc/group",
                "etc/ld.so.cache",
                "etc/ld.so.conf",
                "etc/ld.so.conf.d/",
                "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
                "etc/localtime -> /usr/share/zoneinfo/Etc/UTC",
                "etc/mtab -> ../proc/self/mounts",
                "etc/nsswitch.conf",
                "etc/passwd",
                "labgrade/",
                "labgrade/agent",
                "labgrade/locale/",
                "labgrade/locale/locale-archive",
                "labgrade/modules/",
                "labgrade/modules/aliases",
                "labgrade/modules/overlay.ko",
                "lib -> usr/lib",
                "lib64 -> /usr/lib64",
                "proc/",
                "root/",
                "run/",
                "run/lock/",
                "sys/",
                "tmp/",
                "usr/",
                "var/",
                "var/tmp/",
            ]
        );
        assert_eq!(
            staged.exports,
            [Export {
                tag: "usr".into(),
                host: host.join("usr"),
                guest: "/usr".into()
            }]
        );
        assert!(staged.has_locale);
        let passwd = fs::read_to_string(staged.dir.join("etc/passwd"))?;
        assert!(!passwd.contains("alice"), "{passwd}");
        assert!(!fs::read_to_string(staged.dir.join("etc/nsswitch.conf"))?.contains("sss"));
        let mode = fs::metadata(staged.dir.join("labgrade/agent"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // Dropping it removes it.
        let dir = staged.dir.clone();
        drop(staged);
        assert!(!dir.exists());
        // One a killed labgrade left (pid 0 is never a process's) goes with the next staging.
        let stale = cache.join(".guest-root.0.0.tmp");
        fs::create_dir(&stale)?;
        let next = stage(
            &StageInputs {
                host_root: &host,
                agent: &agent,
                modules: &modules,
                locale: None,
            },
            &cache,
        )?;
        assert!(!stale.exists());
        assert!(next.dir.exists());
        Ok(())
    }

    #[test]
    fn a_layout_without_merged_usr_exports_each_program_directory() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let host = tmp.path().join("host");
        fake_host(&host, false)?;
        let (agent, modules, _) = inputs_in(tmp.path())?;
        let staged = stage(
            &StageInputs {
                host_root: &host,
                agent: &agent,
                modules: &modules,
                locale: None,
            },
            &tmp.path().join("cache"),
        )?;
        let tags: Vec<(&str, &str)> = staged
            .exports
            .iter()
            .map(|e| (e.tag.as_str(), e.guest.as_str()))
            .collect();
        assert_eq!(
            tags,
            [
                ("usr", "/usr"),
                ("sys-bin", "/bin"),
                ("sys-sbin", "/sbin"),
                ("sys-lib", "/lib")
            ]
        );
        for e in &staged.exports {
            assert!(staged.dir.join(e.guest.trim_start_matches('/')).is_dir());
        }
        assert!(!staged.has_locale);
        // Nothing of the host's secrets, peers or assignment came along.
        let all = tree(&staged.dir)?.join("\n");
        for secret in ["shadow", "ssh", "alice", "home", "work", "reference"] {
            assert!(!all.contains(secret), "{secret} in\n{all}");
        }
        Ok(())
    }
}
