//! The agent's wire protocol: one JSON object per line, requests in on stdin, responses out on
//! stdout. Any transport that carries lines (a pipe, virtio-serial, ssh) can carry it, so the
//! same agent serves every guest backend.

use crate::{Capability, Engine, Entry, TreeSnapshot};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the runner asks of the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Try each capability for real and say which work and why not.
    Probe {
        /// The capabilities to try.
        caps: Vec<Capability>,
        /// Filesystem images (host paths) for the capabilities that mount one: `xfs`, `xfs-v4`.
        #[serde(default)]
        images: Vec<ProbeImage>,
    },
    /// Hand the lab its scratch disks, each in a shell variable, before the first step.
    Attach {
        /// The disks.
        disks: Vec<AttachDisk>,
    },
    /// Run one step's shell text in the lab's session.
    Run {
        /// 1-based step number, echoed in file names and the reply.
        step: usize,
        /// The shell text.
        script: String,
        /// Milliseconds before the session is killed.
        timeout_ms: u64,
        /// Send [`Response::Output`] pieces while the step runs (for `labgrade exec`).
        #[serde(default)]
        stream: bool,
    },
    /// Read facts about paths relative to `$LAB`.
    Inspect {
        /// The paths.
        paths: Vec<String>,
        /// Those among them whose content (up to [`TEXT_LIMIT`]) is wanted as text: only
        /// content checks read it, and a 1 MiB file is 6 MiB of escaped JSON.
        #[serde(default)]
        text_of: Vec<String>,
    },
    /// Snapshot a directory relative to `$LAB`.
    Snapshot {
        /// The directory.
        dir: String,
    },
    /// Run a graded task in a fresh sandbox (see [`SandboxRequest`]); later `Inspect` and
    /// `Mounts` requests read the state it left, in its mount namespace, until the session ends.
    RunSandboxed(SandboxRequest),
    /// The mounts under `$LAB` as the session (or the sandbox last run) sees them.
    Mounts {
        /// Directories relative to `$LAB` an overlay's layers are expected to be: each layer
        /// of an overlay mount that is the same directory as one of them (however the mounter
        /// spelled it: `//tmp/lab/x`, `/tmp/lab/../lab/x`, through a symlink) is reported as
        /// `$LAB/<that name>`, so a check compares what the kernel resolved, not option text.
        #[serde(default)]
        layers: Vec<String>,
    },
    /// Start a container engine in the session (its data under the session's private tmpfs,
    /// its processes in the session's pid namespace), import the image, and export `$ENGINE`,
    /// `$IMAGE` and the engine's environment to the steps. Stopped at `Shutdown`, and killed with
    /// the session on every other path out.
    StartEngine(EngineRequest),
    /// End the session; the agent exits and its namespaces die with it.
    Shutdown,
}

/// What the agent answers. The first line it writes, unasked, is [`Response::Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// The session is ready.
    Hello(Hello),
    /// Probe results, in the order asked.
    Probed {
        /// One per capability asked.
        results: Vec<ProbeResult>,
    },
    /// The scratch disks are ready, in the order asked.
    Attached {
        /// One per disk.
        disks: Vec<AttachedDisk>,
    },
    /// A piece of a streamed step's output; more may follow, then [`Response::Ran`].
    Output {
        /// `stdout` or `stderr`.
        stream: String,
        /// The bytes, lossily decoded.
        data: String,
    },
    /// A step ran (or could not).
    Ran(StepOutcome),
    /// Facts, in the order asked.
    Inspected {
        /// One per path asked.
        facts: Vec<PathFacts>,
    },
    /// A directory snapshot.
    Snapshotted {
        /// The tree, or why it could not be read.
        tree: Result<TreeSnapshot, String>,
    },
    /// A sandboxed task ran (or its setup failed).
    Sandboxed(SandboxOutcome),
    /// The mounts asked for by [`Request::Mounts`], in mount order (the topmost last).
    Mounted {
        /// Mounts whose mount point is `$LAB` or below it.
        mounts: Vec<MountEntry>,
    },
    /// The engine is up and the image imported.
    EngineStarted(EngineStarted),
    /// The request could not be served; the session may be gone.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Reply to [`Request::Shutdown`].
    Bye,
}

impl Request {
    /// How long the runner waits for the reply: a step gets its own timeout (the agent ends it
    /// then) plus a minute; facts of a sandbox (read by a child the agent kills after 10 s) a
    /// minute; anything else five minutes (probes and digests of big files).
    pub fn reply_within(&self) -> std::time::Duration {
        use std::time::Duration;
        match self {
            Request::Run { timeout_ms, .. } => {
                Duration::from_millis(*timeout_ms).saturating_add(Duration::from_secs(60))
            }
            Request::RunSandboxed(r) => Duration::from_millis(r.limits.wall_ms)
                .saturating_add(Duration::from_millis(r.limits.setup_ms))
                .saturating_add(Duration::from_secs(60)),
            Request::Mounts { .. } => Duration::from_secs(60),
            _ => Duration::from_secs(300),
        }
    }
}

