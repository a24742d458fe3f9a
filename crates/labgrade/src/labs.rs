//! Finding the labs a command works on: the labs directory, and the ones asked for by id or path.

use std::path::{Path, PathBuf};

use labgrade_spec::Lab;

use crate::exit::CliError;

/// Where labs live unless `--labs` says otherwise.
pub const DEFAULT_LABS_DIR: &str = "labs";

/// Every lab under `dir`: each subdirectory is a lesson, each `*.toml` in it a lab.
pub fn all(dir: &Path) -> Result<Vec<Lab>, CliError> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "no labs directory at {}: run from the repository root, or pass --labs DIR",
            dir.display()
        )));
    }
    let mut lessons: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    lessons.sort();
    let mut labs = Vec::new();
    for lesson in lessons {
        labs.extend(labgrade_spec::load_dir(&lesson)?);
    }
    Ok(labs)
}

/// The labs named by `wanted` (ids, or paths to lab files or lesson dirs); all of them if empty.
pub fn select(dir: &Path, wanted: &[String]) -> Result<Vec<Lab>, CliError> {
    if wanted.is_empty() {
        return all(dir);
    }
    let mut known: Option<Vec<Lab>> = None;
    let mut out = Vec::new();
    for w in wanted {
        let p = Path::new(w);
        if w.ends_with(".toml") && p.is_file() {
            out.push(labgrade_spec::load_lab(p)?);
        } else if p.is_dir() {
            out.extend(labgrade_spec::load_dir(p)?);
        } else {
            let labs = match &known {
                Some(l) => l,
                None => known.insert(all(dir)?),
            };
            let lab = labs.iter().find(|l| &l.id == w).ok_or_else(|| {
                let ids: Vec<&str> = labs.iter().map(|l| l.id.as_str()).collect();
                CliError::Usage(format!(
                    "no lab `{w}` in {}; known labs: {}",
                    dir.display(),
                    ids.join(", ")
                ))
            })?;
            out.push(lab.clone());
        }
    }
    Ok(out)
}
