//! The drift report: plain data (serde) that every output format renders. Other tools read the
//! JSON, so it carries [`SCHEMA_VERSION`] and fields only ever gain siblings.

use serde::{Deserialize, Serialize};

use crate::extract::DocOrigin;

/// Version of the JSON layout of [`DriftReport`] and [`KernelsReport`].
pub const SCHEMA_VERSION: u32 = 1;

/// One lesson run on one guest, judged against its baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The lesson file, as given.
    pub lesson: String,
    /// The guest it ran on (`host`, `qemu:debian:6.1`).
    pub guest: String,
    /// `uname -r` of the guest's kernel, when known.
    pub kernel_release: Option<String>,
    /// The baseline file used, if any.
    pub baseline: Option<String>,
    /// Every shell block, in lesson order.
    pub blocks: Vec<BlockReport>,
    /// Baseline entries that no longer diverge (the lesson or the system changed): remove them.
    pub stale: Vec<StaleEntry>,
    /// Things a maintainer should know that are not drift (documented output after no command).
    pub notes: Vec<String>,
    /// Wall time of the run, milliseconds.
    pub duration_ms: u64,
}

/// What happened to one shell block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockReport {
    /// Markdown line of the block's opening fence.
    pub line: usize,
    /// The nearest heading above it.
    pub section: String,
    /// Match, drift, skipped or timeout.
    pub status: BlockStatus,
    /// Why the block was skipped, or how it timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Exit code of the block's last command, when it ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The block's documented output, one line each, as written.
    pub documented: Vec<DocumentedText>,
    /// What the block printed (stdout and stderr as a terminal shows them), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// Each documented line's verdict (empty when the block was skipped).
    pub lines: Vec<LineReport>,
}

/// A documented line and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentedText {
    /// Markdown line.
    pub line: usize,
    /// The text as written.
    pub text: String,
}

/// A block's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStatus {
    /// It ran, and every documented line holds (vacuously when none is documented).
    Match,
    /// It ran, and some documented line does not hold (accepted by the baseline or not).
    Drift,
    /// It could not run here; `reason` says why. Never a pass, never a failure.
    Skipped,
    /// It ran past the per-block time limit and was stopped: a lesson command that hangs.
    Timeout,
}

/// One documented line's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineReport {
    /// Markdown line of the documented text.
    pub line: usize,
    /// Where it is written.
    pub origin: DocOrigin,
    /// The documented text.
    pub documented: String,
    /// Match or drift.
    pub status: LineStatus,
    /// For drift: the line the command really prints there (none: nothing there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// For drift the baseline accepts: its reason. The status stays `drift`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
}

/// A documented line holds or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// Found in the actual output, in order.
    Match,
    /// Not found.
    Drift,
}

/// A baseline entry nothing diverges from any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleEntry {
    /// Its section.
    pub section: String,
    /// Its documented text.
    pub documented: String,
    /// Its reason.
    pub reason: String,
}

/// Counts a report's outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DriftTotals {
    /// Blocks that ran.
    pub ran: usize,
    /// Blocks skipped.
    pub skipped: usize,
    /// Blocks stopped at the time limit.
    pub timed_out: usize,
    /// Documented lines that hold.
    pub matched: usize,
    /// Drifting lines the baseline accepts.
    pub accepted: usize,
    /// Drifting lines the baseline does not accept.
    pub new_drift: usize,
    /// Stale baseline entries.
    pub stale: usize,
}

impl DriftTotals {
    /// Something a maintainer must act on: new drift or a hanging block.
    pub fn has_failures(&self) -> bool {
        self.new_drift > 0 || self.timed_out > 0
    }
}

impl DriftReport {
    /// The counts of this report.
    pub fn totals(&self) -> DriftTotals {
        let mut t = DriftTotals {
            stale: self.stale.len(),
            ..DriftTotals::default()
        };
        for b in &self.blocks {
            match b.status {
                BlockStatus::Skipped => t.skipped += 1,
                BlockStatus::Timeout => t.timed_out += 1,
                BlockStatus::Match | BlockStatus::Drift => t.ran += 1,
            }
            for l in &b.lines {
                match (l.status, &l.accepted) {
                    (LineStatus::Match, _) => t.matched += 1,
                    (LineStatus::Drift, Some(_)) => t.accepted += 1,
                    (LineStatus::Drift, None) => t.new_drift += 1,
                }
            }
        }
        t
    }

    /// Drifting lines the baseline does not accept, with their block.
    pub fn new_drift(&self) -> impl Iterator<Item = (&BlockReport, &LineReport)> {
        self.blocks.iter().flat_map(|b| {
            b.lines
                .iter()
                .filter(|l| l.status == LineStatus::Drift && l.accepted.is_none())
                .map(move |l| (b, l))
        })
    }
}

/// One lesson on several kernels: per documented line, where it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelsReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The lesson file.
    pub lesson: String,
    /// The guests, in the order asked.
    pub guests: Vec<String>,
    /// Every documented line of the lesson, with its verdict on each guest.
    pub lines: Vec<LineAcross>,
    /// Each guest's own report.
    pub runs: Vec<DriftReport>,
}

/// A documented line across guests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineAcross {
    /// Markdown line.
    pub line: usize,
    /// Its section.
    pub section: String,
    /// The documented text.
    pub documented: String,
    /// One verdict per guest, in [`KernelsReport::guests`] order.
    pub verdicts: Vec<Holds>,
}

/// A documented line's verdict on one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holds {
    /// It holds.
    Yes,
    /// It drifts and the baseline accepts it.
    Accepted,
    /// It drifts.
    No,
    /// Its block did not run there (skipped, timed out, or the guest failed).
    NotRun,
}

impl KernelsReport {
    /// Builds the per-line view from each guest's report. All runs are of the same lesson, so
    /// block `i`'s documented line `j` is the same line in every run.
    pub fn new(lesson: String, runs: Vec<DriftReport>) -> KernelsReport {
        let guests: Vec<String> = runs.iter().map(|r| r.guest.clone()).collect();
        let mut lines: Vec<LineAcross> = Vec::new();
        if let Some(first) = runs.first() {
            for (bi, block) in first.blocks.iter().enumerate() {
                for (di, documented) in block.documented.iter().enumerate() {
                    let verdicts = runs
                        .iter()
                        .map(|run| {
                            let line = run.blocks.get(bi).and_then(|b| b.lines.get(di));
                            match line {
                                None => Holds::NotRun,
                                Some(l) if l.status == LineStatus::Match => Holds::Yes,
                                Some(l) if l.accepted.is_some() => Holds::Accepted,
                                Some(_) => Holds::No,
                            }
                        })
                        .collect();
                    lines.push(LineAcross {
                        line: documented.line,
                        section: block.section.clone(),
                        documented: documented.text.clone(),
                        verdicts,
                    });
                }
            }
        }
        KernelsReport {
            schema_version: SCHEMA_VERSION,
            lesson,
            guests,
            lines,
            runs,
        }
    }

    /// New drift or a hanging block on any guest.
    pub fn has_failures(&self) -> bool {
        self.runs.iter().any(|r| r.totals().has_failures())
    }
}
