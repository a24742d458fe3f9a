//! `labgrade drift` end to end on the host guest: the real lesson 07 against its committed
//! baseline; every documented line of it altered in turn (exactly that line is new drift, and
//! `--fix` restores a lesson without new drift); fixture lessons in Chinese, Japanese and
//! English (skips with reasons, a hanging block, console blocks, placeholders).
//!
//! Needs root: the lesson mounts overlays (in the host guest's private namespaces). The host
//! tests run the lessons' docker blocks where a docker answers, so they hold `file_serial
//! (machine_docker)` against the containers suite's test that starts a dockerd as the machine's.

use labgrade_test_support as support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    support::workspace_root()
}

fn lesson_07() -> PathBuf {
    repo().join("../shared/lessons/07-overlay-filesystems.md")
}

fn baseline_07() -> PathBuf {
    repo().join("lessons/07-overlay-filesystems.drift.toml")
}

fn fixture(name: &str) -> PathBuf {
    repo()
        .join("crates/labgrade-lesson/tests/fixtures")
        .join(name)
}

/// Runs `labgrade drift ARGS --format json`: exit code and report.
fn drift(args: &[&str]) -> (i32, Value) {
    let out = Command::new(support::exe())
        .arg("drift")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run labgrade: {e}"));
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "exit {code}, no JSON report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn blocks(report: &Value) -> &Vec<Value> {
    report["blocks"]
        .as_array()
        .unwrap_or_else(|| panic!("no blocks in {report}"))
}

