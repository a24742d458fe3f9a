//! Line diffs for checks whose expected and actual text differ.

use similar::TextDiff;

/// A unified line diff, `-` expected and `+` actual.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let diff = TextDiff::from_lines(expected, actual);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push_str(change.value().trim_end_matches('\n'));
        if change.missing_newline() {
            out.push_str(" ⟨no newline at end⟩");
        }
        out.push('\n');
    }
    out
}
