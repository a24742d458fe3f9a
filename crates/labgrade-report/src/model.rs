//! The report model: plain data that every renderer (and every tool reading `--format json`)
//! works from. Field names are a contract: add fields, never rename or repurpose them.

use labgrade_spec::LessonRef;
use serde::{Deserialize, Serialize};

/// One `labgrade run`: every lab asked for, on one guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The guest, e.g. `host`.
    pub guest: String,
    /// How labs ran there, in words (root, or a user namespace), if a session started.
    pub privilege: Option<String>,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl LabReport {
    /// Every check of every step.
    pub fn checks(&self) -> impl Iterator<Item = &CheckReport> {
        self.steps.iter().flat_map(|s| s.checks.iter())
    }
}

/// One step: what ran and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based.
    pub number: usize,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The shell text.
    pub run: String,
    /// Exit code of its last command (`None`: killed, timed out, or the session ended).
    pub exit_code: Option<i32>,
    /// Each command that failed, as `file line N: exit C` (N is a line of the lab file).
    pub failed_commands: Vec<String>,
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

/// One check's verdict with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// It held.
    Pass,
    /// It did not.
    Fail,
    /// It could not be judged here (`actual` says why); it neither passes nor fails the lab.
    Skip,
}

/// A normalised tree listing taken during a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// `DIR@end` or `DIR@step-N`: unique within the lab.
    pub name: String,
    /// The directory, relative to `$LAB`.
    pub dir: String,
    /// The listing (see `labgrade-snap`), or why it could not be taken.
    pub text: String,
}
