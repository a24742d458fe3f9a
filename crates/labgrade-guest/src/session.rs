//! A live agent session, over whatever transport the backend gives it.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use labgrade_proto::{
    AttachDisk, AttachedDisk, Capability, DiskSource, EngineRequest, EngineStarted, Hello,
    MountEntry, PathFacts, ProbeImage, ProbeResult, Request, Response, SandboxOutcome,
    SandboxRequest, StepOutcome, TreeSnapshot,
};

use crate::ScratchDisk;

use crate::GuestError;

/// How a backend provides scratch disks: it readies each image (e.g. writes it onto a VM's disk
/// slot) and says where the agent finds it.
pub type DiskProvider =
    Box<dyn FnMut(&[ScratchDisk]) -> Result<Vec<AttachDisk>, GuestError> + Send>;

/// Receives a streamed step's output: the stream's name (`stdout` / `stderr`) and new text.
pub type OutputSink<'a> = dyn FnMut(&str, &str) + 'a;

/// Asked when the transport fails: `Some(error)` when the machine the session ran in stopped
/// by itself (see [`GuestError::Stopped`]), with what the backend knows of it; `None` otherwise.
pub type StopCheck = Box<dyn Fn(&str) -> Option<GuestError> + Send>;

/// One agent, one lab. Dropping it ends the agent and, with it, every process and mount of the
/// lab (the backend's guard kills what it started).
pub struct AgentSession {
    reader: Box<dyn BufRead + Send>,
    writer: Box<dyn Write + Send>,
    stderr: Arc<Mutex<String>>,
    hello: Hello,
    ended_cleanly: Arc<AtomicBool>,
    disk_provider: Option<DiskProvider>,
    reply_timeout: Option<Box<dyn Fn(Duration) + Send>>,
    /// A reply failed (timed out, unreadable, the channel broke): the agent's state is unknown,
    /// so nothing more is asked of it (not even a shutdown that would wait out another
    /// deadline); dropping the session kills it.
    broken: bool,
    stop_check: Option<StopCheck>,
    // Dropped last: the process (or VM) the session runs in.
    _guard: Box<dyn Send>,
}

impl std::fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSession")
            .field("hello", &self.hello)
            .field("disk_provider", &self.disk_provider.is_some())
            .finish_non_exhaustive()
    }
}

impl AgentSession {
    /// Wraps a transport and waits for the agent's hello. `ended_cleanly` is set once the agent
    /// has answered `Shutdown`: a backend that reuses its transport (a VM's serial port) may
    /// hand it to the next session only then.
    pub fn establish(
        reader: Box<dyn BufRead + Send>,
        writer: Box<dyn Write + Send>,
        stderr: Arc<Mutex<String>>,
        ended_cleanly: Arc<AtomicBool>,
        guard: Box<dyn Send>,
    ) -> Result<AgentSession, GuestError> {
        let mut session = AgentSession {
            reader,
            writer,
            stderr,
            hello: Hello {
                lab_dir: String::new(),
                privilege: labgrade_proto::Privilege::Root,
                kmsg_unavailable: None,
            },
            ended_cleanly,
            disk_provider: None,
            reply_timeout: None,
            broken: false,
            stop_check: None,
            _guard: guard,
        };
        let started = std::time::Instant::now();
        match session.receive()? {
            Response::Hello(hello) => {
                tracing::debug!(elapsed = ?started.elapsed(), "agent said hello");
                session.hello = hello;
                Ok(session)
            }
            other => Err(session.agent_error(format!("expected hello, got {other:?}"))),
        }
    }

    /// What the agent said about itself when it started.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Sets how to bound the wait for each reply ([`Request::reply_within`]), for transports
    /// that could otherwise wait for ever (a VM's port; a process's pipe ends when it dies).
    pub fn set_reply_timeout(&mut self, set: Box<dyn Fn(Duration) + Send>) {
        self.reply_timeout = Some(set);
    }

    /// Sets how to tell a machine that stopped by itself from a broken transport: asked when a
    /// request cannot be sent or its reply cannot be read (see [`StopCheck`]).
    pub fn set_stop_check(&mut self, check: StopCheck) {
        self.stop_check = Some(check);
    }

    /// Sets how this session's backend provides scratch disks. Without one, the agent is given
    /// each image's path, copies it onto its tmpfs and attaches a loop device.
    pub fn set_disk_provider(&mut self, provider: DiskProvider) {
        self.disk_provider = Some(provider);
    }

