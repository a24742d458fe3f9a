//! The report of an existing test suite run once per kernel (`labgrade matrix -- CMD`), and its
//! renderers: human, markdown, JUnit (JSON is the data itself).
//!
//! Each kernel's run keeps its exit code, wall time, the last lines of output, the kernel
//! messages it caused and, where the suite leaves a JUnit or TAP file, its test cases, so a
//! failing subtest shows as itself under the kernel's name.

use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use crate::model::Totals;

/// One command on several kernels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// The command and its arguments, as given.
    pub command: Vec<String>,
    /// `tmpfs` or `disk:SIZE` when the guest root was a writable overlay.
    pub overlay_root: Option<String>,
    /// The results file the suite was expected to leave (a guest path), if any.
    pub results_path: Option<String>,
    /// One per kernel, in the order asked.
    pub runs: Vec<SuiteRun>,
    /// Wall time of the whole matrix in milliseconds.
    pub duration_ms: u64,
}

/// How the command ended on one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteStatus {
    /// Exit code 0, and no test case in its results failed.
    Passed,
    /// A non-zero exit code, a failed test case, or a results file that could not be read.
    Failed,
    /// Killed at `--timeout`; its output so far is kept.
    TimedOut,
    /// The guest could not run it (boot failure, agent died): infrastructure, not the suite.
    Error,
}

impl SuiteStatus {
    /// Decides how a run that did run ended: a timeout first, then the exit code, then its
    /// results' cases (a failed case, or results that were asked for and are unreadable).
    pub fn decide(
        exit_code: Option<i32>,
        timed_out: bool,
        results: Option<&SuiteResults>,
    ) -> SuiteStatus {
        if timed_out {
            return SuiteStatus::TimedOut;
        }
        let results_failed = results.is_some_and(|r| {
            r.error.is_some() || r.cases.iter().any(|c| c.status == CaseStatus::Failed)
        });
        if exit_code == Some(0) && !results_failed {
            SuiteStatus::Passed
        } else {
            SuiteStatus::Failed
        }
    }

    /// The word reports print.
    pub fn word(self) -> &'static str {
        match self {
            SuiteStatus::Passed => "PASS",
            SuiteStatus::Failed => "FAIL",
            SuiteStatus::TimedOut => "TIMEOUT",
            SuiteStatus::Error => "ERROR",
        }
    }
}

/// The command on one kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteRun {
    /// e.g. `qemu:debian:6.1`.
    pub guest: String,
    /// `uname -r` of its kernel, where known.
    pub kernel_release: Option<String>,
    /// How it ended.
    pub status: SuiteStatus,
    /// The command's exit code; `None` when it timed out or never ran.
    pub exit_code: Option<i32>,
    /// Wall time of the command in milliseconds.
    pub duration_ms: u64,
    /// Wall time from starting the guest to its agent's hello, in milliseconds.
    pub boot_ms: u64,
    /// The last lines of its output (stdout and stderr as they came).
    pub tail: Vec<String>,
    /// Kernel log lines written while it ran.
    pub kmsg: Vec<String>,
    /// Why the guest could not run it ([`SuiteStatus::Error`]).
    pub error: Option<String>,
    /// The test cases of the results file it left, when `--results` named one.
    pub results: Option<SuiteResults>,
    /// Where its whole stdout, stderr and dmesg were written (`--out DIR/<kernel>/`).
    pub out_dir: Option<String>,
    /// What a failed command's stderr said was missing and the guest confirmed is missing (an
    /// interpreter, a program, a mount point): the cause a user needs, where the shell's own
    /// words ("./run: not found") hide it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingInGuest>,
}

/// Something a command needed that the guest does not have, with the stderr line that named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingInGuest {
    /// What is missing.
    #[serde(flatten)]
    pub missing: Missing,
    /// The command's own stderr line that led to it.
    pub stderr_line: String,
}

