//! `labgrade snapshot DIR`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::exit::CliError;

/// Arguments of `labgrade snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The directory to list (an upper dir, typically).
    dir: PathBuf,
}

/// Prints the normalised listing labs record, for any directory.
pub fn run(args: &SnapshotArgs) -> Result<ExitCode, CliError> {
    let snap = labgrade_snap::take(&args.dir).map_err(|e| CliError::Usage(e.to_string()))?;
    print!("{}", snap.render());
    Ok(ExitCode::SUCCESS)
}
