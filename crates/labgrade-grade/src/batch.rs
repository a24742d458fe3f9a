//! Grading every submission under a directory: `OUT/<name>/results.json` (Gradescope's shape)
//! and `OUT/<name>/report.json` (the full report) written atomically, `OUT/summary.csv`, and a
//! rerun keeps what is already graded unless forced. A submission the grader failed on is marked
//! `error` with its reason (never a 0) and is graded again on the next run.
//!
//! `summary.csv` is rewritten (atomically) as each submission finishes, listing those done so
//! far in name order, so a batch killed by one submission that hangs or crashes the grader
//! still leaves the summary of every other. A folder is read by its real name; its results and
//! its summary line go under [`escape::file_name`] of it, printable and distinct for distinct
//! folders even when names are not UTF-8.
//!
//! Each submission gets a guest of its own from the caller's [`GuestFactory`], dropped once it
//! is graded: on a VM guest the student is root in the machine, so a shared one would let one
//! submission read, change or power off another's (a submission's own tasks share its VM).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use labgrade_guest::Guest;

use crate::assignment::Assignment;
use crate::escape;
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
    /// The submission's directory name, printable: as [`escape::file_name`] writes it (the
    /// name itself unless it holds bytes that are not UTF-8, control characters or a
    /// backslash). Its results are under `OUT/<name>/`.
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

/// A submission folder: its real name, to read it by, and the printable, distinct name its
/// results and summary line go under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Folder {
    dir: OsString,
    name: String,
}

/// The subdirectories of `parent` a batch grades (not hidden ones), in byte order of names.
fn folders(parent: &Path) -> Result<Vec<Folder>, BatchError> {
    let mut dirs: Vec<OsString> = std::fs::read_dir(parent)
        .map_err(io_err(parent))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .filter(|n| !n.as_bytes().starts_with(b"."))
        .collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .map(|dir| Folder {
            name: escape::file_name(&dir),
            dir,
        })
        .collect())
}

/// `summary.csv`'s text for the submissions done so far, in name order.
fn summary_csv<'a>(done: impl Iterator<Item = &'a BatchEntry>) -> String {
    let mut csv = String::from("submission,score,max_score,status\n");
    for e in done {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            csv_field(&e.name),
            e.report.score.map_or(String::new(), |s| s.to_string()),
            e.report.max_score,
            e.report.status.word()
        ));
    }
    csv
}

/// What the workers share: each submission's outcome once it is done, and the first failure
/// to write `summary.csv`.
struct Progress {
    done: Vec<Option<Result<BatchEntry, BatchError>>>,
    summary_error: Option<BatchError>,
}

/// Makes the guest one submission is graded on: a fresh VM for a VM backend (booted on its first
/// task, stopped when dropped); the host guest already gives every task a fresh sandbox, so a
/// new handle of it is all it takes.
pub type GuestFactory<'a> = dyn Fn() -> Box<dyn Guest> + Sync + 'a;

/// Grades every subdirectory of `parent`. `on_done` is called as each finishes (progress), after
/// `summary.csv` lists it.
pub fn grade_batch(
    guest_for: &GuestFactory<'_>,
    assignment: &Assignment,
    parent: &Path,
    options: &BatchOptions,
    on_done: &(dyn Fn(&BatchEntry) + Sync),
) -> Result<BatchSummary, BatchError> {
    let folders = folders(parent)?;
    std::fs::create_dir_all(&options.out).map_err(io_err(&options.out))?;
    let summary_path = options.out.join("summary.csv");
    let next = AtomicUsize::new(0);
    let progress = Mutex::new(Progress {
        done: folders.iter().map(|_| None).collect(),
        summary_error: None,
    });
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.clamp(1, folders.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(folder) = folders.get(i) else { break };
                    let entry = one(guest_for, assignment, parent, folder, options);
                    let Ok(mut p) = progress.lock() else { break };
                    let finished = entry.as_ref().ok().cloned();
                    p.done[i] = Some(entry);
                    // Rewritten under the lock, so a later summary is never overwritten by an
                    // earlier one.
                    let csv = summary_csv(p.done.iter().flatten().filter_map(|r| r.as_ref().ok()));
                    if let Err(e) = write_atomically(&summary_path, &csv) {
                        p.summary_error.get_or_insert(e);
                    }
                    drop(p);
                    if let Some(e) = &finished {
                        on_done(e);
                    }
                }
            });
        }
    });
    let progress = progress.into_inner().map_err(|_| BatchError {
        path: parent.display().to_string(),
        source: std::io::Error::other("a grading thread panicked"),
    })?;
    let mut summary = BatchSummary::default();
    for r in progress.done.into_iter().flatten() {
        summary.entries.push(r?);
    }
    if let Some(e) = progress.summary_error {
        return Err(e);
    }
    Ok(summary)
}

