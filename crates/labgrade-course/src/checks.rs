//! The checks of one markdown page, as pure functions of its extracted text and a
//! [`RepoView`]: relative links resolve, and the paths the page tells students to use exist
//! (`cd ~/cloud-atlas/...`, `git sparse-checkout set`, `./x.sh` runs and their exec bits).

use std::path::{Path, PathBuf};

use labgrade_lesson::Lesson;

use crate::commands::{Instruction, Located, instructions};
use crate::report::{Finding, FindingClass, FindingKind};
use crate::view::{EntryKind, RepoView, normalize};

/// Course-level settings the checks resolve paths with.
#[derive(Debug, Clone)]
pub struct Resolve {
    /// The repository root (absolute, normal): where `~/cloud-atlas` points.
    pub repo_root: PathBuf,
    /// Where students clone the repository, as lessons write it (`~/cloud-atlas`).
    pub clone_path: String,
    /// PATH (absolute, normal): what a copy of part of a repository surely holds.
    pub course_root: PathBuf,
    /// The whole repository is here (a git work tree). When not (a copy of part of it), a
    /// missing path is judged only when it would lie in PATH: one in a sibling part the copy
    /// does not hold cannot be told from one that is really missing.
    pub whole_repo: bool,
}

impl Resolve {
    /// Whether a missing `target` can be judged missing (see [`Resolve::whole_repo`]): its
    /// deepest existing ancestor is PATH or inside it.
    pub fn judgeable(&self, target: &Path, view: &dyn RepoView) -> bool {
        if self.whole_repo {
            return true;
        }
        target
            .ancestors()
            .find(|a| view.kind(a).is_some())
            .is_some_and(|a| a.starts_with(&self.course_root))
    }

    /// `path` as a reader finds it in the repository (relative to its root; absolute when
    /// outside it): a link's target named relative to PATH reads like the link itself.
    fn show(&self, path: &Path) -> String {
        match path.strip_prefix(&self.repo_root) {
            Ok(r) if r.as_os_str().is_empty() => ".".into(),
            Ok(r) => r.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// The rest of `word` after the clone path (`~/cloud-atlas/x` -> `x`, `~/cloud-atlas` ->
    /// ``), also when written with `$HOME`.
    pub fn after_clone_path<'w>(&self, word: &'w str) -> Option<&'w str> {
        let clone = self.clone_path.trim_end_matches('/');
        let tail = clone.strip_prefix("~/");
        let candidates = [
            Some(clone.to_owned()),
            tail.map(|t| format!("$HOME/{t}")),
            tail.map(|t| format!("${{HOME}}/{t}")),
        ];
        candidates.into_iter().flatten().find_map(|c| {
            let rest = word.strip_prefix(c.as_str())?;
            if rest.is_empty() {
                Some(rest)
            } else {
                rest.strip_prefix('/')
            }
        })
    }
}

/// The page being checked.
#[derive(Debug, Clone)]
pub struct Page {
    /// Relative to PATH, as findings name it.
    pub file: String,
    /// Absolute and normal.
    pub abs: PathBuf,
    /// Its lesson, as the report names it.
    pub lesson: Option<String>,
}

impl Page {
    fn finding(&self, line: usize, kind: FindingKind, message: String) -> Finding {
        Finding {
            file: self.file.clone(),
            line,
            class: FindingClass::Course,
            kind,
            message,
            lesson: self.lesson.clone(),
        }
    }
}

/// How many things a page's checks looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Relative links resolved.
    pub links: usize,
    /// Links to the web, mail, or an anchor only.
    pub links_external: usize,
    /// Paths checked.
    pub paths: usize,
    /// Missing links and paths outside PATH not judged (see [`Resolve::whole_repo`]).
    pub outside: usize,
}

/// Where a link points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// A URL with a scheme (`https:`, `mailto:`), or protocol-relative (`//host`).
    External,
    /// Only an anchor on this page (`#x`), or nothing.
    Anchor,
    /// A path: relative to the page, or (starting with `/`) to the repository root; anchor and
    /// query removed, percent-escapes decoded.
    Path(String),
}

