//! Container engines (issue 10): what labgrade starts for an engine lab, it stops; and a SIGKILL
//! of labgrade mid-lab leaves no container, engine daemon, mount or data root behind, because
//! the engine runs inside the lab's session (its pid and mount namespaces, its tmpfs).
//!
//! These tests watch machine-wide state (processes, /run, cgroup directories), so they run one
//! at a time and apart from other engine labs: nextest's `container-engines` test group
//! (.config/nextest.toml). (No test here is named `sigkill...`: that would put it in the
//! `kill-and-watch` group instead, beside running engine labs.)

use labgrade_test_support as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What an engine could leave on the host outside the session: its processes, its runtime
/// and state directories, podman's locks and blob cache, dockerd's key, its cgroup parents.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    engine_processes: Vec<String>,
    paths: Vec<PathBuf>,
}

fn host_state() -> HostState {
    let mut engine_processes: Vec<String> = support::processes()
        .into_values()
        .map(|(_, cmd)| cmd)
        .filter(|cmd| {
            let exe = cmd.split_whitespace().next().unwrap_or_default();
            let name = Path::new(exe)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            [
                "dockerd",
                "containerd",
                "containerd-shim-runc-v2",
                "conmon",
                "podman",
            ]
            .contains(&name.as_str())
        })
        .collect();
    engine_processes.sort();
    let mut paths: Vec<PathBuf> = [
        "/run/containerd",
        "/run/docker",
        "/run/docker.sock",
        "/run/libpod",
        "/run/containers",
        "/var/lib/docker",
        "/var/lib/containers",
        "/var/lib/containerd",
        "/etc/docker/key.json",
        "/dev/shm/libpod_lock",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .collect();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for parent in ["docker", "libpod_parent"] {
            let p = hierarchy.path().join(parent);
            if p.is_dir() {
                paths.push(p);
            }
        }
    }
    paths.sort();
    HostState {
        engine_processes,
        paths,
    }
}

