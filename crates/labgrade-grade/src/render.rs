//! Renderers of a [`GradeReport`]: each tells the same facts in the shape its reader wants.
//! None of them prints a student's output as anything but quoted text.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::assignment::Visibility;
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

fn check_lines(c: &GradedCheck, out: &mut String, indent: &str) {
    for e in c
        .evidence
        .iter()
        .filter(|e| e.status != labgrade_report::CheckStatus::Pass)
    {
        let _ = writeln!(
            out,
            "{indent}{} {}: expected {}, found {}",
            e.subject, e.fact, e.expected, e.actual
        );
    }
}

fn run_note(t: &TaskReport) -> String {
    let Some(run) = &t.run else {
        return String::new();
    };
    if run.timed_out {
        " (timed out; every process of it was killed)".into()
    } else if let Some(sig) = run.signal {
        format!(" (killed by signal {sig})")
    } else {
        match run.exit_code {
            Some(0) | None => String::new(),
            Some(c) => format!(" (exited {c})"),
        }
    }
}

/// For a person at a terminal (a grader: every check, hidden ones too).
pub fn render_human(r: &GradeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {} on {}: {}",
        r.title,
        r.submission,
        r.guest,
        score_text(r)
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "ERROR (infrastructure, not the student's): {reason}");
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
            let _ = writeln!(out, "      {reason}");
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

fn check_output(t: &TaskReport, c: &GradedCheck) -> String {
    let mut out = String::new();
    if c.passed {
        out.push_str("Passed.\n");
    } else {
        if let Some(f) = &c.feedback {
            let _ = writeln!(out, "{f}");
        }
        if let Some(reason) = &t.reason {
            let _ = writeln!(out, "{reason}");
        }
        check_lines(c, &mut out, "");
        if let Some(l) = &t.lesson {
            let _ = writeln!(out, "Read: {} § {}", l.file, l.section);
        }
    }
    let _ = write!(out, "{}", run_note(t).trim());
    out.trim_end().to_owned()
}

/// Gradescope's `results.json`: one test per check, named `TASK: check`.
pub fn render_gradescope(r: &GradeReport) -> serde_json::Result<String> {
    let mut tests = Vec::new();
    for t in &r.tasks {
        for c in &t.checks {
            tests.push(json!({
                "name": format!("{}: {}", t.id, c.name),
                "score": c.score,
                "max_score": c.max_score,
                "status": if c.passed { "passed" } else { "failed" },
                "output": check_output(t, c),
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
                r.reason.clone().unwrap_or_default()
            ),
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
                        Visibility::Shown => check_output(t, c),
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
    let mut report = Report::new(format!("{} {}", r.assignment, r.submission));
    for t in &r.tasks {
        let mut suite = TestSuite::new(t.id.clone());
        if t.status == TaskStatus::Error {
            let mut case = TestCase::new(
                "grading",
                TestCaseStatus::non_success(NonSuccessKind::Error),
            );
            case.set_system_err(t.reason.clone().unwrap_or_default());
            suite.add_test_case(case);
        }
        for c in &t.checks {
            let status = if c.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(check_output(t, c));
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
            "> **The grader failed, not your submission.** Staff will rerun it. ({reason})\n"
        );
    }
    for t in &r.tasks {
        let _ = writeln!(out, "## {} — {}/{}\n", t.title, t.score, t.max_score);
        if let Some(reason) = &t.reason {
            let _ = writeln!(out, "_{reason}_\n");
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
                    "- `{}` ({}): expected {}, found {}",
                    e.subject, e.fact, e.expected, e.actual
                );
            }
            out.push('\n');
        }
        if t.score < t.max_score
            && let Some(l) = &t.lesson
        {
            let _ = writeln!(out, "📖 Read **{}** in `{}`.\n", l.section, l.file);
        }
        if let Some(run) = &t.run
            && t.score < t.max_score
            && !run.stderr.trim().is_empty()
        {
            let _ = writeln!(
                out,
                "<details><summary>stderr of your {}</summary>\n\n```\n{}\n```\n</details>\n",
                t.entry,
                tail(&run.stderr, OUTPUT_QUOTED).replace("```", "'''")
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
