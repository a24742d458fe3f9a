//! What differs between the guests of a matrix: snapshot entries, compared as typed entries keyed
//! by their path (a path may hold spaces), and each step's kernel messages.

use std::collections::{BTreeMap, BTreeSet};

use labgrade_proto::Entry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MatrixReport;
use super::kmsg::normalise_kmsg;
use crate::model::{LabReport, LabStatus};

/// A difference between guests: one snapshot entry or one step's kernel messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Difference {
    /// The lab.
    pub lab: String,
    /// What differs.
    pub subject: Subject,
    /// Per guest, what it showed.
    pub by_guest: Vec<(String, Observed)>,
}

/// The thing that is not the same on every guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// One entry of a snapshot.
    SnapshotEntry {
        /// The snapshot's name, e.g. `upper@end`.
        snapshot: String,
        /// The entry's path inside it.
        path: String,
    },
    /// What the kernel logged while a step ran.
    KernelLog {
        /// The step, 1-based.
        step: usize,
    },
}

/// What one guest showed of a [`Subject`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    /// The snapshot holds this entry.
    Entry {
        /// The entry.
        entry: Entry,
    },
    /// The snapshot has no entry at that path.
    Absent,
    /// The kernel logged these lines (loop device numbers and UUIDs normalised).
    KernelLog {
        /// The lines, possibly none.
        lines: Vec<String>,
    },
    /// The step did not run on that guest.
    StepNotRun,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::SnapshotEntry { snapshot, path } => write!(f, "snapshot {snapshot}: {path}"),
            Subject::KernelLog { step } => write!(f, "kernel log, step {step}"),
        }
    }
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::Entry { entry } => f.write_str(&entry.render_line()),
            Observed::Absent => f.write_str("absent"),
            Observed::KernelLog { lines } if lines.is_empty() => f.write_str("(nothing)"),
            Observed::KernelLog { lines } => f.write_str(&lines.join(" / ")),
            Observed::StepNotRun => f.write_str("(step not run)"),
        }
    }
}

impl MatrixReport {
    /// Every snapshot entry and kernel message that is not the same on all guests that ran the
    /// lab (skipped runs are left out: they have nothing to compare).
    pub fn differences(&self) -> Vec<Difference> {
        let mut out = Vec::new();
        for id in self.lab_ids() {
            let labs: Vec<(&str, &LabReport)> = self
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
            snapshot_differences(&id, &labs, &mut out);
            kernel_log_differences(&id, &labs, &mut out);
        }
        out
    }
}

fn differs(seen: &[(String, Observed)]) -> bool {
    seen.iter().any(|(_, v)| v != &seen[0].1)
}

fn snapshot_differences(id: &str, labs: &[(&str, &LabReport)], out: &mut Vec<Difference>) {
    let names: BTreeSet<&str> = labs
        .iter()
        .flat_map(|(_, l)| l.snapshots.iter().map(|s| s.name.as_str()))
        .collect();
    for name in names {
        let tables: Vec<(&str, BTreeMap<&str, &Entry>)> = labs
            .iter()
            .map(|(g, l)| {
                let entries = l
                    .snapshots
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.entries.as_deref())
                    .unwrap_or_default();
                (*g, entries.iter().map(|e| (e.path.as_str(), e)).collect())
            })
            .collect();
        let paths: BTreeSet<&str> = tables.iter().flat_map(|(_, t)| t.keys().copied()).collect();
        for path in paths {
            let seen: Vec<(String, Observed)> = tables
                .iter()
                .map(|(g, t)| {
                    let observed = t.get(path).map_or(Observed::Absent, |e| Observed::Entry {
                        entry: (*e).clone(),
                    });
                    ((*g).to_owned(), observed)
                })
                .collect();
            if differs(&seen) {
                out.push(Difference {
                    lab: id.to_owned(),
                    subject: Subject::SnapshotEntry {
                        snapshot: name.to_owned(),
                        path: path.to_owned(),
                    },
                    by_guest: seen,
                });
            }
        }
    }
}

