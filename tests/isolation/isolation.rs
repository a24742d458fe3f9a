//! The host guest's promises: a lab's mounts are never in the host's mount table, and nothing is
//! left behind even when labgrade is killed with SIGKILL mid-lab; without root, labs run in a user
//! namespace and the report says so.

use labgrade_test_support as support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn loop_devices_backed_by(tag: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|f| f.contains(tag))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lab attaches a loop device"
)]
#[cfg_attr(
    not(labgrade_xfsprogs),
    ignore = "needs mkfs.xfs (apt-get install xfsprogs) for the loop-mounted XFS part"
)]
fn sigkill_mid_lab_leaves_no_mount_loop_device_or_process() {
    let tag = format!("kill-test-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lab = dir.path().join("01-hang.toml");
    std::fs::write(
        &lab,
        format!(
            r#"title = "mounts, attaches a loop device, then hangs"
lesson = {{ file = "none.md", section = "none" }}
needs = ["overlay"]
[[step]]
run = """
mkdir -p $LAB/{{lower,upper,work,merged,xfs}}
mount -t overlay overlay -o lowerdir=$LAB/lower,upperdir=$LAB/upper,workdir=$LAB/work $LAB/merged
truncate -s 300M $LAB/{tag}.img
mkfs.xfs -q $LAB/{tag}.img
mount -o loop $LAB/{tag}.img $LAB/xfs
"""
[[step]]
run = "sleep 120"
"#
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(support::exe())
        .args(["run", lab.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let labgrade = i32::try_from(child.id()).unwrap_or_default();

    // Mid-lab: the session is asleep with its overlay and XFS mounted.
    let tree = support::wait_for(
        "the lab to reach its sleep",
        Duration::from_secs(30),
        || {
            let d = support::descendants(labgrade);
            d.iter().any(|(_, cmd)| cmd == "sleep 120").then_some(d)
        },
    );
    let agents: Vec<i32> = tree
        .iter()
        .filter(|(_, c)| c.ends_with("__agent"))
        .map(|(p, _)| *p)
        .collect();
    let agent = *agents
        .first()
        .unwrap_or_else(|| panic!("no agent among {tree:?}"));
    let lab_mounts =
        std::fs::read_to_string(format!("/proc/{agent}/mountinfo")).unwrap_or_default();
    assert!(
        lab_mounts.contains(" - overlay "),
        "the lab's overlay is mounted in its namespace"
    );
    assert!(
        !loop_devices_backed_by(&tag).is_empty(),
        "the lab's loop device is attached"
    );
    assert!(
        support::host_overlay_mounts().is_empty(),
        "during the lab, the host sees no overlay mount"
    );
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        !host_mounts.contains("/tmp/lab/"),
        "during the lab, the host sees none of its mounts"
    );

    kill(Pid::from_raw(labgrade), Signal::SIGKILL).unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();

    support::wait_for(
        "every process of the lab to die",
        Duration::from_secs(10),
        || {
            let alive: Vec<&(i32, String)> = tree
                .iter()
                .filter(|(p, _)| Path::new(&format!("/proc/{p}")).exists())
                .collect();
            alive.is_empty().then_some(())
        },
    );
    support::wait_for("the loop device to detach", Duration::from_secs(10), || {
        loop_devices_backed_by(&tag).is_empty().then_some(())
    });
    assert!(
        support::host_overlay_mounts().is_empty(),
        "after SIGKILL, the host sees no overlay mount"
    );
}

#[test]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root to drop to an unprivileged user (run as that user, the lab tests cover it)"
)]
fn without_root_labs_run_in_a_user_namespace_and_say_so() {
    let unprivileged = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let userns_ok = Command::new("setpriv")
        .args(unprivileged)
        .args(["unshare", "-Urm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        userns_ok,
        "this kernel or setpriv does not let an unprivileged user create a user namespace"
    );
    // Somewhere nobody can read: a copy of the binary and the labs in a world-readable dir.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let world = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
    };
    world(dir.path(), 0o755);
    let exe = dir.path().join("labgrade");
    std::fs::copy(support::exe(), &exe).unwrap_or_else(|e| panic!("{e}"));
    world(&exe, 0o755);
    let lesson = dir.path().join("labs/07-overlay-filesystems");
    std::fs::create_dir_all(&lesson).unwrap_or_else(|e| panic!("{e}"));
    world(&dir.path().join("labs"), 0o755);
    world(&lesson, 0o755);
    for f in std::fs::read_dir(support::labs_dir().join("07-overlay-filesystems"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let to = lesson.join(f.file_name());
        std::fs::copy(f.path(), &to).unwrap_or_else(|e| panic!("{e}"));
        world(&to, 0o644);
    }
    // A cache the user cannot write, as root's HOME is when sudo or setpriv keep it: disk
    // images must still be made (elsewhere), so the labs that need them are skipped for the
    // real reason (no loop devices without root), not for the cache.
    let cache = dir.path().join("root-owned-cache");
    std::fs::create_dir(&cache).unwrap_or_else(|e| panic!("{e}"));
    world(&cache, 0o755);
    let out = Command::new("setpriv")
        .args(unprivileged)
        .arg(&exe)
        .env("LABGRADE_CACHE_DIR", &cache)
        .args(["run", "--format", "json", "--labs"])
        .arg(dir.path().join("labs"))
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert!(
        v["privilege"]["user_namespace"]["outer_uid"] == 65534,
        "{}",
        v["privilege"]
    );
    let labs = v["labs"].as_array().cloned().unwrap_or_default();
    let status = |id: &str| {
        labs.iter().find(|l| l["id"] == id).map(|l| {
            (
                l["status"].as_str().unwrap_or("").to_owned(),
                l["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
    };
    assert_eq!(status("quick-start").map(|s| s.0), Some("pass".to_owned()));
    let (delete_status, delete_reason) = status("delete-path").unwrap_or_default();
    assert_eq!(delete_status, "skip");
    assert!(
        delete_reason.contains("needs trusted-xattr"),
        "{delete_reason}"
    );
    let (ext4_status, ext4_reason) = status("upper-on-ext4").unwrap_or_default();
    assert_eq!(ext4_status, "skip", "{ext4_reason}");
    assert!(
        ext4_reason.contains("cannot attach a loop device"),
        "{ext4_reason}"
    );
    assert!(
        labs.iter()
            .all(|l| l["status"] == "pass" || l["status"] == "skip"),
        "{v:#}"
    );
    assert!(support::host_overlay_mounts().is_empty());
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn sigkill_mid_matrix_leaves_no_qemu_and_no_temp_files() {
    let guest = support::qemu_guest("debian:6.1", 1).unwrap_or_else(|reason| panic!("{reason}"));
    drop(guest);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap_or_else(|e| panic!("{e}"));
    let lab = dir.path().join("01-hang.toml");
    std::fs::write(
        &lab,
        "title = \"hangs\"\nlesson = { file = \"none.md\", section = \"none\" }\n[[step]]\nrun = \"sleep 600\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(support::exe())
        .args([
            "matrix",
            "--kernels",
            "debian:6.1",
            "--accel",
            "tcg",
            lab.to_str().unwrap_or_default(),
        ])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let labgrade = i32::try_from(child.id()).unwrap_or_default();
    let qemu = support::wait_for("qemu to start", Duration::from_secs(60), || {
        support::descendants(labgrade)
            .into_iter()
            .find(|(_, cmd)| cmd.starts_with("qemu-system-x86_64"))
            .map(|(p, _)| p)
    });
    // Let the guest boot and the lab start sleeping.
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        Path::new(&format!("/proc/{qemu}")).exists(),
        "qemu is still running mid-matrix"
    );
    kill(Pid::from_raw(labgrade), Signal::SIGKILL).unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    support::wait_for("qemu to die with labgrade", Duration::from_secs(10), || {
        (!Path::new(&format!("/proc/{qemu}")).exists()).then_some(())
    });
    support::assert_empty_dir(&tmp, "temp files left behind");
    support::assert_no_half_written_cache_files();
}
