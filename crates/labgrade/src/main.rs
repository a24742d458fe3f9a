//! `labgrade`: verify a lesson's labs on real kernels.

mod cmd;
mod exit;
mod guests;
mod history;
mod labs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Proves Linux course labs still behave as the course says, on real kernels.
#[derive(Debug, Parser)]
#[command(name = "labgrade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the labs, with what each needs and where in the lesson it comes from.
    List(cmd::list::ListArgs),
    /// Run labs on a guest and report each step and check.
    Run(cmd::run::RunArgs),
    /// Run labs on several kernels side by side and show what differs.
    Matrix(cmd::matrix::MatrixArgs),
    /// Run a lesson's own shell blocks and point at documented output that is no longer true.
    Drift(cmd::drift::DriftArgs),
    /// Check a whole course (lessons, their scripts, links, lab sections) and say what is wrong
    /// where; `--static` checks without a guest.
    Course(cmd::course::CourseArgs),
    /// Fetch kernels into the cache, or list the cached ones.
    Kernel(cmd::kernel::KernelArgs),
    /// Run one command in a fresh guest session and exit with its exit code.
    Exec(cmd::exec::ExecArgs),
    /// Print the normalised listing of a directory, as lab snapshots record it.
    Snapshot(cmd::snapshot::SnapshotArgs),
    /// Grade student submissions of an assignment, each task in its own sandbox.
    Grade(cmd::grade::GradeArgs),
    /// Build the autograder zip Gradescope runs (setup.sh, run_autograder, labgrade, the assignment).
    GradescopePackage(cmd::gradescope_package::GradescopePackageArgs),
    /// The in-guest agent (started by labgrade itself; speaks JSON lines on stdin/stdout).
    #[command(name = "__agent", hide = true)]
    Agent,
    /// Rewrites a file in DIR ROUNDS times, same size, digesting each version through the
    /// agent's digest cache, and says how many rewrites kept the file's version and how many
    /// digests were stale (run inside a guest to show the cache is safe on its kernel).
    #[command(name = "__probe-digest-cache", hide = true)]
    ProbeDigestCache {
        /// A writable directory.
        dir: std::path::PathBuf,
        /// Pairs of rewrites.
        rounds: u32,
    },
}

fn main() -> ExitCode {
    // The agent must enter its namespaces while the process is single-threaded: before anything
    // else runs.
    if std::env::args().nth(1).as_deref() == Some("__agent") {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        return match labgrade_agent::serve(stdin, stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("labgrade agent: {e}");
                ExitCode::from(exit::INFRASTRUCTURE)
            }
        };
    }
    // Container engine labs (issue 10): Lab 2's GraphDriver-against-mount check, run by a step
    // inside the lab's session as "$LABGRADE" __container-layers CONTAINER [--image IMAGE].
    if std::env::args().nth(1).as_deref() == Some("__container-layers") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let code = labgrade_agent::layers::main(&args);
        return ExitCode::from(u8::try_from(code).unwrap_or(2));
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LABGRADE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List(args) => cmd::list::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Snapshot(args) => cmd::snapshot::run(&args),
        Command::Exec(args) => cmd::exec::run(&args),
        Command::Matrix(args) => cmd::matrix::run(&args),
        Command::Kernel(args) => cmd::kernel::run(&args),
        Command::Drift(args) => cmd::drift::run(&args),
        Command::Course(args) => cmd::course::run(&args),
        Command::Grade(args) => cmd::grade::run(&args),
        Command::GradescopePackage(args) => cmd::gradescope_package::run(&args),
        Command::ProbeDigestCache { dir, rounds } => {
            match labgrade_snap::probe_same_tick_rewrites(&dir, rounds) {
                Ok(p) => {
                    println!(
                        "rounds={} same_version={} stale={}",
                        p.rounds, p.same_version, p.stale
                    );
                    Ok(ExitCode::from(if p.stale == 0 {
                        exit::PASSED
                    } else {
                        exit::FAILED
                    }))
                }
                Err(e) => Err(exit::CliError::Usage(e.to_string())),
            }
        }
        Command::Agent => Err(exit::CliError::Usage(
            "__agent is started by labgrade itself".into(),
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            match e {
                exit::CliError::Spec(spec) => eprintln!("{:?}", miette::Report::new(spec)),
                other => eprintln!("error: {other}"),
            }
            ExitCode::from(code)
        }
    }
}
