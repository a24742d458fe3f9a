//! The report model: plain data that every renderer (and every tool reading `--format json`)
//! works from. Field names are a contract: add fields, never rename or repurpose them.

use labgrade_proto::{Entry, Privilege};
use labgrade_spec::LessonRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of the JSON reports' shape (run, matrix and those that follow). It goes up by one
/// whenever a field is renamed, removed or changes meaning; added fields keep it. The committed
/// JSON Schemas under `crates/labgrade-report/schema/` describe the current version.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// One `labgrade run`: every lab asked for, on one guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunReport {
    /// The shape of this report: [`SCHEMA_VERSION`] when it was written.
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// The guest, e.g. `host`.
    pub guest: String,
    /// How labs ran there (root, or a user namespace), if a session started.
    pub privilege: Option<Privilege>,
    /// Why kernel-log checks cannot be judged here, if they cannot.
    pub kmsg_unavailable: Option<String>,
    /// Every lab, in the order asked.
    pub labs: Vec<LabReport>,
    /// Milliseconds spent probing the guest's capabilities, summed over the sessions that
    /// probed (probes run inside lab sessions, alongside other labs).
    pub probe_ms: u64,
    /// Wall time of the whole run in milliseconds.
    pub duration_ms: u64,
}

impl RunReport {
    /// How many labs ended in each status.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for lab in &self.labs {
            match lab.status {
                LabStatus::Pass => t.passed += 1,
                LabStatus::Fail => t.failed += 1,
                LabStatus::Skip => t.skipped += 1,
                LabStatus::Error => t.errors += 1,
            }
        }
        t
    }
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.errors += other.errors;
    }
}

/// Counts of lab outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Totals {
    /// Labs whose every step and check held.
    pub passed: usize,
    /// Labs with a failed step or check.
    pub failed: usize,
    /// Labs not run, each with its reason.
    pub skipped: usize,
    /// Labs the guest could not run (infrastructure trouble, never the lab's fault).
    pub errors: usize,
}

/// How a lab ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LabStatus {
    /// Every step ended as expected and every check held.
    Pass,
    /// A step or a check did not.
    Fail,
    /// Not run: pending, or a needed capability is missing here. `reason` says which.
    Skip,
    /// The guest failed (could not start, died): infrastructure, not the lab.
    Error,
}

impl LabStatus {
    /// Upper-case word for terminals and logs.
    pub fn word(self) -> &'static str {
        match self {
            LabStatus::Pass => "PASS",
            LabStatus::Fail => "FAIL",
            LabStatus::Skip => "SKIP",
            LabStatus::Error => "ERROR",
        }
    }
}

/// One lab's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabReport {
    /// The lab id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The lab file.
    pub file: String,
    /// The lesson section it comes from.
    pub lesson: LessonRef,
    /// How it ended.
    pub status: LabStatus,
    /// For skip and error: why.
    pub reason: Option<String>,
    /// Steps that ran, in order.
    pub steps: Vec<StepReport>,
    /// Snapshots taken.
    pub snapshots: Vec<SnapshotReport>,
    /// Wall time in milliseconds from its session being ready to its end (a VM's boot is not
    /// counted against the lab that happened to start first).
    pub duration_ms: u64,
    /// The container engine a lab run per engine ran on (`<lab>@<engine>`), once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineReport>,
}

/// The container engine labgrade started in a lab's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EngineReport {
    /// `docker` or `podman`.
    pub engine: labgrade_proto::Engine,
    /// The image the lab ran (`$IMAGE`): labgrade's imported busybox image, or `--image`.
    pub image: String,
    /// Its version, as its client says it.
    pub version: String,
    /// Milliseconds from starting it to it answering.
    pub ready_ms: u64,
    /// Milliseconds importing (or pulling) the image.
    pub import_ms: u64,
}

impl LabReport {
    /// A lab's report before it runs: passing, with no steps yet.
    pub fn new(lab: &labgrade_spec::Lab) -> LabReport {
        LabReport {
            id: lab.id.clone(),
            title: lab.title.clone(),
            file: lab.path.display().to_string(),
            lesson: lab.lesson.clone(),
            status: LabStatus::Pass,
            reason: None,
            steps: Vec::new(),
            snapshots: Vec::new(),
            duration_ms: 0,
            engine: None,
        }
    }

    /// A lab that could not be run for a reason that is not the lab's (exit code 3).
    pub fn error(lab: &labgrade_spec::Lab, reason: String) -> LabReport {
        LabReport {
            status: LabStatus::Error,
            reason: Some(reason),
            ..LabReport::new(lab)
        }
    }

    /// Every check of every step.
    pub fn checks(&self) -> impl Iterator<Item = &CheckReport> {
        self.steps.iter().flat_map(|s| s.checks.iter())
    }
}

/// One step: what ran and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepReport {
    /// 1-based.
    pub number: usize,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The shell text.
    pub run: String,
    /// Exit code of its last command (`None`: killed, timed out, or the session ended).
    pub exit_code: Option<i32>,
    /// Each command that failed, by its line in the lab file.
    pub failed_commands: Vec<FailedCommandReport>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Kernel log lines written while it ran.
    pub kmsg: Vec<String>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Its checks, the step's own ending first.
    pub checks: Vec<CheckReport>,
}

/// A command of a step that failed, as `set -e` would have seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailedCommandReport {
    /// Its line in the lab file (1-based).
    pub line: usize,
    /// Its exit code.
    pub exit_code: i32,
}

/// One check's verdict with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckReport {
    /// What was looked at: a path relative to `$LAB`, or `exit`, `stdout`, `stderr`, `kmsg`.
    pub subject: String,
    /// The fact asserted, in words.
    pub fact: String,
    /// Line of the lab file the check comes from.
    pub line: Option<usize>,
    /// Its verdict.
    pub status: CheckStatus,
    /// What the lab file says.
    pub expected: String,
    /// What the guest showed.
    pub actual: String,
    /// A line diff of expected against actual, where one helps.
    pub diff: Option<String>,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// It held.
    Pass,
    /// It did not.
    Fail,
    /// It could not be judged here (`actual` says why); it neither passes nor fails the lab.
    Skip,
}

/// A normalised tree listing taken during a lab: typed entries, and their text beside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotReport {
    /// `DIR@end` or `DIR@step-N`: unique within the lab.
    pub name: String,
    /// The directory, relative to `$LAB`.
    pub dir: String,
    /// Every entry, the root first as `.`; `None` when the tree could not be read.
    pub entries: Option<Vec<Entry>>,
    /// Why the tree could not be read, if it could not.
    pub error: Option<String>,
    /// The listing as insta compares it: one line per entry, or `[no snapshot: ERROR]`.
    pub text: String,
}

impl SnapshotReport {
    /// The report of a snapshot taken (or not) of `dir`, named `name`.
    pub fn new(
        name: String,
        dir: String,
        tree: Result<labgrade_proto::TreeSnapshot, String>,
    ) -> Self {
        match tree {
            Ok(t) => SnapshotReport {
                name,
                dir,
                text: t.render(),
                entries: Some(t.entries),
                error: None,
            },
            Err(e) => SnapshotReport {
                name,
                dir,
                text: format!("[no snapshot: {e}]\n"),
                entries: None,
                error: Some(e),
            },
        }
    }
}
