//! `labgrade matrix --kernels K1,K2 [--overlay-root] [--rwdir ...] -- CMD [ARGS...]`: an
//! existing test suite, once per kernel, guests in parallel up to `--jobs`. Each kernel's exit
//! code, wall time, last lines of output, kernel messages and (with `--results`) the suite's own
//! test cases go into a [`SuiteReport`]; its whole output into `--out DIR/<kernel>/`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use labgrade_guest::Guest;
use labgrade_qemu::{OverlayUpper, RwDir, WritableRoot};
use labgrade_report::{SuiteReport, SuiteResults, SuiteRun, SuiteStatus};

use crate::cmd::matrix::MatrixFormat;
use crate::exit::{self, CliError};
use crate::guests::{GuestOptions, ResolvedGuest};

/// `--overlay-root` and `--rwdir`, for `exec` and `matrix -- CMD`.
#[derive(Debug, Clone, Args)]
pub struct WritableArgs {
    /// Give the command a writable root: an overlay over the read-only host root, upper on a
    /// tmpfs (`--overlay-root`) or on a scratch disk (`--overlay-root=disk:SIZE`, e.g. disk:2G).
    /// It goes with the guest; the host is never written.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "tmpfs",
          value_name = "tmpfs|disk:SIZE", value_parser = parse_upper)]
    overlay_root: Option<OverlayUpper>,
    /// Share a host directory read-write: HOST_PATH[:GUEST_PATH] (the guest path defaults to
    /// the host's). Repeatable.
    #[arg(long, value_name = "HOST_PATH[:GUEST_PATH]", value_parser = parse_rwdir)]
    rwdir: Vec<RwDir>,
}

fn parse_upper(s: &str) -> Result<OverlayUpper, String> {
    s.parse()
}

fn parse_rwdir(s: &str) -> Result<RwDir, String> {
    s.parse()
}

impl WritableArgs {
    /// The guest's writable parts; a guest path that a read-only root cannot have is a usage
    /// error.
    pub fn writable(&self) -> Result<WritableRoot, CliError> {
        let w = WritableRoot {
            overlay: self.overlay_root,
            rwdirs: self.rwdir.clone(),
        };
        w.check().map_err(CliError::Usage)?;
        Ok(w)
    }
}

/// The part of `labgrade matrix` that runs a command instead of labs.
#[derive(Debug, Args)]
pub struct SuiteArgs {
    #[command(flatten)]
    writable: WritableArgs,
    /// Seconds the command may run on each kernel; then it is killed and reported failed, with
    /// its output so far.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// Keep each kernel's whole stdout, stderr and dmesg under DIR/<kernel>/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A JUnit XML or TAP file the command leaves (a guest path): its test cases are merged
    /// into the report under the kernel's name.
    #[arg(long, value_name = "PATH")]
    results: Option<String>,
    /// The command and its arguments (after `--`), run with `sh` in each guest.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// What `matrix` passes on from its own arguments.
#[derive(Debug)]
pub struct MatrixSettings<'a> {
    /// Kernel names as given.
    pub kernels: &'a [String],
    /// Also on the host guest.
    pub host: bool,
    /// Guests at once.
    pub jobs: Option<usize>,
    /// kvm, tcg or auto.
    pub accel: labgrade_qemu::Accel,
    /// Kernel mirror.
    pub mirror: Option<String>,
    /// Report format.
    pub format: MatrixFormat,
    /// Report file.
    pub output: Option<&'a Path>,
}

/// Lines of output kept for the report's tail.
const TAIL_LINES: usize = 20;

/// The last lines of a stream that comes in pieces (a piece may end mid-line).
#[derive(Debug, Default)]
struct OutputTail {
    lines: std::collections::VecDeque<String>,
    partial: String,
}

impl OutputTail {
    fn push(&mut self, data: &str) {
        self.partial.push_str(data);
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            self.lines
                .push_back(line.trim_end_matches(['\n', '\r']).to_owned());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }

    fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.lines.push_back(std::mem::take(&mut self.partial));
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        self.lines.into()
    }
}

/// A kernel's directory name under `--out`: its name, with `/` (from local: paths) made `_`.
fn out_dir_name(kernel: &str) -> String {
    kernel.trim().replace('/', "_")
}

