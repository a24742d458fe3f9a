//! Finding a course's parts on disk: what PATH is (course, module or lesson), its lessons, the
//! markdown pages and the code/ files to check.
//!
//! A lesson is a directory with a `README.md` none of whose subdirectories (but `code/`) has
//! one; a module is a directory of lessons; a course a directory of modules. Names starting with
//! `.` or `_` (`_archived`) are not part of the course and are reported as skipped.

use std::path::{Path, PathBuf};

use crate::report::{Scope, Skipped};

/// The page every lesson, module and course directory has.
pub const PAGE: &str = "README.md";

/// A course tree as found on disk.
#[derive(Debug, Clone)]
pub struct CourseTree {
    /// PATH as given.
    pub root: PathBuf,
    /// What PATH is.
    pub scope: Scope,
    /// Lesson directories, relative to PATH (empty when PATH is the lesson), sorted.
    pub lessons: Vec<PathBuf>,
    /// Markdown pages to check, relative to PATH, each with the lesson it belongs to (an index
    /// into `lessons`).
    pub pages: Vec<(PathBuf, Option<usize>)>,
    /// Files under lessons' code/ directories, relative to PATH, with their lesson.
    pub code_files: Vec<(PathBuf, usize)>,
    /// Directories not looked at, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Why PATH is not a course directory.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// PATH cannot be read.
    #[error("cannot read {path}: {source}; give a course, module or lesson directory")]
    Read {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing in PATH looks like lessons.
    #[error(
        "{0} is not a course, module or lesson directory: no {PAGE} in it, nor lessons (directories with a {PAGE}) one or two levels below"
    )]
    NotACourse(PathBuf),
}

fn excluded(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Subdirectories of `dir`, sorted, split into (included, excluded by name).
fn subdirs(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut keep = Vec::new();
    let mut drop = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if excluded(&name.to_string_lossy()) {
            drop.push(entry.path());
        } else {
            keep.push(entry.path());
        }
    }
    keep.sort();
    drop.sort();
    Ok((keep, drop))
}

fn has_page(dir: &Path) -> bool {
    dir.join(PAGE).is_file()
}

/// A lesson: a page, and no subdirectory (but code/) with a page of its own.
fn is_lesson(dir: &Path) -> bool {
    has_page(dir)
        && subdirs(dir).is_ok_and(|(keep, _)| {
            !keep
                .iter()
                .any(|d| d.file_name().is_some_and(|n| n != "code") && has_page(d))
        })
}

