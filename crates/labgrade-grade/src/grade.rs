//! Grading one submission on a guest: a fresh session and sandbox per task, checks from the state
//! it left. The system-touching edge; the deciding is in [`crate::judge`].

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use labgrade_guest::Guest;
use labgrade_spec::Fact;

use crate::assignment::{Assignment, Task, TaskFact};
use crate::judge::{score_check, unjudged};
use crate::report::{GradeReport, GradeStatus, SCHEMA_VERSION, TaskReport, TaskRun, TaskStatus};
use crate::wire::SandboxRequest;

/// Largest entry file read from a submission.
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// `$LAB` inside a sandbox, as the mount table shows it.
const LAB: &str = "/tmp/lab";

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Grades `submission` (a directory holding entry files). Never fails: trouble on the grader's
/// side makes an `error` report with the reason and no score.
pub fn grade_submission(
    guest: &dyn Guest,
    assignment: &Assignment,
    submission: &Path,
) -> GradeReport {
    let started = Instant::now();
    let mut report = GradeReport {
        schema_version: SCHEMA_VERSION,
        assignment: assignment.id.clone(),
        title: assignment.title.clone(),
        submission: submission
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        guest: guest.name(),
        status: GradeStatus::Graded,
        reason: None,
        score: None,
        max_score: assignment.max_score(),
        tasks: Vec::new(),
        duration_ms: 0,
    };
    if !submission.is_dir() {
        report.status = GradeStatus::Error;
        report.reason = Some(format!("{} is not a directory", submission.display()));
        return report;
    }
    for task in &assignment.tasks {
        let t = grade_task(guest, task, submission);
        if t.status == TaskStatus::Error && report.reason.is_none() {
            report.status = GradeStatus::Error;
            report.reason = Some(format!(
                "task {}: {}",
                t.id,
                t.reason.clone().unwrap_or_default()
            ));
        }
        report.tasks.push(t);
    }
    if report.status == GradeStatus::Graded {
        report.score = Some(report.tasks.iter().map(|t| t.score).sum());
    }
    report.duration_ms = ms(started);
    report
}

/// The entry file's bytes, or why there are none usable. Opened without following a symlink
/// (a link to /etc/shadow must not be read by a root grader and echoed back) and capped.
fn read_entry(submission: &Path, entry: &str) -> Result<Vec<u8>, String> {
    let path = submission.join(entry);
    let file = std::fs::OpenOptions::new()
        .read(true)
        // Never blocks: a FIFO (or a device) named like an entry file is refused below, not
        // waited on in open().
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("the submission has no {entry}"),
            _ if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
                format!("{entry} is a symbolic link; submit the file itself")
            }
            _ => format!("cannot read {entry}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {entry}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{entry} is not a regular file"));
    }
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(format!(
            "{entry} is {} bytes; at most {MAX_ENTRY_BYTES} are graded",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENTRY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {entry}: {e}"))?;
    Ok(bytes)
}

fn grade_task(guest: &dyn Guest, task: &Task, submission: &Path) -> TaskReport {
    let mut report = TaskReport {
        id: task.id.clone(),
        title: task.title.clone(),
        entry: task.entry.clone(),
        status: TaskStatus::Graded,
        reason: None,
        score: 0,
        max_score: task.max_score(),
        lesson: task.lesson.clone(),
        run: None,
        checks: Vec::new(),
    };
    let script = match read_entry(submission, &task.entry) {
        Ok(s) => s,
        Err(why) => {
            report.status = TaskStatus::Missing;
            report.checks = task.checks.iter().map(|c| unjudged(c, &why)).collect();
            report.reason = Some(why);
            return report;
        }
    };
    match run_and_judge(guest, task, script, &mut report) {
        Ok(()) => {
            report.score = report.checks.iter().map(|c| c.score).sum();
        }
        Err(why) => {
            report.status = TaskStatus::Error;
            report.reason = Some(why);
            report.checks.clear();
        }
    }
    report
}

fn run_and_judge(
    guest: &dyn Guest,
    task: &Task,
    script: Vec<u8>,
    report: &mut TaskReport,
) -> Result<(), String> {
    let started = Instant::now();
    let mut session = guest.start_session().map_err(|e| e.to_string())?;
    let session_ms = ms(started);
    // Once the task is sent, a machine that shuts itself down is the task's doing (only the
    // assignment's setup and the student's code run in it, and the machine is this
    // submission's alone): the task earns nothing, it is not the grader's error.
    let mut stopped = None;
    let mut result = (|| {
        let outcome = session
            .run_sandboxed(SandboxRequest {
                setup: task.setup.clone(),
                entry: task.entry.clone(),
                script,
                limits: task.limits,
                user_namespace: !guest.is_machine_boundary(),
            })
            .map_err(|e| {
                if e.is_stopped_by_guest() {
                    stopped = Some(e.to_string());
                }
                e.to_string()
            })?;
        if let Some(e) = outcome.setup_error {
            return Err(format!("the assignment's setup failed: {e}"));
        }
        let checks_started = Instant::now();
        let mut paths: Vec<String> = Vec::new();
        let mut text_of: Vec<String> = Vec::new();
        let mut wants_mounts = false;
        let mut layers: Vec<String> = Vec::new();
        for fact in task.checks.iter().flat_map(|c| &c.facts) {
            match fact {
                TaskFact::Overlay(o) => {
                    wants_mounts = true;
                    for l in o.lower.iter().chain(&o.upper).chain(&o.work) {
                        if !layers.contains(l) {
                            layers.push(l.clone());
                        }
                    }
                }
                TaskFact::Path(c) => {
                    if !paths.contains(&c.path) {
                        paths.push(c.path.clone());
                    }
                    if matches!(c.fact, Fact::Content(_) | Fact::Contains(_))
                        && !text_of.contains(&c.path)
                    {
                        text_of.push(c.path.clone());
                    }
                }
            }
        }
        let facts = session.inspect(paths, text_of).map_err(|e| e.to_string())?;
        let mounts = if wants_mounts {
            session.mounts(layers).map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        report.checks = task
            .checks
            .iter()
            .map(|c| score_check(c, &facts, &mounts, LAB))
            .collect();
        report.run = Some(TaskRun {
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            timed_out: outcome.timed_out,
            memory_limit_hit: outcome.memory_limit_hit,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            stdout_bytes: outcome.stdout_bytes,
            stderr_bytes: outcome.stderr_bytes,
            isolation: outcome.isolation,
            session_ms,
            sandbox_ms: outcome.sandbox_ms,
            setup_ms: outcome.setup_ms,
            student_ms: outcome.student_ms,
            checks_ms: ms(checks_started),
        });
        Ok(())
    })();
    if let Some(why) = stopped {
        // Its first line: the console's tail is the grader's to read, not the student's.
        let why = why.lines().next().unwrap_or_default().to_owned();
        report.checks = task.checks.iter().map(|c| unjudged(c, &why)).collect();
        report.reason = Some(why);
        result = Ok(());
    }
    let _ = session.shutdown();
    result
}