/// (markdown line, documented text) of every drifting line the baseline does not accept.
fn new_drift(report: &Value) -> Vec<(u64, String)> {
    blocks(report)
        .iter()
        .flat_map(|b| b["lines"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["status"] == "drift" && l.get("accepted").is_none())
        .map(|l| {
            (
                l["line"].as_u64().unwrap_or(0),
                l["documented"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn block_at(report: &Value, line: u64) -> &Value {
    blocks(report)
        .iter()
        .find(|b| b["line"] == line)
        .unwrap_or_else(|| panic!("no block at line {line}"))
}

#[test]
// The lesson's docker blocks run where a docker answers: never beside the containers suite's
// test that starts a dockerd as the machine's own.
#[serial_test::file_serial(machine_docker)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lesson's blocks mount overlays as root"
)]
fn lesson_07_on_the_host_diverges_only_as_the_baseline_explains() {
    let before = support::host_overlay_mounts();
    let lesson = lesson_07();
    let baseline = baseline_07();
    let (code, report) = drift(&[
        &lesson.display().to_string(),
        "--baseline",
        &baseline.display().to_string(),
    ]);
    assert_eq!(new_drift(&report), [], "new drift:\n{report:#}");
    assert_eq!(
        report["stale"],
        Value::Array(vec![]),
        "stale baseline entries"
    );
    assert_eq!(code, 0);
    assert_eq!(report["schema_version"], 1);
    let all = blocks(&report);
    // Every block that did not run says why, and the why is one of the lesson's real obstacles.
    for b in all.iter().filter(|b| b["status"] == "skipped") {
        let why = b["reason"].as_str().unwrap_or("");
        assert!(
            why.contains("docker engine is not running") || why.contains("no such directory"),
            "block at line {} skipped for {why:?}",
            b["line"]
        );
    }
    // The runnable ones ran: all quick-start, Lab 1 manual and Lab 3 manual blocks.
    let ran: Vec<u64> = all
        .iter()
        .filter(|b| b["status"] == "match" || b["status"] == "drift")
        .filter_map(|b| b["line"].as_u64())
        .collect();
    for line in [
        26, 39, 48, 63, 77, 90, 104, 119, 307, 319, 327, 337, 352, 371, 466, 479, 487, 502, 515,
    ] {
        assert!(
            ran.contains(&line),
            "block at line {line} did not run: {ran:?}"
        );
    }
    assert!(all.iter().all(|b| b["status"] != "timeout"));
    // The divergences the baseline explains are all there (5 entries, each found).
    let accepted = all
        .iter()
        .flat_map(|b| b["lines"].as_array().cloned().unwrap_or_default())
        .filter(|l| l.get("accepted").is_some())
        .count();
    assert_eq!(accepted, 5);
    assert_eq!(
        support::host_overlay_mounts(),
        before,
        "overlay mounts left on the host"
    );
}

/// The documented lines of lesson 07 whose blocks run here: (line, text).
fn checked_lines() -> Vec<(u64, String)> {
    let (_, report) = drift(&[
        &lesson_07().display().to_string(),
        "--baseline",
        &baseline_07().display().to_string(),
    ]);
    blocks(&report)
        .iter()
        .flat_map(|b| b["lines"].as_array().cloned().unwrap_or_default())
        .map(|l| {
            (
                l["line"].as_u64().unwrap_or(0),
                l["documented"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
// The lesson's docker blocks run where a docker answers: never beside the containers suite's
// test that starts a dockerd as the machine's own.
#[serial_test::file_serial(machine_docker)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lesson's blocks mount overlays as root"
)]
fn altering_any_documented_line_is_exactly_that_drift_and_fix_restores_the_lesson() {
    let original = std::fs::read_to_string(lesson_07()).unwrap_or_else(|e| panic!("{e}"));
    let lines = checked_lines();
    assert_eq!(
        lines.len(),
        15,
        "documented lines checked on the host: {lines:?}"
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let copy = dir.path().join("07-overlay-filesystems.md");
    let copy_arg = copy.display().to_string();
    let baseline = baseline_07().display().to_string();
    for (line, text) in &lines {
        let altered: String = original
            .split_inclusive('\n')
            .enumerate()
            .map(|(i, l)| {
                if i + 1 == usize::try_from(*line).unwrap_or(0) {
                    l.replacen(text.as_str(), &format!("zz-altered {text}"), 1)
                } else {
                    l.to_owned()
                }
            })
            .collect();
        assert_ne!(altered, original, "line {line} not altered");
        std::fs::write(&copy, &altered).unwrap_or_else(|e| panic!("{e}"));
        let (code, report) = drift(&[&copy_arg, "--baseline", &baseline]);
        assert_eq!(
            new_drift(&report),
            [(*line, format!("zz-altered {text}"))],
            "altering line {line}"
        );
        assert_eq!(code, 1, "altering line {line}");
        let (code, _) = drift(&[&copy_arg, "--baseline", &baseline, "--fix"]);
        assert_eq!(code, 1, "--fix reports the drift it fixed (line {line})");
        let fixed = std::fs::read_to_string(&copy).unwrap_or_else(|e| panic!("{e}"));
        assert!(!fixed.contains("zz-altered"), "line {line} not fixed");
        let (code, report) = drift(&[&copy_arg, "--baseline", &baseline]);
        assert_eq!(new_drift(&report), [], "after --fix of line {line}");
        assert_eq!(code, 0, "after --fix of line {line}");
    }
}

#[test]
// The lesson's docker blocks run where a docker answers: never beside the containers suite's
// test that starts a dockerd as the machine's own.
#[serial_test::file_serial(machine_docker)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lesson's blocks mount overlays as root"
)]
fn fix_diff_prints_the_change_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let copy = dir.path().join("zh.md");
    std::fs::copy(fixture("zh-drift.md"), &copy).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(support::exe())
        .args(["drift", &copy.display().to_string(), "--fix", "--diff"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("-c\n+b\n"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap_or_default(),
        std::fs::read_to_string(fixture("zh-drift.md")).unwrap_or_default()
    );
}

#[test]
#[serial_test::file_serial(machine_docker)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lesson's blocks mount overlays as root"
)]
fn chinese_fixture_drift_skips_and_sessions() {
    let (code, report) = drift(&[&fixture("zh-drift.md").display().to_string()]);
    assert_eq!(code, 1);
    // `ls -1` prints a and b; the lesson says a and c: exactly line 27 drifts, and says so.
    assert_eq!(new_drift(&report), [(27, "c".to_owned())]);
    let ls = block_at(&report, 19);
    assert_eq!(ls["lines"][1]["actual"], "b");
    // Hash and date placeholders match.
    assert_eq!(block_at(&report, 30)["status"], "match");
    let reason = |line| {
        block_at(&report, line)["reason"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        reason(40).contains("cd ~/course-tree/code"),
        "{}",
        reason(40)
    );
    assert!(
        reason(45).contains("no-such-tool-for-drift"),
        "{}",
        reason(45)
    );
    assert!(
        reason(49).contains("$COUNT") && reason(49).contains("line 45"),
        "{}",
        reason(49)
    );
    // A new part is a new shell session: NAME from part one is not set there.
    assert_eq!(block_at(&report, 54)["status"], "match");
}

#[test]
#[serial_test::file_serial(machine_docker)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lesson's blocks mount overlays as root"
)]
fn japanese_fixture_a_hanging_block_is_stopped_and_reported() {
    let (code, report) = drift(&[
        &fixture("ja-timeout.md").display().to_string(),
        "--block-timeout",
        "2",
    ]);
    assert_eq!(code, 1, "a hanging block fails the run");
    assert_eq!(block_at(&report, 5)["status"], "match");
    assert_eq!(block_at(&report, 17)["status"], "match");
    let hung = block_at(&report, 30);
    assert_eq!(hung["status"], "timeout");
    assert!(hung["actual"].as_str().unwrap_or("").contains("始め"));
    let after = block_at(&report, 36);
    assert_eq!(after["status"], "skipped");
    assert!(after["reason"].as_str().unwrap_or("").contains("line 30"));
    assert_eq!(new_drift(&report), []);
}

#[test]
#[serial_test::file_serial(machine_docker)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lesson's blocks mount overlays as root"
)]
fn english_fixture_console_blocks_and_abridged_listings() {
    let (code, report) = drift(&[&fixture("en-console.md").display().to_string()]);
    assert_eq!(new_drift(&report), [(37, "version 1.0".to_owned())]);
    assert_eq!(code, 1);
    // The console block's cd carried into the unlabelled block after it: one session.
    assert_eq!(block_at(&report, 5)["status"], "match");
    assert_eq!(block_at(&report, 17)["status"], "match");
    assert_eq!(blocks(&report).len(), 3, "the drawing is not a shell block");
}

#[test]
fn bad_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let prose = dir.path().join("prose.md");
    std::fs::write(&prose, "# Nothing to run\n\nJust text.\n").unwrap_or_else(|e| panic!("{e}"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[accepted]]\nsection = \"x\"\ndocumented = \"y\"\nreason = \"\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = |args: &[&str]| {
        let out = Command::new(support::exe())
            .arg("drift")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[&prose.display().to_string()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("prose.md") && err.contains("no shell code blocks"),
        "{err}"
    );
    let (code, err) = run(&["/nonexistent/lesson.md"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/lesson.md"), "{err}");
    let zh = fixture("zh-drift.md").display().to_string();
    let (code, err) = run(&[&zh, "--baseline", &bad.display().to_string()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("bad.toml:1:1") && err.contains("no reason"),
        "{err}"
    );
    let (code, _) = run(&[&zh, "--diff"]);
    assert_eq!(code, Some(2), "--diff needs --fix");
}

/// Lesson 07 on each kernel of the matrix under QEMU: the same divergences as on the host, all
/// in the baseline. Needs QEMU and the kernel in the cache (`labgrade kernel fetch K`).
#[rstest::rstest]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the lesson's blocks mount overlays as root"
)]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn lesson_07_on_each_kernel_diverges_only_as_the_baseline_explains(
    #[values("debian:5.10", "debian:6.1", "debian:6.12", "debian:7")] kernel: &str,
) {
    if let Err(why) = support::qemu_guest(kernel, 1) {
        panic!("needs QEMU and the kernel: {why}");
    }
    let (code, report) = drift(&[
        &lesson_07().display().to_string(),
        "--baseline",
        &baseline_07().display().to_string(),
        "--kernels",
        kernel,
    ]);
    let run = &report["runs"][0];
    assert_eq!(run["guest"], format!("qemu:{kernel}"));
    assert_eq!(new_drift(run), [], "new drift on {kernel}:\n{run:#}");
    assert_eq!(run["stale"], Value::Array(vec![]));
    assert_eq!(code, 0);
    // Per documented line: holds or accepted wherever its block ran.
    for line in report["lines"].as_array().cloned().unwrap_or_default() {
        let v = &line["verdicts"][0];
        assert!(v == "yes" || v == "accepted" || v == "not_run", "{line}");
    }
}