/// A lab file of one step on `engine`, named `name` in `dir`; `step` is the step's TOML body
/// (`run = ...` and its checks). The tests' small engine labs, written one way.
fn one_step_engine_lab(dir: &Path, name: &str, engine: &str, step: &str) -> PathBuf {
    let lab = dir.join(name);
    std::fs::write(
        &lab,
        format!(
            "title = \"t\"\nlesson = {{ file = \"l\", section = \"s\" }}\nengines = [\"{engine}\"]\n\
             snapshot = []\n[[step]]\n{step}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    lab
}

fn lab_file(dir: &Path, engine: &str) -> PathBuf {
    let lab = dir.join("01-hang.toml");
    std::fs::write(
        &lab,
        format!(
            r#"title = "a container running, then a hang"
lesson = {{ file = "none.md", section = "none" }}
needs = ["overlay"]
engines = ["{engine}"]
snapshot = []
[[step]]
run = "$ENGINE run -d --name left --network none $IMAGE sleep 600"
[[step]]
run = "sleep 120"
"#
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    lab
}

#[rstest::rstest]
#[cfg_attr(not(labgrade_root), ignore = "container engines need real root")]
#[cfg_attr(
    not(labgrade_docker),
    ignore = "docker is not installed (apt-get install docker.io)"
)]
#[cfg_attr(
    not(labgrade_podman),
    ignore = "podman is not installed (apt-get install podman runc)"
)]
fn killed_mid_engine_lab_labgrade_leaves_no_container_daemon_mount_or_data_root(
    #[values("docker", "podman")] engine: &str,
) {
    let before = host_state();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lab = lab_file(dir.path(), engine);
    let mut child = Command::new(support::exe())
        .args(["run", lab.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let labgrade = i32::try_from(child.id()).unwrap_or_default();
    // Mid-lab: the engine is up, the container runs `sleep 600`, the session `sleep 120`.
    let tree = support::wait_for(
        "the lab to reach its sleep",
        Duration::from_secs(60),
        || {
            let d = support::descendants(labgrade);
            (d.iter().any(|(_, c)| c == "sleep 120") && d.iter().any(|(_, c)| c == "sleep 600"))
                .then_some(d)
        },
    );
    if engine == "docker" {
        assert!(
            tree.iter().any(|(_, c)| c.contains("dockerd")),
            "labgrade started dockerd: {tree:?}"
        );
    }
    assert!(
        support::host_overlay_mounts().is_empty(),
        "the container's overlay is not in the host's mount table"
    );

    kill(Pid::from_raw(labgrade), Signal::SIGKILL).unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    support::wait_for(
        "every process of the lab, its engine and its container to die",
        Duration::from_secs(20),
        || {
            tree.iter()
                .all(|(p, _)| !Path::new(&format!("/proc/{p}")).exists())
                .then_some(())
        },
    );
    assert!(
        support::host_overlay_mounts().is_empty(),
        "after SIGKILL, the host sees no overlay mount"
    );
    let after = host_state();
    assert_eq!(
        after.engine_processes, before.engine_processes,
        "no engine process is left"
    );
    // The data root was on the session's tmpfs, gone with its mount namespace; nothing of the
    // engine was ever written to the host's /run, /var/lib, /etc/docker or /dev/shm. (Empty
    // cgroup directories the kernel keeps are swept only by a clean stop: see below.)
    let outside_cgroups = |s: &HostState| -> Vec<PathBuf> {
        s.paths
            .iter()
            .filter(|p| !p.starts_with("/sys/fs/cgroup"))
            .cloned()
            .collect()
    };
    assert_eq!(outside_cgroups(&after), outside_cgroups(&before));
}

#[rstest::rstest]
#[cfg_attr(not(labgrade_root), ignore = "container engines need real root")]
#[cfg_attr(
    not(labgrade_docker),
    ignore = "docker is not installed (apt-get install docker.io)"
)]
#[cfg_attr(
    not(labgrade_podman),
    ignore = "podman is not installed (apt-get install podman runc)"
)]
fn a_finished_engine_lab_leaves_nothing_not_even_cgroups(
    #[values("docker", "podman")] engine: &str,
) {
    let before = host_state();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The container is left running at the end, as a student would leave it.
    let lab = one_step_engine_lab(
        dir.path(),
        "01-left.toml",
        engine,
        "run = '$ENGINE run -d --name left --network none $IMAGE sleep 600'",
    );
    let out = Command::new(support::exe())
        .args(["run", lab.to_str().unwrap_or_default()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Nothing new; an earlier killed run's old empty cgroups may even have been swept.
    let after = host_state();
    assert_eq!(after.engine_processes, before.engine_processes);
    let new: Vec<&PathBuf> = after
        .paths
        .iter()
        .filter(|p| !before.paths.contains(p))
        .collect();
    assert!(new.is_empty(), "the engine left {new:?} behind");
    assert!(support::host_overlay_mounts().is_empty());
}

/// `--image NAME` pulls from the image's registry: where none answers (a `.invalid` name never
/// resolves, here or on a networked machine) the engine lab is an infrastructure error (exit 3)
/// that names the image and carries the engine's own words, and leaves nothing behind.
#[rstest::rstest]
#[cfg_attr(not(labgrade_root), ignore = "container engines need real root")]
#[cfg_attr(
    not(labgrade_docker),
    ignore = "docker is not installed (apt-get install docker.io)"
)]
#[cfg_attr(
    not(labgrade_podman),
    ignore = "podman is not installed (apt-get install podman runc)"
)]
fn an_image_no_registry_serves_is_an_infrastructure_error_naming_it(
    #[values("docker", "podman")] engine: &str,
) {
    let before = host_state();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lab = one_step_engine_lab(
        dir.path(),
        "01-pull.toml",
        engine,
        "run = '$ENGINE run --rm --network none $IMAGE true'",
    );
    let image = "registry.invalid/labgrade/nothing:1";
    let out = Command::new(support::exe())
        .args(["run", "--format", "json", "--image", image])
        .arg(&lab)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let lab = &report["labs"][0];
    assert_eq!(lab["status"], "error", "{stdout}");
    let reason = lab["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("pull {image}")) && reason.contains("registry"),
        "the reason names the pull and the image: {reason}"
    );
    let after = host_state();
    assert_eq!(after.engine_processes, before.engine_processes);
    assert!(support::host_overlay_mounts().is_empty());
}

