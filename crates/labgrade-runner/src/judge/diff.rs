//! Line diffs for checks whose expected and actual text differ.
//!
//! The text on one side is whatever a lab or a student's code left in a file, so the diff is
//! bounded three ways: sides too large for a line diff get a summary instead (sizes, line
//! counts, the first differing line with a little context), the line diff that does run has a
//! deadline, and the rendered text has a length cap. Small diffs are exactly what
//! [`similar::TextDiff::from_lines`] gives.

use std::time::Duration;

use similar::{Algorithm, ChangeTag, TextDiff};

/// Largest side, in bytes, diffed line by line. Myers' diff costs up to (N+M)·D: four 1 MiB
/// files of `x\n` lines against a short expected text took minutes of CPU.
pub const DIFF_MAX_BYTES: usize = 32 * 1024;

/// Most lines of a side diffed line by line.
pub const DIFF_MAX_LINES: usize = 2000;

/// Longest diff text returned; longer ones are cut at a line and say so.
pub const DIFF_MAX_CHARS: usize = 16 * 1024;

/// The line diff that does run gives up refining after this long (the result is still a
/// correct diff, only a less minimal one). Within the size caps it takes milliseconds.
const DIFF_DEADLINE: Duration = Duration::from_secs(1);

/// Lines of context shown before the first difference in a summary, and lines of each side
/// shown from it.
const SUMMARY_BEFORE: usize = 2;
const SUMMARY_FROM: usize = 3;

/// Longest line shown in a summary.
const SUMMARY_LINE_CHARS: usize = 200;

/// A unified line diff, `-` expected and `+` actual; for sides over [`DIFF_MAX_BYTES`] or
/// [`DIFF_MAX_LINES`], a summary saying so, with the first differing line.
pub fn line_diff(expected: &str, actual: &str) -> String {
    if too_big(expected) || too_big(actual) {
        return summary(expected, actual);
    }
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(DIFF_DEADLINE)
        .diff_lines(expected, actual);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        let start = out.len();
        out.push(sign);
        out.push_str(change.value().trim_end_matches('\n'));
        if change.missing_newline() {
            out.push_str(" ⟨no newline at end⟩");
        }
        out.push('\n');
        if out.len() > DIFF_MAX_CHARS {
            out.truncate(start);
            out.push_str(&format!(
                "… the diff is cut here, at {DIFF_MAX_CHARS} characters\n"
            ));
            break;
        }
    }
    out
}

fn too_big(s: &str) -> bool {
    s.len() > DIFF_MAX_BYTES || s.lines().nth(DIFF_MAX_LINES).is_some()
}

fn size(s: &str) -> String {
    let lines = s.split_inclusive('\n').count();
    format!(
        "{} bytes in {lines} line{}",
        s.len(),
        if lines == 1 { "" } else { "s" }
    )
}

/// A line of a summary: cut at [`SUMMARY_LINE_CHARS`], its newline dropped (a missing one said).
fn shown(sign: char, line: &str) -> String {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let mut s = String::from(sign);
    match body.char_indices().nth(SUMMARY_LINE_CHARS) {
        Some((cut, _)) => {
            s.push_str(&body[..cut]);
            s.push_str(" …");
        }
        None => s.push_str(body),
    }
    if !line.ends_with('\n') {
        s.push_str(" ⟨no newline at end⟩");
    }
    s.push('\n');
    s
}

/// What is said instead of a line diff of sides too large for one: both sizes, and the first
/// line where they differ with a little context. Linear in the sides' length.
fn summary(expected: &str, actual: &str) -> String {
    let mut out = format!(
        "not diffed line by line (a side is over {DIFF_MAX_BYTES} bytes or {DIFF_MAX_LINES} lines): \
         expected {}, found {}\n",
        size(expected),
        size(actual)
    );
    let e: Vec<&str> = expected.split_inclusive('\n').collect();
    let a: Vec<&str> = actual.split_inclusive('\n').collect();
    let first = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    if first == e.len() && first == a.len() {
        out.push_str("no line differs\n");
        return out;
    }
    out.push_str(&format!("first difference at line {}:\n", first + 1));
    for l in &e[first.saturating_sub(SUMMARY_BEFORE)..first] {
        out.push_str(&shown(' ', l));
    }
    for l in e.iter().skip(first).take(SUMMARY_FROM) {
        out.push_str(&shown('-', l));
    }
    for l in a.iter().skip(first).take(SUMMARY_FROM) {
        out.push_str(&shown('+', l));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_diffs_are_similars_line_diff() {
        assert_eq!(
            line_diff("a\nb\n", "a\nc"),
            " a\n-b\n+c ⟨no newline at end⟩\n"
        );
    }

    #[test]
    fn a_large_side_gets_a_summary_with_the_first_differing_line() {
        let big = "x\n".repeat(1 << 19);
        let d = line_diff("a\nb\n", &big);
        assert!(
            d.starts_with(
                "not diffed line by line (a side is over 32768 bytes or 2000 lines): \
                 expected 4 bytes in 2 lines, found 1048576 bytes in 524288 lines\n"
            ),
            "{d}"
        );
        assert!(
            d.ends_with("first difference at line 1:\n-a\n-b\n+x\n+x\n+x\n"),
            "{d}"
        );

        let mut other = big.clone();
        other.replace_range(2000..2001, "y");
        let d = line_diff(&big, &other);
        assert!(
            d.ends_with("first difference at line 1001:\n x\n x\n-x\n-x\n-x\n+y\n+x\n+x\n"),
            "{d}"
        );
    }

    #[test]
    fn a_summary_cuts_long_lines_and_says_where_one_side_ends() {
        let long = "z".repeat(DIFF_MAX_BYTES + 1);
        let d = summary("z", &long);
        assert!(
            d.ends_with(&format!(
                "first difference at line 1:\n-z ⟨no newline at end⟩\n+{} … ⟨no newline at end⟩\n",
                "z".repeat(SUMMARY_LINE_CHARS)
            )),
            "{d}"
        );
        let d = summary("a\n", "a\nb\n");
        assert!(d.ends_with("first difference at line 2:\n a\n+b\n"), "{d}");
    }

    #[test]
    fn a_long_diff_is_cut_and_says_so() {
        // Under the size caps, but every line differs: 600 lines of 60 bytes of diff.
        let line = format!("{}\n", "w".repeat(55));
        let expected: String = (0..300).map(|i| format!("{i:03}{line}")).collect();
        let actual: String = (0..300).map(|i| format!("{i:03}-{line}")).collect();
        assert!(!too_big(&expected) && !too_big(&actual));
        let d = line_diff(&expected, &actual);
        assert!(d.len() <= DIFF_MAX_CHARS + 100, "{}", d.len());
        assert!(d.ends_with(&format!(
            "… the diff is cut here, at {DIFF_MAX_CHARS} characters\n"
        )));
    }
}
