//! The sandbox a graded task runs in: a student's code must never be real root on the host, never
//! outlive its time, and never reach anything but its own state.
//!
//! Three processes, all forks of the (single-threaded) agent, no helper binary:
//! - the *keeper* joins the sandbox's cgroup, becomes an unprivileged uid unique to this
//!   sandbox (the agent's pid above [`SANDBOX_UID_BASE`]), maps it to root in a new user
//!   namespace, and unshares mount, pid, net, ipc, uts and cgroup namespaces. It never runs
//!   student code and stands outside the pid namespace (the student cannot name it, let alone
//!   ptrace it), so it outlives the task and keeps its mount namespace for the checks: the agent
//!   reads the state left behind through `/proc/KEEPER/root` and `/proc/KEEPER/mountinfo`.
//! - the *init* (pid 1 inside) builds the sandbox's own root ([`root`]: the machine's programs
//!   read-only, a private proc, a sized tmpfs on `/tmp` which holds `$LAB`, private world-
//!   writable dirs), runs the assignment's setup, then the student's `sh ENTRY` under rlimits,
//!   and exits when it ends or when its time is up. It keeps that time itself (poll on a
//!   signalfd) and has no signal handler, so no signal the student sends can end it. When it
//!   exits the kernel kills every process left in the namespace before the keeper's `waitpid`
//!   returns: checks never race the student.
//! - the student's shell and whatever it starts.
//!
//! Output goes through pipes the agent drains as it comes, keeping `output_bytes` of each.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::memfd::MFdFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use crate::LAB_DIR;
use crate::cgroup::{self, SandboxCgroup};
use labgrade_proto::{MountEntry, Privilege, SandboxOutcome, SandboxRequest};

mod root;

/// Sandboxes on a host run as this uid plus the agent's pid: unique per concurrent sandbox (one
/// per agent at a time), so `RLIMIT_NPROC` counts only its own processes and no sandbox can
/// signal another. Far above any uid a distribution hands out.
pub const SANDBOX_UID_BASE: u32 = 1_000_000_000;

/// Where the entry file is put inside the sandbox (beside `$LAB`, on the same private tmpfs).
const TASK_DIR: &str = "/tmp/.task";

/// A finished sandbox whose keeper is alive: its mount namespace, with everything the student
/// left mounted, stays readable until this is dropped.
#[derive(Debug)]
pub(crate) struct HeldSandbox {
    keeper: Pid,
    identity: Identity,
    /// The keeper's pid in the proc the agent sees (its session's pid namespace).
    keeper_in_proc: i32,
    release: Option<OwnedFd>,
    cgroup: SandboxCgroup,
}

impl HeldSandbox {
    /// What the fact reader needs to read the sandbox's state as its student could.
    pub(crate) fn view(&self) -> Result<crate::reader::StudentView, String> {
        let (uid, own_user_ns) = match self.identity {
            Identity::Root => (None, false),
            Identity::Switch(uid) => (Some(uid), true),
            Identity::Nested => (None, true),
        };
        crate::reader::open_view(self.keeper_in_proc, uid, own_user_ns)
    }

    /// The sandbox's mount table (see [`crate::reader::read_mountinfo`]).
    pub(crate) fn mountinfo(&self) -> std::io::Result<String> {
        crate::reader::read_mountinfo(self.keeper_in_proc)
    }
}

impl Drop for HeldSandbox {
    fn drop(&mut self) {
        self.release = None;
        let _ = kill(self.keeper, Signal::SIGKILL);
        let _ = waitpid(self.keeper, None);
    }
}

/// How the keeper becomes unprivileged.
#[derive(Debug, Clone, Copy)]
enum Identity {
    /// Real root (a VM is the boundary): no user namespace.
    Root,
    /// Switch to this uid/gid, then map it to root in a new user namespace.
    Switch(u32),
    /// Already unprivileged (labgrade is not root): map our own uid to root in a nested one.
    Nested,
}

