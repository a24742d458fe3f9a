//! Finding the labs a command works on (see [`labgrade_spec::select_labs`]).

use std::path::Path;

use labgrade_spec::Lab;

use crate::exit::CliError;

/// Where labs live unless `--labs` says otherwise.
pub const DEFAULT_LABS_DIR: &str = "labs";

/// Every lab under `dir`.
pub fn all(dir: &Path) -> Result<Vec<Lab>, CliError> {
    Ok(labgrade_spec::all_labs(dir)?)
}

/// The labs named by `wanted` (ids, or paths to lab files or lesson dirs); all of them if empty.
pub fn select(dir: &Path, wanted: &[String]) -> Result<Vec<Lab>, CliError> {
    Ok(labgrade_spec::select_labs(dir, wanted)?)
}
