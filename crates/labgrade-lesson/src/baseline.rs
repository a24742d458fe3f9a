//! The baseline: divergences a course maintainer accepts, each with the reason it is fine (the
//! lesson abridges, a kernel behaves differently and the lesson should say so...). A divergence
//! is named by its section and documented text, not its line, so editing the lesson elsewhere
//! does not unsettle it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compare::normalise;
use crate::report::{DriftReport, LineStatus, StaleEntry};

/// One accepted divergence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// The heading the documented line is under.
    pub section: String,
    /// The documented text, as written.
    pub documented: String,
    /// What it printed when accepted (for the reader; not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// Why the lesson may differ here. Required, not empty.
    pub reason: String,
}

impl Accepted {
    fn key(&self) -> (String, String) {
        (normalise(&self.section), normalise(&self.documented))
    }
}

/// A baseline file's content.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// The accepted divergences.
    #[serde(default)]
    pub accepted: Vec<Accepted>,
}

/// A baseline that cannot be used: the message names the file, line and column and the fix.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Unreadable.
    #[error("cannot read the baseline {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid (TOML syntax, unknown keys, an entry without a reason).
    #[error("{path}:{line}:{column}: {message}\n  help: {help}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
    /// Could not be written.
    #[error("cannot write the baseline {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

const HELP: &str = "each entry is [[accepted]] with section, documented and reason \
(and optionally actual); see `labgrade drift --help`";

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// For error positions: the entry tables' spans.
#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    accepted: Vec<toml::Spanned<toml::Table>>,
}

