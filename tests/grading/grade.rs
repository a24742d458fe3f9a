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
    let r = labgrade_grade::grade_submission(&support::grading_host(), a, submission);
    eprint!("{}", labgrade_grade::render::render_human(&r));
    assert_eq!(r.status, GradeStatus::Graded, "not graded: {:?}", r.reason);
    r
}

mod checks;
use checks::{host_state, listing, scores, task_scores};

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
    let r =
        labgrade_grade::grade_submission(&support::grading_host(), &a, &broken.path().join("gone"));
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

/// `labgrade grade` of one submission on `qemu:debian:6.1` (TCG), in `format`: its exit code,
/// stdout and stderr.
fn grade_on_qemu(assignment: &Path, submission: &Path, format: &str) -> (Option<i32>, String) {
    let o = std::process::Command::new(support::exe())
        .args(["grade", "--guest", "qemu:debian:6.1", "--accel", "tcg"])
        .args(["--format", format, "--assignment"])
        .arg(assignment)
        .arg("--submission")
        .arg(submission)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}\n---- stderr ----\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// Staged guest roots (`.guest-root.*`) left in the initramfs cache: none once a run is over.
fn staged_roots_left() -> Vec<String> {
    let dir = labgrade_fs::CacheDirs::default_location()
        .writable(labgrade_fs::CacheDir::Initramfs)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".guest-root."))
                .collect()
        })
        .unwrap_or_default()
}

