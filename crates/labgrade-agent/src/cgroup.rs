//! A cgroup for one sandbox, where one is writable: `pids.max` and a memory limit on top of the
//! rlimits. Hierarchies differ by machine: pure v2 (GitHub runners, Ubuntu 22.04), pure v1, and
//! hybrid (v1 controllers plus a controller-less v2 at `/sys/fs/cgroup/unified`, as here). Which
//! files to write is decided by [`plan`], a pure function of what the machine shows.

use std::fs;
use std::path::{Path, PathBuf};

/// What the cgroup mount shows, read once per sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupProbe {
    /// `cgroup.controllers` of a v2 hierarchy mounted at the cgroup root, if there is one.
    pub unified_root_controllers: Option<String>,
    /// A v1 `pids` controller directory exists.
    pub v1_pids: bool,
    /// A v1 `memory` controller directory exists.
    pub v1_memory: bool,
    /// This process's cgroup per v1 controller (`/proc/PID/cgroup` lines).
    pub own: String,
}

/// Where the sandbox's cgroup goes and which limit files it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CgroupPlan {
    /// One v2 cgroup under the root; `enable` goes to the root's `cgroup.subtree_control`.
    V2 {
        /// Controllers to enable first, e.g. `+pids +memory`.
        enable: String,
        /// `(file, value)` pairs relative to the new cgroup.
        limits: Vec<(String, String)>,
    },
    /// One cgroup per v1 controller, each under this process's own cgroup of that controller.
    V1 {
        /// `(controller, own path, file, value)`.
        limits: Vec<(String, String, String, String)>,
    },
    /// None usable: rlimits only, for this reason.
    None(String),
}

/// Decides the cgroup layout from what the machine shows. `pids` and `memory` are the limits.
pub(crate) fn plan(probe: &CgroupProbe, pids: u64, memory_bytes: u64) -> CgroupPlan {
    if let Some(controllers) = &probe.unified_root_controllers {
        let have: Vec<&str> = controllers.split_whitespace().collect();
        let mut enable = Vec::new();
        let mut limits = Vec::new();
        if have.contains(&"pids") {
            enable.push("+pids");
            limits.push(("pids.max".to_owned(), pids.to_string()));
        }
        if have.contains(&"memory") {
            enable.push("+memory");
            limits.push(("memory.max".to_owned(), memory_bytes.to_string()));
            limits.push(("memory.swap.max".to_owned(), "0".to_owned()));
        }
        if limits.is_empty() {
            return CgroupPlan::None("cgroup v2 offers neither pids nor memory".into());
        }
        return CgroupPlan::V2 {
            enable: enable.join(" "),
            limits,
        };
    }
    let own = |controller: &str| -> String {
        probe
            .own
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                names
                    .split(',')
                    .any(|n| n == controller)
                    .then(|| path.to_owned())
            })
            .next()
            .unwrap_or_else(|| "/".to_owned())
    };
    let mut limits = Vec::new();
    if probe.v1_pids {
        limits.push((
            "pids".to_owned(),
            own("pids"),
            "pids.max".to_owned(),
            pids.to_string(),
        ));
    }
    if probe.v1_memory {
        limits.push((
            "memory".to_owned(),
            own("memory"),
            "memory.limit_in_bytes".to_owned(),
            memory_bytes.to_string(),
        ));
    }
    if limits.is_empty() {
        CgroupPlan::None("no cgroup hierarchy with pids or memory is mounted".into())
    } else {
        CgroupPlan::V1 { limits }
    }
}

