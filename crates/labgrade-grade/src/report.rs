//! The grade report: plain serde data every renderer works from. Field names are a contract
//! (`--format json`, batch `results.json`): add fields, never rename them.

use labgrade_report::CheckReport;
use labgrade_spec::LessonRef;
use serde::{Deserialize, Serialize};

use crate::assignment::Visibility;

/// Version of this report's JSON shape; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// One submission, graded (or not, for a reason that is never the student's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GradeReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The assignment's id (its directory name).
    pub assignment: String,
    /// Its title.
    pub title: String,
    /// The submission's name (its directory name).
    pub submission: String,
    /// Where it was graded, e.g. `host` or `qemu:debian:6.1`.
    pub guest: String,
    /// Graded, or an infrastructure error.
    pub status: GradeStatus,
    /// For an error: why.
    pub reason: Option<String>,
    /// Points earned; `None` when it could not be graded (never a 0 for the grader's fault).
    pub score: Option<u32>,
    /// Points possible.
    pub max_score: u32,
    /// Every task, in the assignment's order.
    pub tasks: Vec<TaskReport>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// Whether a submission got a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GradeStatus {
    /// Every task ran (or had no entry file) and was judged.
    Graded,
    /// The grader failed (a guest that did not boot, a sandbox that could not be made).
    Error,
}

impl GradeStatus {
    /// The word in `summary.csv` and logs.
    pub fn word(self) -> &'static str {
        match self {
            GradeStatus::Graded => "graded",
            GradeStatus::Error => "error",
        }
    }
}

/// One task of a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskReport {
    /// Task id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The entry file it ran.
    pub entry: String,
    /// What happened.
    pub status: TaskStatus,
    /// For `missing` and `error`: why.
    pub reason: Option<String>,
    /// Points earned: the sum of its passed checks.
    pub score: u32,
    /// Points possible.
    pub max_score: u32,
    /// Where in the lesson to read.
    pub lesson: Option<LessonRef>,
    /// How the student's code ran, if it did.
    pub run: Option<TaskRun>,
    /// Every check, in the assignment's order.
    pub checks: Vec<GradedCheck>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// It ran and its checks were judged from the state it left.
    Graded,
    /// The submission has no usable entry file for it: no points.
    Missing,
    /// The grader failed on it.
    Error,
}

/// How the student's code ran: facts about the process, never read for the score.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskRun {
    /// Exit code of `sh ENTRY`, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// It ran out of wall time and every process of it was killed.
    pub timed_out: bool,
    /// The kernel killed one of its processes for going over the memory limit.
    #[serde(default)]
    pub memory_limit_hit: bool,
    /// Its standard output, capped.
    pub stdout: String,
    /// Its standard error, capped.
    pub stderr: String,
    /// Bytes it wrote to stdout in all.
    pub stdout_bytes: u64,
    /// Bytes it wrote to stderr in all.
    pub stderr_bytes: u64,
    /// What isolated it.
    pub isolation: Vec<String>,
    /// Where the time went, in ms: starting the session (agent or VM session).
    pub session_ms: u64,
    /// Making the sandbox.
    pub sandbox_ms: u64,
    /// The assignment's setup.
    pub setup_ms: u64,
    /// The student's code.
    pub student_ms: u64,
    /// Reading facts and judging the checks.
    pub checks_ms: u64,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GradedCheck {
    /// What it checks.
    pub name: String,
    /// Points earned (all or nothing).
    pub score: u32,
    /// Points possible.
    pub max_score: u32,
    /// Every fact held.
    pub passed: bool,
    /// Who sees it.
    pub visibility: Visibility,
    /// The assignment's feedback, when it failed.
    pub feedback: Option<String>,
    /// Each fact's verdict, expected against found.
    pub evidence: Vec<CheckReport>,
}

/// The JSON Schema of `labgrade grade --format json` and a batch's `results.json`.
pub fn grade_report_schema() -> serde_json::Value {
    serde_json::Value::from(schemars::schema_for!(GradeReport))
}

impl GradeReport {
    /// Every task's points are earned: all checks passed.
    pub fn is_full_score(&self) -> bool {
        self.score == Some(self.max_score)
    }
}