fn kernel_log_differences(id: &str, labs: &[(&str, &LabReport)], out: &mut Vec<Difference>) {
    let steps = labs.iter().map(|(_, l)| l.steps.len()).max().unwrap_or(0);
    for i in 0..steps {
        let seen: Vec<(String, Observed)> = labs
            .iter()
            .map(|(g, l)| {
                let observed =
                    l.steps
                        .get(i)
                        .map_or(Observed::StepNotRun, |s| Observed::KernelLog {
                            lines: s.kmsg.iter().map(|m| normalise_kmsg(m)).collect(),
                        });
                ((*g).to_owned(), observed)
            })
            .collect();
        if differs(&seen) {
            out.push(Difference {
                lab: id.to_owned(),
                subject: Subject::KernelLog { step: i + 1 },
                by_guest: seen,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{MatrixColumn, render_matrix_human, render_matrix_markdown};
    use crate::model::{RunReport, SnapshotReport, StepReport};
    use labgrade_proto::{EntryKind, OverlayXattr, TreeSnapshot, XattrValue};
    use labgrade_spec::LessonRef;

    fn entry(path: &str, kind: EntryKind, rdev: Option<(u32, u32)>) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: if kind == EntryKind::Dir { 0o755 } else { 0 },
            uid: 0,
            gid: 0,
            size: None,
            rdev,
            link_target: None,
            xattrs: vec![],
            sha256: None,
        }
    }

    fn run(guest: &str, entries: Vec<Entry>, kmsg: &[&str]) -> RunReport {
        RunReport {
            schema_version: crate::SCHEMA_VERSION,
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
                snapshots: vec![SnapshotReport::new(
                    "upper@end".into(),
                    "upper".into(),
                    Ok(TreeSnapshot { entries }),
                )],
                duration_ms: 1,
                engine: None,
            }],
            probe_ms: 0,
            duration_ms: 1,
        }
    }

    fn column(guest: &str, entries: Vec<Entry>, kmsg: &[&str]) -> MatrixColumn {
        MatrixColumn {
            guest: guest.into(),
            kernel_release: Some("r".into()),
            run: Some(run(guest, entries, kmsg)),
            error: None,
        }
    }

    #[test]
    fn differences_name_the_entry_and_what_each_kernel_showed() {
        let root = entry(".", EntryKind::Dir, None);
        let mut root_with_uuid = root.clone();
        root_with_uuid.xattrs.push(OverlayXattr {
            name: "trusted.overlay.uuid".into(),
            value: XattrValue::Redacted { len: 16 },
        });
        let whiteout = entry("x", EntryKind::Char, Some((0, 0)));
        let m = MatrixReport::new(
            vec![
                column(
                    "qemu:debian:5.10",
                    vec![root, whiteout.clone()],
                    &["XFS (loop0): Mounting V4 Filesystem"],
                ),
                column(
                    "qemu:debian:6.1",
                    vec![root_with_uuid, whiteout],
                    &["XFS (loop3): Mounting V4 Filesystem"],
                ),
            ],
            1,
        );
        let d = m.differences();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].subject.to_string(), "snapshot upper@end: .");
        assert_eq!(
            d[0].by_guest[1].1.to_string(),
            ". dir 0755 0:0 trusted.overlay.uuid=[16 bytes]"
        );
        let md = render_matrix_markdown(&m);
        assert!(md.contains("| `quick-start` | ✅ pass | ✅ pass |"), "{md}");
    }

    #[test]
    fn a_path_with_a_space_is_one_entry_and_diffs_as_itself() {
        // `a b.txt` is a whiteout on one kernel and a file on the other; `a` exists on neither.
        let root = entry(".", EntryKind::Dir, None);
        let m = MatrixReport::new(
            vec![
                column(
                    "qemu:debian:5.10",
                    vec![
                        root.clone(),
                        entry("a b.txt", EntryKind::Char, Some((0, 0))),
                    ],
                    &[],
                ),
                column(
                    "qemu:debian:6.1",
                    vec![root, entry("a b.txt", EntryKind::File, None)],
                    &[],
                ),
            ],
            1,
        );
        let d = m.differences();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            d[0].subject,
            Subject::SnapshotEntry {
                snapshot: "upper@end".into(),
                path: "a b.txt".into()
            }
        );
        assert_eq!(
            d[0].by_guest[0].1.to_string(),
            "a b.txt char 0000 0:0 whiteout"
        );
        assert_eq!(d[0].by_guest[1].1.to_string(), "a b.txt file 0000 0:0");
        let human = render_matrix_human(&m);
        assert!(
            human.contains("quick-start · snapshot upper@end: a b.txt"),
            "{human}"
        );
    }
}
