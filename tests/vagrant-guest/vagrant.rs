//! The `vagrant:` guest on the offline-built box (vagrant/build-box): every lab runs there
//! unchanged, the box build is cached, a box that cannot come up is an infrastructure error with
//! Vagrant's words, and nothing labgrade created in libvirt outlives it, even after SIGKILL.
//! Every Vagrantfile under vagrant/ validates.
//!
//! They share libvirtd and the box: one at a time (`file_serial(vagrant)`).

use labgrade_test_support as support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serial_test::file_serial;

const NEEDS: &str = "needs root, vagrant, vagrant-libvirt, libvirtd, debootstrap and qemu-img (scripts/test-all installs and starts them)";

fn vagrant_dir() -> PathBuf {
    support::workspace_root().join("vagrant")
}

/// Runs vagrant/build-box (cached after the first time); its output.
fn build_box() -> Output {
    let out = Command::new(vagrant_dir().join("build-box"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run vagrant/build-box: {e}"));
    assert!(
        out.status.success(),
        "vagrant/build-box failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn virsh(args: &[&str]) -> String {
    Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Libvirt domains and volumes a labgrade process with this pid created (it names them
/// `labgrade-<pid>-<nonce>_default`).
fn leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("labgrade-{pid}-");
    let domains = virsh(&["list", "--all", "--name"]);
    let volumes = virsh(&["vol-list", "default"]);
    domains
        .lines()
        .chain(volumes.lines().filter_map(|l| l.split_whitespace().next()))
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// vagrant-libvirt's management network, when it is defined but no domain uses it: a machine's
/// `vagrant up` made it, and its cleanup should have removed it.
fn stray_management_network() -> bool {
    let defined = virsh(&["net-list", "--all", "--name"])
        .lines()
        .any(|n| n.trim() == "vagrant-libvirt");
    let used = virsh(&["list", "--all", "--name"])
        .lines()
        .filter(|d| !d.trim().is_empty())
        .any(|d| virsh(&["domiflist", d.trim()]).contains(" vagrant-libvirt "));
    defined && !used
}

/// The working directories of that process's machines.
fn work_dirs(pid: u32) -> Vec<PathBuf> {
    let root =
        labgrade_runner::writable_cache_dir(labgrade_fs::CacheDir::Vagrant).unwrap_or_default();
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("labgrade-{pid}-")))
        })
        .collect()
}

#[test]
#[file_serial(vagrant)]
#[cfg_attr(
    not(labgrade_vagrant),
    ignore = "needs root, vagrant, vagrant-libvirt, libvirtd, debootstrap and qemu-img (scripts/test-all installs and starts them)"
)]
fn vagrant_box_build_is_cached_and_added() {
    let _ = NEEDS;
    let first = build_box();
    let box_file = PathBuf::from(String::from_utf8_lossy(&first.stdout).trim());
    let built = std::fs::metadata(&box_file).and_then(|m| m.modified()).ok();
    let second = build_box();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("build-box: cached"), "{said}");
    assert!(
        said.contains("vagrant already has labgrade/bookworm"),
        "{said}"
    );
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        box_file.display().to_string()
    );
    assert_eq!(
        std::fs::metadata(&box_file).and_then(|m| m.modified()).ok(),
        built,
        "the cached box was rewritten"
    );
    let boxes = Command::new("vagrant")
        .args(["box", "list"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&boxes).contains("labgrade/bookworm (libvirt"),
        "vagrant box list: {}",
        String::from_utf8_lossy(&boxes)
    );
}

