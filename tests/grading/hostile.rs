//! The red team's classes of hostile submission (`fixtures/hostile/`), each kept as a test: one
//! that reads host secrets through the grader, one that blocks the grader or burns its CPU, one
//! that forges feedback, one whose own doing must not be blamed on the grader (and whose correct
//! work is spelled oddly), one that cheats around the overlay, and one that goes over the memory
//! limit. Each is graded alone and all of them in a `--jobs 2` batch, on the host guest and on
//! `qemu:debian:6.1`; each must score exactly what its work earns, leak no planted secret into
//! any output format, end in bounded time and leave the host as it was.

use labgrade_test_support as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use labgrade_grade::{GradeReport, GradeStatus, TaskStatus, render};
use rstest::rstest;
use serial_test::file_serial;

mod checks;
use checks::{host_state, scores, task_scores};

/// Every grading of one submission must end within this, hostile or not (the bound).
const BOUND: Duration = Duration::from_secs(120);

fn fixture(name: &str) -> PathBuf {
    support::suite_dir().join("fixtures/hostile").join(name)
}

/// Secrets planted where a student must never reach: the host's /root, the assignment's own
/// directory (beside its reference solution) and a classmate's submission. Removed on drop.
struct Secrets {
    marker: String,
    root_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Secrets {
    fn plant() -> Secrets {
        let secrets = Secrets {
            marker: format!("LABGRADE-SECRET-{}-{:x}", std::process::id(), fastrand()),
            root_file: PathBuf::from(format!("/root/labgrade-hostile-{}", std::process::id())),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        };
        let marker = &secrets.marker;
        // Made once it is owned: a panic below still removes it.
        std::fs::write(&secrets.root_file, format!("{marker} in /root\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = secrets.assignment();
        copy_dir(
            &support::workspace_root().join("assignments/overlay-basics"),
            &a,
        );
        let toml = a.join("assignment.toml");
        let text = std::fs::read_to_string(&toml).unwrap_or_else(|e| panic!("{e}"));
        // The hidden part of an assignment: a comment here, a file beside the reference.
        std::fs::write(&toml, format!("# {marker} in assignment.toml\n{text}"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            a.join("reference/labgrade-hostile-answer.txt"),
            format!("{marker} in the reference\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let classmate = secrets.dir.path().join("classmate");
        copy_dir(&a.join("reference"), &classmate);
        std::fs::write(
            classmate.join("notes.txt"),
            format!("{marker} of a classmate\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        secrets
    }

    fn assignment(&self) -> PathBuf {
        self.dir.path().join("overlay-basics")
    }

    /// What none of the outputs may contain: the marker and every line of the host's shadow.
    fn assert_absent(&self, what: &str, text: &str) {
        assert!(
            !text.contains(&self.marker),
            "{what} holds a planted secret:\n{text}"
        );
        let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        for line in shadow.lines().filter(|l| l.len() > 8) {
            assert!(!text.contains(line), "{what} holds a line of /etc/shadow");
        }
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.root_file);
    }
}

fn fastrand() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{e}")) {
        let e = e.unwrap_or_else(|e| panic!("{e}"));
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// The hostile assignment: the shipped one with short limits (as a course would set them for
/// tasks that take milliseconds), so every submission ends in seconds: `wall_secs` of wall
/// time (a TCG guest needs more for the same work).
fn fast(assignment: &Path, dir: &Path, wall_secs: u32) -> PathBuf {
    let a = dir.join("fast");
    copy_dir(assignment, &a);
    let toml = a.join("assignment.toml");
    let text = std::fs::read_to_string(&toml).unwrap_or_else(|e| panic!("{e}"));
    let text = text
        .replace("wall_secs = 20", &format!("wall_secs = {wall_secs}"))
        .replace("cpu_secs = 10", "cpu_secs = 2");
    std::fs::write(&toml, text).unwrap_or_else(|e| panic!("{e}"));
    a
}

/// A copy of the fixture `name` in `dir`, with what git cannot hold made here (a FIFO).
fn submission(name: &str, dir: &Path) -> PathBuf {
    let s = dir.join(name);
    copy_dir(&fixture(name), &s);
    if name == "blocks" {
        let made = std::process::Command::new("mkfifo")
            .arg(s.join("whiteout.sh"))
            .status()
            .unwrap_or_else(|e| panic!("mkfifo: {e}"));
        assert!(made.success(), "mkfifo failed");
    }
    s
}

/// Every format the report is rendered in, by name.
fn every_format(r: &GradeReport) -> Vec<(&'static str, String)> {
    vec![
        ("human", render::render_human(r)),
        ("json", render::render_json(r).unwrap_or_default()),
        (
            "gradescope",
            render::render_gradescope(r).unwrap_or_default(),
        ),
        ("classroom", render::render_classroom(r).unwrap_or_default()),
        ("markdown", render::render_markdown(r)),
        ("junit", render::render_junit(r).unwrap_or_default()),
    ]
}

/// The fair score of each fixture, and why.
fn fair(name: &str) -> BTreeMap<String, u32> {
    match name {
        // mount: the overlay is right (10); the grader reads the bound /proc/kmsg and the /root
        // bind with the student's rights, so "shows the lower files" and "lower is unchanged"
        // fail on what the student broke (its own deletion of merged/app, the bind on lower/app).
        "reads-secrets" => scores(10, 25, 25, 25),
        // mount: the overlay is right (10), merged/config.txt is a file of /proc (not read: the
        // check fails) but lower is intact (5); cow: 1 MiB of "x" lines is not the text (0,
        // judged in milliseconds); whiteout.sh is a FIFO: missing, not waited on.
        "blocks" => scores(15, 25, 0, 0),
        // mount: its own names in lower fail "lower is unchanged" (5 lost) and nothing else.
        "forges-feedback" => scores(20, 25, 25, 25),
        // Correct work however spelled; a mount point that is not UTF-8 and signals to pid 1
        // change nothing.
        "blamed" => scores(25, 25, 25, 25),
        // mount: a tmpfs moved on top of the overlay is what merged shows (0); layers: no
        // overlay (0); cow: upper written by hand, merged shows it and lower is intact (10 + 5)
        // but overlay made no copy-up (0); whiteout: unmounted, then mknod by hand (0).
        "cheats" => scores(0, 0, 15, 0),
        // cow writes its file first, then goes over the memory limit: the work still counts.
        "memory" => scores(25, 25, 25, 25),
        other => panic!("no fair score for {other}"),
    }
}

const HOSTILE: [&str; 6] = [
    "reads-secrets",
    "blocks",
    "forges-feedback",
    "blamed",
    "cheats",
    "memory",
];

/// Grades one submission with the CLI (a fresh process, as a grader runs it) as JSON.
fn grade_cli(guest: &str, assignment: &Path, submission: &Path) -> (GradeReport, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new(support::exe())
        .args([
            "grade", "--format", "json", "--accel", "tcg", "--guest", guest,
        ])
        .arg("--assignment")
        .arg(assignment)
        .arg("--submission")
        .arg(submission)
        .output()
        .unwrap_or_else(|e| panic!("labgrade: {e}"));
    let took = started.elapsed();
    let report: GradeReport = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, took)
}

/// The markdown a format hands to a renderer, outside fenced code blocks: for the JSON formats,
/// every string in them.
fn rendered_prose(format: &str, text: &str) -> String {
    let markdown = if format == "markdown" {
        text.to_owned()
    } else {
        fn strings(v: &serde_json::Value, out: &mut String) {
            match v {
                serde_json::Value::String(s) => {
                    out.push_str(s);
                    out.push('\n');
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut out = String::new();
        let v: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{format}: {e}"));
        strings(&v, &mut out);
        out
    };
    let mut fence: Option<String> = None;
    let mut prose = String::new();
    for line in markdown.lines() {
        let ticks: String = line
            .trim_start()
            .chars()
            .take_while(|c| *c == '`')
            .collect();
        match &fence {
            Some(f) if ticks.len() >= f.len() && line.trim() == ticks => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    prose
}

/// What each fixture must show beyond its score.
fn assert_class(name: &str, r: &GradeReport) {
    let task = |id: &str| {
        r.tasks
            .iter()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("no task {id}"))
    };
    match name {
        "blocks" => {
            let w = task("whiteout");
            assert_eq!(w.status, TaskStatus::Missing);
            assert!(
                w.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("not a regular file")),
                "{:?}",
                w.reason
            );
        }
        "forges-feedback" => {
            for (format, text) in every_format(r) {
                assert!(!text.contains('\u{1b}'), "{format}: a raw escape:\n{text}");
                // What Gradescope, GitHub and a markdown page render as HTML (code blocks
                // they show as text).
                if ["gradescope", "classroom", "markdown"].contains(&format) {
                    let prose = rendered_prose(format, &text);
                    assert!(!prose.contains("<img"), "{format}: raw HTML:\n{prose}");
                    assert!(!prose.contains("<script"), "{format}: raw HTML:\n{prose}");
                }
                if format == "markdown" {
                    assert!(
                        !text.lines().any(|l| l.starts_with("# 100 of 100")),
                        "a forged heading:\n{text}"
                    );
                    assert!(
                        !text.lines().any(|l| l.starts_with("| mount | 25 of 25")),
                        "a forged row:\n{text}"
                    );
                }
            }
        }
        "blamed" => {
            assert!(r.tasks.iter().all(|t| t.status == TaskStatus::Graded));
            let w = task("whiteout")
                .run
                .as_ref()
                .unwrap_or_else(|| panic!("no run"));
            assert!(!w.timed_out, "signals to pid 1 faked a time-out");
            assert_eq!(w.exit_code, Some(0));
        }
        "memory" => {
            let c = task("cow").run.as_ref().unwrap_or_else(|| panic!("no run"));
            assert!(c.memory_limit_hit, "{c:?}");
            assert!(
                render::render_human(r).contains("over the memory limit"),
                "the report does not say so"
            );
        }
        _ => {}
    }
}

#[rstest]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn a_hostile_submission_on_the_host_scores_its_work_leaks_nothing_and_ends_in_time(
    #[values(
        "reads-secrets",
        "blocks",
        "forges-feedback",
        "blamed",
        "cheats",
        "memory"
    )]
    name: &str,
) {
    graded_alone("host", name);
}

#[rstest]
#[file_serial(grade_host)]
#[cfg_attr(
    not(all(labgrade_root, labgrade_qemu)),
    ignore = "needs root, QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_hostile_submission_on_qemu_scores_its_work_leaks_nothing_and_ends_in_time(
    #[values(
        "reads-secrets",
        "blocks",
        "forges-feedback",
        "blamed",
        "cheats",
        "memory"
    )]
    name: &str,
) {
    graded_alone("qemu:debian:6.1", name);
}

/// The wall time a task gets in the hostile assignment on `guest`: a TCG guest needs more for
/// the same work (the memory fixture's three processes start slowly there).
fn wall_secs(guest: &str) -> u32 {
    if guest == "host" { 4 } else { 12 }
}

/// Grades fixture `name` alone on `guest` and asserts all a hostile submission must show.
fn graded_alone(guest: &str, name: &str) {
    let secrets = Secrets::plant();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let assignment = fast(&secrets.assignment(), dir.path(), wall_secs(guest));
    let sub = submission(name, dir.path());
    let before = host_state();
    let (r, took) = grade_cli(guest, &assignment, &sub);
    let after = host_state();
    eprint!("{}", render::render_human(&r));
    assert_eq!(r.status, GradeStatus::Graded, "{:?}", r.reason);
    assert_eq!(task_scores(&r), fair(name));
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(before, after, "the host changed");
    for (format, text) in every_format(&r) {
        secrets.assert_absent(format, &text);
    }
    assert_class(name, &r);
}

/// Grades every hostile fixture and two references in one `--jobs 2` batch on `guest`;
/// returns `summary.csv` as name -> (score, status) and the reports.
fn batch(
    guest: &str,
) -> (
    BTreeMap<String, (String, String)>,
    Vec<GradeReport>,
    Duration,
) {
    let secrets = Secrets::plant();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let assignment = fast(&secrets.assignment(), dir.path(), wall_secs(guest));
    let subs = dir.path().join("subs");
    std::fs::create_dir(&subs).unwrap_or_else(|e| panic!("{e}"));
    for name in HOSTILE {
        submission(name, &subs);
    }
    for name in ["ref-a", "ref-b"] {
        copy_dir(
            &support::workspace_root().join("assignments/overlay-basics/reference"),
            &subs.join(name),
        );
    }
    let out = dir.path().join("out");
    let started = Instant::now();
    let run = std::process::Command::new(support::exe())
        .args(["grade", "--jobs", "2", "--accel", "tcg", "--guest", guest])
        .arg("--assignment")
        .arg(&assignment)
        .arg("--submissions")
        .arg(&subs)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("labgrade: {e}"));
    let took = started.elapsed();
    assert_eq!(
        run.status.code(),
        Some(1),
        "points were lost, nothing failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap_or_else(|e| panic!("{e}"));
    let rows = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((
                f.first()?.to_string(),
                (f.get(1)?.to_string(), f.get(3)?.to_string()),
            ))
        })
        .collect();
    let mut reports = Vec::new();
    for e in std::fs::read_dir(&out).unwrap_or_else(|e| panic!("{e}")) {
        let p = e
            .unwrap_or_else(|e| panic!("{e}"))
            .path()
            .join("report.json");
        if let Ok(text) = std::fs::read_to_string(&p) {
            reports.push(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p:?}: {e}")));
        }
        for file in ["report.json", "results.json"] {
            if let Ok(text) = std::fs::read_to_string(p.with_file_name(file)) {
                secrets.assert_absent(file, &text);
            }
        }
    }
    (rows, reports, took)
}

fn assert_fair_batch(rows: &BTreeMap<String, (String, String)>, reports: &[GradeReport]) {
    assert_eq!(rows.len(), HOSTILE.len() + 2, "{rows:?}");
    for name in HOSTILE {
        let want: u32 = fair(name).values().sum();
        assert_eq!(
            rows.get(name),
            Some(&(want.to_string(), "graded".to_owned())),
            "{name}: {rows:?}"
        );
    }
    for name in ["ref-a", "ref-b"] {
        assert_eq!(
            rows.get(name),
            Some(&("100".into(), "graded".into())),
            "{rows:?}"
        );
    }
    for r in reports {
        if let Some(name) = HOSTILE.iter().find(|n| **n == r.submission) {
            assert_eq!(task_scores(r), fair(name), "{name}");
            assert_class(name, r);
        }
    }
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn hostile_submissions_in_a_jobs_2_batch_on_the_host_harm_no_classmate() {
    let before = host_state();
    let (rows, reports, took) = batch("host");
    assert_eq!(before, host_state(), "the host changed");
    assert_fair_batch(&rows, &reports);
    assert!(took < BOUND * 8, "took {took:?}");
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(all(labgrade_root, labgrade_qemu)),
    ignore = "needs root, QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn hostile_submissions_in_a_jobs_2_batch_on_qemu_harm_no_classmate() {
    let before = host_state();
    let (rows, reports, took) = batch("qemu:debian:6.1");
    assert_eq!(before, host_state(), "the host changed");
    assert_fair_batch(&rows, &reports);
    assert!(took < BOUND * 8, "took {took:?}");
}

/// Sandbox cgroups on this machine, wherever sandboxes make them.
fn sandbox_cgroups() -> Vec<String> {
    host_state().cgroups
}

#[test]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the host guest builds each sandbox's user namespace on a uid of its own"
)]
fn a_grader_killed_by_sigkill_mid_task_leaves_no_cgroup_mount_or_process() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sub = dir.path().join("sleeper");
    std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sub.join("mount.sh"), "sleep 600 & sleep 600\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let before = host_state();
    let mut grader = std::process::Command::new(support::exe())
        .args(["grade", "--format", "json", "--assignment"])
        .arg(support::workspace_root().join("assignments/overlay-basics"))
        .arg("--submission")
        .arg(&sub)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("labgrade: {e}"));
    // Killed while the student's code runs in its sandbox: its cgroup exists then.
    let started = Instant::now();
    while sandbox_cgroups().is_empty() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!sandbox_cgroups().is_empty(), "the sandbox never started");
    std::thread::sleep(Duration::from_millis(300));
    let _ = grader.kill();
    let _ = grader.wait();
    // The reaper and the kernel take a moment: cgroups are removed once their last process
    // is gone.
    let settled = Instant::now();
    let mut after = host_state();
    while after != before && settled.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        after = host_state();
    }
    assert_eq!(before, after, "left behind after SIGKILL");
    assert!(after.cgroups.is_empty(), "{:?}", after.cgroups);
    assert!(
        after.sandbox_processes.is_empty(),
        "{:?}",
        after.sandbox_processes
    );
}
