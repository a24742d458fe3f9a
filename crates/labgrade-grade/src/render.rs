//! Renderers of a [`GradeReport`]: each tells the same facts in the shape its reader wants.
//! None of them prints a student's output as anything but quoted text: everything the
//! submission controls (evidence values, reasons, its stderr, its folder name) goes through
//! [`crate::escape`] for the format at hand, while the assignment's own text (titles, check
//! names, feedback, lesson references) is printed as written.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::assignment::Visibility;
use crate::escape;
use crate::report::{GradeReport, GradeStatus, GradedCheck, TaskReport, TaskStatus};

/// Most bytes of a task's own output quoted in a rendered report.
const OUTPUT_QUOTED: usize = 2000;

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn score_text(r: &GradeReport) -> String {
    match r.score {
        Some(s) => format!("{s}/{}", r.max_score),
        None => format!("not graded/{}", r.max_score),
    }
}

/// How a renderer quotes what the student controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// A terminal or a plain-text format (JUnit): control characters made visible.
    Plain,
    /// Rendered as Markdown (GitHub, Gradescope's `md` output): also no tags, no structure.
    Markdown,
}

impl Style {
    fn value(self, s: &str) -> String {
        match self {
            Style::Plain => escape::line(s),
            Style::Markdown => escape::md_inline(s),
        }
    }
}

/// One line per fact that did not hold: `subject fact: expected X, found Y`, every part
/// escaped (the found value is the student's; the others are escaped too, being values).
fn evidence_lines(c: &GradedCheck, style: Style) -> Vec<String> {
    c.evidence
        .iter()
        .filter(|e| e.status != labgrade_report::CheckStatus::Pass)
        .map(|e| {
            format!(
                "{} {}: expected {}, found {}",
                style.value(&e.subject),
                style.value(&e.fact),
                style.value(&e.expected),
                style.value(&e.actual)
            )
        })
        .collect()
}

fn check_lines(c: &GradedCheck, out: &mut String, indent: &str) {
    for l in evidence_lines(c, Style::Plain) {
        let _ = writeln!(out, "{indent}{l}");
    }
}

/// The tail of the task's stderr a student is shown when it lost points, fenced as Markdown,
/// with a heading line saying whose it is and whether it was cut.
fn quoted_stderr(t: &TaskReport) -> Option<(String, String)> {
    let run = t.run.as_ref()?;
    if t.score >= t.max_score || run.stderr.trim().is_empty() {
        return None;
    }
    let shown = tail(&run.stderr, OUTPUT_QUOTED);
    let what = if shown.len() < run.stderr.len() {
        format!(
            "stderr of your {} (its last {} bytes)",
            t.entry,
            shown.len()
        )
    } else {
        format!("stderr of your {}", t.entry)
    };
    Some((what, escape::md_fenced(shown)))
}

fn run_note(t: &TaskReport) -> String {
    let Some(run) = &t.run else {
        return String::new();
    };
    let ended = if run.timed_out {
        " (timed out; every process of it was killed)".to_owned()
    } else if let Some(sig) = run.signal {
        // The clock had not run out: the task's own processes sent it (or RLIMIT_CPU did).
        format!(" (killed by signal {sig} before its time was up: a signal of its own or a limit)")
    } else {
        match run.exit_code {
            Some(0) | None => String::new(),
            Some(c) => format!(" (exited {c})"),
        }
    };
    if run.memory_limit_hit {
        format!(
            "{ended} (the kernel killed some of its processes: they went over the memory limit)"
        )
    } else {
        ended
    }
}

/// For a person at a terminal (a grader: every check, hidden ones too).
pub fn render_human(r: &GradeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {} on {}: {}",
        r.title,
        escape::line(&r.submission),
        r.guest,
        score_text(r)
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(
            out,
            "ERROR (infrastructure, not the student's): {}",
            escape::line(reason)
        );
    }
    for t in &r.tasks {
        let _ = writeln!(
            out,
            "  {:<10} {:>3}/{:<3} {}{}",
            t.id,
            t.score,
            t.max_score,
            t.title,
            run_note(t)
        );
        if let Some(reason) = &t.reason {
            let _ = writeln!(out, "      {}", escape::line(reason));
        }
        for c in &t.checks {
            let _ = writeln!(
                out,
                "    {} {:>3}/{:<3} {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.score,
                c.max_score,
                c.name
            );
            if !c.passed {
                check_lines(c, &mut out, "         ");
            }
        }
    }
    out
}

