//! Comparing documented output with what really printed, as a reader would.
//!
//! Documented output is often abridged, so each documented line must appear (as a run of whole
//! words) in some actual line, and the documented lines in order. Runs of whitespace are equal.
//! Dates, times, hashes, ids and placeholders (`...`, `abc123...`, `<image>`) match anything of
//! their kind. Pure: no I/O.

/// What one piece of a documented line matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// This character (a space stands for any run of whitespace, normalised to one space).
    Lit(char),
    /// Any text, empty too: a `...` placeholder.
    Any,
    /// A value of a kind that differs from run to run.
    Class(Class),
}

/// Kinds of values that vary between runs and machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `Jan` .. `Dec`.
    Month,
    /// A day of the month, 1 or 2 digits.
    Day,
    /// `12:00`, `12:00:05`, `12:00:05.123`, or a year in its place (as `ls -l` prints).
    TimeOrYear,
    /// `2024-01-04`, optionally with a time (`T12:00:00Z`, `+0000`).
    IsoDate,
    /// Hex digits, at least 7 (commit ids, digests, container ids, UUID parts).
    Hex,
    /// Any run of non-space characters: a `<name>` placeholder.
    Word,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A documented line compiled for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pieces: Vec<Piece>,
}

/// Collapses runs of whitespace to one space and trims.
pub fn normalise(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_time(t: &str) -> bool {
    let parts: Vec<&str> = t.split(':').collect();
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    match parts.as_slice() {
        [h, m] => digits(h, 1, 2) && digits(m, 2, 2),
        [h, m, s] => {
            let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
            digits(h, 1, 2) && digits(m, 2, 2) && digits(sec, 2, 2) && digits(frac, 1, 9)
        }
        _ => false,
    }
}

fn is_year(t: &str) -> bool {
    t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit())
}

fn is_day(t: &str) -> bool {
    (1..=2).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
}

fn is_iso_date(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && b[10..]
            .iter()
            .all(|c| c.is_ascii_digit() || b"T:.+-Z".contains(c))
}

fn is_hex_id(t: &str) -> bool {
    t.len() >= 7
        && t.bytes().all(|b| b.is_ascii_hexdigit())
        && t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes().any(|b| b.is_ascii_alphabetic())
}

impl Pattern {
    /// Compiles a documented line.
    pub fn compile(documented: &str) -> Pattern {
        let norm = normalise(documented);
        let tokens: Vec<&str> = norm.split(' ').filter(|t| !t.is_empty()).collect();
        let mut pieces: Vec<Piece> = Vec::new();
        let mut prev_month = false;
        let mut prev_day_after_month = false;
        for (i, token) in tokens.iter().enumerate() {
            let spaced = i > 0;
            let class = if MONTHS.contains(token) {
                Some(Class::Month)
            } else if prev_month && is_day(token) {
                Some(Class::Day)
            } else if is_time(token) || (prev_day_after_month && is_year(token)) {
                Some(Class::TimeOrYear)
            } else if is_iso_date(token) {
                Some(Class::IsoDate)
            } else if token.len() > 2 && token.starts_with('<') && token.ends_with('>') {
                Some(Class::Word)
            } else {
                None
            };
            prev_day_after_month = prev_month && class == Some(Class::Day);
            prev_month = class == Some(Class::Month);
            if is_ellipsis(token) {
                if pieces.last() != Some(&Piece::Any) {
                    // A space before the placeholder is part of what it stands for.
                    if pieces.last() == Some(&Piece::Lit(' ')) {
                        pieces.pop();
                    }
                    pieces.push(Piece::Any);
                }
                continue;
            }
            if spaced && pieces.last() != Some(&Piece::Any) {
                pieces.push(Piece::Lit(' '));
            }
            match class {
                Some(c) => pieces.push(Piece::Class(c)),
                None => compile_token(token, &mut pieces),
            }
        }
        Pattern { pieces }
    }