/// The cgroup directories of one sandbox; removed when dropped (its processes are gone by then).
#[derive(Debug, Default)]
pub(crate) struct SandboxCgroup {
    /// The directories made, deepest last.
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` files the sandbox's first process writes itself into.
    pub procs: Vec<PathBuf>,
}

const ROOT: &str = "/sys/fs/cgroup";

fn probe() -> CgroupProbe {
    let root = Path::new(ROOT);
    CgroupProbe {
        unified_root_controllers: fs::read_to_string(root.join("cgroup.controllers")).ok(),
        v1_pids: root.join("pids/tasks").exists(),
        v1_memory: root.join("memory/tasks").exists(),
        // The agent's own /proc/self is not in the proc it sees (it stands outside the pid
        // namespace whose proc is mounted); pid 1 there is its session, in the same cgroups.
        own: fs::read_to_string("/proc/1/cgroup").unwrap_or_default(),
    }
}

/// Makes the sandbox's cgroup and writes its limits, or says why there is none.
pub(crate) fn create(name: &str, pids: u64, memory_bytes: u64) -> (SandboxCgroup, String) {
    let mut made = SandboxCgroup::default();
    let mut probed = probe();
    if probed.unified_root_controllers.is_none() && !probed.v1_pids && !probed.v1_memory {
        // Nothing mounted (a VM's minimal init): mount cgroup v2 in the agent's own mount
        // namespace. This matters most as root, where RLIMIT_NPROC does not bind uid 0.
        let mounted = nix::mount::mount(
            Some("cgroup2"),
            ROOT,
            Some("cgroup2"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            None::<&str>,
        );
        if mounted.is_ok() {
            probed = probe();
        }
    }
    let result = match plan(&probed, pids, memory_bytes) {
        CgroupPlan::None(why) => Err(why),
        CgroupPlan::V2 { enable, limits } => (|| {
            let root = Path::new(ROOT);
            // Enabling may fail if already enabled or refused; the limit files tell.
            let _ = fs::write(root.join("cgroup.subtree_control"), &enable);
            let dir = root.join(name);
            sweep_stale(&dir);
            fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            made.dirs.push(dir.clone());
            for (file, value) in &limits {
                fs::write(dir.join(file), value)
                    .map_err(|e| format!("cannot write {}/{file}: {e}", dir.display()))?;
            }
            made.procs.push(dir.join("cgroup.procs"));
            Ok(format!(
                "cgroup v2 {}: {}",
                dir.display(),
                limits
                    .iter()
                    .map(|(f, v)| format!("{f}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        })(),
        CgroupPlan::V1 { limits } => (|| {
            let mut said = Vec::new();
            for (controller, own, file, value) in &limits {
                let dir = Path::new(ROOT)
                    .join(controller)
                    .join(own.trim_start_matches('/'))
                    .join(name);
                sweep_stale(&dir);
                fs::create_dir(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                made.dirs.push(dir.clone());
                fs::write(dir.join(file), value)
                    .map_err(|e| format!("cannot write {}/{file}: {e}", dir.display()))?;
                made.procs.push(dir.join("cgroup.procs"));
                said.push(format!("{file}={value}"));
            }
            Ok(format!("cgroup v1: {}", said.join(" ")))
        })(),
    };
    match result {
        Ok(note) => (made, note),
        Err(why) => {
            drop(made);
            (
                SandboxCgroup::default(),
                format!("no cgroup ({why}); rlimits only"),
            )
        }
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            // The last processes may still be leaving the cgroup as their exit completes.
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Removes sandbox cgroups a killed labgrade left beside `dir`: those whose agent (the pid in
/// the name; `kill(pid, 0)` looks in the agent's own pid namespace) is gone. `rmdir` refuses a
/// cgroup that still has processes anyway.
impl SandboxCgroup {
    /// Processes the kernel killed for going over the memory limit (cgroup v2 `memory.events`,
    /// v1 `memory.oom_control`, each `oom_kill N`); `None` without a memory cgroup.
    pub(crate) fn memory_kills(&self) -> Option<u64> {
        let mut found = None;
        for dir in &self.dirs {
            for file in ["memory.events", "memory.oom_control"] {
                let Ok(text) = fs::read_to_string(dir.join(file)) else {
                    continue;
                };
                let n = text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                });
                if let Some(n) = n {
                    found = Some(found.unwrap_or(0) + n);
                }
            }
        }
        found
    }
}

/// Where sandbox cgroups of this machine are made: the v2 root, and each v1 controller's
/// cgroup of this process.
fn parents() -> Vec<PathBuf> {
    let probed = probe();
    let mut out = vec![PathBuf::from(ROOT)];
    if let CgroupPlan::V1 { limits } = plan(&probed, 1, 1) {
        for (controller, own, _, _) in limits {
            out.push(
                Path::new(ROOT)
                    .join(controller)
                    .join(own.trim_start_matches('/')),
            );
        }
    }
    out
}

/// Starts a process that outlives the agent to remove the cgroups its sandboxes made, however
/// the agent ends (SIGKILL of labgrade included: the agent dies with it, and a cgroup
/// directory would stay behind). It waits for the end of a pipe only the agent holds, removes
/// `labgrade-sandbox-<agent pid>` wherever sandboxes make it (retrying while the last
/// processes leave), and exits. Call before the agent's pid namespace: the reaper must not
/// die with it. Only root makes cgroups, so only root starts one.
pub(crate) fn start_reaper() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let name = format!("labgrade-sandbox-{}", std::process::id());
    let Ok((r, w)) = nix::unistd::pipe() else {
        return;
    };
    // SAFETY: single-threaded; the child only reads, removes directories and `_exit`s.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(w);
            let _ = nix::unistd::setsid();
            // Closes everything but the pipe: the agent's stdout must reach EOF when it dies.
            // SAFETY: plain fd syscalls in the forked child.
            unsafe {
                let keep = std::os::fd::AsRawFd::as_raw_fd(&r);
                for fd in 0..keep {
                    libc::close(fd);
                }
                libc::close_range(u32::try_from(keep + 1).unwrap_or(u32::MAX), u32::MAX, 0);
            }
            let _ = nix::sys::prctl::set_name(c"labgrade-reaper");
            let mut b = [0u8; 1];
            loop {
                match nix::unistd::read(&r, &mut b) {
                    Ok(0) => break,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
            for parent in parents() {
                let dir = parent.join(&name);
                for _ in 0..200 {
                    if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            // SAFETY: ends the forked child.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(r);
            // Held for the agent's life, never inherited by what it runs.
            let _ = nix::fcntl::fcntl(
                &w,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            std::mem::forget(w);
        }
        Err(_) => {}
    }
}

fn sweep_stale(dir: &Path) {
    let Some(parent) = dir.parent() else { return };
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("labgrade-sandbox-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone && e.path() != dir {
            let _ = fs::remove_dir(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_v2_limits_pids_and_memory_in_one_cgroup() {
        let p = CgroupProbe {
            unified_root_controllers: Some("cpuset cpu io memory pids\n".into()),
            ..CgroupProbe::default()
        };
        assert_eq!(
            plan(&p, 64, 1024),
            CgroupPlan::V2 {
                enable: "+pids +memory".into(),
                limits: vec![
                    ("pids.max".into(), "64".into()),
                    ("memory.max".into(), "1024".into()),
                    ("memory.swap.max".into(), "0".into()),
                ],
            }
        );
    }

    #[test]
    fn hybrid_uses_the_v1_controllers_under_this_processs_own_cgroups() {
        // /sys/fs/cgroup/unified is v2 without controllers; the root is not a v2 mount.
        let p = CgroupProbe {
            unified_root_controllers: None,
            v1_pids: true,
            v1_memory: true,
            own: "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n0::/\n".into(),
        };
        assert_eq!(
            plan(&p, 64, 1024),
            CgroupPlan::V1 {
                limits: vec![
                    ("pids".into(), "/".into(), "pids.max".into(), "64".into()),
                    (
                        "memory".into(),
                        "/process_api/abc".into(),
                        "memory.limit_in_bytes".into(),
                        "1024".into()
                    ),
                ],
            }
        );
    }

    #[test]
    fn no_hierarchy_means_rlimits_only() {
        assert!(matches!(
            plan(&CgroupProbe::default(), 64, 1024),
            CgroupPlan::None(_)
        ));
        let bare_v2 = CgroupProbe {
            unified_root_controllers: Some("\n".into()),
            ..CgroupProbe::default()
        };
        assert!(matches!(plan(&bare_v2, 64, 1024), CgroupPlan::None(_)));
    }
}