    /// Hands the session its scratch disks, each in its shell variable for the steps to come.
    pub fn attach_disks(&mut self, disks: &[ScratchDisk]) -> Result<Vec<AttachedDisk>, GuestError> {
        if disks.is_empty() {
            return Ok(Vec::new());
        }
        let sources = match self.disk_provider.as_mut() {
            Some(provide) => provide(disks)?,
            None => disks
                .iter()
                .map(|d| AttachDisk {
                    env: d.env.clone(),
                    source: DiskSource::Image {
                        path: d.image.display().to_string(),
                    },
                })
                .collect(),
        };
        match self.request(&Request::Attach { disks: sources })? {
            Response::Attached { disks } => Ok(disks),
            other => Err(self.unexpected("attached disks", &other)),
        }
    }

    /// Runs one step's shell text, at most `timeout`; with `on_output`, its output is streamed
    /// there (`stdout` / `stderr`, text) as it comes.
    pub fn run_step(
        &mut self,
        step: usize,
        script: &str,
        timeout: Duration,
        on_output: Option<&mut OutputSink<'_>>,
    ) -> Result<StepOutcome, GuestError> {
        let request = Request::Run {
            step,
            script: script.to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            stream: on_output.is_some(),
        };
        let reply = match on_output {
            Some(f) => self.request_streaming(&request, f)?,
            None => self.request(&request)?,
        };
        match reply {
            Response::Ran(outcome) => Ok(outcome),
            other => Err(self.unexpected("a step's outcome", &other)),
        }
    }

    /// Facts about paths relative to `$LAB`; the content of those in `text_of` too.
    pub fn inspect(
        &mut self,
        paths: Vec<String>,
        text_of: Vec<String>,
    ) -> Result<Vec<PathFacts>, GuestError> {
        match self.request(&Request::Inspect { paths, text_of })? {
            Response::Inspected { facts } => Ok(facts),
            other => Err(self.unexpected("facts", &other)),
        }
    }

    /// Runs a graded task in a fresh sandbox; later [`AgentSession::inspect`] and
    /// [`AgentSession::mounts`] read the state it left. `Err` is always infrastructure.
    pub fn run_sandboxed(&mut self, request: SandboxRequest) -> Result<SandboxOutcome, GuestError> {
        match self.request(&Request::RunSandboxed(request))? {
            Response::Sandboxed(outcome) => Ok(outcome),
            other => Err(self.unexpected("a sandboxed task's outcome", &other)),
        }
    }

    /// The mounts at or below `$LAB`, in mount order, as the last sandbox (or the session) sees
    /// them; overlay layers that are one of `layers` (relative to `$LAB`) are named as it.
    pub fn mounts(&mut self, layers: Vec<String>) -> Result<Vec<MountEntry>, GuestError> {
        match self.request(&Request::Mounts { layers })? {
            Response::Mounted { mounts } => Ok(mounts),
            other => Err(self.unexpected("mounts", &other)),
        }
    }

    /// A snapshot of a directory relative to `$LAB`, or why the agent could not take it.
    pub fn snapshot(&mut self, dir: &str) -> Result<Result<TreeSnapshot, String>, GuestError> {
        match self.request(&Request::Snapshot {
            dir: dir.to_owned(),
        })? {
            Response::Snapshotted { tree } => Ok(tree),
            other => Err(self.unexpected("a snapshot", &other)),
        }
    }

    /// Starts a container engine in the session and imports its image; the steps to come get
    /// `$ENGINE`, `$IMAGE` and the engine's environment. The agent stops it at shutdown.
    pub fn start_engine(&mut self, request: EngineRequest) -> Result<EngineStarted, GuestError> {
        match self.request(&Request::StartEngine(request))? {
            Response::EngineStarted(started) => Ok(started),
            other => Err(self.unexpected("a started engine", &other)),
        }
    }

    /// Tries capabilities in the guest; filesystem probes mount the given images.
    pub fn probe(
        &mut self,
        caps: Vec<Capability>,
        images: Vec<ProbeImage>,
    ) -> Result<Vec<ProbeResult>, GuestError> {
        match self.request(&Request::Probe { caps, images })? {
            Response::Probed { results } => Ok(results),
            other => Err(self.unexpected("probe results", &other)),
        }
    }

    fn unexpected(&self, wanted: &str, got: &Response) -> GuestError {
        self.agent_error(format!("expected {wanted}, got {got:?}"))
    }

    /// Ends the session: the agent exits, and its namespaces (every process and mount of the lab)
    /// go with it. A backend may reuse the transport only after a clean end.
    pub fn shutdown(&mut self) -> Result<(), GuestError> {
        match self.request(&Request::Shutdown)? {
            Response::Bye => Ok(()),
            other => Err(self.unexpected("bye", &other)),
        }
    }

    /// Sends one request and waits for its response. An `Error` response becomes a [`GuestError`].
    fn request(&mut self, request: &Request) -> Result<Response, GuestError> {
        self.request_streaming(request, &mut |_, _| {})
    }