/// The kinds of missing prerequisite a guest can confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Missing {
    /// A script exists, but the interpreter its `#!` line names does not (the shell then says
    /// the *script* is "not found").
    Interpreter {
        /// The script, as the guest found it.
        script: String,
        /// The interpreter its `#!` line names (or, for `#!/usr/bin/env NAME`, NAME).
        interpreter: String,
        /// The `#!` line ends in a carriage return: the file has DOS line endings.
        dos_line_ending: bool,
    },
    /// A program the command ran is on no directory of the guest's `PATH` (or its path does
    /// not exist).
    Program {
        /// The name or path the command used.
        name: String,
    },
    /// `mount` was given a mount point that does not exist in the guest's root.
    MountPoint {
        /// The mount point.
        path: String,
    },
}

impl Missing {
    /// One sentence a user acts on; a qemu guest's root is the host's own `/` (through 9p), so
    /// what the guest lacks is installed or created on the host, or by the command itself.
    pub fn explain(&self) -> String {
        match self {
            Missing::Interpreter {
                script,
                interpreter,
                dos_line_ending: true,
            } => format!(
                "{script} exists, but its #! line ends in a carriage return (DOS line endings), \
                 so the interpreter looked for is `{interpreter}\\r`; convert the file \
                 (sed -i 's/\\r$//' {script})"
            ),
            Missing::Interpreter {
                script,
                interpreter,
                dos_line_ending: false,
            } => format!(
                "{script} exists, but its interpreter {interpreter} (from its #! line) is not in \
                 the guest; a qemu guest's root is the host's, so install it on the host{}",
                if interpreter
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("python3"))
                {
                    " (apt-get install python3)"
                } else {
                    ""
                }
            ),
            Missing::Program { name } => format!(
                "{name} is not in the guest (not on its PATH); a qemu guest's root is the \
                 host's, so install it on the host"
            ),
            Missing::MountPoint { path } => format!(
                "the mount point {path} does not exist in the guest's root (the host's /); \
                 create it first, e.g. `mkdir -p {path} && ...` in the command (with \
                 --overlay-root the host stays unchanged)"
            ),
        }
    }
}

/// The test cases a suite reported in its own results file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteResults {
    /// `junit` or `tap`; `None` when the file could not be read.
    pub format: Option<ResultsFormat>,
    /// Its cases, in file order.
    pub cases: Vec<CaseReport>,
    /// Why the file could not be read or parsed (missing, not JUnit or TAP, malformed).
    pub error: Option<String>,
}

/// The formats of a results file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultsFormat {
    /// JUnit XML.
    Junit,
    /// The Test Anything Protocol.
    Tap,
}

/// One test case of a suite's results file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseReport {
    /// Its name (`classname.name` for JUnit, the description for TAP).
    pub name: String,
    /// How it ended.
    pub status: CaseStatus,
    /// The failure's or skip's message, if the file gave one.
    pub message: Option<String>,
}

/// How one test case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Passed.
    Passed,
    /// Failed (JUnit failure or error; TAP `not ok`).
    Failed,
    /// Skipped (JUnit skipped; TAP `# SKIP`, or `# TODO` on a `not ok`).
    Skipped,
}

impl SuiteReport {
    /// Runs counted by outcome, for the exit code: a timeout is a failure, a guest that could
    /// not run the command an error.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for r in &self.runs {
            match r.status {
                SuiteStatus::Passed => t.passed += 1,
                SuiteStatus::Failed | SuiteStatus::TimedOut => t.failed += 1,
                SuiteStatus::Error => t.errors += 1,
            }
        }
        t
    }
}

fn exit_text(r: &SuiteRun) -> String {
    match (r.status, r.exit_code) {
        (SuiteStatus::TimedOut, _) => "timed out".into(),
        (SuiteStatus::Error, _) => "did not run".into(),
        (_, Some(c)) => format!("exit {c}"),
        (_, None) => "no exit code".into(),
    }
}

