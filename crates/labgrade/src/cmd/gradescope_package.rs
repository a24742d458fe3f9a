//! `labgrade gradescope-package`: the autograder zip Gradescope runs unchanged.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::exit::{self, CliError};

/// Arguments of `labgrade gradescope-package`.
#[derive(Debug, Args)]
pub struct GradescopePackageArgs {
    /// The assignment directory (holding `assignment.toml`).
    #[arg(long)]
    assignment: PathBuf,
    /// Where to write the zip (atomically).
    #[arg(long, short)]
    output: PathBuf,
    /// The labgrade binary to ship (default: this one). It must run on Ubuntu 22.04 (glibc 2.35).
    #[arg(long)]
    binary: Option<PathBuf>,
}

/// Builds the zip and says what is in it.
pub fn run(args: &GradescopePackageArgs) -> Result<ExitCode, CliError> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|source| CliError::Output {
            path: "the running labgrade binary (/proc/self/exe)".into(),
            source,
        })?,
    };
    let package = labgrade_gradescope::build(&args.assignment, &binary, &args.output)?;
    println!(
        "{}: {} ({} bytes): {}; labgrade needs glibc {} (Gradescope's Ubuntu 22.04 has {})",
        package.assignment,
        args.output.display(),
        package.bytes,
        package.files.join(", "),
        package
            .glibc
            .map_or_else(|| "none".to_owned(), |v| v.to_string()),
        labgrade_gradescope::GRADESCOPE_GLIBC,
    );
    Ok(ExitCode::from(exit::PASSED))
}
