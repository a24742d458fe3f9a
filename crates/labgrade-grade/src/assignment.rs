//! The assignment file (`assignment.toml`): tasks, each with its setup, the student's entry file
//! and checks worth points. Checks reuse the lab checks (`labgrade_spec::Check`), plus facts only
//! graders need (an overlay mount with given layers). Mistakes are reported at file:line:col.

use std::path::{Path, PathBuf};

use labgrade_spec::{Check, InvalidLab, LessonRef, RawCheck, SpecError};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::wire::SandboxLimits;

/// The file an assignment directory holds.
pub const ASSIGNMENT_FILE: &str = "assignment.toml";

const HELP_FORMAT: &str = "the assignment format is described in assignments/README.md";

/// A validated assignment.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Its id: the directory's name, e.g. `overlay-basics`.
    pub id: String,
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// One line students recognise.
    pub title: String,
    /// The tasks, in the file's order.
    pub tasks: Vec<Task>,
}

impl Assignment {
    /// Points of the whole assignment.
    pub fn max_score(&self) -> u32 {
        self.tasks.iter().map(|t| t.max_score()).sum()
    }
}

/// One task: a fresh sandbox, the setup, then `sh ENTRY` from the submission, then checks.
#[derive(Debug, Clone)]
pub struct Task {
    /// Unique within the assignment; Gradescope test names begin with it.
    pub id: String,
    /// What the student is asked to do, in a line.
    pub title: String,
    /// The submission's file for this task, e.g. `mount.sh`.
    pub entry: String,
    /// Where in the lesson a student who lost points should read.
    pub lesson: Option<LessonRef>,
    /// Shell text run as root of the sandbox before the student's code.
    pub setup: String,
    /// Limits on the student's code.
    pub limits: SandboxLimits,
    /// The checks, each worth points.
    pub checks: Vec<GradeCheck>,
}

impl Task {
    /// Points of the task: the sum of its checks' points.
    pub fn max_score(&self) -> u32 {
        self.checks.iter().map(|c| c.points).sum()
    }
}

/// Who sees a check's result (Gradescope's visibility levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// The student sees it at once (the default).
    Shown,
    /// The student sees it once the due date has passed.
    AfterDueDate,
    /// Only staff see it.
    Hidden,
}

/// A check worth points: it passes when every one of its facts holds.
#[derive(Debug, Clone)]
pub struct GradeCheck {
    /// What it checks, in words a student reads.
    pub name: String,
    /// Points it earns when it passes.
    pub points: u32,
    /// Who sees its result.
    pub visibility: Visibility,
    /// What a student whose check failed should know.
    pub feedback: Option<String>,
    /// The facts, all of which must hold.
    pub facts: Vec<TaskFact>,
    /// Line in the assignment file.
    pub line: usize,
}

/// One fact a grade check asserts about the state a task left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskFact {
    /// A lab check on a path relative to `$LAB`.
    Path(Check),
    /// An overlay mount at a path with these layers, in this order.
    Overlay(OverlayExpectation),
}

/// "`at` is an overlay mount with these lower dirs (highest priority first), upper and work",
/// every path relative to `$LAB`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayExpectation {
    /// The mount point.
    pub at: String,
    /// Lower dirs, highest priority first (as `lowerdir=` lists them).
    pub lower: Vec<String>,
    /// The upper dir, if one is required.
    pub upper: Option<String>,
    /// The work dir, if one is required.
    pub work: Option<String>,
}

/// An assignment that cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AssignmentError {
    /// The file could not be read.
    #[error("cannot read the assignment file {path}: {source}")]
    #[diagnostic(code(labgrade::grade::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file does not validate.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] SpecError),
}

