//! Grading every submission under a directory: `OUT/<name>/results.json` (Gradescope's shape)
//! and `OUT/<name>/report.json` (the full report) written atomically, `OUT/summary.csv`, and a
//! rerun keeps what is already graded unless forced. A submission the grader failed on is marked
//! `error` with its reason (never a 0) and is graded again on the next run.
//!
//! Each submission gets a guest of its own from the caller's [`GuestFactory`], dropped once it
//! is graded: on a VM guest the student is root in the machine, so a shared one would let one
//! submission read, change or power off another's (a submission's own tasks share its VM).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use labgrade_guest::Guest;

use crate::assignment::Assignment;
use crate::grade::grade_submission;
use crate::render::render_gradescope;
use crate::report::{GradeReport, GradeStatus};

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Submissions graded at once.
    pub jobs: usize,
    /// Where results go.
    pub out: PathBuf,
    /// Grade again what is already graded.
    pub force: bool,
}

/// One submission's line in `summary.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// The submission's directory name.
    pub name: String,
    /// Its report (fresh, or kept from an earlier run).
    pub report: GradeReport,
    /// It was kept from an earlier run, not graded now.
    pub kept: bool,
}

/// What a batch did, for the exit code and the timing report.
#[derive(Debug, Clone, Default)]
pub struct BatchSummary {
    /// Every submission, in name order.
    pub entries: Vec<BatchEntry>,
}

impl BatchSummary {
    /// Submissions the grader failed on.
    pub fn errors(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.report.status == GradeStatus::Error)
            .count()
    }

    /// Where the time of the freshly graded tasks went, summed over tasks, in ms: session,
    /// sandbox, setup, student, checks.
    pub fn time_split(&self) -> [(&'static str, u64); 5] {
        let mut t = [0u64; 5];
        for run in self
            .entries
            .iter()
            .filter(|e| !e.kept)
            .flat_map(|e| &e.report.tasks)
            .filter_map(|t| t.run.as_ref())
        {
            t[0] += run.session_ms;
            t[1] += run.sandbox_ms;
            t[2] += run.setup_ms;
            t[3] += run.student_ms;
            t[4] += run.checks_ms;
        }
        [
            ("agent session start", t[0]),
            ("sandbox set-up", t[1]),
            ("assignment setup", t[2]),
            ("student code", t[3]),
            ("checks", t[4]),
        ]
    }
}

/// Why a batch could not run at all (unreadable input, unwritable output).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct BatchError {
    /// The file or directory.
    pub path: String,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BatchError + '_ {
    move |source| BatchError {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `text` to `path` atomically (see [`labgrade_fs::write_atomically`]).
fn write_atomically(path: &Path, text: &str) -> Result<(), BatchError> {
    labgrade_fs::write_atomically(path, text.as_bytes()).map_err(io_err(path))
}

/// A kept report: graded earlier, same assignment, readable.
fn kept(out: &Path, assignment: &Assignment) -> Option<GradeReport> {
    let text = std::fs::read_to_string(out.join("report.json")).ok()?;
    let r: GradeReport = serde_json::from_str(&text).ok()?;
    (r.status == GradeStatus::Graded && r.assignment == assignment.id).then_some(r)
}

/// Makes the guest one submission is graded on: a fresh VM for a VM backend (booted on its first
/// task, stopped when dropped); the host guest already gives every task a fresh sandbox, so a
/// new handle of it is all it takes.
pub type GuestFactory<'a> = dyn Fn() -> Box<dyn Guest> + Sync + 'a;

/// Grades every subdirectory of `parent`, each on a guest of its own from `guest_for`.
/// `on_done` is called as each finishes (progress).
pub fn grade_batch(
    guest_for: &GuestFactory<'_>,
    assignment: &Assignment,
    parent: &Path,
    options: &BatchOptions,
    on_done: &(dyn Fn(&BatchEntry) + Sync),
) -> Result<BatchSummary, BatchError> {
    let mut names: Vec<String> = std::fs::read_dir(parent)
        .map_err(io_err(parent))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    std::fs::create_dir_all(&options.out).map_err(io_err(&options.out))?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<BatchEntry, BatchError>>>> =
        Mutex::new(names.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.clamp(1, names.len().max(1)) {
            scope.spawn(|| {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let i = names.iter().position(|n| n == name).unwrap_or(0);
                    let entry = one(guest_for, assignment, parent, name, options);
                    if let Ok(e) = &entry {
                        on_done(e);
                    }
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(entry);
                    }
                }
            });
        }
    });
    let mut summary = BatchSummary::default();
    for r in results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
    {
        summary.entries.push(r?);
    }
    let mut csv = String::from("submission,score,max_score,status\n");
    for e in &summary.entries {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            csv_field(&e.name),
            e.report.score.map_or(String::new(), |s| s.to_string()),
            e.report.max_score,
            e.report.status.word()
        ));
    }
    write_atomically(&options.out.join("summary.csv"), &csv)?;
    Ok(summary)
}