impl Baseline {
    /// Parses baseline text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Baseline, BaselineError> {
        let invalid = |offset: usize, message: String, help: &str| {
            let (line, column) = line_col(text, offset);
            BaselineError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
                help: help.to_owned(),
            }
        };
        let baseline: Baseline = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().to_owned(), HELP)
        })?;
        let spans: Spans =
            toml::from_str(text).map_err(|e| invalid(0, e.message().to_owned(), HELP))?;
        for (entry, span) in baseline.accepted.iter().zip(&spans.accepted) {
            if entry.reason.trim().is_empty() {
                return Err(invalid(
                    span.span().start,
                    format!(
                        "the accepted divergence of {:?} (section {:?}) has no reason",
                        entry.documented, entry.section
                    ),
                    "write in `reason` why the lesson may differ here, or remove the entry and fix the lesson",
                ));
            }
        }
        Ok(baseline)
    }

    /// Reads a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Baseline::parse(&text, path)
    }

    /// Marks the report's drifting lines this baseline accepts, and lists its stale entries.
    pub fn apply(&self, report: &mut DriftReport) {
        let mut used = vec![false; self.accepted.len()];
        for block in &mut report.blocks {
            let section = normalise(&block.section);
            for line in &mut block.lines {
                if line.status != LineStatus::Drift {
                    continue;
                }
                let key = (section.clone(), normalise(&line.documented));
                if let Some(i) = self.accepted.iter().position(|a| a.key() == key) {
                    used[i] = true;
                    line.accepted = Some(self.accepted[i].reason.clone());
                }
            }
        }
        // An entry whose block did not run here says nothing either way: not stale.
        let unseen = |a: &Accepted| {
            !report.blocks.iter().any(|b| {
                normalise(&b.section) == a.key().0
                    && b.documented.iter().any(|d| normalise(&d.text) == a.key().1)
                    && !b.lines.is_empty()
            })
        };
        report.stale = self
            .accepted
            .iter()
            .zip(&used)
            .filter(|(a, used)| !**used && !unseen(a))
            .map(|(a, _)| StaleEntry {
                section: a.section.clone(),
                documented: a.documented.clone(),
                reason: a.reason.clone(),
            })
            .collect();
    }

    /// The baseline that accepts exactly the divergences of `reports`, keeping the reasons
    /// this one gives; new entries have an empty reason, which a maintainer must fill in.
    pub fn updated(&self, reports: &[DriftReport]) -> Baseline {
        let mut accepted: Vec<Accepted> = Vec::new();
        for report in reports {
            for block in &report.blocks {
                for line in block.lines.iter().filter(|l| l.status == LineStatus::Drift) {
                    let mut entry = Accepted {
                        section: block.section.clone(),
                        documented: line.documented.clone(),
                        actual: line.actual.clone(),
                        reason: String::new(),
                    };
                    if accepted.iter().any(|a| a.key() == entry.key()) {
                        continue;
                    }
                    if let Some(old) = self.accepted.iter().find(|a| a.key() == entry.key()) {
                        entry.reason = old.reason.clone();
                    }
                    accepted.push(entry);
                }
            }
        }
        // Entries for blocks that did not run in these reports stay as they are.
        for old in &self.accepted {
            let ran = reports.iter().any(|r| {
                r.blocks.iter().any(|b| {
                    normalise(&b.section) == old.key().0
                        && b.documented
                            .iter()
                            .any(|d| normalise(&d.text) == old.key().1)
                        && !b.lines.is_empty()
                })
            });
            if !ran && !accepted.iter().any(|a| a.key() == old.key()) {
                accepted.push(old.clone());
            }
        }
        Baseline { accepted }
    }

    /// The file's text: a header saying what it is, then the entries.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# Divergences between the lesson and what its commands print that the course accepts.\n\
             # One [[accepted]] entry per documented line (by section and text), each with the\n\
             # reason it is fine. `labgrade drift LESSON --update-baseline` rewrites this file and\n\
             # keeps the reasons; an entry without a reason is an error until one is written.\n\n{body}"
        )
    }

    /// Writes the baseline atomically (a temp file beside it, renamed over it).
    pub fn write(&self, path: &Path) -> Result<(), BaselineError> {
        labgrade_fs::write_atomically(path, self.to_toml().as_bytes()).map_err(|source| {
            BaselineError::Write {
                path: path.to_owned(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::*;

    fn report(lines: &[(&str, LineStatus)]) -> DriftReport {
        DriftReport {
            schema_version: SCHEMA_VERSION,
            lesson: "l.md".into(),
            guest: "host".into(),
            kernel_release: None,
            baseline: None,
            blocks: vec![BlockReport {
                line: 1,
                section: "S".into(),
                status: BlockStatus::Drift,
                reason: None,
                exit_code: Some(0),
                documented: lines
                    .iter()
                    .enumerate()
                    .map(|(i, (t, _))| DocumentedText {
                        line: i + 2,
                        text: (*t).into(),
                    })
                    .collect(),
                actual: Some(String::new()),
                lines: lines
                    .iter()
                    .enumerate()
                    .map(|(i, (t, s))| LineReport {
                        line: i + 2,
                        origin: crate::extract::DocOrigin::OutputBlock,
                        documented: (*t).into(),
                        status: *s,
                        actual: Some("real".into()),
                        accepted: None,
                    })
                    .collect(),
            }],
            stale: vec![],
            notes: vec![],
            duration_ms: 0,
        }
    }

    #[test]
    fn accepts_by_section_and_text_and_reports_stale_entries() {
        let baseline = Baseline::parse(
            "[[accepted]]\nsection = \"S\"\ndocumented = \"a   b\"\nreason = \"abridged\"\n\
             [[accepted]]\nsection = \"S\"\ndocumented = \"c\"\nreason = \"fixed since\"\n",
            Path::new("b.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut r = report(&[
            ("a b", LineStatus::Drift),
            ("c", LineStatus::Match),
            ("d", LineStatus::Drift),
        ]);
        baseline.apply(&mut r);
        assert_eq!(r.blocks[0].lines[0].accepted.as_deref(), Some("abridged"));
        assert_eq!(r.blocks[0].lines[2].accepted, None);
        assert_eq!(r.stale.len(), 1);
        assert_eq!(r.stale[0].documented, "c");
        assert_eq!(r.totals().new_drift, 1);
        assert_eq!(r.totals().accepted, 1);
    }

    #[test]
    fn update_keeps_reasons_and_drops_stale_entries() {
        let old = Baseline {
            accepted: vec![
                Accepted {
                    section: "S".into(),
                    documented: "a".into(),
                    actual: None,
                    reason: "why".into(),
                },
                Accepted {
                    section: "S".into(),
                    documented: "gone".into(),
                    actual: None,
                    reason: "old".into(),
                },
            ],
        };
        let r = report(&[
            ("a", LineStatus::Drift),
            ("new", LineStatus::Drift),
            ("gone", LineStatus::Match),
        ]);
        let new = old.updated(&[r]);
        let got: Vec<_> = new
            .accepted
            .iter()
            .map(|a| (a.documented.as_str(), a.reason.as_str()))
            .collect();
        assert_eq!(got, [("a", "why"), ("new", "")]);
        let text = new.to_toml();
        let err = Baseline::parse(&text, Path::new("b.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("b.toml:") && err.contains("has no reason"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let err = Baseline::parse(
            "[[accepted]]\nsection = \"S\"\ndocumented = 3\nreason = \"x\"\n",
            Path::new("b.toml"),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("b.toml:3:"), "{err}");
        let err = Baseline::parse(
            "[[accepted]]\nsection = \"S\"\ndocumented = \"d\"\nreasn = \"x\"\n",
            Path::new("b.toml"),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.starts_with("b.toml:4:") && err.contains("reasn"),
            "{err}"
        );
    }
}