/// Limits unless the assignment or the task says otherwise.
pub const DEFAULT_LIMITS: SandboxLimits = SandboxLimits {
    wall_ms: 20_000,
    setup_ms: 30_000,
    cpu_secs: 10,
    memory_mib: 512,
    file_size_mib: 64,
    processes: 128,
    open_files: 256,
    output_bytes: 64 * 1024,
    tmp_mib: 128,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssignment {
    title: String,
    /// The lesson file tasks' `section`s are in.
    lesson: Option<String>,
    limits: Option<Spanned<RawLimits>>,
    #[serde(default, rename = "task")]
    tasks: Vec<Spanned<RawTask>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    wall_secs: Option<u64>,
    setup_secs: Option<u64>,
    cpu_secs: Option<u64>,
    memory_mib: Option<u64>,
    file_size_mib: Option<u64>,
    processes: Option<u64>,
    open_files: Option<u64>,
    output_kib: Option<u64>,
    tmp_mib: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: Spanned<String>,
    title: String,
    entry: Spanned<String>,
    points: Option<Spanned<u32>>,
    section: Option<String>,
    #[serde(default)]
    setup: String,
    limits: Option<Spanned<RawLimits>>,
    #[serde(default, rename = "check")]
    checks: Vec<Spanned<RawGradeCheck>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGradeCheck {
    name: String,
    points: u32,
    visibility: Option<Spanned<String>>,
    feedback: Option<String>,
    overlay: Option<Spanned<RawOverlay>>,
    #[serde(default)]
    expect: Vec<Spanned<RawCheck>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverlay {
    at: String,
    lower: Vec<String>,
    upper: Option<String>,
    work: Option<String>,
}

/// Reads and validates `DIR/assignment.toml`.
pub fn load_assignment(dir: &Path) -> Result<Assignment, AssignmentError> {
    let path = dir.join(ASSIGNMENT_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| AssignmentError::Read {
        path: path.clone(),
        source,
    })?;
    let id = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "assignment".into());
    Ok(parse_assignment(&id, dir, &path, &text)?)
}

fn limits_over(base: SandboxLimits, raw: &RawLimits) -> SandboxLimits {
    SandboxLimits {
        wall_ms: raw
            .wall_secs
            .map_or(base.wall_ms, |s| s.saturating_mul(1000)),
        setup_ms: raw
            .setup_secs
            .map_or(base.setup_ms, |s| s.saturating_mul(1000)),
        cpu_secs: raw.cpu_secs.unwrap_or(base.cpu_secs),
        memory_mib: raw.memory_mib.unwrap_or(base.memory_mib),
        file_size_mib: raw.file_size_mib.unwrap_or(base.file_size_mib),
        processes: raw.processes.unwrap_or(base.processes),
        open_files: raw.open_files.unwrap_or(base.open_files),
        output_bytes: raw
            .output_kib
            .map_or(base.output_bytes, |k| k.saturating_mul(1024)),
        tmp_mib: raw.tmp_mib.unwrap_or(base.tmp_mib),
    }
}

/// Every limit must leave the task room to run: zero (or an absurd size) is a mistake.
fn check_limits(l: &SandboxLimits) -> Result<(), String> {
    let fields = [
        ("wall_secs", l.wall_ms / 1000, 1, 3600),
        ("setup_secs", l.setup_ms / 1000, 1, 3600),
        ("cpu_secs", l.cpu_secs, 1, 3600),
        ("memory_mib", l.memory_mib, 16, 65536),
        ("file_size_mib", l.file_size_mib, 1, 65536),
        ("processes", l.processes, 4, 100_000),
        ("open_files", l.open_files, 16, 1_000_000),
        ("output_kib", l.output_bytes / 1024, 1, 1 << 20),
        ("tmp_mib", l.tmp_mib, 1, 65536),
    ];
    for (name, value, min, max) in fields {
        if !(min..=max).contains(&value) {
            return Err(format!(
                "`{name}` is {value}; it must be from {min} to {max}"
            ));
        }
    }
    Ok(())
}

/// Parses assignment text; `file` names it in errors.
pub fn parse_assignment(
    id: &str,
    dir: &Path,
    file: &Path,
    text: &str,
) -> Result<Assignment, SpecError> {
    let file_name = file.display().to_string();
    let err = |span: std::ops::Range<usize>, msg: String, help: Option<String>| {
        InvalidLab::error(&file_name, text, span, msg, help)
    };
    let raw: RawAssignment = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_owned();
        let help = if msg.starts_with("unknown field") {
            format!("check the spelling; {HELP_FORMAT}")
        } else if msg.starts_with("missing field") {
            format!("add the field; {HELP_FORMAT}")
        } else {
            "this is not valid TOML here".to_owned()
        };
        err(e.span().unwrap_or(0..0), msg, Some(help))
    })?;
    let mut base = DEFAULT_LIMITS;
    if let Some(l) = &raw.limits {
        base = limits_over(base, l.get_ref());
        check_limits(&base).map_err(|why| err(l.span(), why, None))?;
    }
    if raw.tasks.is_empty() {
        return Err(err(
            0..0,
            "an assignment needs at least one [[task]]".into(),
            Some(HELP_FORMAT.into()),
        ));
    }
    let mut tasks: Vec<Task> = Vec::new();
    for spanned in &raw.tasks {
        let t = spanned.get_ref();
        let id = t.id.get_ref();
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(err(
                t.id.span(),
                format!("task id `{id}` must be lower-case letters, digits, `-` and `_`"),
                Some("e.g. id = \"mount\"".into()),
            ));
        }
        if tasks.iter().any(|o| &o.id == id) {
            return Err(err(
                t.id.span(),
                format!("a second task with id `{id}`"),
                Some("give each [[task]] its own id".into()),
            ));
        }
        let entry = t.entry.get_ref();
        if entry.is_empty() || entry.contains('/') || entry.starts_with('.') {
            return Err(err(
                t.entry.span(),
                format!("entry `{entry}` must be a plain file name in the submission"),
                Some("e.g. entry = \"mount.sh\"".into()),
            ));
        }
        if let Some(other) = tasks.iter().find(|o| &o.entry == entry) {
            return Err(err(
                t.entry.span(),
                format!("task `{}` already uses entry `{entry}`", other.id),
                Some("each task runs its own file".into()),
            ));
        }
        let limits = match &t.limits {
            Some(l) => {
                let limits = limits_over(base, l.get_ref());
                check_limits(&limits).map_err(|why| err(l.span(), why, None))?;
                limits
            }
            None => base,
        };
        if t.checks.is_empty() {
            return Err(err(
                spanned.span(),
                format!("task `{id}` has no [[task.check]]"),
                Some("add checks worth points: [[task.check]] name, points, expect".into()),
            ));
        }
        let mut checks = Vec::new();
        for c in &t.checks {
            checks.push(grade_check(&file_name, text, c, &err)?);
        }
        let task = Task {
            id: id.clone(),
            title: t.title.clone(),
            entry: entry.clone(),
            lesson: match (&raw.lesson, &t.section) {
                (Some(file), Some(section)) => Some(LessonRef {
                    file: file.clone(),
                    section: section.clone(),
                }),
                (None, Some(_)) => {
                    return Err(err(
                        spanned.span(),
                        format!(
                            "task `{id}` names a lesson section but the assignment names no lesson file"
                        ),
                        Some("add `lesson = \"07-overlay-filesystems.md\"` at the top".into()),
                    ));
                }
                _ => None,
            },
            setup: t.setup.clone(),
            limits,
            checks,
        };
        if let Some(points) = &t.points
            && *points.get_ref() != task.max_score()
        {
            return Err(err(
                points.span(),
                format!(
                    "task `{id}` is worth {} points but its checks add up to {}",
                    points.get_ref(),
                    task.max_score()
                ),
                Some("make the checks' points add up to the task's".into()),
            ));
        }
        tasks.push(task);
    }
    Ok(Assignment {
        id: id.to_owned(),
        dir: dir.to_path_buf(),
        title: raw.title,
        tasks,
    })
}

