//! `--fix`: the lesson with each drifting documented line replaced by what it really prints, the
//! way `cargo insta accept` takes the new truth. Only lines that drift (and are not accepted by
//! the baseline) change; a line that matched, placeholders and all, is left as written.

use crate::report::DriftReport;

/// One documented line to rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFix {
    /// Markdown line.
    pub line: usize,
    /// The documented text on that line, as written.
    pub documented: String,
    /// What the command prints there; `None`: nothing, so the line goes.
    pub replacement: Option<String>,
}

/// The fixes for a report's new drift.
pub fn fixes(report: &DriftReport) -> Vec<LineFix> {
    report
        .new_drift()
        .map(|(_, l)| LineFix {
            line: l.line,
            documented: l.documented.clone(),
            replacement: l.actual.clone(),
        })
        .collect()
}

/// Applies `fixes` to the lesson's text. A fix whose line no longer holds its documented text
/// (the file changed meanwhile) is left out.
pub fn apply(src: &str, fixes: &[LineFix]) -> String {
    let mut out = String::with_capacity(src.len());
    for (i, raw) in src.split_inclusive('\n').enumerate() {
        let line = i + 1;
        let Some(fix) = fixes.iter().find(|f| f.line == line) else {
            out.push_str(raw);
            continue;
        };
        let (body, ending) = match raw.strip_suffix('\n') {
            Some(b) => match b.strip_suffix('\r') {
                Some(b2) => (b2, "\r\n"),
                None => (b, "\n"),
            },
            None => (raw, ""),
        };
        let Some(at) = body.rfind(fix.documented.as_str()) else {
            out.push_str(raw);
            continue;
        };
        // Nothing printed there (`None`): the documented line goes.
        if let Some(new) = &fix.replacement {
            out.push_str(&body[..at]);
            out.push_str(new.trim_end());
            out.push_str(&body[at + fix.documented.len()..]);
            out.push_str(ending);
        }
    }
    out
}

/// The change as a unified diff, `a/PATH` to `b/PATH`.
pub fn unified_diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_documented_text_of_each_fixed_line() {
        let src = "a\n```bash\ncat x\n# 输出: old text\n```\n\n```\nold line\n  keep\n```\n";
        let fixes = [
            LineFix {
                line: 4,
                documented: "old text".into(),
                replacement: Some("new text".into()),
            },
            LineFix {
                line: 8,
                documented: "old line".into(),
                replacement: Some("new  line".into()),
            },
            LineFix {
                line: 9,
                documented: "  gone".into(),
                replacement: None,
            },
        ];
        let out = apply(src, &fixes);
        assert_eq!(
            out,
            "a\n```bash\ncat x\n# 输出: new text\n```\n\n```\nnew  line\n  keep\n```\n"
        );
        let out = apply(
            src,
            &[LineFix {
                line: 9,
                documented: "  keep".into(),
                replacement: None,
            }],
        );
        assert!(!out.contains("keep"));
    }

    #[test]
    fn lines_that_differ_only_by_a_placeholder_are_left_alone() {
        use crate::run::{BlockRun, LessonRun};
        let src = "```bash\nls -l x; echo v2\n```\n\nOutput:\n\n```\n-rw-r--r-- 1 root root 5 Jan  4 12:00 ... x\nv1\n```\n";
        let lesson = crate::extract(src);
        let run = LessonRun {
            blocks: vec![BlockRun::Ran {
                outputs: vec!["-rw-r--r-- 1 root root 5 Dec  1 11:22 /tmp/x\nv2\n".into()],
                exit_code: Some(0),
            }],
            root: true,
            duration: std::time::Duration::ZERO,
        };
        let report = crate::judge(&lesson, &run, &crate::RunMeta::default());
        let fixed = apply(src, &fixes(&report));
        assert_eq!(fixed, src.replace("v1", "v2"));
    }

    #[test]
    fn diff_shows_the_change() {
        let d = unified_diff("a\nb\n", "a\nc\n", "l.md");
        assert!(
            d.contains("--- a/l.md") && d.contains("-b") && d.contains("+c"),
            "{d}"
        );
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("l.md");
        std::fs::write(&p, "old").unwrap_or_else(|e| panic!("{e}"));
        labgrade_fs::write_atomically(&p, b"new").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(&p).unwrap_or_default(), "new");
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(0),
            1
        );
    }
}
