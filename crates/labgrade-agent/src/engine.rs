//! Container engines inside the lab's session.
//!
//! The agent starts the engine itself, after the session's shell, so every process of it
//! (dockerd, containerd, shims, conmon, the containers) is in the session's pid namespace and
//! dies with it, and every mount it makes is in the session's mount namespace. Its data root is
//! on the session's private tmpfs, and `/run`, `/dev/shm`, `/var/lib` and `/etc/docker` get
//! private tmpfs too (containerd's shim sockets, podman's locks and blob cache, dockerd's key):
//! nothing of it reaches the host, and a SIGKILL of labgrade leaves nothing behind but what the
//! kernel keeps outside namespaces (empty cgroup directories, swept here on a clean stop).
//!
//! An engine already running on the machine is never touched: labgrade's own runs beside it,
//! with its own socket, data root and exec root.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use labgrade_proto::{Engine, EngineRequest, EngineStarted};
use nix::mount::{MsFlags, mount};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where binaries are looked for (the session's own PATH).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The programs an engine needs, by name; the first is its client, run as `$ENGINE`.
fn programs(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Docker => &[
            "docker",
            "dockerd",
            "containerd",
            "containerd-shim-runc-v2",
            "runc",
        ],
        Engine::Podman => &["podman", "conmon", "runc"],
    }
}

/// The Debian packages that install them, for a skip's reason.
fn packages(engine: Engine) -> &'static str {
    match engine {
        Engine::Docker => "apt-get install docker.io",
        Engine::Podman => "apt-get install podman runc",
    }
}