/// Runs one task in a new sandbox. `Err` is an infrastructure error (the sandbox could not be
/// made or did not end), never the student's.
pub(crate) fn run(
    req: &SandboxRequest,
    privilege: Privilege,
) -> Result<(SandboxOutcome, HeldSandbox), String> {
    let started = Instant::now();
    let identity = match (req.user_namespace, privilege) {
        (false, _) => Identity::Root,
        (true, Privilege::Root) => Identity::Switch(SANDBOX_UID_BASE + std::process::id()),
        (true, Privilege::UserNamespace { .. }) => Identity::Nested,
    };
    let mut isolation = vec![match identity {
        Identity::Root => "root in private namespaces of a VM (the VM is the boundary)".to_owned(),
        Identity::Switch(uid) => {
            format!("user namespace: root inside is uid {uid} outside, unprivileged")
        }
        Identity::Nested => {
            "user namespace nested in labgrade's own (labgrade is not root): root inside is the \
             calling user outside"
                .to_owned()
        }
    }];
    isolation.push("new mount, pid, net, ipc, uts and cgroup namespaces; private /tmp".into());
    let l = req.limits;
    isolation.push(format!(
        "rlimits: nproc {} as {} MiB fsize {} MiB cpu {} s nofile {}; wall {} ms",
        l.processes, l.memory_mib, l.file_size_mib, l.cpu_secs, l.open_files, l.wall_ms
    ));
    let (cgroup, note) = cgroup::create(
        &format!("labgrade-sandbox-{}", std::process::id()),
        l.processes,
        l.memory_mib.saturating_mul(1 << 20),
    );
    isolation.push(note);

    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot make a pipe: {e}"));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let (release_r, release_w) = pipe()?;
    // Bigger pipes: a flood of output is drained in fewer, larger reads.
    for fd in [&out_r, &err_r] {
        // SAFETY: F_SETPIPE_SZ on a pipe this process owns; failure leaves the default size.
        unsafe {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
    let devnull = fs::File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let procs: Vec<CString> = cgroup
        .procs
        .iter()
        .filter_map(|p| CString::new(p.as_os_str().as_encoded_bytes()).ok())
        .collect();

    // SAFETY: the agent is single-threaded (it cannot make threads once it has unshared its pid
    // namespace), so the child may allocate and use std freely; it never returns from `keeper`.
    let keeper = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let fds = [
                devnull.as_raw_fd(),
                out_w.as_raw_fd(),
                err_w.as_raw_fd(),
                status_w.as_raw_fd(),
                release_r.as_raw_fd(),
            ];
            let code = keeper_main(fds, &procs, identity, req);
            // SAFETY: ends the forked child without running the agent's destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(format!("cannot fork the sandbox: {e}")),
    };
    drop((out_w, err_w, status_w, release_r, devnull));
    let mut held = HeldSandbox {
        keeper,
        identity,
        keeper_in_proc: 0,
        release: Some(release_w),
        cgroup,
    };

    let cap = usize::try_from(l.output_bytes).unwrap_or(usize::MAX);
    let mut streams = [
        Stream::new(out_r, cap),
        Stream::new(err_r, cap),
        Stream::new(status_r, 1 << 20),
    ];
    let backstop = started
        + Duration::from_millis(l.setup_ms.saturating_add(l.wall_ms))
        + Duration::from_secs(15);
    while streams.iter().any(|s| s.open) {
        let left = backstop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // The keeper dies, its init gets SIGKILL (parent-death signal), and with it the rest.
            let _ = kill(keeper, Signal::SIGKILL);
            return Err("the sandbox did not end 15 s after its limits; it was killed".into());
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd<'_>> = streams
            .iter()
            .filter(|s| s.open)
            .map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("cannot poll the sandbox's output: {e}")),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (s, r) in streams.iter_mut().filter(|s| s.open).zip(ready) {
            if r {
                s.read_some();
            }
        }
    }
    let [out, err, status] = streams;
    let lines = String::from_utf8_lossy(&status.kept).into_owned();
    let mut outcome = SandboxOutcome {
        isolation,
        stdout: out.text(),
        stderr: err.text(),
        stdout_bytes: out.total,
        stderr_bytes: err.total,
        ..SandboxOutcome::default()
    };
    let mut setup_done = false;
    let mut keeper_error = None;
    let mut ended = None;
    let at = |name: &str| -> Option<u64> {
        lines.lines().find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    outcome.sandbox_ms = at("T sandbox ").unwrap_or(0);
    outcome.setup_ms = at("T setup ").unwrap_or(0);
    outcome.student_ms = at("T student ").unwrap_or(0);
    for line in lines.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "C" => held.keeper_in_proc = rest.trim().parse().unwrap_or(0),
            "F" => keeper_error = Some(rest.to_owned()),
            "S" => {
                let (code, text) = rest.split_once(' ').unwrap_or((rest, "\"\""));
                if code == "0" {
                    setup_done = true;
                } else {
                    let text: String = serde_json::from_str(text).unwrap_or_default();
                    outcome.setup_error = Some(format!("the setup exited {code}:\n{text}"));
                }
            }
            "X" => {
                let mut w = rest.split_whitespace();
                match (w.next(), w.next().and_then(|n| n.parse().ok())) {
                    (Some("exit"), Some(n)) => outcome.exit_code = Some(n),
                    (Some("signal"), Some(n)) => outcome.signal = Some(n),
                    _ => {}
                }
            }
            "D" => ended = Some(rest.to_owned()),
            _ => {}
        }
    }
    outcome.memory_limit_hit = held.cgroup.memory_kills().is_some_and(|n| n > 0);
    if let Some(e) = keeper_error {
        return Err(format!("cannot make the sandbox: {e}"));
    }
    if held.keeper_in_proc == 0 {
        return Err(format!(
            "the sandbox's keeper died before it was ready (status: {lines:?})"
        ));
    }
    let alarm = format!("exit {TIMED_OUT_CODE}");
    if ended.as_deref() == Some(alarm.as_str()) {
        if setup_done {
            outcome.timed_out = true;
            // The init died by its timer before it could say: the whole wall budget was used.
            outcome.student_ms = l.wall_ms;
        } else if outcome.setup_error.is_none() {
            outcome.setup_error = Some(format!("the setup ran past {} ms", l.setup_ms));
        }
    } else if !setup_done && outcome.setup_error.is_none() {
        return Err(format!(
            "the sandbox's init ended before its setup did ({})",
            ended.unwrap_or_else(|| "no status".into())
        ));
    }
    Ok((outcome, held))
}

