//! The autograder zip Gradescope runs, made from an assignment and a labgrade binary.
//!
//! Gradescope unpacks the zip into `/autograder/source`, runs `setup.sh` once on its Ubuntu
//! 22.04 image, then for each submission runs `/autograder/run_autograder`, which must leave
//! `/autograder/results/results.json`. The zip carries only what grading needs: the binary, the
//! assignment file, and the two scripts. The reference solution stays out of it.

use std::io::Write;
use std::path::{Path, PathBuf};

use labgrade_elf::GlibcVersion;
use labgrade_grade::AssignmentError;
use zip::write::SimpleFileOptions;

/// The glibc of the image Gradescope builds autograders on (Ubuntu 22.04).
pub const GRADESCOPE_GLIBC: GlibcVersion = GlibcVersion::UBUNTU_22_04;

const SETUP_SH: &str = include_str!("setup.sh");
const RUN_AUTOGRADER: &str = include_str!("run_autograder");

/// What went into a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The assignment's id (its directory's name), as the zip names it.
    pub assignment: String,
    /// The files of the zip, in order.
    pub files: Vec<String>,
    /// The newest glibc symbol version the binary needs (`None`: it needs none).
    pub glibc: Option<GlibcVersion>,
    /// Size of the zip.
    pub bytes: u64,
}

/// Why no package was made.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The assignment does not load: it would not grade on Gradescope either.
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    /// The id becomes part of a shell script; only plain names are allowed.
    #[error(
        "the assignment directory's name `{0}` is not a plain name (letters, digits, `.`, `_`, `-`); rename the directory"
    )]
    AssignmentName(String),
    /// The binary to ship could not be read.
    #[error("cannot read the labgrade binary {path}: {source}")]
    Binary {
        /// Which file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The binary is not something Gradescope's image could run.
    #[error("{path} is not a Linux binary labgrade can check: {why}")]
    NotElf {
        /// Which file.
        path: PathBuf,
        /// What was wrong with it.
        why: String,
    },
    /// Linked against a newer glibc than Ubuntu 22.04's: it would fail to start there.
    #[error(
        "{path} needs glibc {needed}, but Gradescope's Ubuntu 22.04 image has {have}; build labgrade on \
         Ubuntu 22.04 (or an older glibc), or for x86_64-unknown-linux-musl, and pass it with --binary"
    )]
    GlibcTooNew {
        /// Which file.
        path: PathBuf,
        /// What it needs.
        needed: GlibcVersion,
        /// What the image has.
        have: GlibcVersion,
    },
    /// The zip could not be made or written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

impl PackageError {
    /// Is this the user's input at fault (exit 2) rather than the machine (exit 3)?
    pub fn is_usage(&self) -> bool {
        !matches!(self, PackageError::Write { .. })
    }
}