fn one(
    guest_for: &GuestFactory<'_>,
    assignment: &Assignment,
    parent: &Path,
    folder: &Folder,
    options: &BatchOptions,
) -> Result<BatchEntry, BatchError> {
    let name = folder.name.as_str();
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
    let mut report = {
        // Dropped (its VM stopped) before the next submission of this worker gets one.
        let guest = guest_for();
        grade_submission(guest.as_ref(), assignment, &parent.join(&folder.dir))
    };
    // The report names the submission as the summary does, not by a lossy decoding that two
    // folders can share.
    report.submission = name.to_owned();
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

/// A CSV field, quoted when it holds a comma, quote or newline. One a spreadsheet would take
/// for a formula (starting `=`, `+`, `-` or `@`: a folder a student named) gets a `'` first.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use labgrade_guest::{AgentSession, Guest, GuestError};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("alice"), "alice");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
    }

    /// A guest with no machine behind it: a submission that gets as far as running code is a
    /// grader error, one with no entry file is graded (0) without it.
    #[derive(Debug)]
    struct NoGuest;

    impl Guest for NoGuest {
        fn name(&self) -> String {
            "none".into()
        }
        fn start_session(&self) -> Result<AgentSession, GuestError> {
            Err(GuestError::Agent {
                message: "no guest in unit tests".into(),
                stderr: String::new(),
            })
        }
    }

    const ASSIGNMENT: &str = r#"title = "t"
lesson = "07.md"
[[task]]
id = "mount"
title = "mount it"
entry = "mount.sh"
points = 5
section = "Lab 1"
[[task.check]]
name = "lower kept"
points = 5
expect = [{ path = "lower/a", content = "a\n" }]
"#;

    fn assignment() -> Assignment {
        crate::parse_assignment(
            "a",
            Path::new("a"),
            Path::new("a/assignment.toml"),
            ASSIGNMENT,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn options(out: &Path) -> BatchOptions {
        BatchOptions {
            jobs: 1,
            out: out.to_owned(),
            force: false,
        }
    }

    /// A batch of the folders in `subs` on a guest that cannot start (see [`NoGuest`]), results
    /// into `out`, `on_done` called as each finishes.
    fn batch_without_guest(
        subs: &Path,
        out: &Path,
        on_done: &(dyn Fn(&BatchEntry) + Sync),
    ) -> Result<BatchSummary, BatchError> {
        grade_batch(
            &|| Box::new(NoGuest),
            &assignment(),
            subs,
            &options(out),
            on_done,
        )
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn mkdir(p: &Path) {
        std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    #[test]
    fn folders_whose_names_are_not_utf8_keep_their_own_results_and_summary_lines() {
        let subs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // Both decode lossily to "a\u{fffd}"; the third is really called `a\xff`.
        let with_code = subs.path().join(OsStr::from_bytes(b"a\xfe"));
        mkdir(&with_code);
        std::fs::write(with_code.join("mount.sh"), "true\n").unwrap_or_else(|e| panic!("{e}"));
        mkdir(&subs.path().join(OsStr::from_bytes(b"a\xff")));
        mkdir(&subs.path().join("a\\xff"));
        let s =
            batch_without_guest(subs.path(), out.path(), &|_| {}).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = s.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a\\x5cxff", "a\\xfe", "a\\xff"]);
        assert_eq!(
            read(&out.path().join("summary.csv")),
            "submission,score,max_score,status\n\
             a\\x5cxff,0,5,graded\n\
             a\\xfe,,5,error\n\
             a\\xff,0,5,graded\n"
        );
        for (name, status) in [
            ("a\\xfe", "error"),
            ("a\\xff", "graded"),
            ("a\\x5cxff", "graded"),
        ] {
            let r: GradeReport =
                serde_json::from_str(&read(&out.path().join(name).join("report.json")))
                    .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.submission.as_str(), r.status.word()), (name, status));
        }
    }

    #[test]
    fn the_summary_lists_each_submission_as_it_finishes_kept_ones_too() {
        let subs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for n in ["a", "c"] {
            mkdir(&subs.path().join(n));
        }
        let first =
            batch_without_guest(subs.path(), out.path(), &|_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert!(first.entries.iter().all(|e| !e.kept));
        for n in ["b", "d"] {
            mkdir(&subs.path().join(n));
        }
        // The grader dies on `c` (a hang or a crash, as far as the batch can tell): what was
        // done before it, and `c` itself, are in the summary it leaves.
        let seen = Mutex::new(Vec::new());
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch_without_guest(subs.path(), out.path(), &|e| {
                let csv = read(&out.path().join("summary.csv"));
                let line = format!("\n{},0,5,graded\n", e.name);
                assert!(csv.contains(&line), "{} is not in\n{csv}", e.name);
                if let Ok(mut s) = seen.lock() {
                    s.push((e.name.clone(), e.kept, csv.lines().count() - 1));
                }
                if e.name == "c" {
                    panic!("the grader died on c");
                }
            })
        }));
        assert!(died.is_err());
        assert_eq!(
            seen.into_inner().unwrap_or_default(),
            [
                ("a".to_owned(), true, 1),
                ("b".to_owned(), false, 2),
                ("c".to_owned(), true, 3)
            ]
        );
        assert_eq!(
            read(&out.path().join("summary.csv")),
            "submission,score,max_score,status\na,0,5,graded\nb,0,5,graded\nc,0,5,graded\n"
        );
    }
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
}
