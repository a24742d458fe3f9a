//! `labgrade matrix`: the same labs on several kernels at once, a table of results, and every
//! snapshot entry and kernel message that differs between them.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use labgrade_report::{LabReport, MatrixColumn, MatrixReport, Totals};
use labgrade_runner::RunOptions;

use crate::exit::{self, CliError};
use crate::guests::{GuestOptions, ResolvedGuest};

/// Output formats of a matrix.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MatrixFormat {
    /// For a person at a terminal.
    Human,
    /// The matrix as data.
    Json,
    /// A page a course maintainer can publish.
    Markdown,
    /// JUnit XML (for `matrix -- CMD`): one case per kernel, and the command's own cases.
    Junit,
}

/// Arguments of `labgrade matrix`.
#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Labs to run (ids, lab files or lesson dirs; all if none).
    labs_wanted: Vec<String>,
    /// Kernels, comma-separated, e.g. debian:5.10,debian:6.1,debian:6.12,debian:7.
    #[arg(long, value_delimiter = ',', required = true)]
    kernels: Vec<String>,
    /// Also run on the host guest, as one more column.
    #[arg(long)]
    host: bool,
    /// Guests running at once (default: the number of CPUs).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// kvm, tcg, or auto.
    #[arg(long, default_value = "auto", value_parser = str::parse::<labgrade_qemu::Accel>)]
    accel: labgrade_qemu::Accel,
    /// Mirror for kernel downloads (default: the machine's configured Debian mirror).
    #[arg(long)]
    mirror: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: MatrixFormat,
    /// Write the report here (atomically) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// The labs directory.
    #[arg(long, default_value = crate::labs::DEFAULT_LABS_DIR)]
    labs: PathBuf,
    /// An existing test suite to run instead of labs: `-- CMD [ARGS...]`.
    #[command(flatten)]
    suite: crate::cmd::suite::SuiteArgs,
}

/// Runs every lab on every guest, guests in parallel up to `--jobs`.
pub fn run(args: &MatrixArgs) -> Result<ExitCode, CliError> {
    if !args.suite.command.is_empty() {
        if !args.labs_wanted.is_empty() {
            return Err(CliError::Usage(
                "give labs or a command after `--`, not both".into(),
            ));
        }
        let settings = crate::cmd::suite::MatrixSettings {
            kernels: &args.kernels,
            host: args.host,
            jobs: args.jobs,
            accel: args.accel,
            mirror: args.mirror.clone(),
            format: args.format,
            output: args.output.as_deref(),
        };
        return crate::cmd::suite::run(&args.suite, &settings);
    }
    let started = Instant::now();
    let labs = crate::labs::select(&args.labs, &args.labs_wanted)?;
    let jobs = args
        .jobs
        .unwrap_or_else(labgrade_runner::default_jobs)
        .max(1);
    let mut names: Vec<String> = args
        .kernels
        .iter()
        .map(|k| format!("qemu:{}", k.trim()))
        .collect();
    if args.host {
        names.push("host".into());
    }
    // Kernels are fetched first, one after another: a cached kernel costs nothing.
    let options = GuestOptions::for_labs(args.accel, 1, &labs, args.mirror.clone());
    let mut guests: Vec<(String, Result<ResolvedGuest, String>)> = Vec::new();
    for name in &names {
        eprintln!("labgrade matrix: preparing {name}");
        // The user's mistakes end the command, as in `run`; trouble with one guest is a column.
        match crate::guests::resolve(name, &options) {
            Err(e) if e.exit_code() == exit::USAGE => return Err(e),
            resolved => guests.push((name.clone(), resolved.map_err(|e| e.to_string()))),
        }
    }

    let bar = ProgressBar::new((labs.len() * guests.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let images = crate::guests::image_cache()?;
    let next = AtomicUsize::new(0);
    let columns: Mutex<Vec<Option<MatrixColumn>>> = Mutex::new(vec![None; guests.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(guests.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((name, resolved)) = guests.get(i) else {
                        break;
                    };
                    // A bug of ours on one guest is that column's error, never a missing column.
                    let column = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        run_column(name, resolved, &labs, &images, &bar)
                    }))
                    .unwrap_or_else(|panic| {
                        MatrixColumn::failed(
                            name,
                            format!(
                                "labgrade itself failed: {}",
                                labgrade_runner::panic_text(&*panic)
                            ),
                        )
                    });
                    columns.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(column);
                }
            });
        }
    });
    bar.finish_and_clear();
    drop(guests); // stops every VM
    let columns = columns
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .zip(&names)
        .map(|(c, name)| {
            c.unwrap_or_else(|| MatrixColumn::failed(name, "no worker reported this guest".into()))
        })
        .collect();
    let report = MatrixReport::new(
        columns,
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    let text = match args.format {
        MatrixFormat::Human => labgrade_report::render_matrix_human(&report),
        MatrixFormat::Markdown => labgrade_report::render_matrix_markdown(&report),
        MatrixFormat::Junit => {
            return Err(CliError::Usage(
                "--format junit is for `matrix -- CMD`; for labs use `labgrade run --format junit` per guest".into(),
            ));
        }
        MatrixFormat::Json => {
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Output {
                path: "stdout".into(),
                source: std::io::Error::other(e),
            })? + "\n"
        }
    };
    match &args.output {
        Some(path) => crate::cmd::run::write_atomically(path, &text)?,
        None => print!("{text}"),
    }
    eprintln!(
        "labgrade matrix: {} guests x {} labs in {:.1} s",
        report.columns.len(),
        labs.len(),
        report.duration_ms as f64 / 1000.0
    );
    Ok(exit_code(&report))
}

/// Runs every lab on one guest of the matrix.
fn run_column(
    name: &str,
    resolved: &Result<ResolvedGuest, String>,
    labs: &[labgrade_spec::Lab],
    images: &labgrade_disk::ImageCache,
    bar: &ProgressBar,
) -> MatrixColumn {
    let g = match resolved {
        Err(e) => return MatrixColumn::failed(name, e.clone()),
        Ok(g) => g,
    };
    let on_done = |r: &LabReport| {
        bar.set_message(format!("{name}: {} {}", r.status.word(), r.id));
        bar.inc(1);
    };
    let options = RunOptions {
        jobs: 1,
        expected_ms: crate::history::load(name),
        images: images.clone(),
        image: None,
    };
    match labgrade_runner::run_labs(g.guest.as_ref(), labs, options, &on_done) {
        Ok(run) => {
            crate::history::save(name, &run);
            MatrixColumn {
                guest: name.to_owned(),
                kernel_release: g.kernel_release.clone(),
                run: Some(run),
                error: None,
            }
        }
        Err(e) => MatrixColumn {
            kernel_release: g.kernel_release.clone(),
            ..MatrixColumn::failed(name, e.to_string())
        },
    }
}

fn exit_code(m: &MatrixReport) -> ExitCode {
    let mut totals = Totals::default();
    for column in &m.columns {
        if let Some(run) = &column.run {
            totals += run.totals();
        }
        // A guest that never ran counts as infrastructure trouble.
        totals.errors += usize::from(column.error.is_some());
    }
    exit::for_totals(totals)
}