    /// Does this documented line appear in `actual` (one line of output)?
    pub fn matches(&self, actual: &str) -> bool {
        let text: Vec<char> = normalise(actual).chars().collect();
        if self.pieces.is_empty() {
            return text.is_empty();
        }
        let width = text.len() + 1;
        let mut failed = vec![false; (self.pieces.len() + 1) * width];
        (0..=text.len()).any(|start| {
            starts_word(&text, start, self.pieces.first())
                && self.match_from(0, &text, start, &mut failed, width)
        })
    }

    fn match_from(
        &self,
        pi: usize,
        text: &[char],
        ti: usize,
        failed: &mut [bool],
        width: usize,
    ) -> bool {
        if failed[pi * width + ti] {
            return false;
        }
        let ok = match self.pieces.get(pi) {
            None => ends_word(text, ti, self.pieces.last()),
            Some(Piece::Lit(c)) => {
                text.get(ti) == Some(c) && self.match_from(pi + 1, text, ti + 1, failed, width)
            }
            Some(Piece::Any) => {
                (ti..=text.len()).any(|next| self.match_from(pi + 1, text, next, failed, width))
            }
            Some(Piece::Class(class)) => class_lengths(*class, &text[ti..])
                .into_iter()
                .any(|len| self.match_from(pi + 1, text, ti + len, failed, width)),
        };
        if !ok {
            failed[pi * width + ti] = true;
        }
        ok
    }
}

fn is_ellipsis(token: &str) -> bool {
    token == "…" || (token.len() >= 3 && token.bytes().all(|b| b == b'.'))
}

/// A token with no class of its own: literal characters, with `...` (and the made-up stem
/// before it, as in `abc123...`) and hex ids inside it as placeholders.
fn compile_token(token: &str, pieces: &mut Vec<Piece>) {
    let chars: Vec<char> = token.chars().collect();
    let mut i = 0;
    let mut literal: Vec<char> = Vec::new();
    let flush = |literal: &mut Vec<char>, pieces: &mut Vec<Piece>| {
        // Hex runs inside the literal (`sha256:3f2a9c1e...`, `/overlay2/0a1b2c3d4e/diff`).
        let mut j = 0;
        while j < literal.len() {
            if literal[j].is_ascii_alphanumeric()
                && (j == 0 || !literal[j - 1].is_ascii_alphanumeric())
            {
                let end = (j..literal.len())
                    .find(|&k| !literal[k].is_ascii_alphanumeric())
                    .unwrap_or(literal.len());
                let run: String = literal[j..end].iter().collect();
                if is_hex_id(&run) {
                    pieces.push(Piece::Class(Class::Hex));
                    j = end;
                    continue;
                }
            }
            pieces.push(Piece::Lit(literal[j]));
            j += 1;
        }
        literal.clear();
    };
    while i < chars.len() {
        let dots = chars[i..].iter().take_while(|c| **c == '.').count();
        if dots >= 3 || chars[i] == '…' {
            // The placeholder's stem: the letters and digits right before the dots.
            while literal.last().is_some_and(char::is_ascii_alphanumeric) {
                literal.pop();
            }
            flush(&mut literal, pieces);
            if pieces.last() != Some(&Piece::Any) {
                pieces.push(Piece::Any);
            }
            i += if chars[i] == '…' { 1 } else { dots };
            continue;
        }
        literal.push(chars[i]);
        i += 1;
    }
    flush(&mut literal, pieces);
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A match may not start inside a word of the actual line.
fn starts_word(text: &[char], start: usize, first: Option<&Piece>) -> bool {
    let first_is_word = matches!(first, Some(Piece::Lit(c)) if word_char(*c))
        || matches!(first, Some(Piece::Class(_)));
    start == 0 || !first_is_word || !text.get(start - 1).is_some_and(|c| word_char(*c))
}

/// A match may not end inside a word of the actual line.
fn ends_word(text: &[char], end: usize, last: Option<&Piece>) -> bool {
    let last_is_word = matches!(last, Some(Piece::Lit(c)) if word_char(*c))
        || matches!(last, Some(Piece::Class(_)));
    !last_is_word || !text.get(end).is_some_and(|c| word_char(*c))
}

/// The lengths a value of `class` can have at the start of `text`.
fn class_lengths(class: Class, text: &[char]) -> Vec<usize> {
    let token_len = text.iter().take_while(|c| **c != ' ').count();
    let token: String = text[..token_len].iter().collect();
    let prefix_lens = |pred: &dyn Fn(&str) -> bool| -> Vec<usize> {
        (1..=token_len)
            .filter(|&n| pred(&text[..n].iter().collect::<String>()))
            .collect()
    };
    match class {
        Class::Month => MONTHS
            .iter()
            .filter(|m| token.starts_with(*m))
            .map(|m| m.len())
            .collect(),
        Class::Day => prefix_lens(&is_day),
        Class::TimeOrYear => prefix_lens(&|s| is_time(s) || is_year(s)),
        Class::IsoDate => prefix_lens(&is_iso_date),
        Class::Hex => prefix_lens(&|s| s.len() >= 7 && s.bytes().all(|b| b.is_ascii_hexdigit())),
        Class::Word => (1..=token_len).collect(),
    }
}

/// How one documented line fared against the actual output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineVerdict {
    /// The actual line (index into the output's lines) it matched, in order with the others.
    pub matched: Option<usize>,
    /// For a line that did not match: the most similar actual line that no documented line
    /// matched, between its matched neighbours: what it really prints there.
    pub nearest: Option<usize>,
}