    /// Like [`AgentSession::request`], handing each streamed output piece (`stdout` or
    /// `stderr`, text) to `on_output` as it arrives.
    fn request_streaming(
        &mut self,
        request: &Request,
        on_output: &mut OutputSink<'_>,
    ) -> Result<Response, GuestError> {
        let started = std::time::Instant::now();
        if self.broken {
            return Err(self.agent_error(
                "an earlier reply of this agent failed; it is not asked again".into(),
            ));
        }
        if let Some(set) = &self.reply_timeout {
            set(request.reply_within());
        }
        let mut line = serde_json::to_vec(request)
            .map_err(|e| self.agent_error(format!("cannot encode request: {e}")))?;
        line.push(b'\n');
        if let Err(e) = self
            .writer
            .write_all(&line)
            .and_then(|()| self.writer.flush())
        {
            return Err(self.transport_error(format!("cannot send to the agent: {e}")));
        }
        loop {
            return match self.receive()? {
                Response::Output { stream, data } => {
                    on_output(&stream, &data);
                    continue;
                }
                Response::Error { message } => Err(self.agent_error(message)),
                Response::Bye => {
                    self.ended_cleanly.store(true, Ordering::SeqCst);
                    Ok(Response::Bye)
                }
                r => Ok(r),
            }
            .inspect(|r| tracing::debug!(reply = r.kind(), elapsed = ?started.elapsed(), "agent replied"));
        }
    }

    fn receive(&mut self) -> Result<Response, GuestError> {
        let mut line = String::new();
        let reply = match self.reader.read_line(&mut line) {
            Ok(0) => Err(self.transport_error("the agent exited".into())),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| self.agent_error(format!("unreadable reply {line:?}: {e}"))),
            Err(e) => Err(self.transport_error(format!("cannot read from the agent: {e}"))),
        };
        self.broken |= reply.is_err();
        reply
    }

    /// The transport failed: the machine stopping by itself when the backend says so, an agent
    /// error otherwise.
    fn transport_error(&self, message: String) -> GuestError {
        match self.stop_check.as_ref().and_then(|check| check(&message)) {
            Some(stopped) => stopped,
            None => self.agent_error(message),
        }
    }

    fn agent_error(&self, message: String) -> GuestError {
        // Give the stderr reader a moment to collect the agent's last words.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        GuestError::Agent { message, stderr }
    }
}

/// Drains an agent's stderr on a thread of its own into a shared log, so a full pipe never
/// stalls the agent and an error can quote what it said. Every transport (a local child, SSH)
/// hands its agent's stderr here.
pub fn collect_stderr(mut stderr: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    log
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn session_over(replies: &str) -> Result<AgentSession, GuestError> {
        AgentSession::establish(
            Box::new(Cursor::new(replies.as_bytes().to_vec())),
            Box::new(std::io::sink()),
            Arc::default(),
            Arc::default(),
            Box::new(()),
        )
    }

    #[test]
    fn a_transport_that_ends_is_the_agents_error_unless_the_machine_stopped_itself()
    -> Result<(), GuestError> {
        let hello = serde_json::to_string(&Response::Hello(Hello {
            lab_dir: "/tmp/lab".into(),
            privilege: labgrade_proto::Privilege::Root,
            kmsg_unavailable: None,
        }))
        .map_err(|e| GuestError::Agent {
            message: e.to_string(),
            stderr: String::new(),
        })?;
        check(&format!("{hello}\n"))
    }

    fn check(hello: &str) -> Result<(), GuestError> {
        let mut plain = session_over(hello)?;
        let e = plain.mounts(Vec::new()).err();
        assert!(
            matches!(&e, Some(GuestError::Agent { message, .. }) if message == "the agent exited"),
            "{e:?}"
        );
        let mut stopped = session_over(hello)?;
        stopped.set_stop_check(Box::new(|why| {
            Some(GuestError::Stopped {
                guest: "qemu:test".into(),
                message: format!("powered off ({why})"),
                console: String::new(),
            })
        }));
        let e = stopped.mounts(Vec::new()).err();
        assert!(
            e.as_ref().is_some_and(GuestError::is_stopped_by_guest),
            "{e:?}"
        );
        assert!(
            e.is_some_and(|e| e.to_string().contains("powered off (the agent exited)")),
            "the transport's own words are kept"
        );
        // A check that knows nothing of a stop leaves the agent's error as it was.
        let mut unknown = session_over(hello)?;
        unknown.set_stop_check(Box::new(|_| None));
        assert!(matches!(
            unknown.mounts(Vec::new()),
            Err(GuestError::Agent { .. })
        ));
        Ok(())
    }
}