/// Builds the zip at `out` (atomically: a failed build leaves no file) from the assignment in
/// `assignment_dir` and the labgrade binary at `binary`.
pub fn build(assignment_dir: &Path, binary: &Path, out: &Path) -> Result<Package, PackageError> {
    let assignment = labgrade_grade::load_assignment(assignment_dir)?;
    let id = assignment.id.clone();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || id.starts_with('.')
    {
        return Err(PackageError::AssignmentName(id));
    }
    let exe = std::fs::read(binary).map_err(|source| PackageError::Binary {
        path: binary.to_path_buf(),
        source,
    })?;
    let glibc = labgrade_elf::glibc_needed(&exe).map_err(|e| PackageError::NotElf {
        path: binary.to_path_buf(),
        why: e.to_string(),
    })?;
    if let Some(needed) = glibc.filter(|v| *v > GRADESCOPE_GLIBC) {
        return Err(PackageError::GlibcTooNew {
            path: binary.to_path_buf(),
            needed,
            have: GRADESCOPE_GLIBC,
        });
    }
    let toml_path = assignment_dir.join(labgrade_grade::ASSIGNMENT_FILE);
    let toml = std::fs::read(&toml_path).map_err(|source| {
        PackageError::Assignment(AssignmentError::Read {
            path: toml_path.clone(),
            source,
        })
    })?;
    let run_autograder = RUN_AUTOGRADER.replace("@ASSIGNMENT@", &id);
    let assignment_file = format!("assignments/{id}/{}", labgrade_grade::ASSIGNMENT_FILE);
    let entries: [(&str, &[u8], u32); 4] = [
        ("setup.sh", SETUP_SH.as_bytes(), 0o755),
        ("run_autograder", run_autograder.as_bytes(), 0o755),
        ("labgrade", &exe, 0o755),
        (&assignment_file, &toml, 0o644),
    ];
    let write_err = |source: std::io::Error| PackageError::Write {
        path: out.to_path_buf(),
        source,
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in entries {
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode)
            // The binary is over 4 GiB never, but a debug build is large: no size surprises.
            .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
        zip.start_file(name, options)
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        zip.write_all(bytes).map_err(write_err)?;
    }
    let bytes = zip
        .finish()
        .map_err(|e| write_err(std::io::Error::other(e)))?
        .into_inner();
    labgrade_fs::write_atomically(out, &bytes).map_err(write_err)?;
    Ok(Package {
        assignment: id,
        files: entries.iter().map(|(n, _, _)| (*n).to_owned()).collect(),
        glibc,
        bytes: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assignments/overlay-basics")
    }

    #[test]
    fn the_zip_holds_the_scripts_the_binary_and_the_assignment_but_no_solution() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("autograder.zip");
        let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let p = build(&assignment(), &me, &out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.assignment, "overlay-basics");
        let mut z =
            zip::ZipArchive::new(std::fs::File::open(&out).unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        let mut names: Vec<String> = (0..z.len())
            .filter_map(|i| {
                z.by_index(i)
                    .ok()
                    .and_then(|f| f.name().ok().map(|n| n.into_owned()))
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "assignments/overlay-basics/assignment.toml",
                "labgrade",
                "run_autograder",
                "setup.sh"
            ]
        );
        let run = z
            .by_name("run_autograder")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.unix_mode().map(|m| m & 0o777), Some(0o755));
        drop(run);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut z
                .by_name("run_autograder")
                .unwrap_or_else(|e| panic!("{e}")),
            &mut text,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains("\"$src/assignments/overlay-basics\""),
            "{text}"
        );
        assert!(!text.contains("@ASSIGNMENT@"));
    }

    #[test]
    fn a_binary_needing_a_newer_glibc_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let mut exe = std::fs::read(&me).unwrap_or_else(|e| panic!("{e}"));
        // The same binary, its need of GLIBC_2.2.5 (every x86-64 binary's) renamed 2.9.9: what a
        // build on a newer distribution looks like to the loader.
        let from = b"GLIBC_2.2.5\0";
        let at = exe
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("no GLIBC_2.2.5 in the test binary"));
        exe[at..at + from.len()].copy_from_slice(b"GLIBC_2.99\0\0");
        let fake = dir.path().join("labgrade");
        std::fs::write(&fake, &exe).unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("autograder.zip");
        let e = build(&assignment(), &fake, &out)
            .err()
            .unwrap_or_else(|| panic!("packaged a binary needing glibc 2.99"));
        assert!(e.is_usage(), "{e}");
        match e {
            PackageError::GlibcTooNew { needed, .. } => {
                assert_eq!(needed, GlibcVersion::new(2, 99))
            }
            other => panic!("{other:?}"),
        }
        assert!(!out.exists());
    }

    #[test]
    fn a_file_that_is_not_a_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("a.zip");
        let e = build(&assignment(), &assignment().join("assignment.toml"), &out).err();
        assert!(matches!(e, Some(PackageError::NotElf { .. })), "{e:?}");
        assert!(!out.exists());
    }
}
