//! `labgrade matrix -- CMD`: existing test suites (shell scripts under `fixtures/suites/`)
//! across the kernel matrix, with a writable overlay root, shared directories, JUnit results,
//! timeouts, and nothing left behind on the host, not even when labgrade is killed.

use labgrade_test_support as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use labgrade_report::{CaseStatus, Missing, SuiteReport, SuiteStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn suite(name: &str) -> String {
    support::suite_dir()
        .join("fixtures/suites")
        .join(name)
        .display()
        .to_string()
}

/// Every kernel in `kernels` is cached and QEMU is installed, or the test fails saying why: the
/// tests that call this are ignored where they cannot run, so here a missing piece is a fault.
fn require_kernels(kernels: &[&str]) {
    for k in kernels {
        if let Err(reason) = support::qemu_guest(k, 1) {
            panic!("{reason}");
        }
    }
}

fn labgrade(args: &[&str]) -> Output {
    Command::new(support::exe())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run labgrade: {e}"))
}

/// `labgrade matrix --accel tcg --kernels KERNELS FLAGS... -- COMMAND...`: every suite test's
/// shape, so a test shows only what it varies.
fn tcg_matrix(kernels: &str, flags: &[&str], command: &[&str]) -> Output {
    let mut args = vec!["matrix", "--accel", "tcg", "--kernels", kernels];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(command);
    labgrade(&args)
}

fn report_of(out: &Output) -> SuiteReport {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a suite report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The matrix passed on all four kernels, and each run's output has the line `line(release)`
/// (the suite's own word that it ran to its end on that kernel).
fn passed_on_four_saying(out: &Output, line: impl Fn(&str) -> String) -> SuiteReport {
    let report = report_of(out);
    assert_eq!(out.status.code(), Some(0), "{report:#?}");
    assert_eq!(report.runs.len(), 4);
    for run in &report.runs {
        assert_eq!(run.status, SuiteStatus::Passed, "{run:#?}");
        let want = line(run.kernel_release.as_deref().unwrap_or_default());
        assert!(run.tail.iter().any(|l| l == &want), "{run:#?}");
    }
    report
}

fn statuses(r: &SuiteReport) -> BTreeMap<String, SuiteStatus> {
    r.runs.iter().map(|r| (r.guest.clone(), r.status)).collect()
}

/// What a suite could change on the host if it ran there: its paths, overlay mounts, and
/// QEMU processes naming `tag` (a per-test path in their arguments).
fn host_state(tag: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let paths = [
        "/lower",
        "/upper",
        "/layers",
        "/merged",
        "/var/lib/labgrade-suite",
        "/usr/local/bin/labgrade-suite-helper",
    ]
    .iter()
    .filter(|p| Path::new(p).exists())
    .map(|p| (*p).to_owned())
    .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - overlay ") || l.contains(" /lower ") || l.contains(" /layers "))
        .map(str::to_owned)
        .collect();
    (paths, mounts, qemu_processes(tag))
}

fn qemu_processes(tag: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("qemu-system") && c.contains(tag))
        .collect()
}

const FOUR: [&str; 4] = support::KERNELS;

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_suite_that_mounts_layers_under_root_runs_on_four_kernels_and_the_host_is_unchanged() {
    require_kernels(&FOUR);
    // The shared directory lives in the build's target dir: a --rwdir guest path under /tmp
    // would be hidden by the session's private tmpfs (and is refused).
    let shared =
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap_or_else(|e| panic!("{e}"));
    let tag = shared.path().display().to_string();
    let before = host_state(&tag);
    assert!(before.0.is_empty(), "the host already has {:?}", before.0);
    let rwdir = format!("{tag}:/results");
    let out_dir = shared.path().join("out");
    let script = suite("layers-under-root.sh");
    let out = tcg_matrix(
        &FOUR.join(","),
        &[
            "--jobs",
            "4",
            "--overlay-root",
            "--rwdir",
            &rwdir,
            "--out",
            &out_dir.display().to_string(),
            "--format",
            "json",
        ],
        &["env", "RESULTS_DIR=/results", "sh", &script],
    );
    let report = passed_on_four_saying(&out, |release| format!("layers under / ok on {release}"));
    for run in &report.runs {
        let release = run.kernel_release.clone().unwrap_or_default();
        // Through the shared directory, each kernel left its release; its whole output is kept.
        let copied = shared.path().join(format!("release-{release}"));
        assert_eq!(
            std::fs::read_to_string(&copied).unwrap_or_default().trim(),
            release
        );
        let kernel = run.guest.trim_start_matches("qemu:");
        let stdout = std::fs::read_to_string(out_dir.join(kernel).join("stdout"))
            .unwrap_or_else(|e| panic!("{kernel}'s stdout: {e}"));
        assert!(stdout.contains("helper ran"), "{stdout}");
        assert!(out_dir.join(kernel).join("dmesg").is_file());
    }
    assert_eq!(host_state(&tag), before, "the host changed");
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_suite_on_a_read_only_root_fails_and_says_why() {
    require_kernels(&["debian:6.1"]);
    let script = suite("layers-under-root.sh");
    let out = tcg_matrix("debian:6.1", &["--format", "json"], &["sh", &script]);
    let report = report_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#?}");
    let run = &report.runs[0];
    assert_eq!(run.status, SuiteStatus::Failed);
    assert!(
        run.tail.iter().any(|l| l.contains("Read-only file system")),
        "{run:#?}"
    );
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_suite_fails_on_the_one_kernel_whose_overlayfs_refuses_userxattr() {
    require_kernels(&FOUR);
    let script = suite("userxattr.sh");
    let out = tcg_matrix(
        &FOUR.join(","),
        &["--jobs", "4", "--format", "json"],
        &["sh", &script],
    );
    let report = report_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#?}");
    let want: BTreeMap<String, SuiteStatus> = [
        ("qemu:debian:5.10", SuiteStatus::Failed),
        ("qemu:debian:6.1", SuiteStatus::Passed),
        ("qemu:debian:6.12", SuiteStatus::Passed),
        ("qemu:debian:7", SuiteStatus::Passed),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_owned(), s))
    .collect();
    assert_eq!(statuses(&report), want, "{report:#?}");
    let old = &report.runs[0];
    assert_eq!(old.exit_code, Some(1));
    assert!(old.tail.iter().any(|l| l.contains("REFUSED")), "{old:#?}");
    // The kernel's own words about it, as the kernel messages the command caused.
    assert!(old.kmsg.iter().any(|l| l.contains("userxattr")), "{old:#?}");
    // The markdown table shows the same facts.
    let md = labgrade_report::render_suite_markdown(&report);
    assert!(md.contains("| qemu:debian:5.10 | 5.10"), "{md}");
    assert!(md.contains("❌ fail"), "{md}");
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_suite_that_writes_junit_has_its_cases_merged_under_each_kernel() {
    let kernels = ["debian:5.10", "debian:7"];
    require_kernels(&kernels);
    let script = suite("junit.sh");
    let out = tcg_matrix(
        &kernels.join(","),
        &["--results", "/tmp/results.xml", "--format", "junit"],
        &["sh", &script, "/tmp/results.xml"],
    );
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    // The command exits 0 everywhere; the failed cases on 5.10 make that kernel fail.
    assert_eq!(out.status.code(), Some(1), "{xml}");
    let cases = labgrade_results::parse_junit(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let got: BTreeMap<String, CaseStatus> = cases.into_iter().map(|c| (c.name, c.status)).collect();
    let want: BTreeMap<String, CaseStatus> = [
        (
            "sh SCRIPT /tmp/results.xml.qemu:debian:5.10",
            CaseStatus::Failed,
        ),
        (
            "sh SCRIPT /tmp/results.xml.qemu:debian:7",
            CaseStatus::Passed,
        ),
        ("qemu:debian:5.10.overlay.options.plain", CaseStatus::Passed),
        (
            "qemu:debian:5.10.overlay.options.userxattr",
            CaseStatus::Failed,
        ),
        (
            "qemu:debian:5.10.overlay.options.uuid_null",
            CaseStatus::Failed,
        ),
        (
            "qemu:debian:5.10.overlay.options.nfs_export_on_tmpfs",
            CaseStatus::Skipped,
        ),
        ("qemu:debian:7.overlay.options.plain", CaseStatus::Passed),
        (
            "qemu:debian:7.overlay.options.userxattr",
            CaseStatus::Passed,
        ),
        (
            "qemu:debian:7.overlay.options.uuid_null",
            CaseStatus::Passed,
        ),
        (
            "qemu:debian:7.overlay.options.nfs_export_on_tmpfs",
            CaseStatus::Skipped,
        ),
    ]
    .into_iter()
    .map(|(n, s)| (n.replace("SCRIPT", &script), s))
    .collect();
    assert_eq!(got, want, "{xml}");
    // The failing case carries the kernel's message.
    assert!(xml.contains("unrecognized mount option"), "{xml}");
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_hanging_suite_is_killed_at_its_timeout_and_keeps_its_output_so_far() {
    require_kernels(&["debian:6.1"]);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let script = suite("hangs.sh");
    let out = tcg_matrix(
        "debian:6.1",
        &[
            "--timeout",
            "5",
            "--out",
            &dir.path().display().to_string(),
            "--format",
            "json",
        ],
        &["sh", &script],
    );
    let report = report_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#?}");
    let run = &report.runs[0];
    assert_eq!(run.status, SuiteStatus::TimedOut, "{run:#?}");
    assert_eq!(run.exit_code, None);
    assert!(run.duration_ms >= 5000, "{run:#?}");
    assert_eq!(run.tail, vec!["suite started, now hanging".to_owned()]);
    let stdout = std::fs::read_to_string(dir.path().join("debian:6.1/stdout")).unwrap_or_default();
    assert_eq!(stdout, "suite started, now hanging\n");
}

/// Processes holding a memfd named `name` (the overlay upper's scratch disk is one).
fn memfd_holders(name: &str) -> Vec<PathBuf> {
    let needle = format!("memfd:{name}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|p| {
            std::fs::read_dir(p.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().contains(&needle))
        })
        .map(|fd| fd.path())
        .collect()
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn sigkill_mid_suite_matrix_leaves_no_qemu_no_overlay_upper_and_no_temp_dir() {
    require_kernels(&["debian:6.1"]);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.path().join("tmp");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&tmp).unwrap_or_else(|e| panic!("{e}"));
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap_or_else(|e| panic!("{e}"));
    let tag = shared.display().to_string();
    let uppers_before = memfd_holders("labgrade-upper");
    let script = suite("hangs.sh");
    let mut child = Command::new(support::exe())
        .args([
            "matrix",
            "--accel",
            "tcg",
            "--kernels",
            "debian:6.1",
            "--overlay-root=disk:256M",
            "--rwdir",
            &format!("{tag}:/results"),
            "--out",
            &out_dir.display().to_string(),
            "--",
            "sh",
            &script,
        ])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    // Wait until the suite is running in the guest: its first line is in its stdout file.
    let stdout = out_dir.join("debian:6.1/stdout");
    while !std::fs::read_to_string(&stdout).is_ok_and(|s| s.contains("now hanging")) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the suite never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let qemu = qemu_processes(&tag);
    assert_eq!(qemu.len(), 1, "one qemu for the one kernel: {qemu:?}");
    assert!(
        memfd_holders("labgrade-upper").len() > uppers_before.len(),
        "the upper disk is held while the guest runs"
    );
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap_or_default()),
        Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    let start = Instant::now();
    while !qemu_processes(&tag).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "qemu outlived the killed labgrade"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The upper disk was a memfd: with its holders gone, nothing of it is left anywhere.
    let start = Instant::now();
    while memfd_holders("labgrade-upper").len() > uppers_before.len() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the overlay upper disk is still held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    support::assert_empty_dir(&tmp, "temp files left behind");
    support::assert_empty_dir(&shared, "files left in the shared directory");
    support::assert_no_half_written_cache_files();
}

/// `sh -c "cd DIR && ./run --ov ARGS"` for the Python overlay suite: run from its directory
/// as unionmount-testsuite is.
fn python_suite_command(args: &str) -> String {
    format!("cd {} && ./run --ov{args}", suite("python-overlay"))
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_python_suite_that_mounts_tmpfs_layers_under_root_passes_on_four_kernels() {
    require_kernels(&FOUR);
    let dir = suite("python-overlay");
    let before = host_state(&dir);
    assert!(before.0.is_empty(), "the host already has {:?}", before.0);
    let files_in_dir = || {
        std::fs::read_dir(&dir)
            .map(|d| d.count())
            .unwrap_or_default()
    };
    let files_before = files_in_dir();
    let command = python_suite_command("");
    let out = tcg_matrix(
        &FOUR.join(","),
        &[
            "--jobs",
            "4",
            "--overlay-root",
            "--results",
            "/tmp/python-overlay.tap",
            "--format",
            "json",
        ],
        &["sh", "-c", &command],
    );
    let report = passed_on_four_saying(&out, |release| {
        format!("python overlay suite: 6 checks passed on {release}")
    });
    for run in &report.runs {
        // Its TAP file's checks are the run's cases, every one passed.
        let cases = run.results.as_ref().map_or(&[][..], |r| &r.cases[..]);
        assert_eq!(cases.len(), 6, "{run:#?}");
        assert!(
            cases.iter().all(|c| c.status == CaseStatus::Passed),
            "{run:#?}"
        );
        assert!(run.missing.is_empty(), "{run:#?}");
    }
    // The suite's mkdir and mounts, and Python's byte-code cache, all went to the guest's upper.
    assert_eq!(host_state(&dir), before, "the host changed");
    assert_eq!(files_in_dir(), files_before, "files appeared in {dir}");
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_suite_that_mounts_on_a_missing_mount_point_is_told_which() {
    require_kernels(&["debian:6.1"]);
    // unionmount-testsuite's set-up: `mount /lower 2>/dev/null || mount -t tmpfs lower_layer
    // /lower` with no /lower made first; the host root the guest sees has none.
    let command = python_suite_command(" --no-mkdir");
    let out = tcg_matrix(
        "debian:6.1",
        &["--overlay-root", "--format", "json"],
        &["sh", "-c", &command],
    );
    let report = report_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#?}");
    let run = &report.runs[0];
    assert_eq!(run.status, SuiteStatus::Failed, "{run:#?}");
    let missing: Vec<Missing> = run.missing.iter().map(|m| m.missing.clone()).collect();
    assert_eq!(
        missing,
        vec![Missing::MountPoint {
            path: "/lower".into()
        }],
        "{run:#?}"
    );
    assert!(
        run.missing[0]
            .stderr_line
            .contains("mount point does not exist"),
        "{run:#?}"
    );
    // The command's own words stay in the report too.
    assert!(
        run.tail
            .iter()
            .any(|l| l.contains("RuntimeError: Command failed: mount /lower")),
        "{run:#?}"
    );
    let human = labgrade_report::render_suite_human(&report);
    assert!(
        human.contains("missing: the mount point /lower does not exist"),
        "{human}"
    );
    // The README's recipe for such a suite: make the mount points in the writable root first.
    let recipe = format!("mkdir -p /lower /upper && {command}");
    let out = tcg_matrix(
        "debian:6.1",
        &["--overlay-root", "--format", "json"],
        &["sh", "-c", &recipe],
    );
    let report = report_of(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#?}");
    assert!(report.runs[0].missing.is_empty(), "{report:#?}");
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_script_whose_interpreter_the_guest_lacks_is_reported_with_its_own_stderr() {
    require_kernels(&["debian:6.1"]);
    // Under the build's target dir: the guest's /tmp is a private tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap_or_else(|e| panic!("{e}"));
    let script = dir.path().join("run");
    std::fs::write(&script, "#!/usr/bin/python9\nprint('never')\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let command = format!("cd {} && ./run --ov", dir.path().display());
    let out = tcg_matrix("debian:6.1", &["--format", "json"], &["sh", "-c", &command]);
    let report = report_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#?}");
    let run = &report.runs[0];
    assert_eq!(run.exit_code, Some(127), "{run:#?}");
    let missing: Vec<Missing> = run.missing.iter().map(|m| m.missing.clone()).collect();
    assert_eq!(
        missing,
        vec![Missing::Interpreter {
            script: script.display().to_string(),
            interpreter: "/usr/bin/python9".into(),
            dos_line_ending: false,
        }],
        "{run:#?}"
    );
    // `exec` says the same on stderr, after the command's own stderr.
    let out = labgrade(&[
        "exec",
        "--accel",
        "tcg",
        "--guest",
        "qemu:debian:6.1",
        "--",
        "sh",
        "-c",
        &command,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    let own = stderr
        .find("not found")
        .unwrap_or_else(|| panic!("{stderr}"));
    let ours = stderr
        .find("labgrade exec: missing:")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(own < ours, "{stderr}");
    assert!(stderr.contains("/usr/bin/python9"), "{stderr}");
}

#[test]
fn writable_root_flags_are_refused_where_they_cannot_work() {
    let host = labgrade(&["exec", "--overlay-root", "--", "true"]);
    assert_eq!(host.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&host.stderr).contains("need a qemu guest"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let under_tmp = labgrade(&[
        "exec",
        "--guest",
        "qemu:debian:6.1",
        "--rwdir",
        &dir.path().display().to_string(),
        "--",
        "true",
    ]);
    assert_eq!(under_tmp.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&under_tmp.stderr).contains("private tmpfs"),
        "{}",
        String::from_utf8_lossy(&under_tmp.stderr)
    );
    let bad_size = labgrade(&["exec", "--overlay-root=disk:12X", "--", "true"]);
    assert_eq!(bad_size.status.code(), Some(2));
    let both = labgrade(&[
        "matrix",
        "--kernels",
        "debian:6.1",
        "quick-start",
        "--",
        "true",
    ]);
    assert_eq!(both.status.code(), Some(2));
}