/// Classifies a link destination as written.
pub fn link_target(dest: &str) -> LinkTarget {
    let dest = dest.trim();
    let scheme_end = dest.find(':');
    let has_scheme = scheme_end.is_some_and(|i| {
        let s = &dest[..i];
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    if has_scheme || dest.starts_with("//") {
        return LinkTarget::External;
    }
    let path = dest.split(['#', '?']).next().unwrap_or("");
    if path.is_empty() {
        return LinkTarget::Anchor;
    }
    LinkTarget::Path(percent_decode(path))
}

/// `%20` -> ` `; malformed or non-UTF-8 escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// Relative links and images of the page resolve to something that exists.
pub fn check_links(
    page: &Page,
    lesson: &Lesson,
    resolve: &Resolve,
    view: &dyn RepoView,
    counts: &mut Counts,
) -> Vec<Finding> {
    let dir = page.abs.parent().unwrap_or(Path::new("/"));
    let mut findings = Vec::new();
    for link in &lesson.links {
        let LinkTarget::Path(path) = link_target(&link.dest) else {
            counts.links_external += 1;
            continue;
        };
        counts.links += 1;
        let target = match path.strip_prefix('/') {
            Some(from_root) => normalize(&resolve.repo_root.join(from_root)),
            None => normalize(&dir.join(&path)),
        };
        if view.kind(&target).is_none() {
            if !resolve.judgeable(&target, view) {
                counts.outside += 1;
                continue;
            }
            let what = if link.image { "image" } else { "link" };
            findings.push(page.finding(
                link.line,
                FindingKind::BrokenLink,
                format!(
                    "{what} `{}` points to {}, which does not exist; fix the {what} or restore its target",
                    link.dest,
                    resolve.show(&target)
                ),
            ));
        }
    }
    findings
}

/// A word that names no fixed path: a variable, a glob, a placeholder.
fn is_placeholder(word: &str) -> bool {
    word.contains(['$', '*', '?', '<', '>', '{', '[', '`'])
}

/// Matches `name` against a glob of `*` and `?` (enough for `chmod +x *.sh`).
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A file the page made executable or wrote: where (the cwd then, if known) and which.
#[derive(Debug)]
struct Touched {
    dir: Option<PathBuf>,
    pattern: String,
}

impl Touched {
    fn covers(&self, script: &Path) -> bool {
        let name = script
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        match &self.dir {
            Some(dir) => {
                let full = normalize(&dir.join(&self.pattern));
                glob_match(&full.to_string_lossy(), &script.to_string_lossy())
            }
            None => {
                let base = self.pattern.rsplit('/').next().unwrap_or(&self.pattern);
                glob_match(base, &name)
            }
        }
    }
}

/// The paths the page tells students to use exist in the repository, and the scripts it runs as
/// `./x.sh` after a `cd` into it are executable in a clone (or made so by the page first).
///
/// The page is read as one terminal session: a `cd` holds for the blocks after it. Only a `cd`
/// through the clone path (`cd ~/cloud-atlas/...`) is checked: a `cd` elsewhere (a directory
/// the lesson makes) leaves the directory unknown, and nothing is judged until the next `cd`
/// into the clone.
pub fn check_paths(
    page: &Page,
    lesson: &Lesson,
    resolve: &Resolve,
    view: &dyn RepoView,
    counts: &mut Counts,
) -> Vec<Finding> {
    check_instructions(page, &instructions(lesson), resolve, view, counts)
}

/// [`check_paths`] over instructions already read.
pub fn check_instructions(
    page: &Page,
    instructions: &[Located],
    resolve: &Resolve,
    view: &dyn RepoView,
    counts: &mut Counts,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut cwd: Option<PathBuf> = None;
    let mut made_exec: Vec<Touched> = Vec::new();
    let mut written: Vec<Touched> = Vec::new();
    let clone = resolve.clone_path.as_str();
    for Located { line, instruction } in instructions {
        let line = *line;
        match instruction {
            Instruction::Cd(None) => cwd = None,
            Instruction::Cd(Some(dir)) => {
                if let Some(rest) = resolve.after_clone_path(dir) {
                    if is_placeholder(rest) {
                        cwd = None;
                        continue;
                    }
                    counts.paths += 1;
                    let target = normalize(&resolve.repo_root.join(rest));
                    if view.kind(&target) == Some(EntryKind::Dir) {
                        cwd = Some(target);
                    } else if !resolve.judgeable(&target, view) {
                        counts.outside += 1;
                        cwd = None;
                    } else {
                        findings.push(page.finding(
                            line,
                            FindingKind::MissingPath,
                            format!(
                                "`cd {dir}`: {clone}/{rest} is not a directory of the repository ({} does not exist); fix the path",
                                resolve.show(&target)
                            ),
                        ));
                        cwd = None;
                    }
                } else if dir.starts_with(['/', '~', '$']) || is_placeholder(dir) || dir == "-" {
                    cwd = None;
                } else {
                    // Relative to where the student is: followed only inside the clone.
                    cwd = cwd
                        .take()
                        .map(|c| normalize(&c.join(dir)))
                        .filter(|c| view.kind(c) == Some(EntryKind::Dir));
                }
            }
            Instruction::SparseCheckout(paths) => {
                for p in paths.iter().filter(|p| !is_placeholder(p)) {
                    counts.paths += 1;
                    let target = normalize(&resolve.repo_root.join(p.trim_start_matches('/')));
                    if view.kind(&target).is_none() {
                        if !resolve.judgeable(&target, view) {
                            counts.outside += 1;
                            continue;
                        }
                        findings.push(page.finding(
                            line,
                            FindingKind::MissingPath,
                            format!(
                                "`git sparse-checkout set` names {p}, which is not in the repository: a student's clone gets nothing there; name an existing path"
                            ),
                        ));
                    }
                }
            }
            Instruction::ChmodExec(files) => made_exec.extend(files.iter().map(|f| Touched {
                dir: cwd.clone(),
                pattern: f.clone(),
            })),
            Instruction::Writes(file) => written.push(Touched {
                dir: cwd.clone(),
                pattern: file.clone(),
            }),
            Instruction::Run { program, sudo } => {
                let Some(dir) = &cwd else { continue };
                if is_placeholder(program) {
                    continue;
                }
                let script = normalize(&dir.join(program));
                if written.iter().any(|t| t.covers(&script)) {
                    continue;
                }
                counts.paths += 1;
                let run = if *sudo {
                    format!("sudo {program}")
                } else {
                    program.clone()
                };
                match view.kind(&script) {
                    None => findings.push(page.finding(
                        line,
                        FindingKind::MissingPath,
                        format!(
                            "`{run}` runs {}, which is not in the repository; fix the name or add the script",
                            resolve.show(&script)
                        ),
                    )),
                    Some(EntryKind::Dir) => findings.push(page.finding(
                        line,
                        FindingKind::MissingPath,
                        format!("`{run}` runs {}, which is a directory", resolve.show(&script)),
                    )),
                    Some(EntryKind::File) => {
                        if !view.executable(&script)
                            && !made_exec.iter().any(|t| t.covers(&script))
                        {
                            findings.push(page.finding(
                                line,
                                FindingKind::ScriptNotExecutable,
                                format!(
                                    "`{run}` fails with \"Permission denied\": {} is not executable in the repository; commit it with its exec bit (git update-index --chmod=+x) or have the lesson run `chmod +x` first",
                                    resolve.show(&script)
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::MapView;

    fn resolve() -> Resolve {
        Resolve {
            repo_root: PathBuf::from("/r"),
            clone_path: "~/cloud-atlas".into(),
            course_root: PathBuf::from("/r/c"),
            whole_repo: true,
        }
    }

    fn page() -> Page {
        Page {
            file: "m/01-a/README.md".into(),
            abs: PathBuf::from("/r/c/m/01-a/README.md"),
            lesson: Some("m/01-a".into()),
        }
    }

    fn view() -> MapView {
        MapView::default()
            .file("/r/c/m/01-a/README.md", false)
            .file("/r/c/m/01-a/code/run.sh", true)
            .file("/r/c/m/01-a/code/plain.sh", false)
            .file("/r/c/m/01-a/code/other.sh", false)
            .file("/r/c/m/02-b/README.md", false)
            .file("/r/LICENSE", false)
    }

    fn kinds(findings: &[Finding]) -> Vec<(usize, &'static str)> {
        findings.iter().map(|f| (f.line, f.kind.as_str())).collect()
    }

    #[test]
    fn link_destinations() {
        assert_eq!(link_target("https://x.org/a"), LinkTarget::External);
        assert_eq!(link_target("mailto:a@b"), LinkTarget::External);
        assert_eq!(link_target("//cdn/x.png"), LinkTarget::External);
        assert_eq!(link_target("#top"), LinkTarget::Anchor);
        assert_eq!(link_target(""), LinkTarget::Anchor);
        assert_eq!(
            link_target("../02-b/#lab-1"),
            LinkTarget::Path("../02-b/".into())
        );
        assert_eq!(
            link_target("a%20b.md?x=1"),
            LinkTarget::Path("a b.md".into())
        );
        assert_eq!(link_target("%zz"), LinkTarget::Path("%zz".into()));
    }

    #[test]
    fn broken_links_and_images_are_found_at_their_lines() {
        let md = "# A\n[next](../02-b/)\n[gone](../03-c/#x)\n![img](code/pic.png)\n[web](https://x)\n[top](/LICENSE)\n[up](../../../../../x)\n";
        let lesson = labgrade_lesson::extract(md);
        let mut counts = Counts::default();
        let f = check_links(&page(), &lesson, &resolve(), &view(), &mut counts);
        assert_eq!(
            kinds(&f),
            [(3, "broken_link"), (4, "broken_link"), (7, "broken_link")]
        );
        assert!(f[0].message.contains("m/03-c"), "{}", f[0].message);
        assert_eq!(counts.links, 5);
        assert_eq!(counts.links_external, 1);

        // In a copy of part of the repository, what would lie outside PATH is not judged.
        let partial = Resolve {
            whole_repo: false,
            ..resolve()
        };
        let md = "[in](../03-c/)\n[out](../../../other/x)\n[up](../../../../../x)\n";
        let mut counts = Counts::default();
        let f = check_links(
            &page(),
            &labgrade_lesson::extract(md),
            &partial,
            &view(),
            &mut counts,
        );
        assert_eq!(kinds(&f), [(1, "broken_link")]);
        assert_eq!(counts.outside, 2);
    }

    #[test]
    fn paths_a_lesson_tells_students_to_use() {
        let md = "```bash\n\
            cd ~/cloud-atlas && git sparse-checkout set c/m c/missing\n\
            cd ~/cloud-atlas/c/m/01-a/code\n\
            ./run.sh\n\
            sudo ./plain.sh\n\
            ./absent.sh\n\
            chmod +x other.sh\n\
            ./other.sh\n\
            cat > mine.sh <<EOF\n\
            echo\n\
            EOF\n\
            ./mine.sh\n\
            cd ~/cloud-atlas/c/m/01-a/cod\n\
            ./plain.sh\n\
            cd /tmp && ./plain.sh\n\
            ```\n";
        let lesson = labgrade_lesson::extract(md);
        let mut counts = Counts::default();
        let f = check_paths(&page(), &lesson, &resolve(), &view(), &mut counts);
        assert_eq!(
            kinds(&f),
            [
                (2, "missing_path"),
                (5, "script_not_executable"),
                (6, "missing_path"),
                (13, "missing_path"),
            ]
        );
        assert!(f[1].message.contains("sudo ./plain.sh"), "{}", f[1].message);
        // cd x2 + sparse x2 + runs (run, plain, absent, other) + the last cd.
        assert_eq!(counts.paths, 9);
    }

    #[test]
    fn the_clone_path_is_a_setting() {
        let mut r = resolve();
        r.clone_path = "~/src/atlas/".into();
        assert_eq!(r.after_clone_path("~/src/atlas/x/y"), Some("x/y"));
        assert_eq!(r.after_clone_path("$HOME/src/atlas"), Some(""));
        assert_eq!(r.after_clone_path("~/src/atlasx"), None);
        assert_eq!(r.after_clone_path("~/cloud-atlas/x"), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.sh", "a.sh"));
        assert!(glob_match("/d/*", "/d/x.sh"));
        assert!(!glob_match("*.sh", "a.py"));
        assert!(glob_match("a?c", "abc"));
    }
}
