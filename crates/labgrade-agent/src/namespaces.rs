//! Entering the lab's private namespaces. Everything a lab mounts lives in a mount namespace no
//! other process shares, so it is never in the host's mount table and it disappears when the last
//! process of the lab dies, even if labgrade is killed with SIGKILL.

use std::fs;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{getegid, geteuid};

use labgrade_proto::Privilege;

/// Why the private namespaces could not be set up (an infrastructure error, not a lab failure).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the lab's private namespaces: {what}: {source}")]
pub struct NamespaceError {
    what: String,
    #[source]
    source: std::io::Error,
}

fn ctx<T, E: Into<std::io::Error>>(r: Result<T, E>, what: &str) -> Result<T, NamespaceError> {
    r.map_err(|e| NamespaceError {
        what: what.to_owned(),
        source: e.into(),
    })
}

/// Moves this process into new mount and pid namespaces (and a user namespace first when not
/// root), makes every mount private, and puts a fresh tmpfs on `/tmp`.
///
/// Must run while the process is single-threaded: `unshare(CLONE_NEWUSER)` refuses otherwise.
/// Children spawned afterwards are in the new pid namespace; the first is its init, and when it
/// dies the kernel kills every other process in the namespace.
pub fn enter_private_namespaces() -> Result<Privilege, NamespaceError> {
    let uid = geteuid();
    let privilege = if uid.is_root() {
        Privilege::Root
    } else {
        let gid = getegid();
        ctx(unshare(CloneFlags::CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")?;
        ctx(
            fs::write("/proc/self/setgroups", "deny"),
            "write /proc/self/setgroups",
        )?;
        ctx(
            fs::write("/proc/self/uid_map", format!("0 {uid} 1")),
            "write /proc/self/uid_map",
        )?;
        ctx(
            fs::write("/proc/self/gid_map", format!("0 {gid} 1")),
            "write /proc/self/gid_map",
        )?;
        Privilege::UserNamespace {
            outer_uid: uid.as_raw(),
        }
    };
    ctx(
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID),
        "unshare(CLONE_NEWNS | CLONE_NEWPID)",
    )?;
    // Before anything is mounted: no mount of ours may propagate back to the host.
    ctx(
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
        "make / private (mount --make-rprivate /)",
    )?;
    ctx(
        mount(
            Some("labgrade"),
            "/tmp",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
        "mount a private tmpfs on /tmp",
    )?;
    Ok(privilege)
}

/// Mounts a proc for the new pid namespace; runs in the session's first child (its init).
pub(crate) fn mount_proc() -> nix::Result<()> {
    mount(
        Some("proc"),
        Path::new("/proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}