/// Finds the course's parts under `root`.
pub fn discover(root: &Path) -> Result<CourseTree, DiscoverError> {
    let read = |source| DiscoverError::Read {
        path: root.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(root).map_err(read)?;
    if !meta.is_dir() {
        return Err(DiscoverError::NotACourse(root.to_path_buf()));
    }
    let mut tree = CourseTree {
        root: root.to_path_buf(),
        scope: Scope::Lesson,
        lessons: Vec::new(),
        pages: Vec::new(),
        code_files: Vec::new(),
        skipped: Vec::new(),
    };
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let note_excluded = |tree: &mut CourseTree, dirs: Vec<PathBuf>| {
        for d in dirs {
            tree.skipped.push(Skipped {
                what: format!("{}/", rel(&d).display()),
                reason: "not part of the course: its name starts with '_' or '.'".into(),
            });
        }
    };
    let mut module_dirs: Vec<PathBuf> = Vec::new();
    if is_lesson(root) {
        tree.lessons.push(PathBuf::new());
    } else {
        let (children, dropped) = subdirs(root).map_err(read)?;
        if children.iter().any(|c| is_lesson(c)) {
            tree.scope = Scope::Module;
            module_dirs.push(root.to_path_buf());
            note_excluded(&mut tree, dropped);
        } else {
            let modules: Vec<PathBuf> = children
                .into_iter()
                .filter(|c| subdirs(c).is_ok_and(|(k, _)| k.iter().any(|l| is_lesson(l))))
                .collect();
            if modules.is_empty() {
                return Err(DiscoverError::NotACourse(root.to_path_buf()));
            }
            tree.scope = Scope::Course;
            note_excluded(&mut tree, dropped);
            module_dirs = modules;
        }
    }
    if tree.scope != Scope::Lesson && has_page(root) {
        tree.pages.push((PathBuf::from(PAGE), None));
    }
    for module in &module_dirs {
        if module != root && has_page(module) {
            tree.pages.push((rel(module).join(PAGE), None));
        }
        let (children, dropped) = subdirs(module).map_err(read)?;
        if module != root {
            note_excluded(&mut tree, dropped);
        }
        for child in children {
            if is_lesson(&child) {
                tree.lessons.push(rel(&child));
            } else {
                tree.skipped.push(Skipped {
                    what: format!("{}/", rel(&child).display()),
                    reason: format!("not a lesson: no {PAGE} in it"),
                });
            }
        }
    }
    for (i, lesson) in tree.lessons.iter().enumerate() {
        let dir = root.join(lesson);
        tree.pages.push((lesson.join(PAGE), Some(i)));
        let code = dir.join("code");
        if code.is_dir() {
            let mut files = Vec::new();
            walk_files(&code, &mut files);
            files.sort();
            for f in files {
                let r = rel(&f);
                if f.file_name().is_some_and(|n| n == PAGE) {
                    tree.pages.push((r.clone(), Some(i)));
                }
                tree.code_files.push((r, i));
            }
        }
    }
    Ok(tree)
}

/// Every regular file under `dir` (symlinks are not followed: a course could point anywhere).
fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk_files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) -> std::io::Result<()> {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, "x\n")
    }

    #[test]
    fn a_course_its_modules_lessons_pages_and_code() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        for f in [
            "README.md",
            "m1/README.md",
            "m1/01-a/README.md",
            "m1/01-a/code/run.sh",
            "m1/01-a/code/README.md",
            "m1/02-b/README.md",
            "m1/notes/x.txt",
            "_archived/old/01-x/README.md",
        ] {
            touch(root, f)?;
        }
        let tree = discover(root).map_err(std::io::Error::other)?;
        assert_eq!(tree.scope, Scope::Course);
        assert_eq!(
            tree.lessons,
            [PathBuf::from("m1/01-a"), PathBuf::from("m1/02-b")]
        );
        let pages: Vec<_> = tree.pages.iter().map(|(p, l)| (p.clone(), *l)).collect();
        assert_eq!(
            pages,
            [
                (PathBuf::from("README.md"), None),
                (PathBuf::from("m1/README.md"), None),
                (PathBuf::from("m1/01-a/README.md"), Some(0)),
                (PathBuf::from("m1/01-a/code/README.md"), Some(0)),
                (PathBuf::from("m1/02-b/README.md"), Some(1)),
            ]
        );
        assert_eq!(tree.code_files.len(), 2);
        let skipped: Vec<_> = tree.skipped.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(skipped, ["_archived/", "m1/notes/"]);

        let module = discover(&root.join("m1")).map_err(std::io::Error::other)?;
        assert_eq!(module.scope, Scope::Module);
        assert_eq!(module.lessons.len(), 2);
        let lesson = discover(&root.join("m1/01-a")).map_err(std::io::Error::other)?;
        assert_eq!(lesson.scope, Scope::Lesson);
        assert_eq!(lesson.lessons, [PathBuf::new()]);
        Ok(())
    }

    #[test]
    fn a_directory_without_lessons_is_no_course() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        touch(tmp.path(), "a/b.txt")?;
        assert!(matches!(
            discover(tmp.path()),
            Err(DiscoverError::NotACourse(_))
        ));
        assert!(matches!(
            discover(&tmp.path().join("missing")),
            Err(DiscoverError::Read { .. })
        ));
        Ok(())
    }
}