/// What the hostile reader does in its `cow` task: tries every way a root in the VM has to the
/// host's files, and writes what it found into `merged/etc/app.conf`, a file a check reads (so
/// whatever it found would be quoted in the check's evidence, in every output format).
fn hostile_reader(paths: &[&Path]) -> String {
    let cats: String = paths
        .iter()
        .map(|p| format!("echo '== {0}'; cat '{0}'; ls -la '{0}'\n", p.display()))
        .collect();
    format!(
        r#"out="$LAB/merged/etc/app.conf"
{{
echo HOSTILE-FINDINGS
echo '== /etc/shadow'; cat /etc/shadow
echo '== /root'; ls -la /root /root/*/ 2>&1 | head -300
echo '== /work'; ls -la /work
echo '== /home'; ls -la /home /home/*/ 2>&1 | head -300
echo '== /etc'; ls -la /etc
{cats}echo '== search'; find / -xdev -name 'labgrade-secret*' 2>&1 | head -20
echo '== 9p tags'
for t in /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; do
  tag=$(tr -d '\000' < "$t")
  echo "tag $tag"
  d="/tmp/m-$tag"
  mkdir -p "$d"
  if mount -t 9p -o trans=virtio,version=9p2000.L,rw "$tag" "$d"; then
    echo "mounted $tag rw at $d"
  else
    d=$(awk -v t="$tag" '$1 == t && $3 == "9p" {{ print $2; exit }}' /proc/mounts)
    mount -o remount,rw "$d" && echo "remounted $tag rw at $d"
  fi
  ls -la "$d"
  cat "$d/etc/shadow" "$d/shadow"
  touch "$d/labgrade-pwned-$tag" && echo "WROTE through $tag"
  echo pwned >> "$d/etc/passwd" && echo "APPENDED to passwd through $tag"
done
echo '== mountinfo'; cat /proc/self/mountinfo
echo '== cmdline'; cat /proc/cmdline
}} > "$out" 2>&1
cat "$out"
"#
    )
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: it plants a secret under /root and reads /etc/shadow to look for it"
)]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_hostile_submission_on_qemu_reads_none_of_the_hosts_files_in_any_output_format() {
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    // Secrets: a marker under the host's /root, one in this test's own temp dir, a peer's
    // submission, the assignment's reference solution, and a line of the host's /etc/shadow.
    let root_secret = tempfile::Builder::new()
        .prefix("labgrade-secret-")
        .tempdir_in("/root")
        .unwrap_or_else(|e| panic!("{e}"));
    let root_marker = format!("ROOT-SECRET-{nonce}");
    std::fs::write(root_secret.path().join("marker"), &root_marker)
        .unwrap_or_else(|e| panic!("{e}"));
    // Named nowhere in the submission: only a listing of the host's /root would show it.
    let listed_only = format!("listed-only-{nonce}");
    std::fs::write(root_secret.path().join(&listed_only), "").unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tmp_marker = format!("TMP-SECRET-{nonce}");
    std::fs::write(tmp.path().join("labgrade-secret-marker"), &tmp_marker)
        .unwrap_or_else(|e| panic!("{e}"));
    let peer_marker = format!("PEER-WORK-{nonce}");
    let peer = tmp.path().join("submissions/peer");
    std::fs::create_dir_all(&peer).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(peer.join("mount.sh"), format!("# {peer_marker}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let asg = tmp.path().join("assignment");
    std::fs::create_dir_all(asg.join("reference")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        assignment_dir().join("assignment.toml"),
        asg.join("assignment.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let reference_marker = format!("REFERENCE-SOLUTION-{nonce}");
    std::fs::write(
        asg.join("reference/mount.sh"),
        format!("# {reference_marker}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_else(|e| panic!("{e}"));
    let shadow_line = shadow
        .lines()
        .find(|l| l.starts_with("root:"))
        .unwrap_or_else(|| panic!("no root line in /etc/shadow"))
        .to_owned();

    let sub = tmp.path().join("submissions/hostile");
    std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
    for f in ["mount.sh", "layers.sh", "whiteout.sh"] {
        std::fs::copy(assignment_dir().join("reference").join(f), sub.join(f))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let root_marker_path = root_secret.path().join("marker");
    let tmp_marker_path = tmp.path().join("labgrade-secret-marker");
    let peer_path = peer.join("mount.sh");
    let reference_path = asg.join("reference/mount.sh");
    std::fs::write(
        sub.join("cow.sh"),
        hostile_reader(&[
            &root_marker_path,
            &tmp_marker_path,
            &peer_path,
            &reference_path,
            Path::new("/root/.ssh/authorized_keys"),
            &support::workspace_root().join("Cargo.toml"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let before = host_state();
    let mut outputs = String::new();
    let mut json = String::new();
    for format in ["json", "gradescope", "markdown"] {
        let started = std::time::Instant::now();
        let (code, text) = grade_on_qemu(&asg, &sub, format);
        eprintln!(
            "---- --format {format}: exit {code:?} in {:.1} s ----\n{text}",
            started.elapsed().as_secs_f64()
        );
        // The three other tasks are the reference's; the reader's own cow task earns nothing.
        assert_eq!(code, Some(1), "points lost, not a grader error: {text}");
        if format == "json" {
            let report: serde_json::Value = serde_json::from_str(
                text.split("\n---- stderr ----\n")
                    .next()
                    .unwrap_or_default(),
            )
            .unwrap_or_else(|e| panic!("not a report ({e}): {text}"));
            assert_eq!(report["status"], "graded", "{report:#}");
            assert_eq!(report["score"], 75, "{report:#}");
            // The reader ran, and what it found reached the report: a secret it had read would
            // be here.
            let cow = report["tasks"][2].to_string();
            assert!(cow.contains("HOSTILE-FINDINGS"), "{cow}");
            json = text.clone();
        }
        outputs.push_str(&text);
    }
    let after = host_state();
    for (what, secret) in [
        ("the marker under /root", root_marker.as_str()),
        ("the marker in the test's temp dir", &tmp_marker),
        ("a peer's submission", &peer_marker),
        ("the reference solution", &reference_marker),
        ("a line of /etc/shadow", &shadow_line),
        ("the host's /root listing", &listed_only),
        ("the labgrade checkout", "[workspace]"),
    ] {
        assert!(!outputs.contains(secret), "{what} leaked:\n{outputs}");
    }
    // It did try every export, and no write went through.
    assert!(json.contains("tag root"), "{json}");
    assert!(json.contains("tag usr"), "{json}");
    assert!(!json.contains("WROTE through"), "{json}");
    assert!(!json.contains("APPENDED to passwd"), "{json}");
    assert_eq!(before, after, "the host changed");
    for dir in ["/", "/usr"] {
        let l = listing(dir);
        assert!(!l.contains("labgrade-pwned"), "{dir}: {l}");
    }
    assert_eq!(
        std::fs::read_to_string("/etc/shadow").unwrap_or_default(),
        shadow
    );
    assert_eq!(staged_roots_left(), Vec::<String>::new());
}

/// A submission directory `name` under `parent`: the reference's entry files, with `own`
/// replacing some of them.
fn submission(parent: &Path, name: &str, own: &[(&str, &str)]) {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    for f in ["mount.sh", "layers.sh", "cow.sh", "whiteout.sh"] {
        std::fs::copy(assignment_dir().join("reference").join(f), dir.join(f))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (file, text) in own {
        std::fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Unmounts the sandbox's /proc (under it: the VM's own, with every process of the machine),
/// then for ten seconds writes into the lab of every other process it can reach through
/// `/proc/PID/root`.
const WRITES_INTO_OTHERS: &str = r#"mount -t overlay overlay -o lowerdir="$LAB/lower",upperdir="$LAB/upper",workdir="$LAB/work" "$LAB/merged"
umount /proc 2>/dev/null
umount /proc 2>/dev/null
end=$(( $(date +%s) + 10 ))
n=0
while [ "$(date +%s)" -lt "$end" ]; do
  for r in /proc/[0-9]*/root; do
    [ -d "$r/tmp/lab" ] || continue
    [ "$r/tmp" -ef /tmp ] && continue
    for f in "$r"/tmp/lab/lower/config.txt "$r"/tmp/lab/l3/app.conf "$r"/tmp/lab/lower/etc/app.conf "$r"/tmp/lab/lower/var-log.txt; do
      [ -f "$f" ] && echo 'changed by a classmate' > "$f" && n=$((n + 1))
    done
  done
  sleep 0.1
done
echo "wrote $n files of other labs"
"#;

/// Unmounts /proc and binds a `mount` that does nothing over the real one: in a shared VM,
/// later sessions' setups and checks would use it.
const FAKE_MOUNT: &str = r#"umount /proc 2>/dev/null
umount /proc 2>/dev/null
printf '#!/bin/sh\nexit 0\n' > /tmp/fake-mount
chmod 755 /tmp/fake-mount
mount --bind /tmp/fake-mount /usr/bin/mount && echo "bound a fake mount"
mount --bind /tmp/fake-mount /bin/mount
"#;

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the saboteurs are compared with the host guest's rules"
)]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn saboteurs_in_a_qemu_batch_cost_only_themselves() {
    let subs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Names sorted as the batch takes them: the writer starts first, beside a reference copy.
    submission(
        subs.path(),
        "a-writes-into-others",
        &[("mount.sh", WRITES_INTO_OTHERS)],
    );
    submission(subs.path(), "b-reference", &[]);
    submission(
        subs.path(),
        "c-powers-off",
        &[("mount.sh", "echo o > /proc/sysrq-trigger\nsleep 10\n")],
    );
    submission(subs.path(), "d-fake-mount", &[("mount.sh", FAKE_MOUNT)]);
    submission(subs.path(), "e-reference", &[]);
    let started = std::time::Instant::now();
    let o = std::process::Command::new(support::exe())
        .args(["grade", "--guest", "qemu:debian:6.1", "--accel", "tcg"])
        .args(["--jobs", "2", "--assignment"])
        .arg(assignment_dir())
        .arg("--submissions")
        .arg(subs.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!(
        "exit {:?} in {:.1} s\n{stderr}",
        o.status.code(),
        started.elapsed().as_secs_f64()
    );
    let report = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(out.path().join(name).join("report.json"))
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for name in ["a-writes-into-others", "c-powers-off", "d-fake-mount"] {
        eprintln!("{name}: {:#}", report(name)["tasks"][0]);
    }
    let csv =
        std::fs::read_to_string(out.path().join("summary.csv")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        csv,
        "submission,score,max_score,status\n\
         a-writes-into-others,100,100,graded\n\
         b-reference,100,100,graded\n\
         c-powers-off,75,100,graded\n\
         d-fake-mount,75,100,graded\n\
         e-reference,100,100,graded\n",
        "{stderr}"
    );
    assert_eq!(o.status.code(), Some(1), "points lost, no grader error");
    // The VM that powered off is the student's doing, said so, and its other tasks ran in a
    // fresh VM.
    let off = report("c-powers-off");
    let reason = off["tasks"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("shut itself down"), "{reason}");
    assert_eq!(off["tasks"][0]["score"], 0);
    let rest: Vec<&serde_json::Value> = (1..4).map(|i| &off["tasks"][i]["score"]).collect();
    assert_eq!(rest, [25, 25, 25], "{off:#}");
    assert_eq!(staged_roots_left(), Vec::<String>::new());
}
