//! The `host` guest: the agent runs on this machine, in private namespaces of its own.

use std::io::BufReader;
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
}

impl HostGuest {
    /// `agent_exe` is a `labgrade` binary; the agent is its hidden `__agent` subcommand.
    pub fn new(agent_exe: impl Into<PathBuf>) -> HostGuest {
        HostGuest {
            agent_exe: agent_exe.into(),
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
        // Disks come from the default provider: the agent copies each image onto its own
        // tmpfs and attaches a loop device to it.
        AgentSession::establish(
            Box::new(BufReader::new(stdout)),
            Box::new(stdin),
            log,
            Arc::default(),
            Box::new(ChildGuard(child)),
        )
    }
}
