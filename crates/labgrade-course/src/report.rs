//! The course report: plain data, versioned, with a JSON Schema generated from these types and
//! committed beside the other reports' (`crates/labgrade-report/schema/course-report.schema.json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bumped when a field is renamed, removed or changes meaning (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;

/// What `labgrade course PATH --static` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CourseReport {
    /// [`SCHEMA_VERSION`] of this report's shape.
    pub schema_version: u32,
    /// PATH as given on the command line; every finding's `file` is relative to it.
    pub path: String,
    /// What PATH is.
    pub scope: Scope,
    /// The repository root `~/cloud-atlas/...` paths and sparse-checkout paths are resolved in.
    pub repo_root: String,
    /// How that root was chosen.
    pub repo_root_from: RepoRootFrom,
    /// The directory students clone the repository to, as lessons write it (`~/cloud-atlas`).
    pub clone_path: String,
    /// Where the exec bits of scripts were read.
    pub exec_bits_from: ExecBitsFrom,
    /// Every lesson checked, relative to PATH (`.` when PATH is the lesson), in order.
    pub lessons: Vec<String>,
    /// Every problem found, ordered by file and line.
    pub findings: Vec<Finding>,
    /// What was checked and what was not.
    pub coverage: Coverage,
    /// Wall time of the checks, in milliseconds.
    pub duration_ms: u64,
}

impl CourseReport {
    /// Findings that are the course's errors (exit code 1 when any).
    pub fn course_errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.class == FindingClass::Course)
            .count()
    }

    /// The findings of one lesson (by its entry in [`CourseReport::lessons`]), or of no lesson.
    pub fn findings_of<'a>(&'a self, lesson: Option<&'a str>) -> impl Iterator<Item = &'a Finding> {
        self.findings
            .iter()
            .filter(move |f| f.lesson.as_deref() == lesson)
    }
}

/// What a PATH given to `labgrade course` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A course root: modules of lessons.
    Course,
    /// A module: lessons.
    Module,
    /// One lesson.
    Lesson,
}

/// How the repository root was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RepoRootFrom {
    /// `--repo-root`.
    Given,
    /// The git work tree PATH is in.
    Git,
    /// The ancestor of PATH the lessons' own `~/cloud-atlas/...` paths fit (no git repository).
    Inferred,
    /// Nothing to go by: PATH itself.
    Path,
}

/// Where exec bits were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecBitsFrom {
    /// The git index (`git ls-files -s`): what a student's clone gets. Untracked files: their
    /// file mode.
    GitIndex,
    /// The files' modes (PATH is in no git repository).
    FileMode,
}

/// One problem, at its file and line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// The file, relative to PATH (a lab file outside PATH: as found).
    pub file: String,
    /// 1-based line in that file.
    pub line: usize,
    /// Whose error it is.
    pub class: FindingClass,
    /// What kind of problem.
    pub kind: FindingKind,
    /// What is wrong and what to do.
    pub message: String,
    /// The lesson it belongs to (an entry of [`CourseReport::lessons`]); none for module and
    /// course pages and for lab files.
    pub lesson: Option<String>,
}

/// Whose error a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingClass {
    /// The course's: a maintainer must fix the lesson, its scripts or a lab file.
    Course,
}

/// The kinds of problem.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A relative link or image whose target does not exist.
    BrokenLink,
    /// A path a lesson tells students to use (`cd`, `git sparse-checkout set`, `./x.sh`) that
    /// is not in the repository.
    MissingPath,
    /// A script the lesson runs as `./x.sh` that a clone gets without its exec bit.
    ScriptNotExecutable,
    /// A script `bash -n` rejects.
    ScriptSyntax,
    /// An error shellcheck reports (`--severity=error`).
    Shellcheck,
    /// A lab names a section heading its lesson does not have.
    MissingSection,
}

impl FindingKind {
    /// The kind as it is written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::BrokenLink => "broken_link",
            FindingKind::MissingPath => "missing_path",
            FindingKind::ScriptNotExecutable => "script_not_executable",
            FindingKind::ScriptSyntax => "script_syntax",
            FindingKind::Shellcheck => "shellcheck",
            FindingKind::MissingSection => "missing_section",
        }
    }
}

/// What was checked, and what was not with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Coverage {
    /// Lessons checked.
    pub lessons: usize,
    /// Markdown files read (lessons, module and course pages, code/README.md).
    pub markdown_files: usize,
    /// Relative links and images resolved.
    pub links: usize,
    /// Links not resolved because they leave for the web or mail (`https:`, `mailto:`) or only
    /// name an anchor.
    pub links_external: usize,
    /// Missing links and paths not judged: the repository here is no git work tree (it may be
    /// a copy of part of it), and they would lie outside PATH.
    pub outside_unjudged: usize,
    /// Paths lessons tell students to use that were checked (`cd ~/cloud-atlas/...`,
    /// sparse-checkout paths, `./x.sh` runs).
    pub paths: usize,
    /// Shell scripts under code/ checked (`bash -n`, and shellcheck unless skipped).
    pub scripts: usize,
    /// Files under code/ that are not shell scripts (not checked).
    pub other_code_files: usize,
    /// Scripts whose verdicts came from the cache (same tool version, same bytes).
    pub scripts_cached: usize,
    /// Lab sections checked against their lesson.
    pub sections: usize,
    /// Checks, or parts of the tree, not checked, each with the reason. Never a pass.
    pub skipped: Vec<Skipped>,
}

/// A check that did not run, or a part of the tree not looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// Which check (`shellcheck`, `script_syntax`, `lab_sections`) or which directory.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// The JSON Schema of `labgrade course --static --format json`.
pub fn course_report_schema() -> serde_json::Value {
    serde_json::Value::from(schemars::schema_for!(CourseReport))
}
