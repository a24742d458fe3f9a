//! `labgrade list`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::exit::CliError;

/// Arguments of `labgrade list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The labs directory (one subdirectory per lesson).
    #[arg(long, default_value = crate::labs::DEFAULT_LABS_DIR)]
    labs: PathBuf,
}

/// Prints one line per lab: id, needs, title and lesson section.
pub fn run(args: &ListArgs) -> Result<ExitCode, CliError> {
    let labs = crate::labs::all(&args.labs)?;
    let width = labs.iter().map(|l| l.id.len()).max().unwrap_or(0);
    for lab in &labs {
        let needs: Vec<&str> = lab.needs.iter().map(|c| c.as_str()).collect();
        let state = match &lab.pending {
            Some(_) => "pending".to_owned(),
            None => format!(
                "needs {}",
                if needs.is_empty() {
                    "-".to_owned()
                } else {
                    needs.join(",")
                }
            ),
        };
        println!(
            "{:<width$}  {:<36}  {}  [{} § {}]",
            lab.id, state, lab.title, lab.lesson.file, lab.lesson.section
        );
    }
    Ok(ExitCode::SUCCESS)
}