fn one(
    guest_for: &GuestFactory<'_>,
    assignment: &Assignment,
    parent: &Path,
    name: &str,
    options: &BatchOptions,
) -> Result<BatchEntry, BatchError> {
    let out = options.out.join(name);
    if !options.force
        && let Some(report) = kept(&out, assignment)
    {
        return Ok(BatchEntry {
            name: name.to_owned(),
            report,
            kept: true,
        });
    }
    let report = {
        // Dropped (its VM stopped) before the next submission of this worker gets one.
        let guest = guest_for();
        grade_submission(guest.as_ref(), assignment, &parent.join(name))
    };
    std::fs::create_dir_all(&out).map_err(io_err(&out))?;
    let bad = |e: serde_json::Error| BatchError {
        path: out.display().to_string(),
        source: std::io::Error::other(e),
    };
    write_atomically(
        &out.join("results.json"),
        &(render_gradescope(&report).map_err(bad)? + "\n"),
    )?;
    write_atomically(
        &out.join("report.json"),
        &(serde_json::to_string_pretty(&report).map_err(bad)? + "\n"),
    )?;
    Ok(BatchEntry {
        name: name.to_owned(),
        report,
        kept: false,
    })
}

/// A CSV field, quoted when it holds a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labgrade_guest::{AgentSession, GuestError};
    use std::sync::Arc;

    /// A guest that cannot start a session, counting the guests alive and the sessions each saw.
    #[derive(Debug)]
    struct Counted {
        alive: Arc<AtomicUsize>,
        sessions: AtomicUsize,
        most_sessions: Arc<AtomicUsize>,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Guest for Counted {
        fn name(&self) -> String {
            "counted".into()
        }

        fn start_session(&self) -> Result<AgentSession, GuestError> {
            let n = self.sessions.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_sessions.fetch_max(n, Ordering::SeqCst);
            Err(GuestError::Agent {
                message: "no agent here".into(),
                stderr: String::new(),
            })
        }
    }

    #[test]
    fn every_submission_gets_a_guest_of_its_own_dropped_once_graded() -> Result<(), BatchError> {
        let io = |source| BatchError {
            path: "temp".into(),
            source,
        };
        let assignment = crate::load_assignment(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assignments/overlay-basics"),
        )
        .map_err(|e| io(std::io::Error::other(format!("{e:?}"))))?;
        let subs = tempfile::tempdir().map_err(io)?;
        let out = tempfile::tempdir().map_err(io)?;
        for name in ["a", "b", "c"] {
            let dir = subs.path().join(name);
            std::fs::create_dir(&dir).map_err(io)?;
            for t in &assignment.tasks {
                std::fs::write(dir.join(&t.entry), "true\n").map_err(io)?;
            }
        }
        let (made, alive, most_alive) = (
            AtomicUsize::new(0),
            Arc::new(AtomicUsize::new(0)),
            AtomicUsize::new(0),
        );
        let most_sessions = Arc::new(AtomicUsize::new(0));
        let summary = grade_batch(
            &|| {
                made.fetch_add(1, Ordering::SeqCst);
                let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
                most_alive.fetch_max(now, Ordering::SeqCst);
                Box::new(Counted {
                    alive: Arc::clone(&alive),
                    sessions: AtomicUsize::new(0),
                    most_sessions: Arc::clone(&most_sessions),
                })
            },
            &assignment,
            subs.path(),
            &BatchOptions {
                jobs: 2,
                out: out.path().to_path_buf(),
                force: false,
            },
            &|_| {},
        )?;
        assert_eq!(summary.entries.len(), 3);
        assert_eq!(
            summary.errors(),
            3,
            "no agent, so the grader failed on each"
        );
        assert_eq!(made.load(Ordering::SeqCst), 3, "one guest per submission");
        assert_eq!(alive.load(Ordering::SeqCst), 0, "each dropped once graded");
        assert!(
            most_alive.load(Ordering::SeqCst) <= 2,
            "no more than --jobs at once"
        );
        // A submission's own tasks share its guest.
        assert_eq!(most_sessions.load(Ordering::SeqCst), assignment.tasks.len());
        Ok(())
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("alice"), "alice");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
