//! Renderers of a [`CourseReport`]: for a person (human), a pull request (markdown), GitHub
//! Actions annotations (github), and CI test results (JUnit, a test case per lesson). Each says
//! what was covered and what was skipped with the reason.

use std::fmt::Write;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::report::{CourseReport, Finding};

fn coverage_lines(r: &CourseReport) -> Vec<String> {
    let c = &r.coverage;
    let mut lines = vec![
        format!(
            "{} lessons, {} markdown files, {} relative links ({} external not followed), {} paths, {} scripts ({} from cache; {} other code files not scripts), {} lab sections",
            c.lessons,
            c.markdown_files,
            c.links,
            c.links_external,
            c.paths,
            c.scripts,
            c.scripts_cached,
            c.other_code_files,
            c.sections
        ),
        format!(
            "repository root {} ({}), clone path {}, exec bits from {}",
            r.repo_root,
            match r.repo_root_from {
                crate::RepoRootFrom::Given => "given",
                crate::RepoRootFrom::Git => "git work tree",
                crate::RepoRootFrom::Inferred => "inferred from the lessons' paths",
                crate::RepoRootFrom::Path => "PATH itself: nothing else fits",
            },
            r.clone_path,
            match r.exec_bits_from {
                crate::ExecBitsFrom::GitIndex => "the git index",
                crate::ExecBitsFrom::FileMode => "file modes (no git repository)",
            }
        ),
    ];
    for s in &c.skipped {
        lines.push(format!("skipped {}: {}", s.what, s.reason));
    }
    lines
}

/// For a person at a terminal: each finding as `file:line: kind: message`, then the coverage.
pub fn human(r: &CourseReport) -> String {
    let mut s = String::new();
    for f in &r.findings {
        let _ = writeln!(
            s,
            "{}:{}: {}: {}",
            f.file,
            f.line,
            f.kind.as_str(),
            f.message
        );
    }
    if !r.findings.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "{}: {} course errors in {} ({} ms)",
        r.path,
        r.course_errors(),
        match r.scope {
            crate::Scope::Course => "a course",
            crate::Scope::Module => "a module",
            crate::Scope::Lesson => "a lesson",
        },
        r.duration_ms
    );
    for l in coverage_lines(r) {
        let _ = writeln!(s, "  {l}");
    }
    s
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A page to attach to a pull request.
pub fn markdown(r: &CourseReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## labgrade course: {} course errors in `{}`\n",
        r.course_errors(),
        r.path
    );
    if !r.findings.is_empty() {
        let _ = writeln!(
            s,
            "| file | line | kind | what to do |\n| --- | --- | --- | --- |"
        );
        for f in &r.findings {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} |",
                md_cell(&f.file),
                f.line,
                f.kind.as_str(),
                md_cell(&f.message)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "### Coverage\n");
    for l in coverage_lines(r) {
        let _ = writeln!(s, "- {}", md_cell(&l));
    }
    s
}

/// GitHub's workflow-command escaping of a property value or message.
fn gh_escape(text: &str, property: bool) -> String {
    let mut out = text
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// GitHub Actions annotations: `::error file=...,line=...::message` per finding, and the
/// coverage as `::notice` lines (skips as `::warning`).
pub fn github(r: &CourseReport) -> String {
    let mut s = String::new();
    for f in &r.findings {
        let _ = writeln!(
            s,
            "::error file={},line={},title={}::{}",
            gh_escape(&f.file, true),
            f.line,
            gh_escape(f.kind.as_str(), true),
            gh_escape(&f.message, false)
        );
    }
    let mut lines = coverage_lines(r).into_iter();
    if let Some(first) = lines.next() {
        let _ = writeln!(
            s,
            "::notice title=labgrade course coverage::{}",
            gh_escape(&first, false)
        );
    }
    for l in lines {
        let level = if l.starts_with("skipped ") {
            "warning"
        } else {
            "notice"
        };
        let _ = writeln!(
            s,
            "::{level} title=labgrade course coverage::{}",
            gh_escape(&l, false)
        );
    }
    s
}

fn failure(findings: &[&Finding]) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    if let Some(first) = findings.first() {
        status.set_message(format!(
            "{} course errors; first: {}:{}: {}",
            findings.len(),
            first.file,
            first.line,
            first.message
        ));
    }
    status.set_description(
        findings
            .iter()
            .map(|f| format!("{}:{}: {}: {}", f.file, f.line, f.kind.as_str(), f.message))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    status
}

/// JUnit XML: a test case per lesson (failed when it has findings), one for the module and
/// course pages and lab files when they have findings, and one skipped case per skipped check.
pub fn junit(r: &CourseReport) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("labgrade-course");
    let mut suite = TestSuite::new(format!("course {}", r.path));
    for lesson in &r.lessons {
        let mine: Vec<&Finding> = r.findings_of(Some(lesson)).collect();
        let status = if mine.is_empty() {
            TestCaseStatus::success()
        } else {
            failure(&mine)
        };
        let mut case = TestCase::new(lesson.as_str(), status);
        case.set_classname("lesson");
        suite.add_test_case(case);
    }
    let others: Vec<&Finding> = r.findings_of(None).collect();
    if !others.is_empty() {
        let mut case = TestCase::new("course and module pages, lab files", failure(&others));
        case.set_classname("course");
        suite.add_test_case(case);
    }
    for skipped in &r.coverage.skipped {
        let mut status = TestCaseStatus::skipped();
        status.set_message(skipped.reason.as_str());
        let mut case = TestCase::new(skipped.what.as_str(), status);
        case.set_classname("skipped");
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::*;

    fn report() -> CourseReport {
        CourseReport {
            schema_version: SCHEMA_VERSION,
            path: "c".into(),
            scope: Scope::Module,
            repo_root: "/r".into(),
            repo_root_from: RepoRootFrom::Inferred,
            clone_path: "~/cloud-atlas".into(),
            exec_bits_from: ExecBitsFrom::FileMode,
            lessons: vec!["01-a".into(), "02-b".into()],
            findings: vec![Finding {
                file: "01-a/README.md".into(),
                line: 7,
                class: FindingClass::Course,
                kind: FindingKind::BrokenLink,
                message: "link `x, y: z` points to 01-a/x\nnext".into(),
                lesson: Some("01-a".into()),
            }],
            coverage: Coverage {
                lessons: 2,
                skipped: vec![Skipped {
                    what: "shellcheck".into(),
                    reason: "not installed".into(),
                }],
                ..Coverage::default()
            },
            duration_ms: 3,
        }
    }

    #[test]
    fn github_annotations_escape_properties_and_messages() {
        let out = github(&report());
        let first = out.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            "::error file=01-a/README.md,line=7,title=broken_link::link `x, y: z` points to 01-a/x%0Anext"
        );
        assert!(out.contains(
            "::warning title=labgrade course coverage::skipped shellcheck: not installed"
        ));
    }

    #[test]
    fn every_format_says_what_was_skipped() -> Result<(), quick_junit::SerializeError> {
        let r = report();
        for out in [human(&r), markdown(&r), github(&r), junit(&r)?] {
            assert!(out.contains("not installed"), "{out}");
        }
        let xml = junit(&r)?;
        assert!(xml.contains("name=\"01-a\""));
        assert!(xml.contains("name=\"02-b\""));
        assert!(xml.contains("<failure"));
        assert!(human(&r).starts_with("01-a/README.md:7: broken_link: "));
        Ok(())
    }
}