fn cases_text(r: &SuiteRun) -> String {
    let Some(res) = &r.results else {
        return String::new();
    };
    if let Some(e) = &res.error {
        return format!("results: {e}");
    }
    let count = |s| res.cases.iter().filter(|c| c.status == s).count();
    format!(
        "{} cases: {} passed, {} failed, {} skipped",
        res.cases.len(),
        count(CaseStatus::Passed),
        count(CaseStatus::Failed),
        count(CaseStatus::Skipped)
    )
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// `--format human`: a table of kernels, then for each kernel that did not pass a greppable
/// block with its failed cases, last output lines and kernel messages.
pub fn render_suite_human(report: &SuiteReport) -> String {
    let mut out = format!("command: {}\n", report.command.join(" "));
    if let Some(o) = &report.overlay_root {
        let _ = writeln!(out, "root: writable overlay, upper on {o}");
    }
    let width = report.runs.iter().map(|r| r.guest.len()).max().unwrap_or(0);
    for r in &report.runs {
        let _ = writeln!(
            out,
            "{:<7} {:<width$}  {:<12} {:>8}  {}{}",
            r.status.word(),
            r.guest,
            exit_text(r),
            seconds(r.duration_ms),
            r.kernel_release.as_deref().unwrap_or("-"),
            match cases_text(r) {
                t if t.is_empty() => String::new(),
                t => format!("  ({t})"),
            }
        );
    }
    for r in report
        .runs
        .iter()
        .filter(|r| r.status != SuiteStatus::Passed)
    {
        let _ = writeln!(out, "\n==== Start '{}' ({}) ====", r.guest, r.status.word());
        if let Some(e) = &r.error {
            let _ = writeln!(out, "error: {e}");
        }
        if let Some(res) = &r.results {
            for c in res.cases.iter().filter(|c| c.status == CaseStatus::Failed) {
                let _ = writeln!(
                    out,
                    "failed case: {}{}",
                    c.name,
                    c.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
            if let Some(e) = &res.error {
                let _ = writeln!(out, "results: {e}");
            }
        }
        for m in &r.missing {
            let _ = writeln!(out, "missing: {}", m.missing.explain());
            let _ = writeln!(out, "  (stderr: {})", m.stderr_line);
        }
        if !r.tail.is_empty() {
            let _ = writeln!(out, "-- last output lines --");
            for l in &r.tail {
                let _ = writeln!(out, "{l}");
            }
        }
        if !r.kmsg.is_empty() {
            let _ = writeln!(out, "-- kernel messages --");
            for l in &r.kmsg {
                let _ = writeln!(out, "{l}");
            }
        }
        if let Some(d) = &r.out_dir {
            let _ = writeln!(out, "-- whole output: {d}");
        }
        let _ = writeln!(out, "==== End '{}' ====", r.guest);
    }
    let t = report.totals();
    let _ = writeln!(
        out,
        "\n{} kernels: {} passed, {} failed, {} could not run ({})",
        report.runs.len(),
        t.passed,
        t.failed,
        t.errors,
        seconds(report.duration_ms)
    );
    out
}

/// Escapes a table cell's text for markdown.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `--format markdown`: a table of kernels and the failed cases and kernel messages by kernel,
/// for a PR comment.
pub fn render_suite_markdown(report: &SuiteReport) -> String {
    let mut out = format!(
        "# `{}` by kernel\n\n| kernel | release | result | exit | time | cases |\n| --- | --- | --- | --- | --- | --- |\n",
        md_cell(&report.command.join(" "))
    );
    for r in &report.runs {
        let mark = match r.status {
            SuiteStatus::Passed => "✅ pass",
            SuiteStatus::Failed => "❌ fail",
            SuiteStatus::TimedOut => "⏱ timeout",
            SuiteStatus::Error => "⚠️ error",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {mark} | {} | {} | {} |",
            md_cell(&r.guest),
            md_cell(r.kernel_release.as_deref().unwrap_or("–")),
            exit_text(r),
            seconds(r.duration_ms),
            md_cell(&cases_text(r))
        );
    }
    for r in report
        .runs
        .iter()
        .filter(|r| r.status != SuiteStatus::Passed)
    {
        let _ = writeln!(out, "\n## {} ({})\n", r.guest, r.status.word());
        if let Some(e) = &r.error {
            let _ = writeln!(out, "Error: {}\n", md_cell(e));
        }
        for m in &r.missing {
            let _ = writeln!(out, "- missing: {}", md_cell(&m.missing.explain()));
        }
        if let Some(res) = &r.results {
            for c in res.cases.iter().filter(|c| c.status == CaseStatus::Failed) {
                let _ = writeln!(
                    out,
                    "- failed: `{}`{}",
                    c.name,
                    c.message
                        .as_deref()
                        .map(|m| format!(" — {}", md_cell(m)))
                        .unwrap_or_default()
                );
            }
        }
        let text: Vec<&str> = r
            .tail
            .iter()
            .map(String::as_str)
            .chain((!r.kmsg.is_empty()).then_some("-- kernel messages --"))
            .chain(r.kmsg.iter().map(String::as_str))
            .collect();
        if !text.is_empty() {
            let _ = writeln!(out, "\n```\n{}\n```", text.join("\n").replace("```", "'''"));
        }
    }
    out
}

/// `--format junit`: a suite `labgrade matrix` with one case per kernel (the command's own
/// outcome), and for each kernel whose command left results, a suite named after the kernel
/// holding its cases.
pub fn render_suite_junit(report: &SuiteReport) -> Result<String, quick_junit::SerializeError> {
    let mut junit = Report::new("labgrade matrix");
    let mut kernels = TestSuite::new("labgrade matrix");
    let command = report.command.join(" ");
    let mut merged = Vec::new();
    for r in &report.runs {
        let status = match r.status {
            SuiteStatus::Passed => TestCaseStatus::success(),
            SuiteStatus::Failed | SuiteStatus::TimedOut | SuiteStatus::Error => {
                let kind = if r.status == SuiteStatus::Error {
                    NonSuccessKind::Error
                } else {
                    NonSuccessKind::Failure
                };
                let mut s = TestCaseStatus::non_success(kind);
                let message = match &r.error {
                    Some(e) => e.clone(),
                    None => [exit_text(r), cases_text(r)]
                        .into_iter()
                        .chain(r.missing.iter().map(|m| m.missing.explain()))
                        .filter(|t| !t.is_empty())
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                s.set_message(message);
                s.set_description(r.tail.join("\n"));
                s
            }
        };
        let mut case = TestCase::new(r.guest.as_str(), status);
        case.set_classname(command.as_str());
        case.set_time(Duration::from_millis(r.duration_ms));
        if !r.kmsg.is_empty() {
            case.set_system_err(r.kmsg.join("\n"));
        }
        kernels.add_test_case(case);
        if let Some(res) = &r.results {
            let mut suite = TestSuite::new(r.guest.as_str());
            for c in &res.cases {
                let mut status = match c.status {
                    CaseStatus::Passed => TestCaseStatus::success(),
                    CaseStatus::Failed => TestCaseStatus::non_success(NonSuccessKind::Failure),
                    CaseStatus::Skipped => TestCaseStatus::skipped(),
                };
                if let Some(m) = &c.message {
                    status.set_message(m.as_str());
                }
                let mut case = TestCase::new(c.name.as_str(), status);
                case.set_classname(r.guest.as_str());
                suite.add_test_case(case);
            }
            if let Some(e) = &res.error {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(e.as_str());
                let mut case = TestCase::new("results file", status);
                case.set_classname(r.guest.as_str());
                suite.add_test_case(case);
            }
            merged.push(suite);
        }
    }
    junit.add_test_suite(kernels);
    junit.add_test_suites(merged);
    junit.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(guest: &str, status: SuiteStatus, exit_code: Option<i32>) -> SuiteRun {
        SuiteRun {
            guest: guest.into(),
            kernel_release: Some("6.1.0-40-amd64".into()),
            status,
            exit_code,
            duration_ms: 1234,
            boot_ms: 2100,
            tail: vec![],
            kmsg: vec![],
            error: None,
            results: None,
            out_dir: None,
            missing: Vec::new(),
        }
    }

    fn sample() -> SuiteReport {
        let mut failed = run("qemu:debian:5.10", SuiteStatus::Failed, Some(1));
        failed.tail = vec![
            "mount: wrong fs type, bad option".into(),
            "FAIL userxattr".into(),
        ];
        failed.kmsg = vec!["overlayfs: unrecognized mount option \"userxattr\"".into()];
        failed.results = Some(SuiteResults {
            format: Some(ResultsFormat::Junit),
            cases: vec![
                CaseReport {
                    name: "overlay.copy_up".into(),
                    status: CaseStatus::Passed,
                    message: None,
                },
                CaseReport {
                    name: "overlay.userxattr".into(),
                    status: CaseStatus::Failed,
                    message: Some("mount refused".into()),
                },
            ],
            error: None,
        });
        let mut hung = run("qemu:debian:6.12", SuiteStatus::TimedOut, None);
        hung.tail = vec!["started".into()];
        let mut no_python = run("qemu:debian:6.6", SuiteStatus::Failed, Some(127));
        no_python.tail = vec!["sh: 1: ./run: not found".into()];
        no_python.missing = vec![MissingInGuest {
            missing: Missing::Interpreter {
                script: "/opt/suite/run".into(),
                interpreter: "/usr/bin/python3".into(),
                dos_line_ending: false,
            },
            stderr_line: "sh: 1: ./run: not found".into(),
        }];
        let mut broken = run("qemu:debian:7", SuiteStatus::Error, None);
        broken.error = Some("the guest qemu:debian:7 failed: no agent answered".into());
        SuiteReport {
            command: vec!["sh".into(), "suite.sh".into()],
            overlay_root: Some("tmpfs".into()),
            results_path: Some("/tmp/results.xml".into()),
            runs: vec![
                failed,
                run("qemu:debian:6.1", SuiteStatus::Passed, Some(0)),
                hung,
                no_python,
                broken,
            ],
            duration_ms: 9000,
        }
    }

    #[test]
    fn status_comes_from_timeout_then_exit_code_then_cases() {
        let ok = SuiteResults {
            format: Some(ResultsFormat::Tap),
            cases: vec![CaseReport {
                name: "a".into(),
                status: CaseStatus::Skipped,
                message: None,
            }],
            error: None,
        };
        assert_eq!(
            SuiteStatus::decide(Some(0), false, None),
            SuiteStatus::Passed
        );
        assert_eq!(
            SuiteStatus::decide(Some(0), false, Some(&ok)),
            SuiteStatus::Passed
        );
        assert_eq!(
            SuiteStatus::decide(Some(2), false, Some(&ok)),
            SuiteStatus::Failed
        );
        assert_eq!(SuiteStatus::decide(None, false, None), SuiteStatus::Failed);
        assert_eq!(
            SuiteStatus::decide(Some(0), true, None),
            SuiteStatus::TimedOut
        );
        let mut bad = ok.clone();
        bad.cases[0].status = CaseStatus::Failed;
        assert_eq!(
            SuiteStatus::decide(Some(0), false, Some(&bad)),
            SuiteStatus::Failed
        );
        let unreadable = SuiteResults {
            error: Some("no such file".into()),
            ..SuiteResults::default()
        };
        assert_eq!(
            SuiteStatus::decide(Some(0), false, Some(&unreadable)),
            SuiteStatus::Failed
        );
    }

    #[test]
    fn totals_count_timeouts_as_failures_and_guests_that_did_not_run_as_errors() {
        let t = sample().totals();
        assert_eq!((t.passed, t.failed, t.errors), (1, 3, 1));
    }

    #[test]
    fn human() {
        insta::assert_snapshot!(render_suite_human(&sample()));
    }

    #[test]
    fn markdown() {
        insta::assert_snapshot!(render_suite_markdown(&sample()));
    }

    #[test]
    fn junit() -> Result<(), quick_junit::SerializeError> {
        insta::assert_snapshot!(render_suite_junit(&sample())?);
        Ok(())
    }
}
