//! Escaping what a student controls before a renderer prints it.
//!
//! File names, symlink targets, file contents, mount sources and options, a task's stderr and a
//! batch folder's name all come from the submission. Printed raw they can clear a grader's
//! terminal and paint a fake score (`\x1b[2J`), forge a Markdown heading or a passing table row
//! (`\n# 100/100`, `| ✅ |`), or run in a browser (`<img onerror>`). Every renderer passes such
//! text through one of these functions; the assignment's own text (check names, feedback) is
//! trusted and printed as written.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;

/// Characters that act instead of showing: C0 and C1 controls and DEL, and the Unicode format
/// characters that reorder or break a line (bidi embeddings, overrides and isolates, the
/// line and paragraph separators, zero-width characters, the byte-order mark).
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Pushes `c` as visible text: `\n`, `\t`, `\r`, `\x1b` for other ASCII, `\u{202e}` beyond.
fn push_visible(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_ascii() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// A one-line value (a name, a target, an option, a found value) as text that stays on one
/// line and only shows: every control or format character, newline and tab included, is made
/// visible (`\n`, `\x1b`, `\u{202e}`). For a terminal and for plain-text formats (JUnit).
pub fn line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if acts(c) {
            push_visible(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-line text quoted as a block (a task's stderr): newlines and tabs stay, every other
/// control or format character is made visible as in [`line`], so a carriage return or an
/// escape sequence cannot rewrite what was printed before it.
pub fn block(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if acts(c) && c != '\n' && c != '\t' {
            push_visible(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// A one-line value placed inside a line of Markdown (GitHub, Gradescope's `md` output): as
/// [`line`], then `<`, `>` and `&` become entities (no tag, in Markdown or in HTML), and the
/// characters Markdown acts on are backslash-escaped so the value cannot open a code span,
/// emphasis, a link, a table cell or a heading. A leading `-`, `+`, `=` or `1.` is escaped too,
/// so the value cannot start a list or a setext heading even at the start of a line.
pub fn md_inline(s: &str) -> String {
    let visible = line(s);
    let mut out = String::with_capacity(visible.len() + 8);
    let mut leading_digits = true;
    for (i, c) in visible.chars().enumerate() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '|' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '.' | ')' if leading_digits && i > 0 => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        leading_digits = leading_digits && c.is_ascii_digit();
    }
    out
}

/// The longest run of `tick` in `s`.
fn longest_run(s: &str, tick: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == tick { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// A one-line value as a Markdown code span: shown verbatim, control characters made visible
/// as in [`line`], between backtick fences longer than any backtick run inside (so a student's
/// backticks cannot close it early). HTML inside a code span is text.
pub fn md_code(s: &str) -> String {
    let body = line(s);
    let fence = "`".repeat(longest_run(&body, '`') + 1);
    let pad = if body.starts_with('`') || body.ends_with('`') || body.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{body}{pad}{fence}")
}

/// Multi-line text as a fenced Markdown code block, its lines as [`block`] makes them, fenced
/// with more backticks than any run inside so no line of it can close the block (inside, HTML
/// and Markdown are text).
pub fn md_fenced(s: &str) -> String {
    let body = block(s);
    let fence = "`".repeat(longest_run(&body, '`').max(2) + 1);
    let body = body.strip_suffix('\n').unwrap_or(&body);
    format!("{fence}\n{body}\n{fence}")
}

/// A directory name (a batch's submission folder) as a printable name that is distinct for
/// every distinct name: bytes that are not UTF-8, control and format characters, and the
/// backslash itself are written `\xNN` per byte, everything else as it is. Since a backslash is
/// always escaped, `\xff` can only come from the byte 0xff, never from a folder really called
/// `\xff` (that one is `\x5cxff`), so two folders never share an output directory or a line of
/// `summary.csv`.
pub fn file_name(name: &OsStr) -> String {
    let mut out = String::with_capacity(name.len());
    let byte = |out: &mut String, b: u8| {
        let _ = write!(out, "\\x{b:02x}");
    };
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || acts(c) {
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    byte(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            byte(&mut out, b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn control_characters_are_shown_not_acted_on() {
        assert_eq!(line("a\x1b[2Jb\nc\td\r"), "a\\x1b[2Jb\\nc\\td\\r");
        assert_eq!(line("evil\u{202e}txt.sh"), "evil\\u{202e}txt.sh");
        assert_eq!(line("\u{85}"), "\\u{85}");
        assert_eq!(line("plain 名前 ✅"), "plain 名前 ✅");
        assert_eq!(block("one\n\ttwo\x1b[2J\r\n"), "one\n\ttwo\\x1b[2J\\r\n");
    }

    #[test]
    fn markdown_values_make_no_tags_headings_rows_or_code_spans() {
        assert_eq!(
            md_inline("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(
            md_inline("\n# 100/100 ALL PASS"),
            "\\\\n\\# 100/100 ALL PASS"
        );
        assert_eq!(md_inline("| pass |"), "\\| pass \\|");
        assert_eq!(md_inline("a `b` c"), "a \\`b\\` c");
        assert_eq!(md_inline("# title"), "\\# title");
        assert_eq!(md_inline("- item"), "\\- item");
        assert_eq!(md_inline("12. item"), "12\\. item");
        assert_eq!(md_inline("a-b 1.5"), "a-b 1.5");
        assert_eq!(md_inline("[x](http://e)"), "\\[x\\](http://e)");
        assert_eq!(md_inline("\"modified\\n\""), "\"modified\\\\n\"");
    }

    #[test]
    fn code_spans_and_blocks_are_fenced_longer_than_any_backtick_run() {
        assert_eq!(md_code("upper/a"), "`upper/a`");
        assert_eq!(md_code("a``b"), "```a``b```");
        assert_eq!(md_code("`x"), "`` `x ``");
        assert_eq!(md_fenced("plain\n"), "```\nplain\n```");
        assert_eq!(md_fenced("a\n````\nb"), "`````\na\n````\nb\n`````");
    }

    #[test]
    fn file_names_are_printable_and_a_real_backslash_is_escaped_too() {
        assert_eq!(file_name(OsStr::new("alice")), "alice");
        assert_eq!(file_name(OsStr::from_bytes(b"a\xffb")), "a\\xffb");
        assert_eq!(file_name(OsStr::new("a\\xffb")), "a\\x5cxffb");
        assert_eq!(file_name(OsStr::new("a\nb")), "a\\x0ab");
        assert_eq!(file_name(OsStr::new("名前")), "名前");
    }

    /// Reads a [`file_name`] back to its bytes: proof that no two names share one.
    fn unescape(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = name;
        while let Some(c) = rest.chars().next() {
            if let Some(hex) = rest.strip_prefix("\\x") {
                let b = hex
                    .get(..2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .unwrap_or_else(|| panic!("bad escape in {name:?}"));
                out.push(b);
                rest = &hex[2..];
            } else {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }

    fn hazard_free(s: &str) -> bool {
        !s.chars().any(acts)
    }

    proptest! {
        #[test]
        fn a_one_line_value_never_holds_a_raw_control_or_newline(s in "\\PC*|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202e}\\u{2028}a<`|#\\\\]*") {
            prop_assert!(hazard_free(&line(&s)));
            prop_assert!(hazard_free(&md_inline(&s)));
            prop_assert!(hazard_free(&md_code(&s)));
            let b = block(&s);
            prop_assert!(!b.chars().any(|c| acts(c) && c != '\n' && c != '\t'));
        }

        #[test]
        fn markdown_escaping_never_yields_a_raw_angle_bracket_or_backtick(s in "\\PC*|[<>&`|#\\\\\\n\\x1b -]*") {
            let m = md_inline(&s);
            prop_assert!(!m.contains('<') && !m.contains('>'));
            // Every backtick is escaped: preceded by an odd run of backslashes.
            let chars: Vec<char> = m.chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if *c == '`' {
                    let slashes = chars[..i].iter().rev().take_while(|c| **c == '\\').count();
                    prop_assert!(slashes % 2 == 1, "{m:?}");
                }
            }
        }

        #[test]
        fn a_fenced_block_is_closed_only_by_its_own_fence(s in "[a`\\n ]*") {
            let f = md_fenced(&s);
            let lines: Vec<&str> = f.lines().collect();
            let fence = lines[0];
            prop_assert!(lines[1..lines.len() - 1].iter().all(|l| !l.trim_start().starts_with(fence)));
        }

        #[test]
        fn file_names_are_printable_and_distinct(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let name = file_name(OsStr::from_bytes(&bytes));
            prop_assert!(hazard_free(&name));
            prop_assert_eq!(unescape(&name), bytes);
        }
    }
}
