//! Labs name the lesson section their claims come from (`lesson = { file, section }`); when the
//! course holds that lesson, the heading must be there, or a renamed heading silently detaches
//! the lab from the text it proves.

use std::path::{Path, PathBuf};

use labgrade_lesson::extract::Heading;

/// A lab's pointer into a lesson, with where the lab file says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSection {
    /// The lab file.
    pub lab_file: PathBuf,
    /// Line of its `lesson` key.
    pub line: usize,
    /// The lesson file it names (`07-overlay-filesystems.md`).
    pub lesson_file: String,
    /// The heading it names.
    pub section: String,
}

/// The 1-based line of the `lesson` key (`lesson = ...` or a `[lesson]` table) in a lab file's
/// text; 1 when not found.
pub fn lesson_key_line(toml: &str) -> usize {
    toml.lines()
        .position(|l| {
            let t = l.trim_start();
            t == "[lesson]"
                || t.strip_prefix("lesson")
                    .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// The sections the labs name, read from their files.
pub fn lab_sections(labs: &[labgrade_spec::Lab]) -> Vec<LabSection> {
    let mut out: Vec<LabSection> = Vec::new();
    for lab in labs {
        // A lab run per engine appears once per engine: its file is checked once.
        if out.iter().any(|s| s.lab_file == lab.path) {
            continue;
        }
        let text = std::fs::read_to_string(&lab.path).unwrap_or_default();
        out.push(LabSection {
            lab_file: lab.path.clone(),
            line: lesson_key_line(&text),
            lesson_file: lab.lesson.file.clone(),
            section: lab.lesson.section.clone(),
        });
    }
    out
}

/// The course lesson a lab's lesson file names: the lesson directory named like the file
/// without `.md` (`07-overlay-filesystems.md` -> `.../07-overlay-filesystems/`), if exactly one.
pub fn lesson_for<'a>(lesson_file: &str, lessons: &'a [PathBuf], root: &Path) -> Option<&'a Path> {
    let stem = Path::new(lesson_file)
        .file_stem()?
        .to_string_lossy()
        .into_owned();
    let mut found = lessons.iter().filter(|l| {
        let name = if l.as_os_str().is_empty() {
            root.file_name()
        } else {
            l.file_name()
        };
        name.is_some_and(|n| n.to_string_lossy() == stem)
    });
    let first = found.next()?;
    found.next().is_none().then_some(first.as_path())
}

/// The heading's verdict: found, or the nearest one to suggest.
pub fn find_section<'h>(section: &str, headings: &'h [Heading]) -> Result<(), Option<&'h str>> {
    let want = section.trim();
    if headings.iter().any(|h| h.text == want) {
        return Ok(());
    }
    let nearest = headings
        .iter()
        .map(|h| {
            let ratio = similar::TextDiff::from_chars(want, h.text.as_str()).ratio();
            (ratio, h.text.as_str())
        })
        .filter(|(r, _)| *r >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t);
    Err(nearest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lesson_key_line() {
        assert_eq!(
            lesson_key_line("id = \"x\"\ntitle = \"t\"\nlesson = { file = \"a.md\" }\n"),
            3
        );
        assert_eq!(lesson_key_line("id = 1\n[lesson]\nfile = \"a\"\n"), 2);
        assert_eq!(lesson_key_line("lessons = 1\n"), 1);
    }

    #[test]
    fn a_lab_finds_its_lesson_by_name() {
        let lessons = [
            PathBuf::from("m1/07-overlay-filesystems"),
            PathBuf::from("m1/08-x"),
        ];
        assert_eq!(
            lesson_for("07-overlay-filesystems.md", &lessons, Path::new("/c")),
            Some(Path::new("m1/07-overlay-filesystems"))
        );
        assert_eq!(lesson_for("09-y.md", &lessons, Path::new("/c")), None);
        let one = [PathBuf::new()];
        assert_eq!(
            lesson_for("07-x.md", &one, Path::new("/c/07-x")),
            Some(Path::new(""))
        );
    }

    #[test]
    fn sections_found_or_the_nearest_suggested() {
        let h = |t: &str| Heading {
            line: 1,
            level: 2,
            text: t.into(),
        };
        let headings = [h("Lab 1：手动挂载 OverlayFS"), h("多层 lowerdir")];
        assert_eq!(find_section("多层 lowerdir", &headings), Ok(()));
        assert_eq!(
            find_section("Lab 1：手动挂载 Overlay", &headings),
            Err(Some("Lab 1：手动挂载 OverlayFS"))
        );
        assert_eq!(find_section("完全不同", &headings), Err(None));
    }
}
