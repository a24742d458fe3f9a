//! Guests: where labs run.
//!
//! A guest knows how to start a fresh [`AgentSession`] (the in-guest agent in private namespaces,
//! one per lab) and how to carry the agent's line protocol to it. It knows nothing about labs.
//! Backends: [`HostGuest`] (this machine, namespaces only); QEMU and Vagrant follow the same trait.

mod host;
mod session;
mod shell;

pub use host::HostGuest;
pub use session::{AgentSession, DiskProvider, StopCheck, collect_stderr};
pub use shell::shell_quote;

/// Something labs can run on.
pub trait Guest: Send + Sync + std::fmt::Debug {
    /// The name reports use, e.g. `host` or `qemu:debian:6.1`.
    fn name(&self) -> String;

    /// Starts a fresh agent session: new namespaces, a new shell, an empty `$LAB`.
    fn start_session(&self) -> Result<AgentSession, GuestError>;

    /// A whole machine of its own is the boundary (a VM): code graded there may be root in
    /// it, so sandboxes need no user namespace. `false` for anything sharing the host's kernel
    /// and files.
    fn is_machine_boundary(&self) -> bool {
        false
    }
}

/// A guest shared by handles (a batch that cannot have a machine per submission shares one).
impl<G: Guest + ?Sized> Guest for std::sync::Arc<G> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn start_session(&self) -> Result<AgentSession, GuestError> {
        (**self).start_session()
    }

    fn is_machine_boundary(&self) -> bool {
        (**self).is_machine_boundary()
    }
}

/// A scratch disk for a session ([`AgentSession::attach_disks`]): the formatted image (made by
/// `labgrade-disk` on the host) and the shell variable that names the device. Backends decide
/// what the device is: a loop device over a private copy (host), a virtio disk the image is
/// written onto (QEMU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchDisk {
    /// e.g. `DISK_XFS`.
    pub env: String,
    /// The image, a host path.
    pub image: std::path::PathBuf,
}

/// The guest could not serve: always an infrastructure error (exit code 3), never a lab failure.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The agent could not be started.
    #[error("cannot start the labgrade agent ({exe}): {source}")]
    Spawn {
        /// The agent executable.
        exe: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A virtual machine did not boot (or died); the console's last lines say why.
    #[error("the guest {guest} failed: {message}\n---- last console lines ----\n{console}\n----")]
    Boot {
        /// The guest, e.g. `qemu:debian:6.1`.
        guest: String,
        /// What went wrong.
        message: String,
        /// The last lines the guest's console printed.
        console: String,
    },
    /// The agent said it could not set up, or died; its last words are kept.
    #[error("the labgrade agent failed: {message}{}", stderr_tail(.stderr))]
    Agent {
        /// What went wrong.
        message: String,
        /// The agent's stderr, if any.
        stderr: String,
    },
    /// The machine the session ran in shut itself down (a poweroff, a reboot, a kernel panic:
    /// QEMU exited on its own, with success) while a request was in flight. Unlike the other
    /// variants this is what the code running in the machine did, not the grader's trouble: a
    /// grader may hold it against the code it graded there (one machine per submission).
    #[error(
        "the guest {guest} shut itself down: {message}\n---- last console lines ----\n{console}\n----"
    )]
    Stopped {
        /// The guest, e.g. `qemu:debian:6.1`.
        guest: String,
        /// What was in flight, and what the machine did.
        message: String,
        /// The last lines the guest's console printed.
        console: String,
    },
}

impl GuestError {
    /// Did the machine shut itself down (see [`GuestError::Stopped`])?
    pub fn is_stopped_by_guest(&self) -> bool {
        matches!(self, GuestError::Stopped { .. })
    }
}

fn stderr_tail(stderr: &str) -> String {
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .take(10)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nagent stderr:\n{}", tail.join("\n"))
    }
}