/// One pipe from the sandbox, drained as it comes, the first `cap` bytes kept.
struct Stream {
    fd: OwnedFd,
    open: bool,
    kept: Vec<u8>,
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl Stream {
    fn new(fd: OwnedFd, cap: usize) -> Stream {
        Stream {
            fd,
            open: true,
            kept: Vec::new(),
            buf: vec![0u8; 1 << 20],
            cap,
            total: 0,
        }
    }

    fn read_some(&mut self) {
        match nix::unistd::read(&self.fd, &mut self.buf) {
            Ok(0) => self.open = false,
            Ok(n) => {
                self.total += n as u64;
                let room = self.cap.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&self.buf[..n.min(room)]);
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => self.open = false,
        }
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.kept).into_owned();
        if self.total > self.kept.len() as u64 {
            s.push_str(&format!(
                "\n[labgrade kept {} of {} bytes; the rest was discarded]\n",
                self.kept.len(),
                self.total
            ));
        }
        s
    }
}

/// Writes a status line on fd 3 (the agent reads them all at the end).
fn status(line: &str) {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    // SAFETY: fd 3 is the status pipe, set up by `keeper_main`; a plain write(2).
    unsafe {
        libc::write(3, bytes.as_ptr().cast(), bytes.len());
    }
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

/// The keeper, in the forked child. Returns its exit code; status lines say what happened.
fn keeper_main(fds: [i32; 5], procs: &[CString], identity: Identity, req: &SandboxRequest) -> i32 {
    let started = Instant::now();
    // SAFETY: plain fd syscalls on fds this process owns; afterwards only 0-4 are open.
    unsafe {
        for (to, from) in fds.iter().enumerate() {
            let to = i32::try_from(to).unwrap_or(0);
            if *from != to && libc::dup2(*from, to) < 0 {
                return 100;
            }
        }
        if libc::close_range(5, u32::MAX, 0) < 0 {
            for fd in 5..65536 {
                libc::close(fd);
            }
        }
        libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(4, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    match make_namespaces(procs, identity) {
        Ok(()) => {}
        Err(e) => {
            status(&format!("F {e}"));
            return 101;
        }
    }
    status(&format!("C {}", std::process::id()));
    status(&format!("T sandbox {}", ms(started)));
    // SAFETY: still single-threaded; the init never returns from `init_main`.
    let init = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = init_main(req);
            // SAFETY: ends the forked child.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            status(&format!("F cannot fork the sandbox's init: {e}"));
            return 102;
        }
    };
    // SAFETY: the keeper lets go of the output pipes, so they end when the task's processes do.
    unsafe {
        libc::close(1);
        libc::close(2);
    }
    let ended = match waitpid(init, None) {
        Ok(WaitStatus::Exited(_, code)) => format!("exit {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("signal {}", sig as i32),
        Ok(other) => format!("other {other:?}"),
        Err(e) => format!("error {e}"),
    };
    status(&format!("D {ended}"));
    // SAFETY: closes the status pipe, then waits for the agent to let go (EOF on fd 4).
    unsafe {
        libc::close(3);
        let mut b = [0u8; 1];
        while libc::read(4, b.as_mut_ptr().cast(), 1) > 0 {}
    }
    0
}

fn errno(what: &str) -> impl Fn(nix::errno::Errno) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn make_namespaces(procs: &[CString], identity: Identity) -> Result<(), String> {
    for p in procs {
        // Joins before dropping privilege; "0" means the writer itself, in v1 and v2 alike.
        fs::write(std::path::Path::new(p.to_str().unwrap_or_default()), "0")
            .map_err(|e| format!("cannot join the cgroup {p:?}: {e}"))?;
    }
    let inner_outer = match identity {
        Identity::Root => None,
        Identity::Nested => Some(0),
        Identity::Switch(uid) => {
            let id = nix::unistd::Uid::from_raw(uid);
            let gid = nix::unistd::Gid::from_raw(uid);
            nix::unistd::setgroups(&[]).map_err(errno("setgroups"))?;
            nix::unistd::setresgid(gid, gid, gid).map_err(errno("setresgid"))?;
            nix::unistd::setresuid(id, id, id).map_err(errno("setresuid"))?;
            Some(uid)
        }
    };
    // A credential change clears both: set them again (dumpable, to write our own maps).
    nix::sys::prctl::set_dumpable(true).map_err(errno("PR_SET_DUMPABLE"))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(errno("PR_SET_PDEATHSIG"))?;
    if let Some(outer) = inner_outer {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(errno("unshare(CLONE_NEWUSER)"))?;
        let w = |file: &str, text: String| {
            fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))
        };
        w("/proc/self/setgroups", "deny".into())?;
        w("/proc/self/uid_map", format!("0 {outer} 1"))?;
        w("/proc/self/gid_map", format!("0 {outer} 1"))?;
    }
    // Not dumpable: nothing in the sandbox may ptrace the keeper (it outlives the task). Nested
    // is the exception: the agent is then not root where the keeper's memory was made (the
    // initial user namespace) and could not read `/proc/KEEPER/root` of a non-dumpable keeper.
    // The student cannot reach it either way: the keeper stands outside the sandbox's pid
    // namespace, and the init (inside it) makes itself non-dumpable first thing.
    nix::sys::prctl::set_dumpable(matches!(identity, Identity::Nested))
        .map_err(errno("PR_SET_DUMPABLE"))?;
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWCGROUP,
    )
    .map_err(errno("unshare(mount, pid, net, ipc, uts, cgroup)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(errno("make / private"))?;
    Ok(())
}

/// What the sandbox's init exits with when time is up (its setup's or the student's).
const TIMED_OUT_CODE: i32 = 124;

fn sandbox_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LAB", LAB_DIR)
        .env("HOME", LAB_DIR)
        .env("LC_ALL", "C.UTF-8")
        .env("TERM", "dumb")
        .current_dir(LAB_DIR)
}