impl Response {
    /// The reply's name on the wire, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Hello(_) => "hello",
            Response::Probed { .. } => "probed",
            Response::Attached { .. } => "attached",
            Response::Output { .. } => "output",
            Response::Ran(_) => "ran",
            Response::Inspected { .. } => "inspected",
            Response::Snapshotted { .. } => "snapshotted",
            Response::Sandboxed(_) => "sandboxed",
            Response::Mounted { .. } => "mounted",
            Response::EngineStarted(_) => "engine_started",
            Response::Error { .. } => "error",
            Response::Bye => "bye",
        }
    }
}

/// A container engine to start in the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRequest {
    /// Which engine.
    pub engine: Engine,
    /// Where `$IMAGE` comes from.
    pub source: ImageSource,
    /// The image's name, as the steps get it in `$IMAGE`.
    pub image: String,
    /// How long to wait for the engine to answer, in ms (a TCG guest is slow).
    pub ready_within_ms: u64,
}

/// Where an engine lab's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// A root filesystem tar (a host path the guest can read), imported under the image's name:
    /// no registry needed.
    Import {
        /// The tar's path.
        rootfs_tar: String,
    },
    /// Pulled from its registry by the engine (`--image NAME`, e.g. the lesson's nginx:alpine):
    /// needs the network.
    Pull,
}

/// A started engine, as the steps see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStarted {
    /// The engine.
    pub engine: Engine,
    /// Variables exported to the steps (`ENGINE`, `IMAGE`, `DOCKER_HOST`, `CONTAINERS_CONF` ...).
    pub env: Vec<(String, String)>,
    /// The engine's version, as its client says it.
    pub version: String,
    /// Milliseconds from starting the engine to it answering.
    pub ready_ms: u64,
    /// Milliseconds importing (or pulling) the image.
    pub import_ms: u64,
}

/// How the agent is running, so reports can state it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// `$LAB` inside the session.
    pub lab_dir: String,
    /// Real root (the lesson exactly), or root only inside a user namespace.
    pub privilege: Privilege,
    /// Why the kernel log cannot be read, if it cannot.
    pub kmsg_unavailable: Option<String>,
}

/// Under what privilege labs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// Real root in private mount and pid namespaces: the lesson exactly.
    Root,
    /// Not root: uid 0 inside a new user namespace, mapped to the caller's uid outside.
    UserNamespace {
        /// The caller's real uid outside the namespace.
        outer_uid: u32,
    },
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Privilege::Root => f.write_str("root, in private mount and pid namespaces"),
            Privilege::UserNamespace { outer_uid } => write!(
                f,
                "not root (uid {outer_uid}): root inside a user namespace, with private mount and pid namespaces; \
                 labs that need real root are skipped"
            ),
        }
    }
}

/// The image a capability's probe mounts (read-only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeImage {
    /// The capability.
    pub cap: Capability,
    /// The image, a host path the guest can read.
    pub path: String,
}

/// One scratch disk to hand over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachDisk {
    /// The shell variable that gets the device path, e.g. `DISK_XFS`.
    pub env: String,
    /// Where the formatted filesystem is.
    pub source: DiskSource,
}

/// Where a scratch disk comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskSource {
    /// A virtio disk the backend has already written the image onto, found by its serial.
    Block {
        /// The disk's serial (`/sys/block/*/serial`).
        serial: String,
    },
    /// An image file (a host path) the agent copies onto its own tmpfs and attaches to a loop
    /// device, so the image itself is never written.
    Image {
        /// The image.
        path: String,
    },
}

/// A scratch disk, handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedDisk {
    /// The shell variable set.
    pub env: String,
    /// The block device it names, e.g. `/dev/vdb` or `/dev/loop3`.
    pub device: String,
}

/// Whether a capability works here, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The capability tried.
    pub cap: Capability,
    /// It worked.
    pub available: bool,
    /// What was tried and what happened (the kernel's own words where it gave any).
    pub detail: String,
}

/// One command in a step that failed, as `set -e` would have seen it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCommand {
    /// Line within the step's shell text (1-based).
    pub line: usize,
    /// Its exit code.
    pub code: i32,
}

/// What running a step produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// Exit code of the step's last command; `None` if the session died or timed out.
    pub exit_code: Option<i32>,
    /// Every command that failed, in order.
    pub failed: Vec<FailedCommand>,
    /// Standard output (at most [`OUTPUT_LIMIT`] bytes, lossily decoded).
    pub stdout: String,
    /// Standard error (at most [`OUTPUT_LIMIT`] bytes, lossily decoded).
    pub stderr: String,
    /// Kernel log lines written while the step ran.
    pub kmsg: Vec<String>,
    /// The step ran past its timeout and the session was killed.
    pub timed_out: bool,
    /// The shell exited (a step ran `exit`, say); later steps cannot run.
    pub session_ended: bool,
    /// Wall time of the step in milliseconds.
    pub duration_ms: u64,
}

impl StepOutcome {
    /// Every command succeeded and the session is still there.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.failed.is_empty() && !self.timed_out
    }
}

