//! TAP (the Test Anything Protocol, versions 12 to 14): `ok` / `not ok` lines with an optional
//! number, description and `# SKIP` / `# TODO` directive, a `1..N` plan, `Bail out!`.
//! Indented lines (subtests, YAML diagnostics) and comments are read past.

use labgrade_report::{CaseReport, CaseStatus};

use crate::{MAX_CASES, ResultsError, short};

/// The test points of a TAP stream. A plan that promises more tests than ran, and a
/// `Bail out!`, are failed cases of their own, as TAP consumers count them.
pub fn parse_tap(text: &str) -> Result<Vec<CaseReport>, ResultsError> {
    let mut cases = Vec::new();
    let mut plan: Option<usize> = None;
    let mut seen_tap = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim_end();
        if line.starts_with("TAP version") || line.starts_with('#') || line.is_empty() {
            seen_tap |= line.starts_with("TAP version");
            continue;
        }
        if let Some(rest) = line.strip_prefix("1..") {
            let count = rest.split_whitespace().next().unwrap_or("");
            plan = count.parse().ok();
            seen_tap |= plan.is_some();
            continue;
        }
        if let Some(reason) = line.strip_prefix("Bail out!") {
            cases.push(CaseReport {
                name: "Bail out!".into(),
                status: CaseStatus::Failed,
                message: short(reason),
            });
            return Ok(cases);
        }
        let (ok, rest) = if let Some(r) = line.strip_prefix("not ok") {
            (false, r)
        } else if let Some(r) = line.strip_prefix("ok") {
            (true, r)
        } else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue; // "okay", "oknot": not a test point
        }
        seen_tap = true;
        if cases.len() < MAX_CASES {
            cases.push(test_point(ok, rest, cases.len() + 1));
        }
    }
    if !seen_tap {
        return Err(ResultsError(
            "neither JUnit XML nor TAP: no `ok` / `not ok` line and no `1..N` plan".into(),
        ));
    }
    let ran = cases.len();
    if let Some(n) = plan
        && ran < n
        && ran < MAX_CASES
    {
        cases.push(CaseReport {
            name: "plan".into(),
            status: CaseStatus::Failed,
            message: Some(format!("the plan promised {n} tests; {ran} ran")),
        });
    }
    Ok(cases)
}

/// `[NUMBER] [-] [DESCRIPTION] [# SKIP|TODO [REASON]]`, after `ok` / `not ok`.
fn test_point(ok: bool, rest: &str, ordinal: usize) -> CaseReport {
    let (body, directive) = split_directive(rest);
    let body = body.trim();
    let body = body
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    let body = body.strip_prefix('-').unwrap_or(body).trim();
    let name = if body.is_empty() {
        format!("test {ordinal}")
    } else {
        body.replace("\\#", "#")
    };
    let word = directive
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let reason = directive.get(word.len()..).unwrap_or("");
    let (status, message) = if word.starts_with("SKIP") {
        (
            CaseStatus::Skipped,
            short(reason).or(Some("skipped".into())),
        )
    } else if word.starts_with("TODO") && !ok {
        // A failing TODO test is expected to fail: TAP does not count it as a failure.
        (
            CaseStatus::Skipped,
            Some(format!("TODO {}", reason.trim()).trim().to_owned()),
        )
    } else if ok {
        (CaseStatus::Passed, None)
    } else {
        (CaseStatus::Failed, short(directive))
    };
    CaseReport {
        name,
        status,
        message,
    }
}

/// Splits at the first `#` not escaped by a backslash.
fn split_directive(s: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' => escaped = !escaped,
            '#' if !escaped => return (&s[..i], s[i + 1..].trim()),
            _ => escaped = false,
        }
    }
    (s, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn statuses(text: &str) -> Vec<(String, CaseStatus)> {
        parse_tap(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|c| (c.name, c.status))
            .collect()
    }

    #[test]
    fn test_points_with_numbers_descriptions_and_directives() {
        let text = "TAP version 13\n1..5\nok 1 - copy-up keeps lower\nnot ok 2 - userxattr mount\n  ---\n  message: refused\n  ...\nok 3 # SKIP no xfs here\nnot ok 4 known bug # TODO fix in 6.2\nok 5 - a \\# in a name\n";
        assert_eq!(
            statuses(text),
            vec![
                ("copy-up keeps lower".into(), CaseStatus::Passed),
                ("userxattr mount".into(), CaseStatus::Failed),
                ("test 3".into(), CaseStatus::Skipped),
                ("known bug".into(), CaseStatus::Skipped),
                ("a # in a name".into(), CaseStatus::Passed),
            ]
        );
        let cases = parse_tap(text).unwrap_or_default();
        assert_eq!(cases[2].message.as_deref(), Some("no xfs here"));
        assert_eq!(cases[3].message.as_deref(), Some("TODO fix in 6.2"));
    }

    #[test]
    fn a_short_plan_and_a_bail_out_are_failures() {
        assert_eq!(
            statuses("1..3\nok 1\n"),
            vec![
                ("test 1".into(), CaseStatus::Passed),
                ("plan".into(), CaseStatus::Failed)
            ]
        );
        assert_eq!(
            statuses("ok 1 a\nBail out! no overlay module\nok 2 b\n"),
            vec![
                ("a".into(), CaseStatus::Passed),
                ("Bail out!".into(), CaseStatus::Failed)
            ]
        );
        // A plan of none (a suite that skipped everything) is valid and empty.
        assert_eq!(statuses("1..0 # SKIP no overlay\n"), vec![]);
    }

    #[test]
    fn text_that_is_not_tap_is_an_error() {
        let e = parse_tap("hello\nokay then\n")
            .err()
            .unwrap_or(ResultsError(String::new()));
        assert!(e.0.contains("neither JUnit XML nor TAP"), "{e}");
        assert!(parse_tap("").is_err());
    }

    proptest! {
        #[test]
        fn no_input_panics(text in "\\PC*") {
            let _ = parse_tap(&text);
        }

        #[test]
        fn no_line_shaped_input_panics(lines in proptest::collection::vec(
            "(ok|not ok|1\\.\\.|Bail out!|TAP version|#| )?[ 0-9a-z#\\\\\\-é\t]{0,20}", 0..20)) {
            let _ = parse_tap(&lines.join("\n"));
        }

        #[test]
        fn every_test_point_written_is_read_back(points in proptest::collection::vec(
            (any::<bool>(), "[a-z][a-z ]{0,15}[a-z]"), 1..30)) {
            let mut text = format!("TAP version 13\n1..{}\n", points.len());
            for (i, (ok, name)) in points.iter().enumerate() {
                text += &format!("{} {} - {name}\n", if *ok { "ok" } else { "not ok" }, i + 1);
            }
            let cases = parse_tap(&text).unwrap_or_default();
            prop_assert_eq!(cases.len(), points.len());
            for (c, (ok, name)) in cases.iter().zip(&points) {
                prop_assert_eq!(&c.name, name);
                prop_assert_eq!(c.status == CaseStatus::Passed, *ok);
            }
        }
    }
}