/// Matches documented lines against actual output lines: the most documented lines matched in
/// order (each a distinct actual line, later than the one before).
pub fn compare(documented: &[&str], actual: &[&str]) -> Vec<LineVerdict> {
    let patterns: Vec<Pattern> = documented.iter().map(|d| Pattern::compile(d)).collect();
    let (n, m) = (documented.len(), actual.len());
    // best[i][j]: most matches of documented[i..] within actual[j..].
    let mut best = vec![vec![0usize; m + 1]; n + 1];
    let mut hit = vec![vec![false; m]; n];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            hit[i][j] = patterns[i].matches(actual[j]);
            let take = if hit[i][j] { 1 + best[i + 1][j + 1] } else { 0 };
            best[i][j] = take.max(best[i + 1][j]).max(best[i][j + 1]);
        }
    }
    let mut matched = vec![None; n];
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if hit[i][j] && best[i][j] == 1 + best[i + 1][j + 1] {
            matched[i] = Some(j);
            i += 1;
            j += 1;
        } else if best[i][j] == best[i + 1][j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    let mut used: Vec<bool> = vec![false; m];
    for k in matched.iter().flatten() {
        used[*k] = true;
    }
    let mut verdicts = Vec::with_capacity(n);
    for i in 0..n {
        if matched[i].is_some() {
            verdicts.push(LineVerdict {
                matched: matched[i],
                nearest: None,
            });
            continue;
        }
        let lo = matched[..i]
            .iter()
            .rev()
            .flatten()
            .next()
            .map_or(0, |k| k + 1);
        let hi = matched[i + 1..]
            .iter()
            .flatten()
            .next()
            .copied()
            .unwrap_or(m);
        let doc = normalise(documented[i]);
        let nearest = (lo..hi)
            .filter(|k| !used[*k] && !actual[*k].trim().is_empty())
            .map(|k| {
                let ratio =
                    similar::TextDiff::from_chars(doc.as_str(), &normalise(actual[k])).ratio();
                (k, ratio)
            })
            // The first of equally similar lines: keep the output's order.
            .fold(None::<(usize, f32)>, |best, (k, r)| match best {
                Some((_, br)) if br >= r => best,
                _ => Some((k, r)),
            })
            .map(|(k, _)| k);
        if let Some(k) = nearest {
            used[k] = true;
        }
        verdicts.push(LineVerdict {
            matched: None,
            nearest,
        });
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("app  config.txt  image-file.txt", "app  config.txt\timage-file.txt")]
    #[case(
        "No such file or directory",
        "ls: cannot access '/x': No such file or directory"
    )]
    #[case("ftype=1", "naming   =version 2   bsize=4096   ascii-ci=0, ftype=1")]
    #[case(
        "c--------- 1 root root 0, 0 Jan  4 12:00 image-file.txt",
        "c--------- 1 root root 0, 0 Dec  1 10:20 image-file.txt"
    )]
    #[case(
        "c--------- 1 root root 0, 0 Jan  4 12:00 old.txt",
        "c--------- 1 root root 0, 0 Mar 30  2021 old.txt"
    )]
    #[case(
        "c--------- 1 root root 0, 0 ... var-log.txt",
        "c--------- 1 root root 0, 0 Dec  1 10:20 /tmp/d/upper/var-log.txt"
    )]
    #[case(
        "-rw-r--r-- 1 root root 50M ... bigfile.bin",
        "-rw-r--r-- 1 root root 50M Dec  1 10:20 bigfile.bin"
    )]
    #[case(
        "\"LowerDir\": \"/var/lib/docker/overlay2/abc123.../diff:/x/def456.../diff\",",
        "\"LowerDir\": \"/var/lib/docker/overlay2/9f8e7d6c5b4a/diff:/x/0a1b2c3d4e5f/diff\","
    )]
    #[case(
        "docker pull nginx@sha256:abc123...",
        "docker pull nginx@sha256:0123abcd"
    )]
    #[case("commit 3f2a9c1 by x", "commit 77aa11b by x")]
    #[case("created 2024-01-04T12:00:00Z", "created 2026-12-01T10:20:33Z")]
    #[case("at 12:00:05.123 done", "at 09:41:13.9 done")]
    #[case("id <container-id> up", "id 4f1c2 up")]
    #[case("…", "")]
    #[case("total 0", "total 0")]
    #[case("これはテスト", "结果: これはテスト です")]
    fn matches(#[case] documented: &str, #[case] actual: &str) {
        assert!(
            Pattern::compile(documented).matches(actual),
            "{documented:?} ~ {actual:?}: {:?}",
            Pattern::compile(documented)
        );
    }

    #[rstest]
    #[case(
        "c--------- 1 root root 0, 0 Jan  4 12:00 image-file.txt",
        "c--------- 2 root root 0, 0 Dec  1 10:20 image-file.txt"
    )]
    #[case("total 0", "total 4")]
    #[case("total 0", "total 08")]
    #[case("content", "original contents")]
    #[case("50M", "150M")]
    #[case(
        "-rw-r--r-- 1 root root 50M ... bigfile.bin",
        "-rw-r--r-- 1 root root 51M Dec  1 10:20 bigfile.bin"
    )]
    #[case("ftype=1", "ftype=0")]
    #[case("commit 3f2a9c1 by x", "commit by x")]
    #[case("a", "")]
    fn does_not_match(#[case] documented: &str, #[case] actual: &str) {
        assert!(
            !Pattern::compile(documented).matches(actual),
            "{documented:?} !~ {actual:?}: {:?}",
            Pattern::compile(documented)
        );
    }

    #[test]
    fn documented_lines_must_appear_in_order() {
        let actual = [
            "total 8",
            "drwxr-xr-x 2 root root 60 .",
            "c--------- 2 root root 0, 0 x",
            "one",
            "two",
        ];
        let v = compare(&["one", "two"], &actual);
        assert_eq!(
            v.iter().map(|v| v.matched).collect::<Vec<_>>(),
            [Some(3), Some(4)]
        );
        // Out of order: only one of them can hold.
        let v = compare(&["two", "one"], &actual);
        assert_eq!(v.iter().filter(|v| v.matched.is_some()).count(), 1);
    }

    #[test]
    fn a_drifting_line_points_at_the_nearest_line_between_its_neighbours() {
        let actual = ["a", "modified by kernel", "zzz", "c"];
        let v = compare(&["a", "modified by container", "c"], &actual);
        assert_eq!(
            v[1],
            LineVerdict {
                matched: None,
                nearest: Some(1)
            }
        );
        let v = compare(&["a", "b", "c"], &["a", "c"]);
        assert_eq!(
            v[1],
            LineVerdict {
                matched: None,
                nearest: None
            }
        );
    }

    #[test]
    fn two_drifting_lines_take_distinct_actual_lines() {
        let v = compare(&["x1", "x2"], &["y1", "y2"]);
        assert_eq!(v[0].nearest, Some(0));
        assert_eq!(v[1].nearest, Some(1));
    }
}
