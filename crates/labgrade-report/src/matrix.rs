//! A lab x guest matrix: the same labs on several kernels, and what differs between them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::{LabStatus, RunReport};

/// `labgrade matrix`: one run per guest, in the order the guests were named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixReport {
    /// One entry per guest.
    pub columns: Vec<MatrixColumn>,
    /// Wall time of the whole matrix in milliseconds.
    pub duration_ms: u64,
}

/// One guest's run, or why it could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixColumn {
    /// The guest, e.g. `qemu:debian:6.1` or `host`.
    pub guest: String,
    /// The kernel release it ran, where known (`uname -r`).
    pub kernel_release: Option<String>,
    /// The run, if the guest came up.
    pub run: Option<RunReport>,
    /// Why there is no run (boot failure, kernel not found): infrastructure, exit code 3.
    pub error: Option<String>,
}

impl MatrixColumn {
    /// The kernel release, or why the guest did not come up.
    pub fn kernel_text(&self) -> &str {
        self.kernel_release
            .as_deref()
            .or(self.error.as_deref())
            .unwrap_or("?")
    }
}

/// A difference between guests: one snapshot line or one lab's kernel messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The lab.
    pub lab: String,
    /// `snapshot upper@end: PATH` or `kernel log, step N`.
    pub what: String,
    /// Per guest, what it showed (`absent` where the entry is missing).
    pub by_guest: Vec<(String, String)>,
}

impl MatrixReport {
    /// Lab ids in first-seen order across columns.
    pub fn lab_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for run in self.columns.iter().filter_map(|c| c.run.as_ref()) {
            for lab in &run.labs {
                if !ids.contains(&lab.id) {
                    ids.push(lab.id.clone());
                }
            }
        }
        ids
    }

    /// Every snapshot line and kernel message that is not the same on all guests that ran the lab.
    pub fn differences(&self) -> Vec<Difference> {
        let mut out = Vec::new();
        for id in self.lab_ids() {
            let labs: Vec<(&str, &crate::LabReport)> = self
                .columns
                .iter()
                .filter_map(|c| c.run.as_ref().map(|r| (c.guest.as_str(), r)))
                .filter_map(|(g, r)| {
                    r.labs
                        .iter()
                        .find(|l| l.id == id && l.status != LabStatus::Skip)
                        .map(|l| (g, l))
                })
                .collect();
            if labs.len() < 2 {
                continue;
            }
            // Snapshots: compare entry by entry (the first word of each line is the path).
            let names: BTreeSet<&str> = labs
                .iter()
                .flat_map(|(_, l)| l.snapshots.iter().map(|s| s.name.as_str()))
                .collect();
            for name in names {
                let mut per_path: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
                let tables: Vec<(&str, BTreeMap<String, String>)> = labs
                    .iter()
                    .map(|(g, l)| {
                        let text = l
                            .snapshots
                            .iter()
                            .find(|s| s.name == name)
                            .map_or("", |s| s.text.as_str());
                        let rows = text
                            .lines()
                            .map(|line| {
                                (
                                    line.split(' ').next().unwrap_or("").to_owned(),
                                    line.to_owned(),
                                )
                            })
                            .collect();
                        (*g, rows)
                    })
                    .collect();
                let paths: BTreeSet<&String> = tables.iter().flat_map(|(_, t)| t.keys()).collect();
                for path in paths {
                    let seen: Vec<(String, String)> = tables
                        .iter()
                        .map(|(g, t)| {
                            (
                                (*g).to_owned(),
                                t.get(path).cloned().unwrap_or_else(|| "absent".into()),
                            )
                        })
                        .collect();
                    if seen.iter().any(|(_, v)| v != &seen[0].1) {
                        per_path.insert(path.clone(), seen);
                    }
                }
                for (path, by_guest) in per_path {
                    out.push(Difference {
                        lab: id.clone(),
                        what: format!("snapshot {name}: {path}"),
                        by_guest,
                    });
                }
            }
            // Kernel messages, step by step, with loop device numbers normalised.
            let steps = labs.iter().map(|(_, l)| l.steps.len()).max().unwrap_or(0);
            for i in 0..steps {
                let seen: Vec<(String, String)> = labs
                    .iter()
                    .map(|(g, l)| {
                        let msgs = l.steps.get(i).map(|s| {
                            s.kmsg
                                .iter()
                                .map(|m| normalise_kmsg(m))
                                .collect::<Vec<_>>()
                                .join(" / ")
                        });
                        (
                            (*g).to_owned(),
                            msgs.unwrap_or_else(|| "(step not run)".into()),
                        )
                    })
                    .collect();
                if seen.iter().any(|(_, v)| v != &seen[0].1) {
                    out.push(Difference {
                        lab: id.clone(),
                        what: format!("kernel log, step {}", i + 1),
                        by_guest: seen
                            .into_iter()
                            .map(|(g, v)| (g, if v.is_empty() { "(nothing)".into() } else { v }))
                            .collect(),
                    });
                }
            }
        }
        out
    }
}