/// Runs the command on every kernel and reports.
pub fn run(args: &SuiteArgs, m: &MatrixSettings<'_>) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let writable = args.writable.writable()?;
    let jobs = m.jobs.unwrap_or_else(labgrade_runner::default_jobs).max(1);
    let mut names: Vec<(String, String)> = m
        .kernels
        .iter()
        .map(|k| (format!("qemu:{}", k.trim()), out_dir_name(k)))
        .collect();
    if m.host {
        names.push(("host".into(), "host".into()));
    }
    let mut options = GuestOptions::for_labs(m.accel, 1, &[], m.mirror.clone());
    options.writable = writable;
    let script = args
        .command
        .iter()
        .map(|w| labgrade_guest::shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let mut guests: Vec<Mutex<Option<Result<ResolvedGuest, String>>>> = Vec::new();
    for (name, _) in &names {
        eprintln!("labgrade matrix: preparing {name}");
        match crate::guests::resolve(name, &options) {
            Err(e) if e.exit_code() == exit::USAGE => return Err(e),
            resolved => guests.push(Mutex::new(Some(resolved.map_err(|e| e.to_string())))),
        }
    }
    let out_dirs: Vec<Option<PathBuf>> = names
        .iter()
        .map(|(_, dir)| {
            args.out
                .as_ref()
                .map(|o| {
                    let d = o.join(dir);
                    std::fs::create_dir_all(&d)
                        .map(|()| d.clone())
                        .map_err(|source| CliError::Output {
                            path: d.display().to_string(),
                            source,
                        })
                })
                .transpose()
        })
        .collect::<Result<_, _>>()?;

    let bar = ProgressBar::new(names.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let ids: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    let order =
        crate::history::longest_first(&ids, &crate::history::load(crate::history::SUITE_GUESTS));
    let next = AtomicUsize::new(0);
    let runs: Mutex<Vec<Option<SuiteRun>>> = Mutex::new(vec![None; names.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(names.len()) {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let name = &names[i].0;
                    let resolved = guests[i].lock().ok().and_then(|mut g| g.take());
                    bar.set_message(format!("{name}: booting"));
                    let run = match resolved {
                        None => error_run(name, None, "the guest was lost".into()),
                        Some(Err(e)) => error_run(name, None, e),
                        Some(Ok(g)) => {
                            let job = KernelJob {
                                name,
                                script: &script,
                                timeout: Duration::from_secs(args.timeout),
                                results: args.results.as_deref(),
                                out_dir: out_dirs[i].as_deref(),
                            };
                            let run = job.run(g.guest.as_ref(), g.kernel_release.clone(), &bar);
                            drop(g); // stops the VM now: its CPU goes to the next kernel
                            run
                        }
                    };
                    bar.set_message(format!(
                        "{name}: {} in {:.1} s",
                        run.status.word(),
                        run.duration_ms as f64 / 1000.0
                    ));
                    bar.inc(1);
                    if let Ok(mut r) = runs.lock() {
                        r[i] = Some(run);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let report = SuiteReport {
        command: args.command.clone(),
        overlay_root: args.writable.overlay_root.map(|u| u.to_string()),
        results_path: args.results.clone(),
        runs: runs
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect(),
        duration_ms: millis(started.elapsed()),
    };
    crate::history::record(
        crate::history::SUITE_GUESTS,
        report
            .runs
            .iter()
            .filter(|r| r.status != SuiteStatus::Error)
            // What the guest held its job slot for: the boot and the command.
            .map(|r| (r.guest.clone(), r.boot_ms + r.duration_ms)),
    );
    let fail = |e: String| CliError::Output {
        path: "stdout".into(),
        source: std::io::Error::other(e),
    };
    let text = match m.format {
        MatrixFormat::Human => labgrade_report::render_suite_human(&report),
        MatrixFormat::Markdown => labgrade_report::render_suite_markdown(&report),
        MatrixFormat::Junit => {
            labgrade_report::render_suite_junit(&report).map_err(|e| fail(e.to_string()))?
        }
        MatrixFormat::Json => {
            serde_json::to_string_pretty(&report).map_err(|e| fail(e.to_string()))? + "\n"
        }
    };
    match m.output {
        Some(path) => crate::cmd::run::write_atomically(path, &text)?,
        None => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    eprintln!(
        "labgrade matrix: `{}` on {} guests in {:.1} s",
        args.command.join(" "),
        report.runs.len(),
        report.duration_ms as f64 / 1000.0
    );
    Ok(exit::for_totals(report.totals()))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn error_run(name: &str, release: Option<String>, error: String) -> SuiteRun {
    SuiteRun {
        guest: name.to_owned(),
        kernel_release: release,
        status: SuiteStatus::Error,
        exit_code: None,
        duration_ms: 0,
        boot_ms: 0,
        tail: Vec::new(),
        kmsg: Vec::new(),
        error: Some(error),
        results: None,
        out_dir: None,
        missing: Vec::new(),
    }
}

/// The command on one kernel.
struct KernelJob<'a> {
    name: &'a str,
    script: &'a str,
    timeout: Duration,
    results: Option<&'a str>,
    out_dir: Option<&'a Path>,
}

/// Where a kernel's streams go as they come: files under `--out` (so a killed matrix still
/// leaves the output so far) and the tail kept for the report.
struct Streams {
    stdout: Option<File>,
    stderr: Option<File>,
    tail: OutputTail,
    stderr_tail: crate::cmd::missing::StderrTail,
    write_error: Option<String>,
}

impl Streams {
    fn open(dir: Option<&Path>) -> Result<Streams, String> {
        let create = |name: &str| {
            dir.map(|d| {
                let p = d.join(name);
                File::create(&p).map_err(|e| format!("cannot write {}: {e}", p.display()))
            })
            .transpose()
        };
        Ok(Streams {
            stdout: create("stdout")?,
            stderr: create("stderr")?,
            tail: OutputTail::default(),
            stderr_tail: crate::cmd::missing::StderrTail::default(),
            write_error: None,
        })
    }

    fn take(&mut self, stream: &str, data: &str) {
        self.tail.push(data);
        let file = if stream == "stderr" {
            self.stderr_tail.push(data);
            self.stderr.as_mut()
        } else {
            self.stdout.as_mut()
        };
        if let Some(f) = file
            && let Err(e) = f.write_all(data.as_bytes())
        {
            self.write_error.get_or_insert(e.to_string());
        }
    }
}

impl KernelJob<'_> {
    fn run(&self, guest: &dyn Guest, release: Option<String>, bar: &ProgressBar) -> SuiteRun {
        let started = Instant::now();
        let mut session = match guest.start_session() {
            Ok(s) => s,
            Err(e) => return error_run(self.name, release, e.to_string()),
        };
        let boot_ms = millis(started.elapsed());
        bar.set_message(format!("{}: running", self.name));
        let mut streams = match Streams::open(self.out_dir) {
            Ok(s) => s,
            Err(e) => return error_run(self.name, release, e),
        };
        let outcome = session.run_step(
            1,
            self.script,
            self.timeout,
            Some(&mut |stream: &str, data: &str| streams.take(stream, data)),
        );
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let mut run = error_run(self.name, release, e.to_string());
                run.tail = streams.tail.finish();
                return run;
            }
        };
        let results = self.results.map(|path| {
            if outcome.timed_out || outcome.session_ended {
                return SuiteResults {
                    error: Some(format!(
                        "not read: the command {} before it could leave {path}",
                        if outcome.timed_out {
                            "timed out"
                        } else {
                            "ended the session"
                        }
                    )),
                    ..SuiteResults::default()
                };
            }
            self.read_results(&mut session, path)
        });
        let alive = !outcome.timed_out && !outcome.session_ended;
        let missing = if alive && outcome.exit_code != Some(0) {
            crate::cmd::missing::diagnose(&mut session, 3, self.script, &streams.stderr_tail)
        } else {
            Vec::new()
        };
        let _ = session.shutdown();
        let mut error = streams.write_error.take();
        if let Some(dir) = self.out_dir {
            let dmesg = outcome
                .kmsg
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>();
            if let Err(e) = std::fs::write(dir.join("dmesg"), dmesg) {
                error.get_or_insert(format!("cannot write {}/dmesg: {e}", dir.display()));
            }
        }
        if let Some(e) = error {
            // The command ran, but its output could not be kept: the machinery's fault.
            let mut run = error_run(self.name, release, e);
            run.exit_code = outcome.exit_code;
            return run;
        }
        SuiteRun {
            guest: self.name.to_owned(),
            kernel_release: release,
            status: SuiteStatus::decide(outcome.exit_code, outcome.timed_out, results.as_ref()),
            exit_code: outcome.exit_code,
            duration_ms: outcome.duration_ms,
            boot_ms,
            tail: streams.tail.finish(),
            kmsg: outcome.kmsg,
            error: None,
            results,
            out_dir: self.out_dir.map(|d| d.display().to_string()),
            missing,
        }
    }

    /// Reads the results file in the same session (so a file on the session's /tmp is still
    /// there), streamed so its size is not capped, and parses it.
    fn read_results(&self, session: &mut labgrade_guest::AgentSession, path: &str) -> SuiteResults {
        let mut text = String::new();
        let mut stderr = String::new();
        let script = format!("cat -- {}", labgrade_guest::shell_quote(path));
        let outcome = session.run_step(
            2,
            &script,
            Duration::from_secs(120),
            Some(&mut |stream: &str, data: &str| {
                if stream == "stderr" {
                    stderr.push_str(data);
                } else {
                    text.push_str(data);
                }
            }),
        );
        match outcome {
            Ok(o) if o.succeeded() => {
                if let Some(dir) = self.out_dir {
                    let _ = std::fs::write(dir.join("results"), &text);
                }
                labgrade_results::parse(&text)
            }
            Ok(_) => SuiteResults {
                error: Some(format!(
                    "the command left no readable results file at {path}: {}",
                    stderr.trim()
                )),
                ..SuiteResults::default()
            },
            Err(e) => SuiteResults {
                error: Some(format!("cannot read {path}: {e}")),
                ..SuiteResults::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_across_pieces() {
        let mut t = OutputTail::default();
        t.push("one\ntw");
        t.push("o\r\n");
        for i in 0..30 {
            t.push(&format!("line {i}\n"));
        }
        t.push("no newline");
        let lines = t.finish();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.first().map(String::as_str), Some("line 11"));
        assert_eq!(lines.last().map(String::as_str), Some("no newline"));
        let mut short = OutputTail::default();
        short.push("one\ntw");
        short.push("o\r\n");
        assert_eq!(short.finish(), vec!["one", "two"]);
    }

    #[test]
    fn kernel_dirs_are_named_after_the_kernel() {
        assert_eq!(out_dir_name(" debian:6.1"), "debian:6.1");
        assert_eq!(
            out_dir_name("local:/boot/vmlinuz:/lib/modules/6.1"),
            "local:_boot_vmlinuz:_lib_modules_6.1"
        );
    }
}
