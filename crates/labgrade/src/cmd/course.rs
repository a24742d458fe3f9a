//! `labgrade course PATH --static`: what in a course (its lessons, their scripts, the links
//! between them, the labs' sections) is wrong today, and where, without starting a guest.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use labgrade_course::{CourseError, LabSection, StaticOptions, Tools};

use crate::exit::{self, CliError};

/// Output formats of a course report.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// `file:line: kind: message` lines and the coverage, for a person at a terminal.
    Human,
    /// The report as data (`schema_version` 1; schema in crates/labgrade-report/schema).
    Json,
    /// JUnit XML: a test case per lesson.
    Junit,
    /// A page to attach to a pull request.
    Markdown,
    /// GitHub Actions annotations (`::error file=...,line=...::message`).
    Github,
}

/// Arguments of `labgrade course`.
#[derive(Debug, Args)]
pub struct CourseArgs {
    /// A course root (modules of lessons), a module (lessons) or a lesson directory.
    path: PathBuf,
    /// Check without a guest: links, paths, scripts, lab sections (the only mode so far).
    #[arg(long = "static")]
    static_only: bool,
    /// Where students clone the course's repository, as the lessons write it.
    #[arg(long, default_value = labgrade_course::DEFAULT_CLONE_PATH)]
    clone_path: String,
    /// The repository root the clone path stands for. Default: the git work tree PATH is in,
    /// else the ancestor of PATH the lessons' own repository paths fit.
    #[arg(long)]
    repo_root: Option<PathBuf>,
    /// The labs directory whose lesson sections are checked (default `labs`, when it exists).
    #[arg(long)]
    labs: Option<PathBuf>,
    /// Run bash -n and shellcheck on every script, ignoring cached verdicts.
    #[arg(long)]
    no_cache: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

fn lab_sections(args: &CourseArgs) -> Result<Result<Vec<LabSection>, String>, CliError> {
    let dir = match &args.labs {
        Some(dir) => dir.clone(),
        None => {
            let dir = PathBuf::from(crate::labs::DEFAULT_LABS_DIR);
            if !dir.is_dir() {
                return Ok(Err(format!(
                    "no labs directory `{}` here; give --labs DIR to check the labs' lesson sections",
                    dir.display()
                )));
            }
            dir
        }
    };
    let labs = crate::labs::all(&dir)?;
    Ok(Ok(labgrade_course::lab_sections(&labs)))
}

/// Checks the course, renders the report; exit 1 when it has course errors.
pub fn run(args: &CourseArgs) -> Result<ExitCode, CliError> {
    if !args.static_only {
        return Err(CliError::Usage(
            "labgrade course checks a course without a guest only: add --static (running its lessons on a guest is not built yet)".into(),
        ));
    }
    let cache = if args.no_cache {
        None
    } else {
        Some(labgrade_fs::CacheDirs::default_location().dir(labgrade_fs::CacheDir::ScriptChecks))
    };
    let options = StaticOptions {
        clone_path: args.clone_path.clone(),
        repo_root: args.repo_root.clone(),
        labs: lab_sections(args)?,
        tools: Tools::find(cache),
    };
    let report = labgrade_course::check_course(&args.path, &options).map_err(|e| match e {
        CourseError::Discover(d) => CliError::Usage(d.to_string()),
        CourseError::RepoRoot(m) => CliError::Usage(m),
    })?;
    let out = match args.format {
        Format::Human => labgrade_course::render::human(&report),
        Format::Markdown => labgrade_course::render::markdown(&report),
        Format::Github => labgrade_course::render::github(&report),
        Format::Json => serde_json::to_string_pretty(&report)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Output {
                path: "stdout".into(),
                source: std::io::Error::other(e),
            })?,
        Format::Junit => labgrade_course::render::junit(&report).map_err(|e| CliError::Output {
            path: "stdout".into(),
            source: std::io::Error::other(e),
        })?,
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::from(if report.course_errors() > 0 {
        exit::FAILED
    } else {
        exit::PASSED
    }))
}