/// Most bytes of a step's stdout or stderr kept in a report.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// Facts about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFacts {
    /// Relative to `$LAB`, as asked.
    pub path: String,
    /// stat + xattrs + digest, or `None` if the path does not exist.
    pub entry: Option<Entry>,
    /// A regular file's content (lossily decoded), if asked for and at most [`TEXT_LIMIT`]
    /// bytes.
    pub text: Option<String>,
    /// A directory's entry names, sorted.
    pub children: Option<Vec<String>>,
    /// Why the path could not be read, other than not existing.
    pub error: Option<String>,
}

/// Largest file whose content is returned for `content` / `contains` checks.
pub const TEXT_LIMIT: u64 = 1 << 20;

/// A graded task: the assignment's setup, then the student's entry file, in a sandbox of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRequest {
    /// Shell text run first with `sh -c`, as root of the sandbox, cwd `$LAB` (trusted: it comes
    /// from the assignment). Its failure is the assignment's fault, never the student's.
    pub setup: String,
    /// The entry file's name, e.g. `mount.sh`; the student's code runs as `sh NAME`.
    pub entry: String,
    /// The entry file's bytes.
    pub script: Vec<u8>,
    /// Limits on the student's processes.
    pub limits: SandboxLimits,
    /// Put the sandbox in a user namespace whose root is an unprivileged uid outside, so the
    /// student is never real root. Off only where a VM is the boundary (root in it is fine, and
    /// kernels without unprivileged overlay still grade).
    pub user_namespace: bool,
}

/// What a sandboxed task may use. Every field is enforced by the kernel (rlimits, a cgroup
/// where one is writable, a sized tmpfs) or by the agent (wall time, output caps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLimits {
    /// Wall time of the student's code in ms; then every process of the task is killed.
    pub wall_ms: u64,
    /// Wall time of the setup in ms.
    pub setup_ms: u64,
    /// CPU seconds per process (RLIMIT_CPU).
    pub cpu_secs: u64,
    /// Address space per process in MiB (RLIMIT_AS), and the cgroup's memory limit.
    pub memory_mib: u64,
    /// Largest file a process may write, in MiB (RLIMIT_FSIZE).
    pub file_size_mib: u64,
    /// Processes of the task at once (RLIMIT_NPROC of its own uid; cgroup pids.max).
    pub processes: u64,
    /// Open files per process (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Bytes of stdout and of stderr kept; the rest is read and discarded.
    pub output_bytes: u64,
    /// Size of the sandbox's private `/tmp` (which holds `$LAB`), in MiB.
    pub tmp_mib: u64,
}

/// How a sandboxed task ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxOutcome {
    /// The setup failed (with its output): the task was not run; an assignment or
    /// infrastructure fault.
    pub setup_error: Option<String>,
    /// The entry file's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The wall limit was reached and every process of the task was killed.
    pub timed_out: bool,
    /// The kernel killed at least one of the task's processes for going over its memory limit
    /// (the cgroup's OOM kills; where no memory cgroup is writable, RLIMIT_AS makes allocations
    /// fail instead and this stays false).
    #[serde(default)]
    pub memory_limit_hit: bool,
    /// Standard output, at most `output_bytes` of it (lossily decoded).
    pub stdout: String,
    /// Standard error, at most `output_bytes` of it (lossily decoded).
    pub stderr: String,
    /// Bytes the task wrote to stdout in all (kept or discarded).
    pub stdout_bytes: u64,
    /// Bytes the task wrote to stderr in all (kept or discarded).
    pub stderr_bytes: u64,
    /// What isolated the task, in words (namespaces, uid, limits, cgroup or why none).
    pub isolation: Vec<String>,
    /// Milliseconds making the sandbox (fork, namespaces, mounts) before the setup.
    pub sandbox_ms: u64,
    /// Milliseconds of the setup.
    pub setup_ms: u64,
    /// Milliseconds of the student's code, to the last process gone.
    pub student_ms: u64,
}

/// One line of a mount table (`/proc/PID/mountinfo`), as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    /// The kernel's id of the mount (mountinfo's first field; 0 when unknown).
    #[serde(default)]
    pub mount_id: u64,
    /// The id of the mount it is mounted on: a mount stacked on another at the same point has
    /// that one as its parent, so the one a process sees is the one nothing is stacked on.
    #[serde(default)]
    pub parent_id: u64,
    /// Where it is mounted, relative to `$LAB` (`""` for `$LAB` itself).
    pub mount_point: String,
    /// The filesystem type, e.g. `overlay`.
    pub fstype: String,
    /// The mount source, e.g. `overlay`.
    pub source: String,
    /// The filesystem's options (the last field), split at commas that are not escaped.
    pub super_options: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_reply_is_awaited_past_the_steps_own_timeout() {
        let long = Request::Run {
            step: 1,
            script: "sleep 400".into(),
            timeout_ms: 600_000,
            stream: true,
        };
        assert!(long.reply_within() > std::time::Duration::from_secs(600));
        assert_eq!(
            Request::Shutdown.reply_within(),
            std::time::Duration::from_secs(300)
        );
    }
}