/// How a child the init waited for ended.
enum Ended {
    Exited(i32),
    Signaled(i32),
    /// Its time ran out first.
    TimedOut,
}

/// Waits for `pid` until `limit` has passed, reaping every other process that ends meanwhile
/// (pid 1 inherits every orphan). The init keeps time itself, with no signal handler: pid 1 of
/// a namespace ignores every signal it has no handler for, so a student's `kill -ALRM 1` (or
/// any other signal) cannot end it or fake a time-out. SIGCHLD is blocked and read from a
/// signalfd only to wake up.
fn wait_for(pid: Pid, limit: Duration, wake: &SignalFd) -> Ended {
    let deadline = Instant::now() + limit;
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ended::Exited(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                    return Ended::Signaled(sig as i32);
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                // No child at all: the one waited for is gone without a status (never).
                Err(_) => return Ended::Exited(-1),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ended::TimedOut;
        }
        let ms = u16::try_from(left.as_millis().clamp(1, 1000)).unwrap_or(1000);
        let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
        while let Ok(Some(_)) = wake.read_signal() {}
    }
}

/// Most bytes of the setup's output kept for its error message.
const SETUP_OUTPUT: u64 = 64 << 10;

/// Runs the assignment's setup (trusted) with its output in a memfd; its exit code and output,
/// or `None` when it ran past `limit`.
fn run_setup(
    req: &SandboxRequest,
    limit: Duration,
    wake: &SignalFd,
) -> Result<Option<(i32, String)>, String> {
    let mut out = fs::File::from(
        nix::sys::memfd::memfd_create(c"labgrade-setup", MFdFlags::MFD_CLOEXEC)
            .map_err(errno("memfd_create"))?,
    );
    let dup = |f: &fs::File| {
        f.try_clone()
            .map_err(|e| format!("cannot dup the setup's output: {e}"))
    };
    let child = sandbox_env(Command::new("sh").arg("-c").arg(&req.setup))
        .stdin(Stdio::null())
        .stdout(dup(&out)?)
        .stderr(dup(&out)?)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let code = match wait_for(pid, limit, wake) {
        Ended::Exited(c) => c,
        Ended::Signaled(sig) => 128 + sig,
        Ended::TimedOut => return Ok(None),
    };
    // Bytes, not text: a setup that prints something not UTF-8 still says what it said.
    let mut bytes = Vec::new();
    let _ = out
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| (&mut out).take(SETUP_OUTPUT).read_to_end(&mut bytes));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Some((code, text)))
}