/// A dockerd the machine already runs (here one this test starts on the default socket, with
/// its data in a temp dir): an engine lab never talks to it, and it is left exactly as it was,
/// its containers and images too. labgrade's own dockerd runs beside it in the lab's session.
#[test]
#[cfg_attr(not(labgrade_root), ignore = "container engines need real root")]
#[cfg_attr(
    not(labgrade_docker),
    ignore = "docker is not installed (apt-get install docker.io)"
)]
// Drift's host tests run the lesson's docker blocks where a docker answers: not beside this one.
#[serial_test::file_serial(machine_docker)]
fn a_dockerd_already_running_is_left_as_it_was() {
    let socket = Path::new("/run/docker.sock");
    assert!(
        !socket.exists(),
        "a dockerd already answers on {}: this test starts its own there",
        socket.display()
    );
    let key = Path::new("/etc/docker/key.json");
    let key_was_there = key.exists();
    let run_docker = Path::new("/run/docker");
    let run_docker_was_there = run_docker.exists();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let host = "unix:///run/docker.sock";
    let mut machines = MachineDockerd(
        Command::new("dockerd")
            .arg("--host")
            .arg(host)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}")),
    );
    let docker = |args: &[&str]| -> String {
        let out = Command::new("docker")
            .arg("--host")
            .arg(host)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    support::wait_for("the machine's dockerd", Duration::from_secs(60), || {
        Command::new("docker")
            .args(["--host", host, "version"])
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    // Something of the machine's own on it: an image and a container.
    let layer = dir.path().join("layer");
    std::fs::create_dir(&layer).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(layer.join("mine.txt"), "the machine's\n").unwrap_or_else(|e| panic!("{e}"));
    let tar = dir.path().join("layer.tar");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(&layer)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(packed.success());
    docker(&["import", tar.to_str().unwrap_or_default(), "machines/own:1"]);
    docker(&[
        "create",
        "--name",
        "machines-own",
        "machines/own:1",
        "/none",
    ]);
    let seen = || {
        (
            docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]),
            docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]),
        )
    };
    let before = seen();

    let labs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lab = one_step_engine_lab(
        labs.path(),
        "01-beside.toml",
        "docker",
        "run = '$ENGINE run --name machines-own --network none $IMAGE true && $ENGINE ps -a'",
    );
    let out = Command::new(support::exe())
        .args(["run", lab.to_str().unwrap_or_default()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "the lab ran on its own dockerd, where the name is free:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    assert!(
        machines.0.try_wait().ok().flatten().is_none(),
        "the machine's dockerd still runs"
    );
    assert_eq!(seen(), before, "its containers and images are as they were");
    docker(&["rm", "machines-own"]);
    docker(&["rmi", "machines/own:1"]);
    machines.stop();
    // What that dockerd wrote outside its dirs, as a machine's own would: not labgrade's.
    if !key_was_there {
        let _ = std::fs::remove_file(key);
    }
    if !run_docker_was_there {
        let _ = std::fs::remove_dir_all(run_docker);
    }
}

/// The dockerd a test started as the machine's: stopped by its pid, also when the test fails.
struct MachineDockerd(std::process::Child);

impl MachineDockerd {
    fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        for _ in 0..200 {
            if self.0.try_wait().ok().flatten().is_some() {
                let _ = std::fs::remove_file("/run/docker.sock");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        // What a dockerd that was killed leaves on the default socket's path.
        let _ = std::fs::remove_file("/run/docker.sock");
    }
}

impl Drop for MachineDockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A labgrade kept under /tmp (a checkout cloned there) is hidden inside a lab's session by the
/// session's own tmpfs on /tmp: engine labs still get a `$LABGRADE` that runs (Lab 2 calls
/// `"$LABGRADE" __container-layers`). Before, it was the hidden path: exit 127.
#[rstest::rstest]
#[cfg_attr(not(labgrade_root), ignore = "container engines need real root")]
#[cfg_attr(
    not(labgrade_docker),
    ignore = "docker is not installed (apt-get install docker.io)"
)]
#[cfg_attr(
    not(labgrade_podman),
    ignore = "podman is not installed (apt-get install podman runc)"
)]
fn an_engine_lab_gets_a_labgrade_it_can_run_when_labgrade_lives_under_tmp(
    #[values("docker", "podman")] engine: &str,
) {
    let dir = tempfile::Builder::new()
        .prefix("labgrade-under-tmp")
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("{e}"));
    let exe = dir.path().join("labgrade");
    std::fs::copy(support::exe(), &exe).unwrap_or_else(|e| panic!("{e}"));
    let lab = one_step_engine_lab(
        dir.path(),
        "01-me.toml",
        engine,
        "run = '\"$LABGRADE\" --version'\nstdout_contains = \"labgrade \"",
    );
    let out = Command::new(&exe)
        .args(["run", lab.to_str().unwrap_or_default()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
