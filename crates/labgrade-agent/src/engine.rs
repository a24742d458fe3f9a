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
    daemon: Option<Child>,
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
    for dir in ["/run", "/dev/shm", "/var/lib", "/etc/docker"] {
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
    /// imports the image and says what the steps get.
    pub(crate) fn start(
        req: &EngineRequest,
        ctl: &Path,
        rootfs: &Path,
        labgrade: Option<&Path>,
    ) -> Result<(RunningEngine, EngineStarted), String> {
        probe(req.engine)?;
        let client =
            find(programs(req.engine)[0]).ok_or_else(|| format!("{} not installed", req.engine))?;
        let root = ctl.join(format!("engine-{}", req.engine));
        fs::create_dir_all(&root).map_err(io("cannot make the engine's data root"))?;
        private_system_dirs()?;
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
        let (code, _, err) = run_bounded(
            engine.command().arg("import").arg(rootfs).arg(&req.image),
            &root,
            "import",
            within,
        )?;
        if code != 0 {
            return Err(format!(
                "`{} import {} {}` failed: {}",
                client.display(),
                rootfs.display(),
                req.image,
                err.trim()
            ));
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
        if self.daemon.is_none() {
            return String::new();
        }
        let log = fs::read_to_string(root.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("\ndockerd's last lines:\n{}", tail.join("\n"))
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
        if let Some(mut daemon) = self.daemon.take() {
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
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// Removes (deepest first) the empty cgroup directories under the engines' parents that were
/// not there before: what a stopped engine leaves in the host's hierarchy.
fn remove_new_cgroups(before: &[PathBuf]) {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = fs::remove_dir(dir);
    }
    for dir in engine_cgroups() {
        if !before.contains(&dir) {
            rmdir_tree(&dir);
        }
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Starts dockerd with everything of its own under `root`; no network (no iptables, no bridge).
fn start_docker(root: &Path, client: &Path, within: Duration) -> Result<RunningEngine, String> {
    let dockerd = find("dockerd").ok_or("dockerd not installed (apt-get install docker.io)")?;
    let socket = root.join("docker.sock");
    let config = root.join("daemon.json");
    fs::write(&config, "{}\n").map_err(io("cannot write daemon.json"))?;
    let log = fs::File::create(root.join("dockerd.log")).map_err(io("cannot create a log"))?;
    let mut cmd = Command::new(&dockerd);
    cmd.env_clear()
        .env("PATH", PATH)
        .arg("--data-root")
        .arg(root.join("data"))
        .arg("--exec-root")
        .arg(root.join("exec"))
        .arg("--pidfile")
        .arg(root.join("dockerd.pid"))
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .arg("--config-file")
        .arg(&config)
        .args([
            "--storage-driver",
            "overlay2",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--shutdown-timeout",
            "1",
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("cannot copy a log handle"))?)
        .stderr(log);
    // SAFETY: prctl is a single async-signal-safe syscall: dockerd dies with the agent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
    let daemon = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", dockerd.display()))?;
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
        daemon: Some(daemon),
        cgroups_before: Vec::new(),
    };
    let deadline = Instant::now() + within;
    loop {
        if ping(&socket) {
            return Ok(engine);
        }
        if let Some(d) = engine.daemon.as_mut()
            && let Ok(Some(status)) = d.try_wait()
        {
            return Err(format!(
                "dockerd exited ({status}) before answering{}",
                engine.daemon_log_tail(root)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "dockerd did not answer on {} within {within:?}{}",
                socket.display(),
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
         tmp_dir = \"{r}/tmp\"\n"
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
        daemon: None,
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