/// `loop3` -> `loopN` and filesystem UUIDs -> `<uuid>`: which loop device a lab got, and the
/// UUID mkfs chose, are not kernel differences.
fn normalise_kmsg(m: &str) -> String {
    redact_uuids(&normalise_loop(m))
}

fn redact_uuids(m: &str) -> String {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    m.split(' ')
        .map(|word| {
            let groups: Vec<&str> = word.split('-').collect();
            let is_uuid = groups.len() == 5
                && groups
                    .iter()
                    .zip(SHAPE)
                    .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
            if is_uuid { "<uuid>" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn normalise_loop(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    let mut rest = m;
    while let Some(at) = rest.find("loop") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn cell(column: &MatrixColumn, id: &str) -> (String, Option<String>) {
    if let Some(e) = &column.error {
        return (
            "ERROR".into(),
            Some(e.lines().next().unwrap_or("").to_owned()),
        );
    }
    match column
        .run
        .as_ref()
        .and_then(|r| r.labs.iter().find(|l| l.id == id))
    {
        Some(l) => (l.status.word().to_owned(), l.reason.clone()),
        None => ("-".into(), None),
    }
}

/// (lab, guest, status, reason) of every cell that did not pass and has a reason.
fn not_passed(m: &MatrixReport) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for id in m.lab_ids() {
        for c in &m.columns {
            if let (status, Some(reason)) = cell(c, &id)
                && status != "PASS"
            {
                out.push((id.clone(), c.guest.clone(), status, reason));
            }
        }
    }
    out
}

/// The matrix for a terminal: a table, the skip reasons, then the differences.
pub fn render_matrix_human(m: &MatrixReport) -> String {
    let ids = m.lab_ids();
    let width = ids.iter().map(String::len).max().unwrap_or(3).max(3);
    let col = m
        .columns
        .iter()
        .map(|c| c.guest.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:width$}", "lab");
    for c in &m.columns {
        let _ = write!(out, "  {:col$}", c.guest);
    }
    out.push('\n');
    for id in &ids {
        let _ = write!(out, "{id:width$}");
        for c in &m.columns {
            let _ = write!(out, "  {:col$}", cell(c, id).0);
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\nkernels:");
    for c in &m.columns {
        let _ = writeln!(out, "  {}: {}", c.guest, c.kernel_text());
    }
    let mut reasons = String::new();
    for (id, guest, status, reason) in not_passed(m) {
        let _ = writeln!(reasons, "  {id} on {guest}: {status}: {reason}");
    }
    if !reasons.is_empty() {
        let _ = write!(out, "\nnot passed, and why:\n{reasons}");
    }
    let diffs = m.differences();
    let _ = writeln!(out, "\ndifferences across guests ({}):", diffs.len());
    for d in &diffs {
        let _ = writeln!(out, "  {} · {}", d.lab, d.what);
        for (g, v) in &d.by_guest {
            let _ = writeln!(out, "      {g:col$}  {v}");
        }
    }
    out
}

/// The matrix as a page a course maintainer can publish.
pub fn render_matrix_markdown(m: &MatrixReport) -> String {
    let ids = m.lab_ids();
    let mut out = String::from("# Lab results by kernel\n\n| lab |");
    for c in &m.columns {
        let _ = write!(out, " {} |", c.guest);
    }
    out.push_str("\n| --- |");
    for _ in &m.columns {
        out.push_str(" --- |");
    }
    out.push('\n');
    for id in &ids {
        let _ = write!(out, "| `{id}` |");
        for c in &m.columns {
            let (status, _) = cell(c, id);
            let mark = match status.as_str() {
                "PASS" => "✅ pass",
                "FAIL" => "❌ fail",
                "SKIP" => "⏭ skip",
                "ERROR" => "⚠️ error",
                _ => "–",
            };
            let _ = write!(out, " {mark} |");
        }
        out.push('\n');
    }
    out.push_str("\n## Kernels\n\n");
    for c in &m.columns {
        let _ = writeln!(out, "- **{}**: {}", c.guest, c.kernel_text());
    }
    let mut reasons = String::new();
    for (id, guest, status, reason) in not_passed(m) {
        let reason = reason.replace('|', "\\|");
        let _ = writeln!(
            reasons,
            "- `{id}` on {guest}: {}: {reason}",
            status.to_lowercase()
        );
    }
    if !reasons.is_empty() {
        let _ = write!(out, "\n## Skips and failures\n\n{reasons}");
    }
    let diffs = m.differences();
    out.push_str("\n## What differs between kernels\n\n");
    if diffs.is_empty() {
        out.push_str("Nothing: every snapshot and kernel message is the same on every kernel.\n");
    }
    for d in &diffs {
        let _ = writeln!(
            out,
            "### `{}` — {}\n\n| guest | shows |\n| --- | --- |",
            d.lab, d.what
        );
        for (g, v) in &d.by_guest {
            let _ = writeln!(
                out,
                "| {g} | `{}` |",
                v.replace('|', "\\|").replace('`', "'")
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LabReport, SnapshotReport, StepReport};
    use labgrade_spec::LessonRef;

    fn run(guest: &str, snapshot: &str, kmsg: &[&str]) -> RunReport {
        RunReport {
            guest: guest.into(),
            privilege: None,
            kmsg_unavailable: None,
            labs: vec![LabReport {
                id: "quick-start".into(),
                title: "t".into(),
                file: "f".into(),
                lesson: LessonRef {
                    file: "l".into(),
                    section: "s".into(),
                },
                status: LabStatus::Pass,
                reason: None,
                steps: vec![StepReport {
                    number: 1,
                    name: None,
                    run: "true".into(),
                    exit_code: Some(0),
                    failed_commands: vec![],
                    stdout: String::new(),
                    stderr: String::new(),
                    kmsg: kmsg.iter().map(|s| (*s).to_owned()).collect(),
                    duration_ms: 1,
                    checks: vec![],
                }],
                snapshots: vec![SnapshotReport {
                    name: "upper@end".into(),
                    dir: "upper".into(),
                    text: snapshot.into(),
                }],
                duration_ms: 1,
            }],
            probe_ms: 0,
            duration_ms: 1,
        }
    }

    fn column(guest: &str, snapshot: &str, kmsg: &[&str]) -> MatrixColumn {
        MatrixColumn {
            guest: guest.into(),
            kernel_release: Some("r".into()),
            run: Some(run(guest, snapshot, kmsg)),
            error: None,
        }
    }

    #[test]
    fn differences_name_the_entry_and_what_each_kernel_showed() {
        let m = MatrixReport {
            columns: vec![
                column(
                    "qemu:debian:5.10",
                    ". dir 0755 0:0\nx char 0000 0:0 whiteout\n",
                    &["XFS (loop0): Mounting V4 Filesystem"],
                ),
                column(
                    "qemu:debian:6.1",
                    ". dir 0755 0:0 trusted.overlay.uuid=[16 bytes]\nx char 0000 0:0 whiteout\n",
                    &["XFS (loop3): Mounting V4 Filesystem"],
                ),
            ],
            duration_ms: 1,
        };
        let d = m.differences();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            normalise_kmsg(
                "XFS (loop7): Mounting V5 Filesystem 47b77223-0a21-4368-b8a1-8090a46fd435"
            ),
            "XFS (loopN): Mounting V5 Filesystem <uuid>"
        );
        assert_eq!(d[0].what, "snapshot upper@end: .");
        assert_eq!(
            d[0].by_guest[1].1,
            ". dir 0755 0:0 trusted.overlay.uuid=[16 bytes]"
        );
        let md = render_matrix_markdown(&m);
        assert!(md.contains("| `quick-start` | ✅ pass | ✅ pass |"), "{md}");
    }
}