/// Finds a program. Docker's client is taken from /usr/bin first: the one that comes with
/// dockerd (another client elsewhere on PATH may be of another version).
fn find(program: &str) -> Option<PathBuf> {
    let preferred = Path::new("/usr/bin").join(program);
    if preferred.is_file() {
        return Some(preferred);
    }
    std::env::split_paths(PATH)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The capability probe: every program the engine needs is installed.
pub(crate) fn probe(engine: Engine) -> Result<String, String> {
    // In a user namespace (labgrade without root) the engines cannot make cgroups or devices.
    // Pid 1 of the proc the agent sees is its session, in the agent's user namespace (the agent
    // itself stands outside that pid namespace).
    let uid_map = fs::read_to_string("/proc/1/uid_map")
        .or_else(|_| fs::read_to_string("/proc/self/uid_map"))
        .unwrap_or_default();
    let identity = uid_map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    if !identity {
        return Err(format!(
            "{engine} needs real root: labgrade runs without root here, in a user namespace"
        ));
    }
    let missing: Vec<&str> = programs(engine)
        .iter()
        .copied()
        .filter(|p| find(p).is_none())
        .collect();
    if missing.is_empty() {
        Ok(format!(
            "{} found ({})",
            programs(engine).join(", "),
            find(programs(engine)[0]).map_or_else(String::new, |p| p.display().to_string())
        ))
    } else {
        Err(format!(
            "{engine} not installed: {} not found on {PATH} ({})",
            missing.join(", "),
            packages(engine)
        ))
    }
}

/// An engine labgrade started in this session; stopped by [`RunningEngine::stop`] (or killed
/// with the session's pid namespace on any other path out).
#[derive(Debug)]
pub(crate) struct RunningEngine {
    engine: Engine,
    client: PathBuf,
    env: Vec<(String, String)>,
    /// Daemons started, in start order (containerd, then dockerd); stopped in reverse.
    daemons: Vec<Child>,
    /// Cgroup directories that did not exist before the engine started (the engines make
    /// their parents and never remove them).
    cgroups_before: Vec<PathBuf>,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Private tmpfs over the system directories engines write to, in the session's mount
/// namespace only. Directories that do not exist are left alone (nothing is created outside).
fn private_system_dirs() -> Result<(), String> {
    unchroot()?;
    // A VM's /dev (its own devtmpfs) may lack shm, where podman keeps its locks.
    if !Path::new("/dev/shm").exists() && Path::new("/dev").is_dir() {
        let _ = fs::create_dir("/dev/shm");
    }
    for dir in [
        "/run",
        "/dev/shm",
        "/var/lib",
        "/var/cache",
        "/var/tmp",
        "/etc/docker",
    ] {
        if !Path::new(dir).is_dir() {
            continue;
        }
        mount(
            Some("labgrade-engine"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=755"),
        )
        .map_err(|e| format!("cannot mount a private tmpfs on {dir}: {}", e.desc()))?;
    }
    // A VM's minimal init mounts no cgroups; engines need them (dockerd refuses to start, runc
    // has nowhere to put a container). cgroup v2 in the session's mount namespace then.
    let root = Path::new("/sys/fs/cgroup");
    let mounted = root.join("cgroup.controllers").exists()
        || fs::read_dir(root).is_ok_and(|mut d| d.next().is_some());
    if !mounted && root.is_dir() {
        mount(
            Some("cgroup2"),
            root,
            Some("cgroup2"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| format!("cannot mount cgroup2 on /sys/fs/cgroup: {}", e.desc()))?;
    }
    Ok(())
}

/// A qemu guest's init runs the agent chrooted into the host root (9p, on `/newroot` of the
/// initramfs). A process that joins a container's mount namespace (`runc exec`) gets that
/// namespace's real root, the initramfs: `exec` would find none of the container's files. So,
/// in the session's own mount namespace, the chroot's mount is moved onto `/` and the agent
/// chroots there, as `switch_root` does; the session's shell is unaffected (its root is that
/// very mount). Nothing is done where the agent is not chrooted (the host guest).
fn unchroot() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: &fs::Metadata| (m.dev(), m.ino());
    let root = fs::metadata("/").map_err(io("stat /"))?;
    let escape = Path::new("/tmp/.labgrade/escape");
    fs::create_dir_all(escape).map_err(io("mkdir"))?;
    let back = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open /: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    // Chroot into a subdirectory: the cwd is now outside the root and `..` climbs freely.
    nix::unistd::chroot(escape).map_err(|e| format!("chroot: {e}"))?;
    for _ in 0..64 {
        let _ = nix::unistd::chdir("..");
    }
    let top = fs::metadata(".").map_err(io("stat the real root"))?;
    if id(&top) == id(&root) {
        // Not chrooted: back to where we were.
        nix::unistd::fchdir(&back).map_err(|e| format!("fchdir: {e}"))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot back: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
        return Ok(());
    }
    nix::unistd::chroot(".").map_err(|e| format!("chroot to the real root: {e}"))?;
    // The directory of the real root that the agent's root is mounted on.
    let old = fs::read_dir("/")
        .map_err(io("read the real root"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| fs::metadata(p).is_ok_and(|m| id(&m) == id(&root)))
        .ok_or("cannot find the agent's root in the real root")?;
    nix::unistd::chdir(&old).map_err(|e| format!("chdir {}: {e}", old.display()))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| format!("cannot move {} onto /: {}", old.display(), e.desc()))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot .: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// The engines' cgroup parents, under every mounted hierarchy.
fn engine_cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    let mut roots: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        for parent in ["docker", "libpod_parent"] {
            let p = root.join(parent);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out
}

/// Runs a program to its end, at most `within`; its output (stdout, stderr) goes to files in
/// `dir` (no threads: the agent cannot make any after unsharing its pid namespace).
fn run_bounded(
    cmd: &mut Command,
    dir: &Path,
    name: &str,
    within: Duration,
) -> Result<(i32, String, String), String> {
    let out = dir.join(format!("{name}.out"));
    let err = dir.join(format!("{name}.err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).map_err(io("create an output file"))?)
        .stderr(fs::File::create(&err).map_err(io("create an output file"))?)
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let deadline = Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} did not finish within {within:?}"));
            }
            Err(e) => return Err(format!("cannot wait for {name}: {e}")),
        }
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    Ok((status.code().unwrap_or(-1), read(&out), read(&err)))
}

impl RunningEngine {
    /// Starts the engine under `ctl` (the session's private tmpfs), waits for it (bounded),
    /// imports the image from `rootfs` (or, without one, pulls it from its registry) and says
    /// what the steps get.
    pub(crate) fn start(
        req: &EngineRequest,
        ctl: &Path,
        rootfs: Option<&Path>,
        labgrade: Option<&Path>,
    ) -> Result<(RunningEngine, EngineStarted), String> {
        probe(req.engine)?;
        let client =
            find(programs(req.engine)[0]).ok_or_else(|| format!("{} not installed", req.engine))?;
        let root = ctl.join(format!("engine-{}", req.engine));
        fs::create_dir_all(&root).map_err(io("cannot make the engine's data root"))?;
        private_system_dirs()?;
        // What an engine killed with an earlier labgrade left (empty and old) goes first.
        remove_new_cgroups(&engine_cgroups());
        let cgroups_before = engine_cgroups();
        let within = Duration::from_millis(req.ready_within_ms);
        let started = Instant::now();
        let mut engine = match req.engine {
            Engine::Docker => start_docker(&root, &client, within)?,
            Engine::Podman => start_podman(&root, &client)?,
        };
        engine.cgroups_before = cgroups_before;
        let version_args: &[&str] = match req.engine {
            Engine::Docker => &["version", "--format", "{{.Server.Version}}"],
            Engine::Podman => &["version", "--format", "{{.Client.Version}}"],
        };
        let (code, version, err) = run_bounded(
            engine.command().args(version_args),
            &root,
            "version",
            within,
        )?;
        if code != 0 {
            return Err(format!(
                "{} does not answer `{} version`: {}{}",
                req.engine,
                client.display(),
                err.trim(),
                engine.daemon_log_tail(&root)
            ));
        }
        let ready_ms = ms(started);
        let imported = Instant::now();
        let mut get = engine.command();
        match rootfs {
            Some(tar) => get.arg("import").arg(tar).arg(&req.image),
            None => get.arg("pull").arg(&req.image),
        };
        let (code, _, err) = run_bounded(&mut get, &root, "image", within)?;
        if code != 0 {
            return Err(match rootfs {
                Some(tar) => format!(
                    "`{} import {} {}` failed: {}",
                    client.display(),
                    tar.display(),
                    req.image,
                    err.trim()
                ),
                None => format!(
                    "`{} pull {}` failed (--image needs a registry this guest can reach): {}",
                    client.display(),
                    req.image,
                    err.trim()
                ),
            });
        }
        let import_ms = ms(imported);
        engine
            .env
            .push(("ENGINE".into(), client.display().to_string()));
        engine.env.push(("IMAGE".into(), req.image.clone()));
        if let Some(me) = labgrade {
            engine
                .env
                .push(("LABGRADE".into(), me.display().to_string()));
        }
        let started = EngineStarted {
            engine: req.engine,
            env: engine.env.clone(),
            version: version.trim().to_owned(),
            ready_ms,
            import_ms,
        };
        Ok((engine, started))
    }

    /// The client, with the engine's environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.env_clear().env("PATH", PATH).env("HOME", "/tmp");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn daemon_log_tail(&self, root: &Path) -> String {
        if self.daemons.is_empty() {
            return String::new();
        }
        log_tail(root, "dockerd") + &log_tail(root, "containerd")
    }

    /// Stops what was started: every container (bounded), then the daemon, by its pid (SIGTERM,
    /// then SIGKILL after 10 s), then the cgroup directories the engine made.
    pub(crate) fn stop(mut self, ctl: &Path) {
        let root = ctl.join(format!("engine-{}", self.engine));
        let within = Duration::from_secs(15);
        // Containers first, at once: dockerd's own shutdown waits out each container's stop
        // timeout (10 s for a `sleep` that ignores SIGTERM).
        match self.engine {
            Engine::Docker => {
                if let Ok((0, ids, _)) =
                    run_bounded(self.command().args(["ps", "-aq"]), &root, "ps", within)
                {
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    if !ids.is_empty() {
                        let _ = run_bounded(
                            self.command().args(["rm", "--force"]).args(&ids),
                            &root,
                            "rm-all",
                            within,
                        );
                    }
                }
            }
            Engine::Podman => {
                let _ = run_bounded(
                    self.command()
                        .args(["rm", "--all", "--force", "--time", "0"]),
                    &root,
                    "rm-all",
                    within,
                );
            }
        }
        while let Some(mut daemon) = self.daemons.pop() {
            if let Ok(pid) = i32::try_from(daemon.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        remove_new_cgroups(&self.cgroups_before);
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        while let Some(mut d) = self.daemons.pop() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// The last lines of a daemon's log under `root`, for an error.
fn log_tail(root: &Path, daemon: &str) -> String {
    let log = fs::read_to_string(root.join(format!("{daemon}.log"))).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("\n{daemon}'s last lines:\n{}", tail.join("\n"))
}

/// Spawns a daemon that dies with the agent, its output to `root/NAME.log`.
fn spawn_daemon(
    program: &Path,
    root: &Path,
    name: &str,
    args: &[std::ffi::OsString],
) -> Result<Child, String> {
    let log =
        fs::File::create(root.join(format!("{name}.log"))).map_err(io("cannot create a log"))?;
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", PATH)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("cannot copy a log handle"))?)
        .stderr(log);
    // SAFETY: prctl is a single async-signal-safe syscall: the daemon dies with the agent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))
}

/// Removes (deepest first) the empty cgroup directories under the engines' parents: those that
/// were not there before this engine started, and any not changed for a minute (what an engine
/// killed with labgrade left: the kernel keeps a dead container's empty cgroup). The kernel
/// refuses to remove a cgroup that still has processes, so a running container's stays.
fn remove_new_cgroups(before: &[PathBuf]) {
    fn rmdir_tree(dir: &Path, all: bool) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path(), all);
                }
            }
        }
        let stale = fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        if all || stale {
            let _ = fs::remove_dir(dir);
        }
    }
    // A container killed a moment ago may still be leaving its cgroup (the kernel refuses the
    // rmdir until its last task is gone): try again, for a bounded while, until no new one is left.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        for dir in engine_cgroups() {
            rmdir_tree(&dir, !before.contains(&dir));
        }
        let left_new = engine_cgroups().iter().any(|d| !before.contains(d));
        if !left_new || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Starts containerd, then dockerd on it, with everything of their own under `root`; no
/// network (no iptables, no bridge). containerd is started here rather than by dockerd, whose
/// own wait for it (10 s) is too short under TCG.
fn start_docker(root: &Path, client: &Path, within: Duration) -> Result<RunningEngine, String> {
    let dockerd = find("dockerd").ok_or("dockerd not installed (apt-get install docker.io)")?;
    let containerd =
        find("containerd").ok_or("containerd not installed (apt-get install docker.io)")?;
    let socket = root.join("docker.sock");
    let containerd_socket = root.join("containerd.sock");
    let config = root.join("daemon.json");
    fs::write(&config, "{}\n").map_err(io("cannot write daemon.json"))?;
    let containerd_config = root.join("containerd.toml");
    fs::write(&containerd_config, "version = 2\n").map_err(io("cannot write containerd.toml"))?;
    let os = |s: &str| std::ffi::OsString::from(s);
    let p = |p: PathBuf| p.into_os_string();
    let mut engine = RunningEngine {
        engine: Engine::Docker,
        client: client.to_path_buf(),
        env: vec![
            ("DOCKER_HOST".into(), format!("unix://{}", socket.display())),
            (
                "DOCKER_CONFIG".into(),
                root.join("client").display().to_string(),
            ),
        ],
        daemons: Vec::new(),
        cgroups_before: Vec::new(),
    };
    engine.daemons.push(spawn_daemon(
        &containerd,
        root,
        "containerd",
        &[
            os("--config"),
            p(containerd_config),
            os("--address"),
            p(containerd_socket.clone()),
            os("--root"),
            p(root.join("containerd")),
            os("--state"),
            p(root.join("containerd-state")),
        ],
    )?);
    let deadline = Instant::now() + within;
    wait_until(&mut engine, root, "containerd", deadline, within, || {
        UnixStream::connect(&containerd_socket).is_ok()
    })?;
    engine.daemons.push(spawn_daemon(
        &dockerd,
        root,
        "dockerd",
        &[
            os("--containerd"),
            p(containerd_socket.clone()),
            os("--data-root"),
            p(root.join("data")),
            os("--exec-root"),
            p(root.join("exec")),
            os("--pidfile"),
            p(root.join("dockerd.pid")),
            os("--host"),
            os(&format!("unix://{}", socket.display())),
            os("--config-file"),
            p(config),
            os("--storage-driver"),
            os("overlay2"),
            os("--iptables=false"),
            os("--ip6tables=false"),
            os("--bridge=none"),
            os("--shutdown-timeout"),
            os("1"),
            os("--log-level"),
            os("warn"),
        ],
    )?);
    wait_until(&mut engine, root, "dockerd", deadline, within, || {
        ping(&socket)
    })?;
    Ok(engine)
}

/// Waits for `ready`, failing early when a daemon exits, at `deadline` otherwise.
fn wait_until(
    engine: &mut RunningEngine,
    root: &Path,
    what: &str,
    deadline: Instant,
    within: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    loop {
        if ready() {
            return Ok(());
        }
        for d in &mut engine.daemons {
            if let Ok(Some(status)) = d.try_wait() {
                return Err(format!(
                    "a daemon exited ({status}) before {what} answered{}",
                    engine.daemon_log_tail(root)
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{what} did not answer within {within:?}{}",
                engine.daemon_log_tail(root)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /_ping` on Docker's socket answers 200 once the daemon serves its API.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")
}

/// Podman's own configuration under `root`: runc, ulimits that fit this machine, cgroupfs, no
/// network, and storage there (never the user's /etc/containers or /var/lib/containers). Its
/// database and volumes stay at their defaults under the graph root: the exit command conmon
/// runs (`podman --root ... container cleanup`) derives them from `--root`, and a database
/// elsewhere makes every `run` wait 20 s for a cleanup that cannot find its container.
fn podman_config(root: &Path) -> (String, String) {
    let r = root.display();
    let containers = format!(
        "[containers]\n\
         default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
         netns = \"none\"\n\
         [engine]\n\
         runtime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n\
         events_logfile_path = \"{r}/events.log\"\n\
         tmp_dir = \"{r}/tmp\"\n\
         image_copy_tmp_dir = \"{r}/tmp\"\n"
    );
    let storage = format!(
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"{r}/storage\"\nrunroot = \"{r}/run\"\n"
    );
    (containers, storage)
}

fn start_podman(root: &Path, client: &Path) -> Result<RunningEngine, String> {
    let (containers, storage) = podman_config(root);
    let containers_conf = root.join("containers.conf");
    let storage_conf = root.join("storage.conf");
    fs::write(&containers_conf, containers).map_err(io("cannot write containers.conf"))?;
    fs::write(&storage_conf, storage).map_err(io("cannot write storage.conf"))?;
    Ok(RunningEngine {
        engine: Engine::Podman,
        client: client.to_path_buf(),
        env: vec![
            (
                "CONTAINERS_CONF".into(),
                containers_conf.display().to_string(),
            ),
            (
                "CONTAINERS_STORAGE_CONF".into(),
                storage_conf.display().to_string(),
            ),
        ],
        daemons: Vec::new(),
        cgroups_before: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_is_configured_under_its_own_root_only() {
        let (containers, storage) = podman_config(Path::new("/tmp/.labgrade/engine-podman"));
        assert!(containers.contains("runtime = \"runc\""));
        assert!(containers.contains("\"nofile=1024:1024\", \"nproc=4096:4096\""));
        for line in containers.lines().chain(storage.lines()) {
            if let Some((_, v)) = line.split_once(" = \"/") {
                assert!(v.starts_with("tmp/.labgrade/engine-podman/"), "{line}");
            }
        }
        assert!(storage.contains("graphroot = \"/tmp/.labgrade/engine-podman/storage\""));
    }
}
