//! A course tree and its static checks, without a guest: links and images resolve, the paths
//! lessons tell students to use exist (and the scripts they run are executable in a clone), the
//! code/ scripts parse and pass shellcheck, and labs' lesson sections exist.
//!
//! Data flows one way: [`discover`] (the tree) -> [`labgrade_lesson::extract`] (each page's
//! links, headings and shell blocks) -> [`checks`], [`scripts`], [`sections`] (pure over a
//! [`view::RepoView`], except the tools the script checks run) -> [`CourseReport`] ->
//! [`render`].

pub mod checks;
pub mod commands;
pub mod discover;
pub mod render;
pub mod report;
pub mod scripts;
pub mod sections;
pub mod view;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use discover::{CourseTree, DiscoverError, discover};
pub use report::{
    CourseReport, Coverage, ExecBitsFrom, Finding, FindingClass, FindingKind, RepoRootFrom,
    SCHEMA_VERSION, Scope, Skipped, course_report_schema,
};
pub use scripts::Tools;
pub use sections::{LabSection, lab_sections};

use checks::{Counts, Page, Resolve};
use commands::Instruction;
use view::{DiskView, RepoView, normalize};

/// Where students clone the repository, as the lessons say (`git clone ... ~/cloud-atlas`).
pub const DEFAULT_CLONE_PATH: &str = "~/cloud-atlas";

/// How to check a course.
#[derive(Debug, Clone)]
pub struct StaticOptions {
    /// Where students clone the repository, as lessons write it.
    pub clone_path: String,
    /// The repository root; default: the git work tree PATH is in, else inferred.
    pub repo_root: Option<PathBuf>,
    /// The sections labs name, or why they are not checked.
    pub labs: Result<Vec<LabSection>, String>,
    /// bash, shellcheck and the verdict cache.
    pub tools: Tools,
}

/// Why a course could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum CourseError {
    /// PATH is no course, module or lesson directory.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// `--repo-root` is no directory, or PATH is not inside it.
    #[error("{0}")]
    RepoRoot(String),
}

/// The git work tree `dir` is in, if any.
fn git_top(dir: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let top = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!top.is_empty()).then(|| PathBuf::from(top))
}

/// The ancestor of `path` (itself included) that most of the lessons' repository paths fit:
/// the one under which their first component exists (`foundations/linux/...` fits the
/// directory that holds `foundations`). The nearest wins a tie; none when no path fits anywhere.
pub fn infer_repo_root(path: &Path, repo_paths: &[String], view: &dyn RepoView) -> Option<PathBuf> {
    let firsts: Vec<&str> = repo_paths
        .iter()
        .filter_map(|p| p.trim_start_matches('/').split('/').next())
        .filter(|f| !f.is_empty() && *f != "." && *f != "..")
        .collect();
    let mut best: Option<(usize, PathBuf)> = None;
    for ancestor in path.ancestors() {
        let score = firsts
            .iter()
            .filter(|f| view.kind(&ancestor.join(f)).is_some())
            .count();
        if score > 0 && best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, ancestor.to_path_buf()));
        }
    }
    best.map(|(_, p)| p)
}

fn lesson_name(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.display().to_string()
    }
}

