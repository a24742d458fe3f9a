//! Mount option text as the kernel shows it: overlay escapes the characters that would split a
//! list (`,` between options, `:` between lower layers, and `\` itself) with a backslash. The
//! agent splits a mount's options, names its layers and the judge reads them, all by these two
//! functions, so the three agree on every byte.

/// Splits `s` at each `sep` not preceded by a backslash; the escapes stay in the pieces (undo
/// them with [`unescape`]). Always at least one piece: `""` gives `[""]`.
pub fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Drops the backslash escapes: `a\:b` is `a:b`, `a\\b` is `a\b`.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_separators_stay_in_their_piece() {
        assert_eq!(
            split_escaped(r"rw,lowerdir=/a\,b,upperdir=/u", ','),
            vec!["rw", r"lowerdir=/a\,b", "upperdir=/u"]
        );
        assert_eq!(split_escaped(r"/a\:b::/c", ':'), vec![r"/a\:b", "", "/c"]);
        assert_eq!(split_escaped("", ':'), vec![""]);
        assert_eq!(unescape(r"/a\:b\\c\"), r"/a:b\c");
    }

    proptest::proptest! {
        #[test]
        fn splitting_then_joining_gives_the_text_back(s in "\\PC*", sep in proptest::char::any()) {
            proptest::prop_assume!(sep != '\\');
            proptest::prop_assert_eq!(split_escaped(&s, sep).join(&sep.to_string()), s);
        }
    }
}
