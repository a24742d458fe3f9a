//! The `host` guest: the agent runs on this machine, in private namespaces of its own.

use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use nix::sys::signal::Signal;

use crate::{AgentSession, Guest, GuestError};

/// Runs each lab in fresh namespaces on this machine. As root, the lesson exactly; otherwise in a
/// user namespace (the agent sets that up and says so in its hello).
#[derive(Debug, Clone)]
pub struct HostGuest {
    agent_exe: PathBuf,
    /// The agent removes its sandboxes' cgroups even when killed (graded code runs here).
    reaps_sandbox_cgroups: bool,
}

impl HostGuest {
    /// `agent_exe` is a `labgrade` binary; the agent is its hidden `__agent` subcommand.
    pub fn new(agent_exe: impl Into<PathBuf>) -> HostGuest {
        HostGuest {
            agent_exe: agent_exe.into(),
            reaps_sandbox_cgroups: false,
        }
    }

    /// A host guest for grading: each agent also starts a reaper of its sandboxes' cgroups, so
    /// a grader killed with SIGKILL leaves none behind. Labs make no sandbox and go without.
    pub fn for_grading(agent_exe: impl Into<PathBuf>) -> HostGuest {
        HostGuest {
            reaps_sandbox_cgroups: true,
            ..HostGuest::new(agent_exe)
        }
    }
}

/// Kills and reaps the agent when the session ends, on every path out.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guest for HostGuest {
    fn name(&self) -> String {
        "host".to_owned()
    }

    fn start_session(&self) -> Result<AgentSession, GuestError> {
        let mut cmd = Command::new(&self.agent_exe);
        if self.reaps_sandbox_cgroups {
            cmd.env(labgrade_proto::REAP_SANDBOX_CGROUPS_ENV, "1");
        }
        cmd.arg("__agent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is a single async-signal-safe syscall. The agent dies with the thread that
        // started it, so a labgrade killed by SIGKILL takes every lab (and its mounts) with it.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| GuestError::Spawn {
            exe: self.agent_exe.display().to_string(),
            source,
        })?;
        tracing::debug!(pid = child.id(), "started agent");
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(GuestError::Agent {
                message: "agent pipes missing".into(),
                stderr: String::new(),
            });
        };
        let log = crate::collect_stderr(stderr);
        let reader = DeadlineReader::new(stdout);
        let timeout = std::sync::Arc::clone(&reader.timeout);
        // Disks come from the default provider: the agent copies each image onto its own
        // tmpfs and attaches a loop device to it.
        let mut session = AgentSession::establish(
            Box::new(BufReader::new(reader)),
            Box::new(stdin),
            log,
            Arc::default(),
            Box::new(ChildGuard(child)),
        )?;
        // Every reply has a deadline: an agent stuck on something a student left (a read that
        // never returns) is given up on, and killed with the session, instead of hanging the
        // grader.
        session.set_reply_timeout(Box::new(move |limit| {
            if let Ok(mut t) = timeout.lock() {
                *t = limit;
            }
        }));
        Ok(session)
    }
}

/// The agent's stdout, each read bounded by a timeout (as a VM's socket bounds its reads with
/// `SO_RCVTIMEO`): no data within it is a `TimedOut` error, never a wait for ever.
struct DeadlineReader {
    inner: std::process::ChildStdout,
    timeout: Arc<std::sync::Mutex<Duration>>,
}

impl DeadlineReader {
    /// The hello is awaited as long as any request.
    fn new(inner: std::process::ChildStdout) -> DeadlineReader {
        DeadlineReader {
            inner,
            timeout: Arc::new(std::sync::Mutex::new(
                labgrade_proto::Request::Shutdown.reply_within(),
            )),
        }
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let limit = self.timeout.lock().map(|t| *t).unwrap_or(Duration::MAX);
        let deadline = Instant::now().checked_add(limit);
        loop {
            let left = deadline.map_or(Duration::from_secs(60), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the agent did not answer within {} s", limit.as_secs()),
                ));
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.inner.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => return self.inner.read(buf),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