/// Pid 1 of the sandbox. Returns its exit code: [`TIMED_OUT_CODE`] when time ran out.
fn init_main(req: &SandboxRequest) -> i32 {
    let started = Instant::now();
    // The student shares this pid namespace and uid: a dumpable init could be ptraced.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        status(&format!("F PR_SET_DUMPABLE in the init: {e}"));
        return 1;
    }
    if let Err(e) = init_mounts(req) {
        status(&format!("S 1 {}", serde_json::Value::from(e)));
        return 1;
    }
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    // Blocked here only: std's spawn gives every child an empty signal mask.
    let wake = match chld
        .thread_block()
        .and_then(|()| SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC))
    {
        Ok(w) => w,
        Err(e) => {
            status(&format!(
                "S 1 {}",
                serde_json::Value::from(format!("signalfd: {e}"))
            ));
            return 1;
        }
    };
    let l = req.limits;
    match run_setup(req, Duration::from_millis(l.setup_ms.max(1)), &wake) {
        Ok(Some((0, _))) => status("S 0 \"\""),
        Ok(Some((code, text))) => {
            status(&format!("S {code} {}", serde_json::Value::from(text)));
            return 1;
        }
        Ok(None) => return TIMED_OUT_CODE,
        Err(e) => {
            status(&format!("S 1 {}", serde_json::Value::from(e)));
            return 1;
        }
    }
    status(&format!("T setup {}", ms(started)));
    let student_started = Instant::now();
    let limits = [
        (libc::RLIMIT_NPROC, l.processes),
        (libc::RLIMIT_AS, l.memory_mib.saturating_mul(1 << 20)),
        (libc::RLIMIT_FSIZE, l.file_size_mib.saturating_mul(1 << 20)),
        (libc::RLIMIT_CPU, l.cpu_secs),
        (libc::RLIMIT_NOFILE, l.open_files),
        (libc::RLIMIT_CORE, 0),
    ];
    let mut cmd = Command::new("sh");
    sandbox_env(&mut cmd)
        .arg(format!("{TASK_DIR}/{}", req.entry))
        .stdin(Stdio::null());
    // SAFETY: setrlimit and setsid are async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            for (resource, value) in limits {
                let lim = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::setsid();
            Ok(())
        });
    }
    let student = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "labgrade: cannot run sh: {e}");
            status("X exit 127");
            return 0;
        }
    };
    let pid = Pid::from_raw(i32::try_from(student.id()).unwrap_or(0));
    // The task ends when the entry file's shell does; the kernel then kills the rest.
    match wait_for(pid, Duration::from_millis(l.wall_ms.max(1)), &wake) {
        Ended::Exited(code) => status(&format!("X exit {code}")),
        Ended::Signaled(sig) => status(&format!("X signal {sig}")),
        Ended::TimedOut => return TIMED_OUT_CODE,
    }
    status(&format!("T student {}", ms(student_started)));
    0
}

