//! From a lesson and what its blocks printed to the drift report. Pure.

use crate::compare::compare;
use crate::extract::{Lesson, ShellBlock};
use crate::report::{
    BlockReport, BlockStatus, DocumentedText, DriftReport, LineReport, LineStatus, SCHEMA_VERSION,
};
use crate::run::{BlockRun, LessonRun};

/// Who ran the lesson where, for the report's header.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    /// The lesson file, as given.
    pub lesson: String,
    /// The guest's name.
    pub guest: String,
    /// Its kernel release.
    pub kernel_release: Option<String>,
}

/// Judges every block's output against the lesson (no baseline applied yet).
pub fn judge(lesson: &Lesson, run: &LessonRun, meta: &RunMeta) -> DriftReport {
    let blocks = lesson
        .blocks
        .iter()
        .zip(&run.blocks)
        .map(|(block, ran)| judge_block(block, ran))
        .collect();
    let mut notes: Vec<String> = lesson
        .orphan_outputs
        .iter()
        .map(|l| format!("line {l}: documented output that follows no shell block (not checked)"))
        .collect();
    if !run.root {
        notes.push("not run as root: blocks ran in a user namespace".into());
    }
    DriftReport {
        schema_version: SCHEMA_VERSION,
        lesson: meta.lesson.clone(),
        guest: meta.guest.clone(),
        kernel_release: meta.kernel_release.clone(),
        baseline: None,
        blocks,
        stale: Vec::new(),
        notes,
        duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
    }
}

fn judge_block(block: &ShellBlock, ran: &BlockRun) -> BlockReport {
    let documented: Vec<DocumentedText> = block
        .documented()
        .map(|d| DocumentedText {
            line: d.line,
            text: d.text.clone(),
        })
        .collect();
    let mut report = BlockReport {
        line: block.line,
        section: block.section.clone(),
        status: BlockStatus::Match,
        reason: None,
        exit_code: None,
        documented,
        actual: None,
        lines: Vec::new(),
    };
    let outputs = match ran {
        BlockRun::Skipped(why) => {
            report.status = BlockStatus::Skipped;
            report.reason = Some(why.clone());
            return report;
        }
        BlockRun::TimedOut { outputs, limit } => {
            report.status = BlockStatus::Timeout;
            report.reason = Some(format!(
                "still running after {} s (the per-block limit): stopped",
                limit.as_secs_f64()
            ));
            report.actual = Some(outputs.concat());
            return report;
        }
        BlockRun::Ran { outputs, exit_code } => {
            report.exit_code = *exit_code;
            outputs
        }
    };
    report.actual = Some(outputs.concat());
    for (segment, output) in block.segments.iter().zip(outputs) {
        let actual: Vec<&str> = output.lines().collect();
        let documented: Vec<&str> = segment.documented.iter().map(|d| d.text.as_str()).collect();
        let verdicts = compare(&documented, &actual);
        for (doc, verdict) in segment.documented.iter().zip(verdicts) {
            let drift = verdict.matched.is_none();
            report.lines.push(LineReport {
                line: doc.line,
                origin: doc.origin,
                documented: doc.text.clone(),
                status: if drift {
                    LineStatus::Drift
                } else {
                    LineStatus::Match
                },
                actual: verdict
                    .nearest
                    .and_then(|k| actual.get(k))
                    .map(|s| s.trim_end().to_owned()),
                accepted: None,
            });
        }
    }
    if report.lines.iter().any(|l| l.status == LineStatus::Drift) {
        report.status = BlockStatus::Drift;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract;
    use std::time::Duration;

    #[test]
    fn segments_are_judged_against_their_own_output() {
        let lesson = extract("## S\n```bash\necho a\n# 输出: b\necho b\n# 输出: b\n```\n");
        let run = LessonRun {
            blocks: vec![BlockRun::Ran {
                outputs: vec!["a\n".into(), "b\n".into()],
                exit_code: Some(0),
            }],
            root: true,
            duration: Duration::ZERO,
        };
        let r = judge(&lesson, &run, &RunMeta::default());
        let b = &r.blocks[0];
        assert_eq!(b.status, BlockStatus::Drift);
        assert_eq!(b.lines[0].status, LineStatus::Drift);
        assert_eq!(b.lines[0].actual.as_deref(), Some("a"));
        assert_eq!(b.lines[1].status, LineStatus::Match);
        assert_eq!(b.actual.as_deref(), Some("a\nb\n"));
    }

    #[test]
    fn skipped_and_timed_out_blocks_keep_their_reason() {
        let lesson = extract("```bash\ndocker ps\n```\n```bash\nsleep 99\n```\n");
        let run = LessonRun {
            blocks: vec![
                BlockRun::Skipped("no docker".into()),
                BlockRun::TimedOut {
                    outputs: vec![String::new()],
                    limit: Duration::from_secs(2),
                },
            ],
            root: false,
            duration: Duration::ZERO,
        };
        let r = judge(&lesson, &run, &RunMeta::default());
        assert_eq!(r.blocks[0].status, BlockStatus::Skipped);
        assert_eq!(r.blocks[0].reason.as_deref(), Some("no docker"));
        assert_eq!(r.blocks[1].status, BlockStatus::Timeout);
        assert!(r.totals().has_failures());
        assert_eq!(r.notes.len(), 1);
    }
}