/// Checks the course at `path`.
pub fn check_course(path: &Path, options: &StaticOptions) -> Result<CourseReport, CourseError> {
    let started = Instant::now();
    let tree = discover(path)?;
    let abs = std::fs::canonicalize(path).map_err(|source| DiscoverError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lessons: Vec<String> = tree.lessons.iter().map(|l| lesson_name(l)).collect();
    let mut coverage = Coverage {
        lessons: tree.lessons.len(),
        skipped: tree.skipped.clone(),
        ..Coverage::default()
    };

    // Every page, read and extracted once.
    let pages: Vec<(Page, labgrade_lesson::Lesson)> = tree
        .pages
        .iter()
        .map(|(rel, lesson)| {
            let text = std::fs::read(abs.join(rel))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let page = Page {
                file: rel.display().to_string(),
                abs: abs.join(rel),
                lesson: lesson.map(|i| lessons[i].clone()),
            };
            (page, labgrade_lesson::extract(&text))
        })
        .collect();
    coverage.markdown_files = pages.len();
    let instructions: Vec<Vec<commands::Located>> = pages
        .iter()
        .map(|(_, lesson)| commands::instructions(lesson))
        .collect();

    // The repository root and where exec bits come from.
    let disk = DiskView::file_modes();
    let (repo_root, repo_root_from) = match &options.repo_root {
        Some(given) => {
            let root = std::fs::canonicalize(given).map_err(|e| {
                CourseError::RepoRoot(format!(
                    "--repo-root {}: {e}; give the directory students clone",
                    given.display()
                ))
            })?;
            if !abs.starts_with(&root) {
                return Err(CourseError::RepoRoot(format!(
                    "{} is not inside --repo-root {}",
                    path.display(),
                    given.display()
                )));
            }
            (root, RepoRootFrom::Given)
        }
        None => match git_top(&abs) {
            Some(top) => (top, RepoRootFrom::Git),
            None => {
                let resolve = Resolve {
                    repo_root: abs.clone(),
                    clone_path: options.clone_path.clone(),
                    course_root: abs.clone(),
                    whole_repo: false,
                };
                let repo_paths: Vec<String> = instructions
                    .iter()
                    .flatten()
                    .flat_map(|l| match &l.instruction {
                        Instruction::Cd(Some(d)) => resolve
                            .after_clone_path(d)
                            .map(|r| vec![r.to_owned()])
                            .unwrap_or_default(),
                        Instruction::SparseCheckout(p) => p.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                match infer_repo_root(&abs, &repo_paths, &disk) {
                    Some(root) => (root, RepoRootFrom::Inferred),
                    None => (abs.clone(), RepoRootFrom::Path),
                }
            }
        },
    };
    let git_view = if repo_root_from == RepoRootFrom::Git || repo_root.join(".git").exists() {
        DiskView::git_index(&repo_root).filter(DiskView::has_git_modes)
    } else {
        None
    };
    let exec_bits_from = if git_view.is_some() {
        ExecBitsFrom::GitIndex
    } else {
        ExecBitsFrom::FileMode
    };
    let view: &dyn RepoView = match &git_view {
        Some(v) => v,
        None => &disk,
    };
    let resolve = Resolve {
        repo_root: normalize(&repo_root),
        clone_path: options.clone_path.clone(),
        course_root: abs.clone(),
        whole_repo: git_view.is_some(),
    };

    let mut findings = Vec::new();
    let mut counts = Counts::default();
    for ((page, lesson), instructions) in pages.iter().zip(&instructions) {
        findings.extend(checks::check_links(
            page,
            lesson,
            &resolve,
            view,
            &mut counts,
        ));
        findings.extend(checks::check_instructions(
            page,
            instructions,
            &resolve,
            view,
            &mut counts,
        ));
    }
    coverage.links = counts.links;
    coverage.links_external = counts.links_external;
    coverage.paths = counts.paths;
    coverage.outside_unjudged = counts.outside;
    if counts.outside > 0 {
        coverage.skipped.push(Skipped {
            what: "links and paths outside PATH".into(),
            reason: format!(
                "{} missing links or paths would lie outside {} in parts of the repository not here ({} is no git work tree: it may hold only part of the repository); not judged",
                counts.outside,
                path.display(),
                repo_root.display()
            ),
        });
    }

    findings.extend(check_code(&tree, &abs, &lessons, options, &mut coverage));
    findings.extend(check_sections(
        &tree,
        &abs,
        &lessons,
        &pages,
        &options.labs,
        &mut coverage,
    ));

    findings
        .sort_by(|a, b| (a.file.as_str(), a.line, a.kind).cmp(&(b.file.as_str(), b.line, b.kind)));
    Ok(CourseReport {
        schema_version: SCHEMA_VERSION,
        path: path.display().to_string(),
        scope: tree.scope,
        repo_root: repo_root.display().to_string(),
        repo_root_from,
        clone_path: options.clone_path.clone(),
        exec_bits_from,
        lessons,
        findings,
        coverage,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// `bash -n` and shellcheck over the code/ scripts.
fn check_code(
    tree: &CourseTree,
    abs: &Path,
    lessons: &[String],
    options: &StaticOptions,
    coverage: &mut Coverage,
) -> Vec<Finding> {
    let mut shell: Vec<(PathBuf, usize)> = Vec::new();
    for (rel, lesson) in &tree.code_files {
        let mut head = [0u8; 256];
        let n = std::fs::File::open(abs.join(rel))
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .unwrap_or(0);
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        match scripts::script_kind(&name, &head[..n]) {
            scripts::ScriptKind::Shell => shell.push((rel.clone(), *lesson)),
            scripts::ScriptKind::Other => coverage.other_code_files += 1,
        }
    }
    coverage.scripts = shell.len();
    let tools = &options.tools;
    if let Err(why) = &tools.bash {
        coverage.skipped.push(Skipped {
            what: "script_syntax".into(),
            reason: format!("bash -n not run: {why}"),
        });
    }
    if let Err(why) = &tools.shellcheck {
        coverage.skipped.push(Skipped {
            what: "shellcheck".into(),
            reason: format!("{why}; install shellcheck to check scripts with it"),
        });
    }
    if shell.is_empty() {
        return Vec::new();
    }
    let paths: Vec<PathBuf> = shell.iter().map(|(rel, _)| abs.join(rel)).collect();
    let (verdicts, failures) = scripts::check_scripts(&paths, tools);
    for failure in failures {
        coverage.skipped.push(Skipped {
            what: "shellcheck".into(),
            reason: failure,
        });
    }
    let mut findings = Vec::new();
    for ((rel, lesson), verdict) in shell.iter().zip(&verdicts) {
        coverage.scripts_cached += usize::from(verdict.cached);
        let finding = |line, kind, message| Finding {
            file: rel.display().to_string(),
            line,
            class: FindingClass::Course,
            kind,
            message,
            lesson: Some(lessons[*lesson].clone()),
        };
        for issue in &verdict.syntax {
            findings.push(finding(
                issue.line,
                FindingKind::ScriptSyntax,
                format!(
                    "bash -n: {}; the script does not parse: fix it",
                    issue.message
                ),
            ));
        }
        for issue in verdict.shellcheck.iter().flatten() {
            let code = issue.code.unwrap_or(0);
            findings.push(finding(
                issue.line,
                FindingKind::Shellcheck,
                format!(
                    "SC{code}: {} (see https://www.shellcheck.net/wiki/SC{code})",
                    issue.message
                ),
            ));
        }
    }
    findings
}

/// Lab sections against the headings of their lessons in this course.
fn check_sections(
    tree: &CourseTree,
    abs: &Path,
    lessons: &[String],
    pages: &[(Page, labgrade_lesson::Lesson)],
    labs: &Result<Vec<LabSection>, String>,
    coverage: &mut Coverage,
) -> Vec<Finding> {
    let labs = match labs {
        Ok(labs) => labs,
        Err(why) => {
            coverage.skipped.push(Skipped {
                what: "lab_sections".into(),
                reason: why.clone(),
            });
            return Vec::new();
        }
    };
    let mut findings = Vec::new();
    for lab in labs {
        let Some(lesson) = sections::lesson_for(&lab.lesson_file, &tree.lessons, abs) else {
            continue;
        };
        let name = lesson_name(lesson);
        let Some((_, extracted)) = pages.iter().find(|(p, _)| {
            p.lesson.as_deref() == Some(name.as_str())
                && p.file == lesson.join(discover::PAGE).display().to_string()
        }) else {
            continue;
        };
        coverage.sections += 1;
        let mut headings = extracted.headings.clone();
        headings.extend(extracted.labels.iter().cloned());
        if let Err(nearest) = sections::find_section(&lab.section, &headings) {
            let lab_file = std::fs::canonicalize(&lab.lab_file)
                .ok()
                .and_then(|p| p.strip_prefix(abs).ok().map(Path::to_path_buf))
                .unwrap_or_else(|| lab.lab_file.clone());
            let hint = match nearest {
                Some(n) => format!(
                    "the nearest heading is \"{n}\": rename the lab's section or restore the heading"
                ),
                None => "name a heading the lesson has, or restore the heading".into(),
            };
            findings.push(Finding {
                file: lab_file.display().to_string(),
                line: lab.line,
                class: FindingClass::Course,
                kind: FindingKind::MissingSection,
                message: format!(
                    "the lab names section \"{}\" of {}, which {}/{} has no heading of; {hint}",
                    lab.section,
                    lab.lesson_file,
                    name,
                    discover::PAGE
                ),
                lesson: lessons.iter().find(|l| **l == name).cloned(),
            });
        }
    }
    if coverage.sections == 0 && !labs.is_empty() {
        coverage.skipped.push(Skipped {
            what: "lab_sections".into(),
            reason: format!(
                "none of the {} labs' lessons is in {}",
                labs.len(),
                tree.root.display()
            ),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use view::MapView;

    #[test]
    fn the_repo_root_is_where_the_lessons_paths_fit() {
        let view = MapView::default()
            .file("/w/course/foundations/linux/lx11/01-a/README.md", false)
            .file("/w/course/LICENSE", false);
        let paths = [
            "foundations/linux/lx11/01-a/code".to_owned(),
            "foundations/linux/containers".to_owned(),
            String::new(),
        ];
        assert_eq!(
            infer_repo_root(Path::new("/w/course/foundations/linux"), &paths, &view),
            Some(PathBuf::from("/w/course"))
        );
        assert_eq!(
            infer_repo_root(
                Path::new("/w/course/foundations/linux"),
                &["elsewhere/x".to_owned()],
                &view
            ),
            None
        );
    }
}