fn init_mounts(req: &SandboxRequest) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(errno("PR_SET_PDEATHSIG"))?;
    if req.entry.contains('/') || req.entry.starts_with('.') || req.entry.is_empty() {
        return Err(format!("bad entry file name {:?}", req.entry));
    }
    root::enter_own_root(req.limits.tmp_mib)?;
    let mk = |d: &str| fs::create_dir_all(d).map_err(|e| format!("cannot create {d}: {e}"));
    mk(LAB_DIR)?;
    mk(TASK_DIR)?;
    let entry = format!("{TASK_DIR}/{}", req.entry);
    fs::write(&entry, &req.script).map_err(|e| format!("cannot write {entry}: {e}"))?;
    nix::unistd::sethostname("labgrade-sandbox").map_err(errno("sethostname"))?;
    Ok(())
}

/// The mounts at or below `lab` in a `mountinfo` text, mount points made relative to `lab`.
/// Pure: never panics on any input (the text comes from a kernel, but may be of any version).
pub fn mounts_under(mountinfo: &str, lab: &str) -> Vec<MountEntry> {
    let lab = lab.trim_end_matches('/');
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut ids = left.split(' ').map(|f| f.parse::<u64>().unwrap_or(0));
            let (mount_id, parent_id) = (ids.next().unwrap_or(0), ids.next().unwrap_or(0));
            let mount_point = unescape(left.split(' ').nth(4)?);
            let mut r = right.splitn(3, ' ');
            let fstype = unescape(r.next()?);
            let source = unescape(r.next()?);
            let options = r.next().unwrap_or_default();
            let rel = if mount_point == lab {
                String::new()
            } else {
                mount_point.strip_prefix(lab)?.strip_prefix('/')?.to_owned()
            };
            Some(MountEntry {
                mount_id,
                parent_id,
                mount_point: rel,
                fstype,
                source,
                super_options: split_options(options)
                    .into_iter()
                    .map(|o| unescape(&o))
                    .collect(),
            })
        })
        .collect()
}

/// Splits at commas not preceded by a backslash (overlay escapes commas in its paths).
fn split_options(s: &str) -> Vec<String> {
    let mut options = labgrade_proto::options::split_escaped(s, ',');
    if options.last().is_some_and(String::is_empty) {
        options.pop();
    }
    options
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 0:35 / /tmp rw,nosuid,nodev - tmpfs labgrade-sandbox rw,size=131072k,mode=755
41 40 0:36 / /tmp/lab/merged rw,relatime - overlay overlay rw,lowerdir=/tmp/lab/l3:/tmp/lab/l2:/tmp/lab/l1,upperdir=/tmp/lab/upper,workdir=/tmp/lab/work,uuid=on
42 40 0:37 / /tmp/lab/with\\040space rw - tmpfs x rw
43 22 0:38 / /tmp/labx rw - tmpfs y rw
";

    #[test]
    fn mounts_under_lab_are_relative_and_in_order() {
        let m = mounts_under(INFO, "/tmp/lab");
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].mount_point, "merged");
        assert_eq!(m[0].fstype, "overlay");
        assert_eq!(
            m[0].super_options,
            vec![
                "rw",
                "lowerdir=/tmp/lab/l3:/tmp/lab/l2:/tmp/lab/l1",
                "upperdir=/tmp/lab/upper",
                "workdir=/tmp/lab/work",
                "uuid=on"
            ]
        );
        assert_eq!(m[1].mount_point, "with space");
    }

    #[test]
    fn escaped_commas_stay_inside_an_option() {
        assert_eq!(
            split_options(r"rw,lowerdir=/a\,b,upperdir=/u"),
            vec!["rw", r"lowerdir=/a\,b", "upperdir=/u"]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_mount_table_text_parses_without_panicking(text in "\\PC*", lab in "/[a-z/]{0,12}") {
            let _ = mounts_under(&text, &lab);
        }

        #[test]
        fn mountinfo_like_lines_parse_without_panicking(
            point in "[ -~]{0,30}", opts in "[ -~\\\\,]{0,60}"
        ) {
            let _ = mounts_under(&format!("1 2 0:1 / /tmp/lab/{point} rw - overlay overlay {opts}\n"), "/tmp/lab");
        }
    }

    #[test]
    fn broken_lines_are_skipped_not_panicked_on() {
        for text in [
            "",
            "-",
            " - ",
            "1 2 3 4 /tmp/lab/x - ",
            "\\",
            "1 2 3 4 /tmp/lab/\\04 - a b",
        ] {
            let _ = mounts_under(text, "/tmp/lab");
        }
    }
}
