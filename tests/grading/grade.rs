//! Grading on the host guest: the shipped assignment's reference and empty submissions, a wrong
//! submission per task, and hostile ones that loop, fork, flood, write to the host, forge scores
//! and try to leave the sandbox. Each must score exactly what its real work earns, end within
//! its limits, and leave the host as it was (files, mounts, processes, loop devices, cgroups).

use labgrade_test_support as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use labgrade_grade::{Assignment, GradeReport, GradeStatus, TaskStatus};
use rstest::rstest;
use serial_test::file_serial;

fn assignment_dir() -> PathBuf {
    support::workspace_root().join("assignments/overlay-basics")
}

fn fixture(name: &str) -> PathBuf {
    support::suite_dir().join("fixtures/grade").join(name)
}

fn assignment() -> Assignment {
    labgrade_grade::load_assignment(&assignment_dir()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The shipped assignment with short limits, so hostile submissions end in seconds; the flood
/// gets a minute of wall time (1.5 GB through a pipe on a loaded machine) to show every byte is
/// read and all but the cap discarded.
fn fast_assignment(name: &str) -> Assignment {
    let mut a = assignment();
    for t in &mut a.tasks {
        t.limits.wall_ms = if name == "flood" { 60_000 } else { 4000 };
        t.limits.cpu_secs = if name == "flood" { 60 } else { 2 };
        // The busy loop must meet RLIMIT_CPU before its wall timer even on a loaded machine
        // (a full test run with VMs beside it gave it under half a core: the wall fired first).
        if name == "endless" && t.id == "mount" {
            t.limits.wall_ms = 30_000;
            t.limits.cpu_secs = 1;
        }
    }
    a
}

fn grade(a: &Assignment, submission: &Path) -> GradeReport {
    let r = labgrade_grade::grade_submission(&support::host(), a, submission);
    eprint!("{}", labgrade_grade::render::render_human(&r));
    assert_eq!(r.status, GradeStatus::Graded, "not graded: {:?}", r.reason);
    r
}

fn task_scores(r: &GradeReport) -> BTreeMap<String, u32> {
    r.tasks.iter().map(|t| (t.id.clone(), t.score)).collect()
}

fn scores(mount: u32, layers: u32, cow: u32, whiteout: u32) -> BTreeMap<String, u32> {
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
struct HostState {
    files: BTreeMap<String, String>,
    overlay_mounts: Vec<String>,
    mount_count: usize,
    sandbox_processes: Vec<String>,
    loop_devices: String,
    cgroups: Vec<String>,
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

fn listing(dir: &str) -> String {
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

fn host_state() -> HostState {
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

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn the_reference_solution_scores_100_and_the_empty_submission_0() {
    let a = assignment();
    assert_eq!(a.max_score(), 100);
    let r = grade(&a, &assignment_dir().join("reference"));
    assert_eq!(r.score, Some(100));
    assert!(r.tasks.iter().all(|t| t.status == TaskStatus::Graded));
    let e = grade(&a, &assignment_dir().join("empty"));
    assert_eq!(e.score, Some(0));
    assert!(e.tasks.iter().all(|t| t.status == TaskStatus::Missing));
}

#[rstest]
#[case::mount_then_unmount("wrong-mount", scores(0, 25, 25, 25))]
#[case::layers_lowest_first("wrong-layers", scores(25, 0, 25, 25))]
#[case::cow_without_newline("wrong-cow", scores(25, 25, 0, 25))]
#[case::whiteout_in_upper("wrong-whiteout", scores(25, 25, 25, 0))]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn a_wrong_task_loses_exactly_its_points(#[case] name: &str, #[case] want: BTreeMap<String, u32>) {
    let r = grade(&assignment(), &fixture(name));
    assert_eq!(task_scores(&r), want);
    assert_eq!(r.score, Some(75));
}

#[rstest]
#[case::endless_loop_and_sleep("endless", scores(25, 25, 25, 25))]
#[case::fork_bomb("forkbomb", scores(25, 25, 25, 25))]
#[case::one_and_a_half_gb_of_output("flood", scores(25, 25, 25, 25))]
#[case::writes_to_etc_and_root("writes-host", scores(25, 25, 25, 25))]
#[case::fake_scores_and_forged_results("fake-score", scores(25, 0, 0, 0))]
#[case::nsenter_chroot_and_bind_escapes("escapes", scores(0, 25, 25, 25))]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn a_hostile_submission_earns_its_real_work_ends_in_time_and_leaves_the_host_alone(
    #[case] name: &str,
    #[case] want: BTreeMap<String, u32>,
) {
    let a = fast_assignment(name);
    let before = host_state();
    let r = grade(&a, &fixture(name));
    let after = host_state();
    assert_eq!(task_scores(&r), want);
    assert_eq!(before, after, "the host changed");
    assert!(after.sandbox_processes.is_empty(), "{after:?}");
    for t in &r.tasks {
        let run = t
            .run
            .as_ref()
            .unwrap_or_else(|| panic!("{} did not run", t.id));
        // Ended by its limits, never by the grader's patience: the wall timer or RLIMIT_CPU.
        let wall_ms = a
            .tasks
            .iter()
            .find(|task| task.id == t.id)
            .map_or(0, |task| task.limits.wall_ms);
        assert!(
            run.student_ms <= wall_ms + 5000,
            "{}: {} ms",
            t.id,
            run.student_ms
        );
        assert!(
            run.stdout.len() <= 64 * 1024 + 200,
            "{}: kept {} bytes",
            t.id,
            run.stdout.len()
        );
        assert!(
            run.isolation.iter().any(|i| i.contains("user namespace")),
            "{:?}",
            run.isolation
        );
    }
    match name {
        "endless" => {
            let mount = &r.tasks[0].run;
            let whiteout = &r.tasks[3].run;
            assert_eq!(
                mount.as_ref().and_then(|m| m.signal),
                Some(9),
                "RLIMIT_CPU ends the busy loop"
            );
            assert!(
                whiteout.as_ref().is_some_and(|w| w.timed_out),
                "the wall timer ends the sleeper"
            );
        }
        "flood" => {
            let cow = r.tasks[2].run.as_ref().unwrap_or_else(|| panic!("no run"));
            assert_eq!(cow.stdout_bytes, 1500 << 20, "every byte was read");
            assert!(cow.stdout.contains("the rest was discarded"));
        }
        _ => {}
    }
}

/// The uid an unprivileged grader runs as (a GitHub runner's or a TA's account, here `nobody`).
const UNPRIVILEGED: &str = "65534";

#[rstest]
#[case::reference("reference", 100)]
#[case::empty("empty", 0)]
#[case::fake_scores_and_forged_results("fake-score", 25)]
#[case::writes_to_etc_and_root("writes-host", 100)]
#[case::nsenter_chroot_and_bind_escapes("escapes", 75)]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root to become an unprivileged user (setpriv --reuid 65534)"
)]
fn an_unprivileged_grader_scores_as_root_does_in_a_nested_user_namespace(
    #[case] name: &str,
    #[case] want: u32,
) {
    let submission = match name {
        "reference" | "empty" => assignment_dir().join(name),
        _ => fixture(name),
    };
    let before = host_state();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            UNPRIVILEGED,
            "--regid",
            UNPRIVILEGED,
            "--clear-groups",
        ])
        .arg(support::exe())
        .args(["grade", "--format", "json", "--assignment"])
        .arg(assignment_dir())
        .arg("--submission")
        .arg(&submission)
        .output()
        .unwrap_or_else(|e| panic!("setpriv: {e}"));
    let after = host_state();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a report ({e}); stderr:\n{stderr}"));
    support::assert_matches_schema("grade-report.schema.json", &report);
    assert_eq!(report["status"], "graded", "{report:#}");
    assert_eq!(report["score"], want, "{report:#}");
    assert_eq!(before, after, "the host changed");
    for t in report["tasks"].as_array().into_iter().flatten() {
        let Some(isolation) = t["run"]["isolation"].as_array() else {
            continue;
        };
        assert!(
            isolation.iter().any(|i| i
                .as_str()
                .is_some_and(|i| i.contains("nested in labgrade's own"))),
            "{isolation:?}"
        );
    }
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn the_same_submission_graded_three_times_scores_the_same() {
    let a = assignment();
    for name in ["wrong-layers", "fake-score"] {
        let runs: Vec<BTreeMap<String, u32>> = (0..3)
            .map(|_| task_scores(&grade(&a, &fixture(name))))
            .collect();
        assert_eq!(runs[0], runs[1], "{name}");
        assert_eq!(runs[1], runs[2], "{name}");
    }
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn an_entry_file_that_is_a_symlink_is_not_followed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sub = dir.path().join("sneaky");
    std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/etc/shadow", sub.join("mount.sh"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = grade(&assignment(), &sub);
    assert_eq!(r.score, Some(0));
    assert_eq!(r.tasks[0].status, TaskStatus::Missing);
    assert!(
        r.tasks[0]
            .reason
            .as_deref()
            .is_some_and(|w| w.contains("symbolic link")),
        "{:?}",
        r.tasks[0].reason
    );
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn gradescope_and_classroom_output_name_tests_by_task_and_never_repeat_printed_scores() {
    let r = grade(&assignment(), &fixture("fake-score"));
    let gs: serde_json::Value = serde_json::from_str(
        &labgrade_grade::render::render_gradescope(&r).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gs["score"], 25);
    assert_eq!(gs["max_score"], 100);
    let tests = gs["tests"].as_array().cloned().unwrap_or_default();
    assert_eq!(tests.len(), 12);
    assert!(tests.iter().all(|t| {
        let name = t["name"].as_str().unwrap_or_default();
        ["mount: ", "layers: ", "cow: ", "whiteout: "]
            .iter()
            .any(|p| name.starts_with(p))
    }));
    let cl: serde_json::Value = serde_json::from_str(
        &labgrade_grade::render::render_classroom(&r).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cl["version"], 1);
    assert_eq!(cl["status"], "fail");
    assert_eq!(cl["max_score"], 100);
    let earned: u64 = cl["tests"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["score"].as_u64()).sum())
        .unwrap_or_default();
    assert_eq!(earned, 25);
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn a_batch_writes_results_atomically_resumes_and_marks_grader_errors() {
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let subs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for name in ["reference", "empty"] {
        let to = subs.path().join(name);
        std::fs::create_dir(&to).unwrap_or_else(|e| panic!("{e}"));
        for f in std::fs::read_dir(assignment_dir().join(name))
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
        {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let grade_cli = |extra: &[&str]| {
        let o = std::process::Command::new(support::exe())
            .args(["grade", "--assignment"])
            .arg(assignment_dir())
            .arg("--submissions")
            .arg(subs.path())
            .arg("--out")
            .arg(out.path())
            .args(["--jobs", "2"])
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
        o.status.code()
    };
    assert_eq!(grade_cli(&[]), Some(1), "empty lost points");
    let csv =
        std::fs::read_to_string(out.path().join("summary.csv")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        csv,
        "submission,score,max_score,status\nempty,0,100,graded\nreference,100,100,graded\n"
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("reference/results.json"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(results["score"], 100);
    // A rerun keeps what is graded: the kept report is not rewritten.
    let kept = out.path().join("reference/report.json");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    support::assert_matches_schema("grade-report.schema.json", &report);
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let first = mtime(&kept);
    assert_eq!(grade_cli(&[]), Some(1));
    assert_eq!(mtime(&kept), first, "a graded submission was graded again");
    assert_eq!(grade_cli(&["--force"]), Some(1));
    assert_ne!(mtime(&kept), first, "--force grades again");
    // A grader failure (here: a submission that is not a directory) is `error`, never a 0.
    let broken = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = assignment();
    let r = labgrade_grade::grade_submission(&support::host(), &a, &broken.path().join("gone"));
    assert_eq!(r.status, GradeStatus::Error);
    assert_eq!(r.score, None);
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_submission_graded_on_qemu_debian_6_1_scores_as_on_the_host() {
    let guest = support::qemu_guest("debian:6.1", 1).unwrap_or_else(|reason| panic!("{reason}"));
    let a = assignment();
    for name in ["wrong-layers", "fake-score"] {
        let on_host = grade(&a, &fixture(name));
        let on_vm = labgrade_grade::grade_submission(&guest, &a, &fixture(name));
        eprint!("{}", labgrade_grade::render::render_human(&on_vm));
        assert_eq!(on_vm.status, GradeStatus::Graded, "{:?}", on_vm.reason);
        assert_eq!(on_vm.guest, "qemu:debian:6.1");
        assert_eq!(task_scores(&on_vm), task_scores(&on_host), "{name}");
        assert!(
            on_vm.tasks[0]
                .run
                .as_ref()
                .is_some_and(|r| r.isolation[0].contains("VM")),
            "the VM is the boundary there"
        );
    }
}

#[test]
fn a_broken_assignment_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(assignment_dir().join("assignment.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .replacen("points = 25", "points = 26", 1);
    std::fs::write(dir.path().join("assignment.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    let o = std::process::Command::new(support::exe())
        .args(["grade", "--assignment"])
        .arg(dir.path())
        .arg("--submission")
        .arg(assignment_dir().join("reference"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("assignment.toml:21:10: task `mount` is worth 26 points"),
        "{stderr}"
    );
}
