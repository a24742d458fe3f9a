//! The one place that maps outcomes to exit codes. Graders and CI read these; they are documented
//! in the README and never change meaning.

use std::process::ExitCode;

/// Every lab passed (skips with a reason are fine).
pub const PASSED: u8 = 0;
/// Some step or check failed.
pub const FAILED: u8 = 1;
/// The command line or an input file is wrong.
pub const USAGE: u8 = 2;
/// The machinery failed (guest would not start, agent died): not the lab's fault.
pub const INFRASTRUCTURE: u8 = 3;

/// Errors that end a command early, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or a bad lab file.
    #[error("{0}")]
    Usage(String),
    /// A lab file that does not validate (printed with its source snippet).
    #[error(transparent)]
    Spec(#[from] labgrade_spec::SpecError),
    /// The guest failed.
    #[error(transparent)]
    Guest(#[from] labgrade_guest::GuestError),
    /// A kernel could not be had: a bad selector (usage) or the archive, network or disk failed.
    #[error(transparent)]
    Kernel(#[from] labgrade_kernel::KernelError),
    /// The labs asked for could not be found, or two share an id.
    #[error(transparent)]
    Select(labgrade_spec::SelectError),
    /// A guest could not be had (an unknown name or kernel, or a cache that cannot be used).
    #[error(transparent)]
    Launch(#[from] labgrade_runner::LaunchError),
    /// A drift baseline that cannot be read or does not validate (names file:line:col).
    #[error(transparent)]
    Baseline(#[from] labgrade_lesson::BaselineError),
    /// A Gradescope package could not be made (a bad assignment or binary, or the write failed).
    #[error(transparent)]
    Package(labgrade_gradescope::PackageError),
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The documented exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Spec(_) | CliError::Select(_) => USAGE,
            CliError::Kernel(e) if e.is_usage() => USAGE,
            CliError::Kernel(_) => INFRASTRUCTURE,
            CliError::Launch(e) if e.is_usage() => USAGE,
            CliError::Launch(_) => INFRASTRUCTURE,
            CliError::Baseline(labgrade_lesson::BaselineError::Write { .. }) => INFRASTRUCTURE,
            CliError::Baseline(_) => USAGE,
            CliError::Package(e) if e.is_usage() => USAGE,
            CliError::Package(_) => INFRASTRUCTURE,
            CliError::Guest(_) | CliError::Output { .. } => INFRASTRUCTURE,
        }
    }
}

impl From<labgrade_gradescope::PackageError> for CliError {
    fn from(e: labgrade_gradescope::PackageError) -> CliError {
        // An assignment file that does not validate keeps its source snippet when printed.
        match e {
            labgrade_gradescope::PackageError::Assignment(
                labgrade_grade::AssignmentError::Invalid(spec),
            ) => CliError::Spec(spec),
            other => CliError::Package(other),
        }
    }
}

impl From<labgrade_spec::SelectError> for CliError {
    fn from(e: labgrade_spec::SelectError) -> CliError {
        // A lab file that does not validate keeps its source snippet when printed.
        match e {
            labgrade_spec::SelectError::Spec(spec) => CliError::Spec(spec),
            other => CliError::Select(other),
        }
    }
}

/// Exit code for a finished run.
pub fn for_run(report: &labgrade_report::RunReport) -> ExitCode {
    for_totals(report.totals())
}

/// Exit code for counted outcomes: infrastructure trouble outranks failures, failures outrank
/// passes.
pub fn for_totals(t: labgrade_report::Totals) -> ExitCode {
    ExitCode::from(if t.errors > 0 {
        INFRASTRUCTURE
    } else if t.failed > 0 {
        FAILED
    } else {
        PASSED
    })
}

/// Exit code for a drift run: 1 when some documented line drifts without the baseline accepting
/// it (or a block hung), else 0.
pub fn for_drift(failed: bool) -> ExitCode {
    ExitCode::from(if failed { FAILED } else { PASSED })
}