#[test]
#[file_serial(vagrant)]
#[cfg_attr(
    not(labgrade_vagrant),
    ignore = "needs root, vagrant, vagrant-libvirt, libvirtd, debootstrap and qemu-img (scripts/test-all installs and starts them)"
)]
fn vagrant_bookworm_runs_every_lab_and_is_destroyed() {
    build_box();
    let child = Command::new(support::exe())
        .args([
            "run",
            "--guest",
            "vagrant:bookworm",
            "--format",
            "json",
            "--labs",
        ])
        .arg(support::labs_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run labgrade: {e}"));
    let pid = child.id();
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("labgrade: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    assert_eq!(report["guest"], "vagrant:bookworm", "{report}");
    let labs = report["labs"].as_array().cloned().unwrap_or_default();
    assert!(!labs.is_empty(), "{report}");
    for lab in &labs {
        let status = lab["status"].as_str().unwrap_or_default();
        // xfs-v4 is probed: the box's own 6.1 kernel mounts V4, but a skip with its reason is
        // the contract where a kernel lacks it. Nothing fails and nothing errors.
        assert!(
            status == "pass" || (status == "skip" && lab["reason"].is_string()),
            "lab {} on vagrant:bookworm: {status}\n{lab:#}",
            lab["id"]
        );
    }
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left in libvirt");
    assert!(
        !stray_management_network(),
        "the vagrant-libvirt network was left"
    );
    assert_eq!(
        work_dirs(pid),
        Vec::<PathBuf>::new(),
        "working directories left"
    );
}

#[test]
#[file_serial(vagrant)]
#[cfg_attr(
    not(labgrade_vagrant),
    ignore = "needs root, vagrant, vagrant-libvirt, libvirtd, debootstrap and qemu-img (scripts/test-all installs and starts them)"
)]
fn vagrant_kill_9_mid_run_leaves_no_domain_volume_or_dir() {
    build_box();
    let mut child = Command::new(support::exe())
        .args(["run", "--guest", "vagrant:bookworm", "--labs"])
        .arg(support::labs_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run labgrade: {e}"));
    let pid = child.id();
    // Mid-run: the machine is up and labs are running over SSH (the master's socket exists).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let up = work_dirs(pid).iter().any(|d| d.join("ssh.sock").exists());
        if up {
            std::thread::sleep(Duration::from_secs(2));
            break;
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "labgrade ended before the machine came up"
        );
        assert!(Instant::now() < deadline, "the machine never came up");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !leftovers(pid).is_empty(),
        "no domain named labgrade-{pid}-* while running"
    );
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(300);
    while (!leftovers(pid).is_empty() || !work_dirs(pid).is_empty() || stray_management_network())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        leftovers(pid),
        Vec::<String>::new(),
        "left in libvirt after SIGKILL"
    );
    assert!(
        !stray_management_network(),
        "the vagrant-libvirt network was left after SIGKILL"
    );
    assert_eq!(
        work_dirs(pid),
        Vec::<PathBuf>::new(),
        "working directories left after SIGKILL"
    );
}

#[test]
#[file_serial(vagrant)]
#[cfg_attr(
    not(labgrade_vagrant),
    ignore = "needs root, vagrant, vagrant-libvirt, libvirtd, debootstrap and qemu-img (scripts/test-all installs and starts them)"
)]
fn vagrant_box_that_cannot_come_up_is_exit_3_with_vagrants_words() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        broken.join("Vagrantfile"),
        "Vagrant.configure(\"2\") do |c|\n  c.vm.box = \"labgrade/absent\"\n  \
         c.vm.box_url = \"file:///nonexistent/absent.box\"\nend\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let out = Command::new(support::exe())
        .args(["exec", "--guest", "vagrant:broken", "--", "true"])
        .env("LABGRADE_VAGRANT_DIR", dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run labgrade: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("vagrant up"), "{stderr}");
    assert!(
        stderr.contains("absent.box"),
        "Vagrant's own words are missing:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
#[cfg_attr(
    not(labgrade_vagrant),
    ignore = "needs root, vagrant, vagrant-libvirt, libvirtd, debootstrap and qemu-img (scripts/test-all installs and starts them)"
)]
fn every_vagrantfile_validates() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(vagrant_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = entry.path();
        if !dir.join("Vagrantfile").is_file() {
            continue;
        }
        let out = Command::new("vagrant")
            .arg("validate")
            .current_dir(&dir)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run vagrant: {e}"));
        assert!(
            out.status.success(),
            "{}: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push(entry.file_name().to_string_lossy().into_owned());
    }
    seen.sort();
    assert_eq!(seen, ["bookworm", "rhel-9", "ubuntu-22.04"]);
}
