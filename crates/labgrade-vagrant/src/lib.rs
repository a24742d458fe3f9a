//! The `vagrant:<name>` guest.
//!
//! A box with its own userland (coreutils, xfsprogs, SELinux on RHEL) is what the distributions
//! the lesson names look like; this backend brings one up with `vagrant up` (libvirt provider,
//! QEMU) in a working directory labgrade makes, copies this labgrade binary into it as the agent
//! (after checking the box's glibc can load it), and carries each agent session over one
//! multiplexed OpenSSH connection (ControlMaster) built from `vagrant ssh-config`. Images the
//! runner names by host path (scratch disks, probe images) are copied into the box at the same
//! path before the request that names them reaches the agent.
//!
//! Cleanup survives SIGKILL: before `vagrant up`, a reaper process in its own session waits on a
//! pipe only labgrade holds; when the pipe closes (labgrade is done, or was killed) it runs
//! `vagrant destroy -f`, then removes the libvirt domain by the unique name labgrade gave it
//! (`virsh undefine --remove-all-storage`) in case Vagrant never recorded it, then the working
//! directory. With `keep`, the machine stays up for the next run to reuse.

mod ssh;
mod vagrantfile;

use std::collections::HashSet;
use std::io::{BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use labgrade_elf::GlibcVersion;
use labgrade_guest::{AgentSession, Guest, GuestError, shell_quote};
use labgrade_proto::{DiskSource, Request};
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

pub use ssh::{HOST_ALIAS, labgrade_ssh_config};
pub use vagrantfile::{BoxSource, domain_name, vagrantfile};

/// The libvirt network vagrant-libvirt makes (and removes with its last machine) for SSH.
const MANAGEMENT_NETWORK: &str = "vagrant-libvirt";

/// The box's directory the agent binary is copied to (root-owned, survives no reboot we need).
const REMOTE_DIR: &str = "/var/tmp/labgrade";

/// How to bring the machine up.
#[derive(Debug, Clone)]
pub struct VagrantConfig {
    /// How the user named it, e.g. `bookworm`; the guest is called `vagrant:<name>`.
    pub name: String,
    /// The box, or the Vagrantfile directory that names it.
    pub source: BoxSource,
    /// The labgrade binary copied into the box as its agent.
    pub agent_exe: PathBuf,
    /// Where working directories are made (one per machine), e.g. `~/.cache/labgrade/vagrant`.
    pub work_root: PathBuf,
    /// Leave the machine up afterwards, and reuse a kept one that is still up.
    pub keep: bool,
    /// Longest `vagrant up` (box import, boot, SSH answering); under TCG a boot is about 35 s.
    pub up_timeout: Duration,
    /// Longest wait for the multiplexed SSH connection once Vagrant says the machine is up.
    pub ssh_timeout: Duration,
}

impl VagrantConfig {
    /// Defaults: a fresh machine destroyed afterwards, 15 minutes for `vagrant up` (a first
    /// run imports the box into libvirt's pool), 60 s for SSH.
    pub fn new(name: &str, source: BoxSource, agent_exe: PathBuf, work_root: PathBuf) -> Self {
        VagrantConfig {
            name: name.to_owned(),
            source,
            agent_exe,
            work_root,
            keep: false,
            up_timeout: Duration::from_secs(900),
            ssh_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
enum State {
    NotUp,
    Up(Arc<Machine>),
    Failed(String),
}

/// A Vagrant machine; labs run in it one agent session (one SSH channel) each.
#[derive(Debug)]
pub struct VagrantGuest {
    config: VagrantConfig,
    state: Mutex<State>,
}

impl VagrantGuest {
    /// Prepares the guest; nothing comes up until the first session.
    pub fn new(config: VagrantConfig) -> VagrantGuest {
        VagrantGuest {
            config,
            state: Mutex::new(State::NotUp),
        }
    }

    fn machine(&self) -> Result<Arc<Machine>, GuestError> {
        let mut state = self.state.lock().map_err(|_| {
            self.boot_error("a session panicked while the machine came up".into(), "")
        })?;
        match &*state {
            State::Up(m) => return Ok(Arc::clone(m)),
            State::Failed(why) => return Err(self.boot_error(why.clone(), "")),
            State::NotUp => {}
        }
        match Machine::bring_up(&self.config) {
            Ok(m) => {
                let m = Arc::new(m);
                *state = State::Up(Arc::clone(&m));
                Ok(m)
            }
            Err(UpError { message, output }) => {
                *state = State::Failed(message.clone());
                Err(self.boot_error(message, &output))
            }
        }
    }

    fn boot_error(&self, message: String, output: &str) -> GuestError {
        GuestError::Boot {
            guest: self.name(),
            message,
            console: last_lines(output, 30),
        }
    }

    /// The working directory of the machine, once it is up (for tests and `--keep` users who
    /// want to `vagrant ssh` into it).
    pub fn work_dir(&self) -> Option<PathBuf> {
        match &*self.state.lock().ok()? {
            State::Up(m) => Some(m.work_dir.clone()),
            _ => None,
        }
    }
}

impl Guest for VagrantGuest {
    fn name(&self) -> String {
        format!("vagrant:{}", self.config.name)
    }

    fn start_session(&self) -> Result<AgentSession, GuestError> {
        let machine = self.machine()?;
        machine.start_session()
    }

    fn is_machine_boundary(&self) -> bool {
        true
    }
}

/// Why the machine did not come up, and the output that explains it.
struct UpError {
    message: String,
    output: String,
}

impl UpError {
    fn new(message: impl Into<String>, output: impl Into<String>) -> UpError {
        UpError {
            message: message.into(),
            output: output.into(),
        }
    }
}

/// A machine that is up: its directory, its SSH master, its reaper.
#[derive(Debug)]
struct Machine {
    work_dir: PathBuf,
    ssh_config: PathBuf,
    agent: String,
    /// Host paths already copied into the box (at the same path).
    mirrored: Mutex<HashSet<PathBuf>>,
    master: Mutex<Option<Child>>,
    /// Closing this pipe makes the reaper destroy the machine; `None` with `keep`.
    reaper: Mutex<Option<(ChildStdin, Child)>>,
}

impl Machine {
    fn bring_up(config: &VagrantConfig) -> Result<Machine, UpError> {
        let started = Instant::now();
        let prefix = if config.keep {
            format!("labgrade-keep-{}_", sanitize(&config.name))
        } else {
            format!(
                "labgrade-{}-{:x}_",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
                    & 0xffff_ffff
            )
        };
        let work_dir = config.work_root.join(prefix.trim_end_matches('_'));
        std::fs::create_dir_all(&work_dir).map_err(|e| {
            UpError::new(
                format!(
                    "cannot make the working directory {}: {e}",
                    work_dir.display()
                ),
                "",
            )
        })?;
        let domain = domain_name(&prefix);
        std::fs::write(
            work_dir.join("Vagrantfile"),
            vagrantfile(&config.source, &prefix),
        )
        .map_err(|e| UpError::new(format!("cannot write the Vagrantfile: {e}"), ""))?;
        let ssh_config = work_dir.join("ssh_config");
        let mut machine = Machine {
            work_dir: work_dir.clone(),
            ssh_config: ssh_config.clone(),
            agent: String::new(),
            mirrored: Mutex::new(HashSet::new()),
            master: Mutex::new(None),
            reaper: Mutex::new(None),
        };
        if !config.keep {
            *machine
                .reaper
                .get_mut()
                .map_err(|_| UpError::new("reaper lock poisoned", ""))? =
                Some(spawn_reaper(&work_dir, &domain)?);
        }
        let reuse = config.keep && is_running(&work_dir);
        if !reuse {
            // What the reaper needs to tell a box volume this up imports from one it found.
            let _ = std::fs::write(work_dir.join("box-volumes.before"), box_volumes());
            let out = run_vagrant(
                &work_dir,
                &["up", "--provider", "libvirt"],
                config.up_timeout,
            )?;
            let _ = std::fs::write(work_dir.join("up.done"), "");
            tracing::info!(domain, elapsed = ?started.elapsed(), "vagrant up");
            drop(out);
        }
        let ssh_out = run_vagrant(&work_dir, &["ssh-config"], Duration::from_secs(120))?;
        let text = labgrade_ssh_config(&ssh_out, &work_dir.join("ssh.sock"))
            .map_err(|e| UpError::new(e.to_string(), ssh_out.clone()))?;
        std::fs::write(&ssh_config, text)
            .map_err(|e| UpError::new(format!("cannot write {}: {e}", ssh_config.display()), ""))?;
        let master = machine.start_master(config.ssh_timeout)?;
        *machine
            .master
            .get_mut()
            .map_err(|_| UpError::new("master lock poisoned", ""))? = Some(master);
        tracing::info!(elapsed = ?started.elapsed(), "vagrant machine answers over ssh");
        machine.agent = machine.install_agent(&config.agent_exe)?;
        tracing::info!(elapsed = ?started.elapsed(), agent = machine.agent, "agent installed");
        Ok(machine)
    }

    /// An `ssh` through the master connection to the box.
    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.ssh_config).arg(HOST_ALIAS);
        cmd
    }

    /// Runs `script` in the box (`sh -c` as the SSH user), stdin from `input`.
    fn remote(&self, script: &str, input: Stdio) -> Result<String, String> {
        let out = self
            .ssh()
            .arg(script)
            .stdin(input)
            .output()
            .map_err(|e| format!("cannot run ssh: {e} (apt-get install openssh-client)"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{script}` in the box failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Starts the one SSH connection every command rides on, and waits until it answers.
    fn start_master(&self, timeout: Duration) -> Result<Child, UpError> {
        let deadline = Instant::now() + timeout;
        let log = self.work_dir.join("ssh-master.log");
        // A master killed before (a kept machine's last run) leaves its socket behind, and a new
        // master would then refuse to listen: a socket nothing answers on is removed.
        let socket = self.work_dir.join("ssh.sock");
        if socket.exists() && !self.master_answers() {
            let _ = std::fs::remove_file(&socket);
        }
        loop {
            let log_file = std::fs::File::create(&log)
                .map_err(|e| UpError::new(format!("cannot write {}: {e}", log.display()), ""))?;
            // The master is a plain child, not a ControlPersist daemon: it ends with this
            // machine, and if labgrade is killed the reaper closes it (`ssh -O exit`).
            let mut master = self
                .ssh()
                .args(["-M", "-N", "-o", "ControlPersist=no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|e| {
                    UpError::new(
                        format!("cannot run ssh: {e} (apt-get install openssh-client)"),
                        "",
                    )
                })?;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = master.try_wait() {
                    break;
                }
                if self.master_answers() {
                    return Ok(master);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = master.kill();
            let _ = master.wait();
            if Instant::now() >= deadline {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(UpError::new(
                    format!(
                        "SSH to the box did not answer within {} s",
                        timeout.as_secs()
                    ),
                    said,
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Does a master connection answer on the socket?
    fn master_answers(&self) -> bool {
        self.ssh()
            .args(["-O", "check"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Copies the agent into the box (once per binary: named by its digest), after checking the
    /// box's glibc can load it. Returns its path in the box.
    fn install_agent(&self, exe: &Path) -> Result<String, UpError> {
        let bytes = std::fs::read(exe).map_err(|e| {
            UpError::new(format!("cannot read the agent {}: {e}", exe.display()), "")
        })?;
        let box_glibc = self
            .remote("getconf GNU_LIBC_VERSION", Stdio::null())
            .map_err(|e| UpError::new(e, ""))?;
        if let Some(refusal) = glibc_refusal(exe, &bytes, &box_glibc) {
            return Err(UpError::new(refusal, box_glibc));
        }
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let remote = format!("{REMOTE_DIR}/labgrade-{hex}");
        // A debug build is mostly debug info (130 MB against 10 MB): SSH into a TCG guest moves
        // a few MB/s, so what is sent is a copy without it where objcopy is at hand.
        let stripped = self.work_dir.join("agent");
        let send = match Command::new("objcopy")
            .arg("--strip-debug")
            .arg(exe)
            .arg(&stripped)
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => stripped.as_path(),
            _ => exe,
        };
        let file = std::fs::File::open(send).map_err(|e| {
            UpError::new(format!("cannot read the agent {}: {e}", send.display()), "")
        })?;
        let q = shell_quote(&remote);
        self.remote(
            &format!(
                "sudo mkdir -p {REMOTE_DIR} && {{ test -x {q} || {{ sudo tee {q}.tmp >/dev/null && \
                 sudo chmod 755 {q}.tmp && sudo mv {q}.tmp {q}; }}; }}"
            ),
            Stdio::from(file),
        )
        .map_err(|e| UpError::new(e, ""))?;
        Ok(remote)
    }

    /// Copies each host file into the box at the same path, once (sparse: disk images are
    /// mostly holes).
    fn mirror(&self, paths: &[PathBuf]) -> Result<(), String> {
        for path in paths {
            let mut done = self
                .mirrored
                .lock()
                .map_err(|_| "mirror lock poisoned".to_owned())?;
            if done.contains(path) {
                continue;
            }
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let mut tar = Command::new("tar")
                .arg("-C")
                .arg(dir)
                .arg("-cSf")
                .arg("-")
                .arg(name)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run tar: {e}"))?;
            let Some(out) = tar.stdout.take() else {
                return Err("tar gave no stdout".into());
            };
            let q = shell_quote(&dir.display().to_string());
            let copied = self.remote(
                &format!("sudo mkdir -p {q} && sudo tar -C {q} -xSf -"),
                Stdio::from(out),
            );
            let tarred = tar.wait().map_err(|e| e.to_string())?;
            copied?;
            if !tarred.success() {
                return Err(format!("tar of {} failed ({tarred})", path.display()));
            }
            done.insert(path.clone());
        }
        Ok(())
    }

    fn start_session(self: &Arc<Machine>) -> Result<AgentSession, GuestError> {
        let mut cmd = self.ssh();
        cmd.arg(format!("sudo {} __agent", shell_quote(&self.agent)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is a single async-signal-safe syscall; the session's ssh dies with the
        // thread that started it, and the agent in the box sees its stdin close.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| GuestError::Spawn {
            exe: "ssh".into(),
            source,
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(GuestError::Agent {
                message: "ssh pipes missing".into(),
                stderr: String::new(),
            });
        };
        let log = labgrade_guest::collect_stderr(stderr);
        let writer = MirroringWriter {
            machine: Arc::clone(self),
            inner: stdin,
            line: Vec::new(),
        };
        AgentSession::establish(
            Box::new(BufReader::new(stdout)),
            Box::new(writer),
            log,
            Arc::default(),
            Box::new(SessionGuard {
                child,
                _machine: Arc::clone(self),
            }),
        )
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Ok(mut master) = self.master.lock()
            && let Some(mut m) = master.take()
        {
            // Asked to exit, the master removes its socket (a kill would leave it behind).
            let _ = self
                .ssh()
                .args(["-O", "exit"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = m.kill();
            let _ = m.wait();
        }
        // Closing the pipe is the reaper's signal; waiting for it means the machine is gone
        // when labgrade exits.
        if let Ok(mut reaper) = self.reaper.lock()
            && let Some((pipe, mut child)) = reaper.take()
        {
            drop(pipe);
            let _ = child.wait();
        }
    }
}

/// Ends a session's ssh (and so its agent) on every path out; keeps the machine alive while a
/// session still uses it.
struct SessionGuard {
    child: Child,
    _machine: Arc<Machine>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The session's writer: a request naming host files (probe images, scratch disk images) has
/// them copied into the box before it is sent, so the agent finds them at the same path.
struct MirroringWriter {
    machine: Arc<Machine>,
    inner: ChildStdin,
    line: Vec<u8>,
}

impl Write for MirroringWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            let paths = host_paths(&line);
            if !paths.is_empty() {
                self.machine.mirror(&paths).map_err(std::io::Error::other)?;
            }
            self.inner.write_all(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The host files a request line names for the agent to read.
fn host_paths(line: &[u8]) -> Vec<PathBuf> {
    match serde_json::from_slice::<Request>(line) {
        Ok(Request::Probe { images, .. }) => images.into_iter().map(|i| i.path.into()).collect(),
        Ok(Request::Attach { disks }) => disks
            .into_iter()
            .filter_map(|d| match d.source {
                DiskSource::Image { path } => Some(path.into()),
                DiskSource::Block { .. } => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Starts the reaper: in a session of its own (a signal to labgrade's process group does not
/// reach it), it waits for its stdin to close, then destroys the machine by every name it has.
fn spawn_reaper(work_dir: &Path, domain: &str) -> Result<(ChildStdin, Child), UpError> {
    let network_existed = Command::new("virsh")
        .args(["-c", "qemu:///system", "net-info", MANAGEMENT_NETWORK])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_or(true, |s| s.success());
    const SCRIPT: &str = r#"
cat >/dev/null
# The `vagrant up` labgrade ran dies with it (SIGKILL on parent death): let it go first.
sleep 1
ssh -F "$1/ssh_config" -O exit labgrade >/dev/null 2>&1
(cd "$1" && timeout 300 vagrant destroy -f) >/dev/null 2>&1
if virsh -c qemu:///system dominfo "$2" >/dev/null 2>&1; then
  virsh -c qemu:///system destroy "$2" >/dev/null 2>&1
  virsh -c qemu:///system undefine "$2" --remove-all-storage >/dev/null 2>&1
fi
virsh -c qemu:///system vol-delete --pool default "$2.img" >/dev/null 2>&1
# A box vagrant-libvirt was still importing into the pool when labgrade died is a truncated
# volume every later `vagrant up` would boot from: a box volume this run's unfinished up made goes.
if [ ! -e "$1/up.done" ]; then
  for v in $(virsh -c qemu:///system vol-list default 2>/dev/null | awk '/_vagrant_box_image_/ { print $1 }'); do
    grep -qxF "$v" "$1/box-volumes.before" 2>/dev/null \
      || virsh -c qemu:///system vol-delete --pool default "$v" >/dev/null 2>&1
  done
fi
# vagrant-libvirt's management network, if this machine's `vagrant up` made it and no domain
# uses it now (vagrant destroy removes it too; this is for when Vagrant never got that far).
if [ "$3" = made-network ]; then
  used=
  for d in $(virsh -c qemu:///system list --all --name); do
    virsh -c qemu:///system domiflist "$d" 2>/dev/null | grep -q " $4 " && used=1
  done
  if [ -z "$used" ]; then
    virsh -c qemu:///system net-destroy "$4" >/dev/null 2>&1
    virsh -c qemu:///system net-undefine "$4" >/dev/null 2>&1
  fi
fi
rm -rf "$1"
"#;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", SCRIPT, "labgrade-reaper"])
        .arg(work_dir)
        .arg(domain)
        .arg(if network_existed { "" } else { "made-network" })
        .arg(MANAGEMENT_NETWORK)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is a single async-signal-safe syscall.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| UpError::new(format!("cannot start the cleanup process (sh): {e}"), ""))?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| UpError::new("the cleanup process has no stdin", ""))?;
    Ok((pipe, child))
}

/// The box volumes vagrant-libvirt has imported into libvirt's default pool, one a line.
fn box_volumes() -> String {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "vol-list", "default"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| v.contains("_vagrant_box_image_"))
        .map(|v| format!("{v}\n"))
        .collect()
}

/// Is the kept machine in this directory running?
fn is_running(work_dir: &Path) -> bool {
    run_vagrant(
        work_dir,
        &["status", "--machine-readable"],
        Duration::from_secs(120),
    )
    .is_ok_and(|out| out.lines().any(|l| l.contains(",state,running")))
}

/// Runs `vagrant ARGS` in `dir`, at most `timeout`; its stdout, or its whole output as the error.
fn run_vagrant(dir: &Path, args: &[&str], timeout: Duration) -> Result<String, UpError> {
    let what = format!("vagrant {}", args.join(" "));
    let out_path = dir.join(format!(
        "{}.log",
        args.first().copied().unwrap_or("vagrant")
    ));
    let err_path = dir.join(format!(
        "{}.err",
        args.first().copied().unwrap_or("vagrant")
    ));
    let open = |p: &Path| {
        std::fs::File::create(p)
            .map_err(|e| UpError::new(format!("cannot write {}: {e}", p.display()), ""))
    };
    let mut cmd = Command::new("vagrant");
    cmd.args(args)
        .current_dir(dir)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .env("VAGRANT_DEFAULT_PROVIDER", "libvirt")
        .stdin(Stdio::null())
        .stdout(open(&out_path)?)
        .stderr(open(&err_path)?);
    // SAFETY: prctl is a single async-signal-safe syscall. Vagrant dies with labgrade, so the
    // reaper's `vagrant destroy` never waits on a machine lock a dead run still holds.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        UpError::new(
            format!("cannot run vagrant: {e} (apt-get install vagrant vagrant-libvirt)"),
            "",
        )
    })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(UpError::new(
            format!(
                "`{what}` failed ({s}); is libvirtd running (libvirtd -d; virsh net-start default) and the box added (vagrant box list)?"
            ),
            format!("{stdout}{stderr}"),
        )),
        None => Err(UpError::new(
            format!("`{what}` did not finish within {} s", timeout.as_secs()),
            format!("{stdout}{stderr}"),
        )),
    }
}

/// Why the agent cannot run on a box whose `getconf GNU_LIBC_VERSION` said `box_glibc`: it needs
/// a newer glibc symbol version than the box has. `None` when it can (or either is unknown).
fn glibc_refusal(exe: &Path, elf: &[u8], box_glibc: &str) -> Option<String> {
    let needed = labgrade_elf::glibc_needed(elf).ok().flatten()?;
    let have: GlibcVersion = box_glibc.parse().ok()?;
    (needed > have).then(|| {
        format!(
            "the agent {} needs glibc {needed} but the box has glibc {have}: build labgrade \
             against an older glibc (on a system with glibc {have} or older, or with \
             `cargo zigbuild --target x86_64-unknown-linux-gnu.{have}`)",
            exe.display()
        )
    })
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_naming_images_are_found_and_others_are_not() {
        let probe =
            br#"{"op":"probe","caps":["xfs"],"images":[{"cap":"xfs","path":"/c/disks/x.img"}]}"#;
        assert_eq!(host_paths(probe), vec![PathBuf::from("/c/disks/x.img")]);
        // The wire spelling of an attach request is the proto crate's: take it from there.
        let roundtrip = serde_json::to_vec(&Request::Attach {
            disks: vec![labgrade_proto::AttachDisk {
                env: "DISK".into(),
                source: DiskSource::Image {
                    path: "/c/d.img".into(),
                },
            }],
        })
        .unwrap_or_default();
        assert_eq!(host_paths(&roundtrip), vec![PathBuf::from("/c/d.img")]);
        assert!(host_paths(br#"{"op":"shutdown"}"#).is_empty());
        assert!(host_paths(b"not json").is_empty());
    }

    #[test]
    fn an_agent_needing_a_newer_glibc_than_the_box_is_refused_with_the_fix()
    -> Result<(), std::io::Error> {
        let exe = std::env::current_exe()?;
        let elf = std::fs::read(&exe)?;
        let Some(needed) = labgrade_elf::glibc_needed(&elf).ok().flatten() else {
            panic!("this test binary needs no GLIBC_ version");
        };
        assert_eq!(glibc_refusal(&exe, &elf, &format!("glibc {needed}")), None);
        assert_eq!(glibc_refusal(&exe, &elf, "glibc 9.0"), None);
        let older = GlibcVersion::new(needed.major, needed.minor.saturating_sub(1));
        let refusal = glibc_refusal(&exe, &elf, &format!("glibc {older}")).unwrap_or_default();
        assert!(
            refusal.contains(&format!(
                "needs glibc {needed} but the box has glibc {older}"
            )) && refusal.contains("cargo zigbuild"),
            "{refusal}"
        );
        assert_eq!(glibc_refusal(&exe, b"not elf", "glibc 2.1"), None);
        assert_eq!(glibc_refusal(&exe, &elf, "musl libc"), None);
        Ok(())
    }

    #[test]
    fn names_become_domain_safe() {
        assert_eq!(sanitize("ubuntu-22.04"), "ubuntu-22-04");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
    }
}