/// `--format json`: the report itself.
pub fn render_json(r: &GradeReport) -> serde_json::Result<String> {
    serde_json::to_string_pretty(r)
}

fn gradescope_visibility(v: Visibility) -> &'static str {
    match v {
        Visibility::Shown => "visible",
        Visibility::AfterDueDate => "after_due_date",
        Visibility::Hidden => "hidden",
    }
}

/// What one check says to a student (Gradescope's `output`, Classroom's `message`) or to a
/// JUnit reader. In Markdown each part is a paragraph and the facts a list, and a failed check
/// quotes the tail of the task's stderr, as the Markdown feedback does.
fn check_output(t: &TaskReport, c: &GradedCheck, style: Style) -> String {
    let mut parts: Vec<String> = Vec::new();
    if c.passed {
        parts.push("Passed.".into());
    } else {
        if let Some(f) = &c.feedback {
            parts.push(f.trim_end().to_owned());
        }
        if let Some(reason) = &t.reason {
            parts.push(style.value(reason));
        }
        let facts = evidence_lines(c, style);
        if !facts.is_empty() {
            parts.push(match style {
                Style::Plain => facts.join("\n"),
                Style::Markdown => facts
                    .iter()
                    .map(|l| format!("- {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        if let Some(l) = &t.lesson {
            parts.push(format!("Read: {} § {}", l.file, l.section));
        }
        if style == Style::Markdown
            && let Some((what, block)) = quoted_stderr(t)
        {
            parts.push(format!("{what}:\n\n{block}"));
        }
    }
    let note = run_note(t);
    if !note.trim().is_empty() {
        parts.push(note.trim().to_owned());
    }
    let sep = match style {
        Style::Plain => "\n",
        Style::Markdown => "\n\n",
    };
    parts.join(sep)
}

/// Gradescope's `results.json`: one test per check, named `TASK: check`. Outputs are Markdown
/// (`output_format: md`), with what the student controls escaped for it.
pub fn render_gradescope(r: &GradeReport) -> serde_json::Result<String> {
    let mut tests = Vec::new();
    for t in &r.tasks {
        for c in &t.checks {
            tests.push(json!({
                "name": format!("{}: {}", t.id, c.name),
                "score": c.score,
                "max_score": c.max_score,
                "status": if c.passed { "passed" } else { "failed" },
                "output": check_output(t, c, Style::Markdown),
                "output_format": "md",
                "visibility": gradescope_visibility(c.visibility),
            }));
        }
    }
    let execution_time = r.duration_ms.div_ceil(1000);
    let value = match r.status {
        GradeStatus::Graded => json!({
            "score": r.score.unwrap_or(0),
            "max_score": r.max_score,
            "execution_time": execution_time,
            "tests": tests,
        }),
        // No score at all: Gradescope shows the autograder failed, and staff rerun it.
        GradeStatus::Error => json!({
            "max_score": r.max_score,
            "execution_time": execution_time,
            "output": format!(
                "The grader failed (not your submission's fault); staff will rerun it: {}",
                escape::md_inline(r.reason.as_deref().unwrap_or_default())
            ),
            "output_format": "md",
            "tests": [],
        }),
    };
    serde_json::to_string_pretty(&value)
}

/// GitHub Classroom's autograding reporter reads this from a runner's `result` output
/// (base64-encoded by the workflow).
pub fn render_classroom(r: &GradeReport) -> serde_json::Result<String> {
    let tests: Vec<Value> = r
        .tasks
        .iter()
        .flat_map(|t| {
            t.checks.iter().map(move |c| {
                json!({
                    "name": format!("{}: {}", t.id, c.name),
                    "status": if c.passed { "pass" } else { "fail" },
                    "score": c.score,
                    // The reporter shows every message to the student: only shown checks say more.
                    "message": match c.visibility {
                        Visibility::Shown => check_output(t, c, Style::Markdown),
                        _ => "Shown once grades are released.".to_owned(),
                    },
                    "filename": t.entry,
                    "line_no": 0,
                    "execution_time": format!("{:.2}s", t.run.as_ref().map_or(0, |x| x.student_ms) as f64 / 1000.0),
                })
            })
        })
        .collect();
    let status = match (r.status, r.is_full_score()) {
        (GradeStatus::Error, _) => "error",
        (_, true) => "pass",
        (_, false) => "fail",
    };
    serde_json::to_string(&json!({
        "version": 1,
        "status": status,
        "max_score": r.max_score,
        "tests": tests,
    }))
}

/// JUnit XML: one suite per task, one case per check.
pub fn render_junit(r: &GradeReport) -> Result<String, quick_junit::SerializeError> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new(format!("{} {}", r.assignment, escape::line(&r.submission)));
    for t in &r.tasks {
        let mut suite = TestSuite::new(t.id.clone());
        if t.status == TaskStatus::Error {
            let mut case = TestCase::new(
                "grading",
                TestCaseStatus::non_success(NonSuccessKind::Error),
            );
            case.set_system_err(escape::block(t.reason.as_deref().unwrap_or_default()));
            suite.add_test_case(case);
        }
        for c in &t.checks {
            let status = if c.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(check_output(t, c, Style::Plain));
                s
            };
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(format!("{}.{}", r.assignment, t.id));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

/// Feedback a student reads: what was checked, what was found, what to read. Hidden checks are
/// left out; after-due-date ones are named but not judged.
pub fn render_markdown(r: &GradeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}: {}\n", r.title, score_text(r));
    if let Some(reason) = &r.reason {
        let _ = writeln!(
            out,
            "> **The grader failed, not your submission.** Staff will rerun it. ({})\n",
            escape::md_inline(reason)
        );
    }
    for t in &r.tasks {
        let _ = writeln!(out, "## {} — {}/{}\n", t.title, t.score, t.max_score);
        if let Some(reason) = &t.reason {
            let _ = writeln!(out, "_{}_\n", escape::md_inline(reason));
        }
        let note = run_note(t);
        if !note.is_empty() {
            let _ = writeln!(out, "_Your `{}`{}._\n", t.entry, note);
        }
        let _ = writeln!(out, "| | check | points |\n|---|---|---|");
        for c in &t.checks {
            let (mark, points) = match c.visibility {
                Visibility::Hidden => continue,
                Visibility::AfterDueDate => ("⏳", format!("?/{}", c.max_score)),
                Visibility::Shown if c.passed => ("✅", format!("{}/{}", c.score, c.max_score)),
                Visibility::Shown => ("❌", format!("{}/{}", c.score, c.max_score)),
            };
            let _ = writeln!(
                out,
                "| {mark} | {} | {points} |",
                c.name.replace('|', "\\|")
            );
        }
        out.push('\n');
        for c in t
            .checks
            .iter()
            .filter(|c| !c.passed && c.visibility == Visibility::Shown)
        {
            let _ = writeln!(out, "**{}**", c.name);
            if let Some(f) = &c.feedback {
                let _ = writeln!(out, "\n{f}");
            }
            let _ = writeln!(out);
            for e in c
                .evidence
                .iter()
                .filter(|e| e.status != labgrade_report::CheckStatus::Pass)
            {
                let _ = writeln!(
                    out,
                    "- {} ({}): expected {}, found {}",
                    escape::md_code(&e.subject),
                    escape::md_inline(&e.fact),
                    escape::md_inline(&e.expected),
                    escape::md_inline(&e.actual)
                );
            }
            out.push('\n');
        }
        if t.score < t.max_score
            && let Some(l) = &t.lesson
        {
            let _ = writeln!(out, "📖 Read **{}** in `{}`.\n", l.section, l.file);
        }
        if let Some((what, block)) = quoted_stderr(t) {
            let _ = writeln!(
                out,
                "<details><summary>{what}</summary>\n\n{block}\n</details>\n"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use labgrade_report::{CheckReport, CheckStatus};
    use labgrade_spec::LessonRef;

    use super::*;
    use crate::report::{SCHEMA_VERSION, TaskRun};

    fn check(name: &str, points: u32, passed: bool, visibility: Visibility) -> GradedCheck {
        GradedCheck {
            name: name.into(),
            score: if passed { points } else { 0 },
            max_score: points,
            passed,
            visibility,
            feedback: (!passed).then(|| "Write through merged.".to_owned()),
            evidence: vec![CheckReport {
                subject: "upper/etc/app.conf".into(),
                fact: "content".into(),
                line: Some(3),
                status: if passed {
                    CheckStatus::Pass
                } else {
                    CheckStatus::Fail
                },
                expected: "\"modified\\n\"".into(),
                actual: "absent".into(),
                diff: None,
            }],
        }
    }

    fn report() -> GradeReport {
        GradeReport {
            schema_version: SCHEMA_VERSION,
            assignment: "overlay-basics".into(),
            title: "OverlayFS basics".into(),
            submission: "alice".into(),
            guest: "host".into(),
            status: GradeStatus::Graded,
            reason: None,
            score: Some(10),
            max_score: 25,
            tasks: vec![TaskReport {
                id: "cow".into(),
                title: "Copy-up".into(),
                entry: "cow.sh".into(),
                status: TaskStatus::Graded,
                reason: None,
                score: 10,
                max_score: 25,
                lesson: Some(LessonRef {
                    file: "07.md".into(),
                    section: "Write".into(),
                }),
                run: Some(TaskRun {
                    timed_out: true,
                    stdout: "{\"score\": 100}".into(),
                    ..TaskRun::default()
                }),
                checks: vec![
                    check("merged shows it", 10, true, Visibility::Shown),
                    check("upper holds it", 10, false, Visibility::Shown),
                    check("lower kept", 5, false, Visibility::Hidden),
                ],
            }],
            duration_ms: 1500,
        }
    }

    #[test]
    fn gradescope_has_a_test_per_check_named_by_task_with_its_visibility() {
        let text = render_gradescope(&report()).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn classroom_has_the_reporters_fields() {
        let text = render_classroom(&report()).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn markdown_leaves_hidden_checks_out_and_points_at_the_lesson() {
        insta::assert_snapshot!(render_markdown(&report()));
    }

    /// What a hostile submission controls, each a way to forge or run something.
    const CLEAR: &str = "\x1b[2J\x1b[H";
    const HEADING: &str = "\n# 100/100 ALL PASS";
    const ROW: &str = "| ✅ | forged | 10/10 |";
    const IMG: &str = "<img src=x onerror=alert(1)>";
    const TICKS: &str = "a```b`c";

    /// The report as the judge would make it from a submission whose file names, link target,
    /// reason and stderr are all hostile; `benign` makes the same report with tame values.
    fn hostile(benign: bool) -> GradeReport {
        let v = |s: &str| if benign { "x".to_owned() } else { s.to_owned() };
        let mut r = report();
        r.submission = v(&format!("{CLEAR}alice{HEADING}"));
        let t = &mut r.tasks[0];
        t.reason = Some(v(&format!("cannot read {CLEAR}{HEADING}{IMG}")));
        if let Some(run) = t.run.as_mut() {
            run.stderr = if benign {
                "x\n".into()
            } else {
                format!(
                    "{CLEAR}100/100 ALL PASS\r\n```\n# forged\n</details>{IMG}\n{ROW}\n{TICKS}\n"
                )
            };
        }
        let e = &mut t.checks[1].evidence[0];
        e.fact = "entries".into();
        e.actual = v(&format!("[{CLEAR}, {HEADING}, {ROW}, {IMG}, {TICKS}]"));
        let mut link = e.clone();
        link.actual = v(&format!(
            "upper/l symlink 0777 0:0 -> {IMG}{HEADING}\n{ROW}"
        ));
        t.checks[1].evidence.push(link);
        r
    }

    /// The lines of Markdown outside fenced code blocks (inside one, everything is text).
    fn outside_fences(md: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut fence: Option<&str> = None;
        for l in md.lines() {
            match fence {
                Some(f) if l.trim_start().starts_with(f) => fence = None,
                Some(_) => {}
                None if l.trim_start().starts_with("```") => {
                    let t = l.trim_start();
                    fence = Some(&t[..t.len() - t.trim_start_matches('`').len()]);
                }
                None => out.push(l),
            }
        }
        assert!(fence.is_none(), "a fence left open:\n{md}");
        out
    }

    /// Nothing the student wrote acts in this Markdown: no escape sequence, no tag, no heading,
    /// table row or list item of theirs, no code span closed by their backticks.
    fn assert_inert_markdown(md: &str, own_lines: &[&str]) {
        assert!(!md.contains('\x1b'), "raw ESC in {md:?}");
        for l in outside_fences(md) {
            assert!(
                !l.contains("<img") && !l.contains("</details><"),
                "a tag: {l:?}"
            );
            assert!(!l.contains("```b"), "student backticks: {l:?}");
            let structural = ["#", "|", "- ", "<", ">"].iter().any(|p| l.starts_with(p));
            assert!(
                !structural || own_lines.iter().any(|o| l.starts_with(o)),
                "a line the student made: {l:?}\n{md}"
            );
        }
    }

    #[test]
    fn hostile_names_targets_reasons_and_stderr_are_text_in_every_format() {
        let (bad, good) = (hostile(false), hostile(true));

        let human = render_human(&bad);
        assert!(!human.contains('\x1b'), "{human:?}");
        assert!(human.contains("\\x1b[2J"), "{human}");
        assert_eq!(
            human.lines().count(),
            render_human(&good).lines().count(),
            "a student's newline made a line:\n{human}"
        );

        let md = render_markdown(&bad);
        assert_inert_markdown(
            &md,
            &[
                "# OverlayFS basics",
                "## Copy-up",
                "| | check",
                "|---",
                "| ✅ | merged shows it",
                "| ❌ | upper holds it",
                "- `upper/etc/app.conf` (entries)",
                "<details><summary>stderr of your cow.sh</summary>",
                "</details>",
            ],
        );
        assert!(md.contains("&lt;img src=x onerror=alert(1)&gt;"), "{md}");
        assert!(md.contains("````\n\\x1b[2J\\x1b[H100/100"), "{md}");

        let gs: Value =
            serde_json::from_str(&render_gradescope(&bad).unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        let cl: Value =
            serde_json::from_str(&render_classroom(&bad).unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        let mut failed_outputs: Vec<String> = Vec::new();
        for t in gs["tests"].as_array().into_iter().flatten() {
            assert_eq!(t["output_format"], "md", "{t}");
            failed_outputs.push(t["output"].as_str().unwrap_or_default().to_owned());
        }
        for t in cl["tests"].as_array().into_iter().flatten() {
            failed_outputs.push(t["message"].as_str().unwrap_or_default().to_owned());
        }
        failed_outputs.retain(|o| !o.starts_with("Passed") && !o.starts_with("Shown once"));
        assert_eq!(failed_outputs.len(), 3, "two Gradescope and one Classroom");
        for o in &failed_outputs {
            assert_inert_markdown(o, &["- upper/etc/app.conf "]);
            assert!(
                o.contains("stderr of your cow.sh:\n\n````\n"),
                "stderr quoted: {o}"
            );
            assert!(o.contains("\\x1b[2J"), "{o}");
        }

        let xml = render_junit(&bad).unwrap_or_else(|e| panic!("{e}"));
        assert!(!xml.contains('\x1b'), "{xml:?}");
        assert!(!xml.contains("<img"), "{xml}");
        assert!(xml.contains("\\x1b[2J"), "{xml}");
    }

    #[test]
    fn a_grader_error_gets_no_score_anywhere() {
        let mut r = report();
        r.status = GradeStatus::Error;
        r.score = None;
        r.reason = Some("the guest did not boot".into());
        let gs: serde_json::Value =
            serde_json::from_str(&render_gradescope(&r).unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(gs.get("score").is_none(), "{gs}");
        let cl: serde_json::Value =
            serde_json::from_str(&render_classroom(&r).unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cl["status"], "error");
        assert!(render_human(&r).contains("not graded/25"));
    }
}
