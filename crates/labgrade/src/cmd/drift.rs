//! `labgrade drift LESSON.md`: run the lesson's own shell blocks as a student would and point at
//! every documented output line that is no longer true; `--fix` writes the new truth back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use labgrade_lesson::{Baseline, DriftReport, KernelsReport, Lesson, RunMeta, RunOptions};

use crate::exit::{self, CliError};

/// Output formats of a drift report.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// For a person at a terminal.
    Human,
    /// The report as data (`schema_version` 1).
    Json,
    /// A page to attach to a pull request.
    Markdown,
}

/// Arguments of `labgrade drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// The lesson (markdown).
    lesson: PathBuf,
    /// Where to run: `host` (private namespaces, private /tmp) or `qemu:KERNEL`.
    #[arg(long, default_value = "host", conflicts_with = "kernels")]
    guest: String,
    /// Run on each of these kernels under QEMU (e.g. debian:5.10,debian:6.1,debian:6.12,debian:7)
    /// and show per documented line where it holds.
    #[arg(long, value_delimiter = ',')]
    kernels: Vec<String>,
    /// For qemu guests: kvm, tcg, or auto.
    #[arg(long, default_value = "auto", value_parser = str::parse::<labgrade_qemu::Accel>)]
    accel: labgrade_qemu::Accel,
    /// Accepted divergences (TOML). Default: LESSON's name with `.drift.toml`, beside it, if
    /// that exists.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Write the baseline from this run's divergences, keeping the reasons already written (new
    /// entries need a reason before the baseline is accepted).
    #[arg(long)]
    update_baseline: bool,
    /// Rewrite the lesson (atomically): each new drifting documented line becomes what the
    /// command really prints.
    #[arg(long, conflicts_with = "kernels")]
    fix: bool,
    /// With --fix: print the change as a unified diff instead of writing it.
    #[arg(long, requires = "fix")]
    diff: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Seconds one block may run before it is stopped and reported.
    #[arg(long, default_value_t = 60)]
    block_timeout: u64,
}

fn default_baseline(lesson: &Path) -> PathBuf {
    lesson.with_extension("drift.toml")
}

fn read_lesson(path: &Path) -> Result<(String, Lesson), CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the lesson {}: {e}; give the path of a markdown file",
            path.display()
        ))
    })?;
    let lesson = labgrade_lesson::extract(&text);
    if lesson.blocks.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: no shell code blocks found (```bash, ```sh, ```console, or unlabelled blocks of commands); is this the lesson?",
            path.display()
        )));
    }
    Ok((text, lesson))
}

/// Runs the lesson on each guest asked, judges, renders; exit 1 on new drift or a hanging block.
pub fn run(args: &DriftArgs) -> Result<ExitCode, CliError> {
    let (text, lesson) = read_lesson(&args.lesson)?;
    let baseline_path = match &args.baseline {
        Some(p) => Some(p.clone()),
        None => Some(default_baseline(&args.lesson)).filter(|p| p.exists() || args.update_baseline),
    };
    let baseline = match &baseline_path {
        // A named baseline must exist, unless this run is to write it.
        Some(p) if p.exists() || (args.baseline.is_some() && !args.update_baseline) => {
            Baseline::load(p)?
        }
        _ => Baseline::default(),
    };
    let guests: Vec<String> = if args.kernels.is_empty() {
        vec![args.guest.clone()]
    } else {
        args.kernels.iter().map(|k| format!("qemu:{k}")).collect()
    };
    let options = RunOptions {
        block_timeout: Duration::from_secs(args.block_timeout.max(1)),
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut reports = Vec::with_capacity(guests.len());
    for name in &guests {
        bar.set_message(format!("running {} on {name}", args.lesson.display()));
        let resolved = crate::guests::resolve(
            name,
            &crate::guests::GuestOptions::for_labs(args.accel, 1, &[], None),
        )?;
        let ran = labgrade_lesson::run_lesson(&lesson, resolved.guest.as_ref(), &options)?;
        let mut report = labgrade_lesson::judge(
            &lesson,
            &ran,
            &RunMeta {
                lesson: args.lesson.display().to_string(),
                guest: name.clone(),
                kernel_release: resolved.kernel_release,
            },
        );
        report.baseline = baseline_path
            .as_ref()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string());
        baseline.apply(&mut report);
        reports.push(report);
    }
    bar.finish_and_clear();
    if args.update_baseline
        && let Some(path) = &baseline_path
    {
        let new = baseline.updated(&reports);
        new.write(path)?;
        let unexplained = new
            .accepted
            .iter()
            .filter(|a| a.reason.trim().is_empty())
            .count();
        eprintln!(
            "wrote {} ({} entries, {unexplained} without a reason: write one for each)",
            path.display(),
            new.accepted.len()
        );
    }
    let failed = reports.iter().any(|r| r.totals().has_failures());
    let out = if args.kernels.is_empty() && reports.len() == 1 {
        let report = reports.remove(0);
        if args.fix {
            fix(args, &text, &report)?;
        }
        render(&report, args.format)?
    } else {
        let report = KernelsReport::new(args.lesson.display().to_string(), reports);
        render_kernels(&report, args.format)?
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(exit::for_drift(failed))
}

fn fix(args: &DriftArgs, text: &str, report: &DriftReport) -> Result<(), CliError> {
    let fixes = labgrade_lesson::fix::fixes(report);
    let fixed = labgrade_lesson::fix::apply(text, &fixes);
    if args.diff {
        let diff =
            labgrade_lesson::fix::unified_diff(text, &fixed, &args.lesson.display().to_string());
        let _ = std::io::stdout().lock().write_all(diff.as_bytes());
        return Ok(());
    }
    if fixed != text {
        labgrade_fs::write_atomically(&args.lesson, fixed.as_bytes()).map_err(|source| {
            CliError::Output {
                path: args.lesson.display().to_string(),
                source,
            }
        })?;
        eprintln!(
            "fixed {} documented lines in {}",
            fixes.len(),
            args.lesson.display()
        );
    }
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CliError::Output {
            path: "stdout".into(),
            source: std::io::Error::other(e),
        })
}

fn render(report: &DriftReport, format: Format) -> Result<String, CliError> {
    Ok(match format {
        Format::Human => labgrade_lesson::render::human(report),
        Format::Json => json(report)?,
        Format::Markdown => labgrade_lesson::render::markdown(report),
    })
}

fn render_kernels(report: &KernelsReport, format: Format) -> Result<String, CliError> {
    Ok(match format {
        Format::Human => labgrade_lesson::render::kernels_human(report),
        Format::Json => json(report)?,
        Format::Markdown => labgrade_lesson::render::kernels_markdown(report),
    })
}
