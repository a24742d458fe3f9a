//! Finding labs: a labs directory holds one subdirectory per lesson, each `*.toml` in it a lab.
//! Ids are unique across lessons (reports, snapshots and graders key on them), and a lab asked
//! for twice (by id and by its file, say) runs once.

use std::path::{Path, PathBuf};

use crate::{Lab, SpecError, load_dir, load_lab};

/// Why the labs asked for could not be found.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// No labs directory where one was expected.
    #[error("no labs directory at {0}: run from the repository root, or pass --labs DIR")]
    NoLabsDir(PathBuf),
    /// The directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A lab file does not validate.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An id that no lab has.
    #[error("no lab `{wanted}` in {dir}; known labs: {known}")]
    Unknown {
        /// What was asked for.
        wanted: String,
        /// The labs directory searched.
        dir: PathBuf,
        /// Every id there, comma-separated.
        known: String,
    },
    /// Two lab files with the same id.
    #[error(
        "two labs have the id `{id}`: {first} and {second}; ids come from file names \
         (NN-ID.toml) and must be unique across lessons: rename one of the files"
    )]
    DuplicateId {
        /// The id.
        id: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

/// Every lab under `dir`, lessons in name order; an id used twice is an error.
pub fn all_labs(dir: &Path) -> Result<Vec<Lab>, SelectError> {
    if !dir.is_dir() {
        return Err(SelectError::NoLabsDir(dir.to_path_buf()));
    }
    let io = |source| SelectError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut lessons: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    lessons.sort();
    let mut labs = Vec::new();
    for lesson in lessons {
        labs.extend(load_dir(&lesson)?);
    }
    dedupe(labs)
}

/// The labs named by `wanted` (ids, or paths to lab files or lesson dirs), each once, in the
/// order first asked; all of them if `wanted` is empty.
pub fn select_labs(dir: &Path, wanted: &[String]) -> Result<Vec<Lab>, SelectError> {
    if wanted.is_empty() {
        return all_labs(dir);
    }
    let mut known: Option<Vec<Lab>> = None;
    let mut out = Vec::new();
    for w in wanted {
        let p = Path::new(w);
        if w.ends_with(".toml") && p.is_file() {
            out.extend(load_lab(p)?.per_engine());
        } else if p.is_dir() {
            out.extend(load_dir(p)?);
        } else {
            let labs = match &known {
                Some(l) => l,
                None => known.insert(all_labs(dir)?),
            };
            // A lab file's id names each of its runs per engine (`lab2` -> `lab2@docker`, ...).
            let found: Vec<&Lab> = labs
                .iter()
                .filter(|l| &l.id == w || l.file_id() == w)
                .collect();
            if found.is_empty() {
                return Err(SelectError::Unknown {
                    wanted: w.clone(),
                    dir: dir.to_path_buf(),
                    known: labs
                        .iter()
                        .map(|l| l.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            out.extend(found.into_iter().cloned());
        }
    }
    dedupe(out)
}

/// Keeps the first of labs that are the same file; two different files with one id are an error.
fn dedupe(labs: Vec<Lab>) -> Result<Vec<Lab>, SelectError> {
    let mut out: Vec<Lab> = Vec::with_capacity(labs.len());
    for lab in labs {
        match out.iter().find(|l| l.id == lab.id) {
            Some(seen) if same_file(&seen.path, &lab.path) => {}
            Some(seen) => {
                return Err(SelectError::DuplicateId {
                    id: lab.id.clone(),
                    first: seen.path.clone(),
                    second: lab.path.clone(),
                });
            }
            None => out.push(lab),
        }
    }
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str =
        "title = \"t\"\nlesson = { file = \"l\", section = \"s\" }\n[[step]]\nrun = \"true\"\n";

    fn labs_dir() -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for (lesson, file) in [
            ("01-a", "01-one.toml"),
            ("01-a", "02-two.toml"),
            ("02-b", "01-three.toml"),
        ] {
            std::fs::create_dir_all(dir.path().join(lesson))?;
            std::fs::write(dir.path().join(lesson).join(file), LAB)?;
        }
        Ok(dir)
    }

    #[test]
    fn a_lab_asked_for_twice_runs_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = labs_dir()?;
        let file = dir.path().join("01-a/01-one.toml").display().to_string();
        let labs = select_labs(
            dir.path(),
            &["one".into(), file, "two".into(), "one".into()],
        )?;
        let ids: Vec<&str> = labs.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["one", "two"]);
        Ok(())
    }

    #[test]
    fn one_id_in_two_lessons_is_an_input_error_naming_both_files()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = labs_dir()?;
        std::fs::write(dir.path().join("02-b/05-one.toml"), LAB)?;
        let err = all_labs(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("two labs have the id `one`"), "{err}");
        assert!(
            err.contains("01-a/01-one.toml") && err.contains("02-b/05-one.toml"),
            "{err}"
        );
        Ok(())
    }
}
