//! `labgrade grade`: one submission (`--submission DIR`) or a batch (`--submissions PARENT
//! --out OUT`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use labgrade_grade::batch::{BatchEntry, BatchOptions};
use labgrade_grade::{AssignmentError, GradeReport, GradeStatus, render};

use crate::exit::{self, CliError};

/// Output formats of a grade report.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// For a grader at a terminal.
    Human,
    /// The report data as JSON (a stable contract, with `schema_version`).
    Json,
    /// Gradescope's `results.json`.
    Gradescope,
    /// The JSON GitHub Classroom's autograding reporter reads (base64 it into a `result` output).
    Classroom,
    /// JUnit XML, a suite per task and a case per check.
    Junit,
    /// Feedback a student reads.
    Markdown,
}

/// Arguments of `labgrade grade`.
#[derive(Debug, Args)]
pub struct GradeArgs {
    /// The assignment directory (holding `assignment.toml`).
    #[arg(long)]
    assignment: PathBuf,
    /// One submission directory.
    #[arg(
        long,
        conflicts_with = "submissions",
        required_unless_present = "submissions"
    )]
    submission: Option<PathBuf>,
    /// A directory of submissions, one subdirectory each (batch; needs --out).
    #[arg(long, requires = "out")]
    submissions: Option<PathBuf>,
    /// Where a batch writes OUT/<name>/results.json and OUT/summary.csv.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Grade again submissions a batch already graded.
    #[arg(long)]
    force: bool,
    /// Submissions graded at once in a batch (default: the number of CPUs).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Where to grade: `host` or `qemu:KERNEL` (e.g. `qemu:debian:6.1`).
    #[arg(long, default_value = "host")]
    guest: String,
    /// For qemu guests: kvm, tcg, or auto.
    #[arg(long, default_value = "auto", value_parser = str::parse::<labgrade_qemu::Accel>)]
    accel: labgrade_qemu::Accel,
    /// Report format of a single submission.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Write the report here (atomically) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

fn load(args: &GradeArgs) -> Result<labgrade_grade::Assignment, CliError> {
    labgrade_grade::load_assignment(&args.assignment).map_err(|e| match e {
        AssignmentError::Invalid(spec) => CliError::Spec(spec),
        read @ AssignmentError::Read { .. } => CliError::Usage(format!(
            "{read}\nhint: --assignment names a directory holding {}",
            labgrade_grade::ASSIGNMENT_FILE
        )),
    })
}

/// Renders one report in `format`.
pub fn render_report(report: &GradeReport, format: Format) -> Result<String, CliError> {
    let fail = |e: String| CliError::Output {
        path: "stdout".into(),
        source: std::io::Error::other(e),
    };
    Ok(match format {
        Format::Human => render::render_human(report),
        Format::Json => render::render_json(report).map_err(|e| fail(e.to_string()))? + "\n",
        Format::Gradescope => {
            render::render_gradescope(report).map_err(|e| fail(e.to_string()))? + "\n"
        }
        Format::Classroom => {
            render::render_classroom(report).map_err(|e| fail(e.to_string()))? + "\n"
        }
        Format::Junit => render::render_junit(report).map_err(|e| fail(e.to_string()))?,
        Format::Markdown => render::render_markdown(report),
    })
}

/// Exit code of one graded submission: 0 full score, 1 points lost, 3 the grader failed.
fn code_for(report: &GradeReport) -> u8 {
    match report.status {
        GradeStatus::Error => exit::INFRASTRUCTURE,
        GradeStatus::Graded if report.is_full_score() => exit::PASSED,
        GradeStatus::Graded => exit::FAILED,
    }
}

/// Grades and reports; the exit code follows the documented contract.
pub fn run(args: &GradeArgs) -> Result<ExitCode, CliError> {
    let assignment = load(args)?;
    let jobs = args
        .jobs
        .unwrap_or_else(labgrade_runner::default_jobs)
        .max(1);
    let options = crate::guests::GuestOptions {
        accel: args.accel,
        sessions: jobs,
        ..crate::guests::GuestOptions::default()
    };
    // A guest per submission: on qemu a VM of its own, seeing none of the host's files.
    let guests = crate::guests::resolve_for_grading(&args.guest, &options)?;
    if let (Some(parent), Some(out)) = (&args.submissions, &args.out) {
        if !parent.is_dir() {
            return Err(CliError::Usage(format!(
                "--submissions {}: not a directory",
                parent.display()
            )));
        }
        let started = Instant::now();
        let total = std::fs::read_dir(parent).map_or(0, |d| d.count());
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let on_done = |e: &BatchEntry| {
            let score = e.report.score.map_or("error".to_owned(), |s| {
                format!("{s}/{}", e.report.max_score)
            });
            bar.set_message(format!(
                "{} {score}{}",
                e.name,
                if e.kept { " (kept)" } else { "" }
            ));
            bar.inc(1);
        };
        let summary = labgrade_grade::batch::grade_batch(
            &|| guests.fresh(),
            &assignment,
            parent,
            &BatchOptions {
                jobs,
                out: out.clone(),
                force: args.force,
            },
            &on_done,
        )
        .map_err(|e| CliError::Output {
            path: e.path.clone(),
            source: e.source,
        })?;
        bar.finish_and_clear();
        let fresh = summary.entries.iter().filter(|e| !e.kept).count();
        let tasks: usize = summary
            .entries
            .iter()
            .filter(|e| !e.kept)
            .map(|e| e.report.tasks.len())
            .sum();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "graded {fresh} submissions ({tasks} tasks), kept {}, {} errors, in {:.1} s wall with --jobs {jobs}; summed task time:",
            summary.entries.len() - fresh,
            summary.errors(),
            started.elapsed().as_secs_f64()
        );
        for (what, ms) in summary.time_split() {
            let _ = writeln!(err, "  {what:<20} {:>8.1} s", ms as f64 / 1000.0);
        }
        for e in summary
            .entries
            .iter()
            .filter(|e| e.report.status == GradeStatus::Error)
        {
            let _ = writeln!(
                err,
                "error: {}: {}",
                e.name,
                e.report.reason.clone().unwrap_or_default()
            );
        }
        let worst = summary
            .entries
            .iter()
            .map(|e| code_for(&e.report))
            .max()
            .unwrap_or(exit::PASSED);
        return Ok(ExitCode::from(worst));
    }
    let Some(submission) = &args.submission else {
        return Err(CliError::Usage(
            "give --submission DIR, or --submissions PARENT --out OUT".into(),
        ));
    };
    let guest = guests.fresh();
    let report = labgrade_grade::grade_submission(guest.as_ref(), &assignment, submission);
    drop(guest);
    let text = render_report(&report, args.format)?;
    match &args.output {
        Some(path) => labgrade_fs::write_atomically(path, text.as_bytes()).map_err(|source| {
            CliError::Output {
                path: path.display().to_string(),
                source,
            }
        })?,
        None => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    Ok(ExitCode::from(code_for(&report)))
}
