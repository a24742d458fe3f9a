//! `labgrade run`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use labgrade_report::{LabReport, RunReport};
use labgrade_runner::RunOptions;

use crate::exit::{self, CliError};

/// Output formats of a run report.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// For a person at a terminal.
    Human,
    /// The report data as JSON (a stable contract).
    Json,
    /// JUnit XML, one test case per lab.
    Junit,
}

/// Arguments of `labgrade run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Labs to run: ids, lab files or lesson directories (all labs if none).
    labs_wanted: Vec<String>,
    /// Where to run: `host` (this machine, private namespaces) or `qemu:KERNEL` (e.g.
    /// `qemu:debian:6.1`; the kernel is fetched into the cache on first use) or `vagrant:NAME`
    /// (e.g. `vagrant:bookworm`, a directory under vagrant/).
    #[arg(long, default_value = "host")]
    guest: String,
    /// For qemu guests: kvm, tcg, or auto (kvm where it can run stock kernels).
    #[arg(long, default_value = "auto", value_parser = str::parse::<labgrade_qemu::Accel>)]
    accel: labgrade_qemu::Accel,
    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Write the report here (atomically) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Labs run at once (default: the number of CPUs).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Also print per-lab and per-step wall times (to stderr).
    #[arg(long)]
    timings: bool,
    /// Vagrant guests: leave the machine up afterwards, and reuse one kept before.
    #[arg(long)]
    keep: bool,
    /// The labs directory (one subdirectory per lesson).
    #[arg(long, default_value = crate::labs::DEFAULT_LABS_DIR)]
    labs: PathBuf,
    /// Container labs run on these engines (each engine's run is its own result; one that is
    /// not installed is skipped with the reason).
    #[arg(long, value_enum, default_value = "both")]
    engine: EngineChoice,
    /// Container labs run this image, pulled from its registry (e.g. the lesson's nginx:alpine),
    /// instead of labgrade's busybox image, which is imported and needs no network.
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
}

/// `--engine`: which engines container labs run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineChoice {
    /// Docker only.
    Docker,
    /// Podman only.
    Podman,
    /// Both (the default).
    Both,
}

impl EngineChoice {
    /// Whether a lab (run on `engine`, if any) is kept.
    pub fn keeps(self, engine: Option<labgrade_proto::Engine>) -> bool {
        match (self, engine) {
            (_, None) | (EngineChoice::Both, _) => true,
            (EngineChoice::Docker, Some(e)) => e == labgrade_proto::Engine::Docker,
            (EngineChoice::Podman, Some(e)) => e == labgrade_proto::Engine::Podman,
        }
    }
}

/// Runs the labs and renders the report; the exit code follows the documented contract.
pub fn run(args: &RunArgs) -> Result<ExitCode, CliError> {
    let mut labs = crate::labs::select(&args.labs, &args.labs_wanted)?;
    labs.retain(|l| args.engine.keeps(l.engine));
    let mut options = RunOptions::new(crate::guests::image_cache()?);
    if let Some(j) = args.jobs {
        options.jobs = j.max(1);
    }
    options.image = args.image.clone();
    let guest = crate::guests::resolve(
        &args.guest,
        &crate::guests::GuestOptions {
            keep: args.keep,
            ..crate::guests::GuestOptions::for_labs(args.accel, options.jobs, &labs, None)
        },
    )?
    .guest;
    let bar = ProgressBar::new(labs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let on_done = |r: &LabReport| {
        bar.set_message(format!("{} {}", r.status.word(), r.id));
        bar.inc(1);
    };
    options.expected_ms = crate::history::load(&args.guest);
    let report = labgrade_runner::run_labs(guest.as_ref(), &labs, options, &on_done)?;
    crate::history::save(&args.guest, &report);
    bar.finish_and_clear();
    let text = render(&report, args.format)?;
    match &args.output {
        Some(path) => write_atomically(path, &text)?,
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
        }
    }
    if args.timings {
        eprint!("{}", labgrade_report::render_timings(&report));
    }
    Ok(exit::for_run(&report))
}

pub(crate) fn render(report: &RunReport, format: Format) -> Result<String, CliError> {
    let fail = |e: String| CliError::Output {
        path: "stdout".into(),
        source: std::io::Error::other(e),
    };
    Ok(match format {
        Format::Human => labgrade_report::render_human(report),
        Format::Json => {
            labgrade_report::render_json(report).map_err(|e| fail(e.to_string()))? + "\n"
        }
        Format::Junit => labgrade_report::render_junit(report).map_err(|e| fail(e.to_string()))?,
    })
}

/// Writes to a temporary file beside `path` and renames it over: a reader never sees half a report.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    labgrade_fs::write_atomically(path, text.as_bytes()).map_err(|source| CliError::Output {
        path: path.display().to_string(),
        source,
    })
}