type ErrFn<'a> = dyn Fn(std::ops::Range<usize>, String, Option<String>) -> SpecError + 'a;

fn grade_check(
    file: &str,
    text: &str,
    c: &Spanned<RawGradeCheck>,
    err: &ErrFn<'_>,
) -> Result<GradeCheck, SpecError> {
    let raw = c.get_ref();
    let visibility = match &raw.visibility {
        None => Visibility::Shown,
        Some(v) => match v.get_ref().as_str() {
            "shown" => Visibility::Shown,
            "after_due_date" => Visibility::AfterDueDate,
            "hidden" => Visibility::Hidden,
            other => {
                return Err(err(
                    v.span(),
                    format!("unknown visibility `{other}`"),
                    Some("visibility is `shown`, `after_due_date` or `hidden`".into()),
                ));
            }
        },
    };
    let mut facts = Vec::new();
    if let Some(o) = &raw.overlay {
        let r = o.get_ref();
        if r.lower.is_empty() {
            return Err(err(
                o.span(),
                "an overlay check needs at least one lower dir".into(),
                Some("e.g. overlay = { at = \"merged\", lower = [\"lower\"], upper = \"upper\", work = \"work\" }".into()),
            ));
        }
        for p in std::iter::once(&r.at)
            .chain(&r.lower)
            .chain(r.upper.iter())
            .chain(r.work.iter())
        {
            if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == "..") {
                return Err(err(
                    o.span(),
                    format!("`{p}` must be a path relative to $LAB"),
                    Some("e.g. \"merged\"".into()),
                ));
            }
        }
        facts.push(TaskFact::Overlay(OverlayExpectation {
            at: r.at.clone(),
            lower: r.lower.clone(),
            upper: r.upper.clone(),
            work: r.work.clone(),
        }));
    }
    for e in &raw.expect {
        facts.extend(
            labgrade_spec::parse_check(file, text, e)?
                .into_iter()
                .map(TaskFact::Path),
        );
    }
    if facts.is_empty() {
        return Err(err(
            c.span(),
            format!("check `{}` asserts nothing", raw.name),
            Some("add `expect = [...]` (lab checks) or `overlay = {...}`".into()),
        ));
    }
    if raw.points == 0 {
        return Err(err(
            c.span(),
            format!("check `{}` is worth 0 points", raw.name),
            Some("give it points, or leave it out".into()),
        ));
    }
    Ok(GradeCheck {
        name: raw.name.clone(),
        points: raw.points,
        visibility,
        feedback: raw.feedback.clone(),
        facts,
        line: line_of(text, c.span().start),
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Assignment, SpecError> {
        parse_assignment("a", Path::new("a"), Path::new("a/assignment.toml"), text)
    }

    const GOOD: &str = r#"title = "t"
lesson = "07.md"
[[task]]
id = "mount"
title = "mount it"
entry = "mount.sh"
points = 5
section = "Lab 1"
limits = { wall_secs = 3 }
[[task.check]]
name = "an overlay"
points = 3
overlay = { at = "merged", lower = ["lower"], upper = "upper", work = "work" }
[[task.check]]
name = "lower kept"
points = 2
visibility = "hidden"
expect = [{ path = "lower/a", content = "a\n" }]
"#;

    #[test]
    fn a_good_assignment_loads_with_its_limits_and_points() -> Result<(), SpecError> {
        let a = parse(GOOD)?;
        assert_eq!(a.max_score(), 5);
        let t = &a.tasks[0];
        assert_eq!(t.limits.wall_ms, 3000);
        assert_eq!(t.limits.cpu_secs, DEFAULT_LIMITS.cpu_secs);
        assert_eq!(t.checks[1].visibility, Visibility::Hidden);
        assert_eq!(t.checks[1].line, 14);
        assert!(matches!(t.checks[0].facts[0], TaskFact::Overlay(_)));
        Ok(())
    }

    fn error_of(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(SpecError::Invalid(e)) => format!("{}:{}: {}", e.line, e.column, e.message),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn mistakes_point_at_their_line_and_column() {
        insta::assert_snapshot!(error_of(&GOOD.replace("points = 5", "points = 6")), @"7:10: task `mount` is worth 6 points but its checks add up to 5");
        insta::assert_snapshot!(error_of(&GOOD.replace("\"hidden\"", "\"secret\"")), @"17:14: unknown visibility `secret`");
        insta::assert_snapshot!(error_of(&GOOD.replace("content =", "contnet =")), @"18:31: unknown field `contnet`, expected one of `path`, `exists`, `absent`, `kind`, `whiteout`, `opaque`, `content`, `contains`, `size`, `sha256`, `entries`, `xattr`, `no_xattr`, `unchanged_since`");
        insta::assert_snapshot!(error_of(&GOOD.replace("wall_secs = 3", "wall_secs = 0")), @"9:10: `wall_secs` is 0; it must be from 1 to 3600");
        insta::assert_snapshot!(error_of(&GOOD.replace("\"mount.sh\"", "\"../x.sh\"")), @"6:9: entry `../x.sh` must be a plain file name in the submission");
    }
}
