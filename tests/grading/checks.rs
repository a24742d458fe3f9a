//! What the grading suites compare: scores task by task, and what a hostile submission might
//! change on the host, read before and after grading (files and listings of the places a
//! student would aim at, mounts, processes of sandbox uids, loop devices and sandbox cgroups).

use labgrade_test_support as support;

use std::collections::BTreeMap;
use std::path::Path;

use labgrade_grade::GradeReport;

/// Each task's score, by task id.
pub fn task_scores(r: &GradeReport) -> BTreeMap<String, u32> {
    r.tasks.iter().map(|t| (t.id.clone(), t.score)).collect()
}

/// The scores of overlay-basics' four tasks, by task id.
pub fn scores(mount: u32, layers: u32, cow: u32, whiteout: u32) -> BTreeMap<String, u32> {
    [
        ("mount", mount),
        ("layers", layers),
        ("cow", cow),
        ("whiteout", whiteout),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What a hostile submission might change on the host, read before and after grading.
#[derive(Debug, PartialEq, Eq)]
pub struct HostState {
    pub files: BTreeMap<String, String>,
    pub overlay_mounts: Vec<String>,
    pub mount_count: usize,
    pub sandbox_processes: Vec<String>,
    pub loop_devices: String,
    pub cgroups: Vec<String>,
}

fn digest(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            format!("{} bytes {:x}", bytes.len(), h.finish())
        }
        Err(e) => format!("unreadable: {}", e.kind()),
    }
}

/// The sorted names in `dir`, space-separated (empty if unreadable).
pub fn listing(dir: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(" ")
}

pub fn host_state() -> HostState {
    let mut files = BTreeMap::new();
    for f in ["/etc/passwd", "/etc/shadow", "/etc/hostname"] {
        files.insert(f.to_owned(), digest(Path::new(f)));
    }
    if let Ok(m) = std::fs::metadata("/etc/shadow") {
        use std::os::unix::fs::PermissionsExt;
        files.insert(
            "/etc/shadow mode".into(),
            format!("{:o}", m.permissions().mode()),
        );
    }
    for d in [
        "/etc",
        "/root",
        "/var/tmp",
        "/dev/shm",
        "/run/lock",
        "/autograder",
    ] {
        files.insert(format!("{d}/ listing"), listing(d));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let sandbox_processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let status = std::fs::read_to_string(e.path().join("status")).ok()?;
                    let uid: u32 = status
                        .lines()
                        .find_map(|l| l.strip_prefix("Uid:"))?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()?;
                    (uid >= labgrade_agent::SANDBOX_UID_BASE)
                        .then(|| format!("pid {} uid {uid}", e.file_name().to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    let loop_devices = std::process::Command::new("losetup")
        .arg("-l")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut cgroups = Vec::new();
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
    ] {
        let l = listing(root);
        cgroups.extend(
            l.split(' ')
                .filter(|n| n.starts_with("labgrade-sandbox"))
                .map(|n| format!("{root}/{n}")),
        );
    }
    HostState {
        files,
        overlay_mounts: support::host_overlay_mounts(),
        mount_count: mountinfo.lines().count(),
        sandbox_processes,
        loop_devices,
        cgroups,
    }
}
