//! JUnit XML as CI tools write it: `<testsuites>` (optional) holding `<testsuite>`s (maybe
//! nested) holding `<testcase name classname>`, each with an optional `<failure>`, `<error>` or
//! `<skipped>` child. Read with quick-xml's pull parser: malformed XML is an error with its line.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use labgrade_report::{CaseReport, CaseStatus};

use crate::{MAX_CASES, ResultsError, short};

/// The test cases of a JUnit XML document, in document order.
pub fn parse_junit(text: &str) -> Result<Vec<CaseReport>, ResultsError> {
    let mut reader = Reader::from_str(text);
    let mut cases = Vec::new();
    let mut saw_suite = false;
    // The case being read, and the text of its failure element, if inside one.
    let mut current: Option<CaseReport> = None;
    let mut in_outcome = false;
    let mut outcome_text = String::new();
    loop {
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
            ResultsError(format!(
                "not well-formed JUnit XML at line {}: {e}",
                line_of(text, at)
            ))
        })?;
        match event {
            Event::Start(e) | Event::Empty(e)
                if matches!(e.local_name().as_ref(), b"testsuite" | b"testsuites") =>
            {
                saw_suite = true;
            }
            Event::Start(e) if e.local_name().as_ref() == b"testcase" => {
                current = Some(case_of(&e));
            }
            Event::Empty(e)
                if e.local_name().as_ref() == b"testcase" && cases.len() < MAX_CASES =>
            {
                cases.push(case_of(&e));
            }
            Event::Empty(e) if e.local_name().as_ref() == b"testcase" => {}
            Event::Start(e) if current.is_some() => {
                in_outcome = mark_outcome(current.as_mut(), &e);
                outcome_text.clear();
            }
            Event::Empty(e) if current.is_some() => {
                mark_outcome(current.as_mut(), &e);
            }
            Event::Text(t) if in_outcome => {
                if let Ok(s) = t.decode() {
                    outcome_text.push_str(&s);
                }
            }
            Event::CData(t) if in_outcome => {
                if let Ok(s) = t.decode() {
                    outcome_text.push_str(&s);
                }
            }
            Event::End(e) if e.local_name().as_ref() == b"testcase" => {
                if let Some(c) = current.take()
                    && cases.len() < MAX_CASES
                {
                    cases.push(c);
                }
                in_outcome = false;
            }
            Event::End(e)
                if matches!(e.local_name().as_ref(), b"failure" | b"error" | b"skipped") =>
            {
                if let Some(c) = current.as_mut()
                    && c.message.is_none()
                {
                    c.message = short(outcome_text.lines().next().unwrap_or(""));
                }
                in_outcome = false;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_suite && cases.is_empty() {
        return Err(ResultsError(
            "XML, but not JUnit: no <testsuite> or <testcase> element".into(),
        ));
    }
    Ok(cases)
}

/// Records the outcome `e` (inside a test case) stands for; says whether it was one.
fn mark_outcome(current: Option<&mut CaseReport>, e: &BytesStart<'_>) -> bool {
    let (Some(c), Some(status)) = (current, event_kind(e)) else {
        return false;
    };
    // A failure outranks a skip when a case (oddly) has both.
    if c.status != CaseStatus::Failed {
        c.status = status;
        c.message = attr(e, b"message").and_then(|m| short(&m));
    }
    true
}

/// The outcome an element inside a test case stands for, if any.
fn event_kind(e: &BytesStart<'_>) -> Option<CaseStatus> {
    match e.local_name().as_ref() {
        b"failure" | b"error" => Some(CaseStatus::Failed),
        b"skipped" => Some(CaseStatus::Skipped),
        _ => None,
    }
}

/// A case from its `<testcase>` element: `classname.name`, passed until a child says otherwise.
fn case_of(e: &BytesStart<'_>) -> CaseReport {
    let name = attr(e, b"name").unwrap_or_else(|| "(unnamed)".into());
    let name = match attr(e, b"classname") {
        Some(class) if !class.is_empty() => format!("{class}.{name}"),
        _ => name,
    };
    CaseReport {
        name,
        status: CaseStatus::Passed,
        message: None,
    }
}

/// An attribute's unescaped value; an attribute that cannot be read counts as absent.
fn attr(e: &BytesStart<'_>, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == key)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// 1-based line of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    1 + text
        .as_bytes()
        .iter()
        .take(at)
        .filter(|b| **b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="overlay">
  <testsuite name="overlay" tests="4">
    <testcase classname="overlay" name="copy_up" time="0.1"/>
    <testcase classname="overlay" name="userxattr">
      <failure message="mount refused &amp; logged" type="mount">mount: wrong fs type</failure>
    </testcase>
    <testcase classname="overlay" name="metacopy"><skipped message="no metacopy"/></testcase>
    <testcase name="no_message"><error><![CDATA[segfault
at line 2]]></error><system-out>noise</system-out></testcase>
  </testsuite>
</testsuites>
"#;

    #[test]
    fn cases_come_with_their_outcomes_and_messages() {
        let cases = parse_junit(SAMPLE).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(&str, CaseStatus, Option<&str>)> = cases
            .iter()
            .map(|c| (c.name.as_str(), c.status, c.message.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("overlay.copy_up", CaseStatus::Passed, None),
                (
                    "overlay.userxattr",
                    CaseStatus::Failed,
                    Some("mount refused & logged")
                ),
                ("overlay.metacopy", CaseStatus::Skipped, Some("no metacopy")),
                ("no_message", CaseStatus::Failed, Some("segfault")),
            ]
        );
    }

    #[test]
    fn a_bare_testsuite_and_an_empty_one_are_junit() {
        let one = parse_junit(r#"<testsuite><testcase name="a"/></testsuite>"#);
        assert_eq!(one.map(|c| c.len()), Ok(1));
        assert_eq!(parse_junit("<testsuites/>"), Ok(vec![]));
    }

    #[test]
    fn malformed_or_foreign_xml_is_an_error_with_its_line() {
        let e = parse_junit("<testsuite>\n<testcase name=\"a\">\n</testsuite>")
            .err()
            .unwrap_or(ResultsError(String::new()));
        assert!(e.0.contains("line 3"), "{e}");
        let e = parse_junit("<html><body/></html>")
            .err()
            .unwrap_or(ResultsError(String::new()));
        assert!(e.0.contains("not JUnit"), "{e}");
    }

    proptest! {
        #[test]
        fn no_input_panics(text in "\\PC*") {
            let _ = parse_junit(&text);
            let _ = crate::parse(&text);
        }

        #[test]
        fn no_tag_soup_panics(parts in proptest::collection::vec(prop_oneof![
            Just("<testsuite>".to_owned()), Just("</testsuite>".to_owned()),
            Just("<testcase name=\"x\">".to_owned()), Just("</testcase>".to_owned()),
            Just("<failure message=\"&amp;&#1234;&bogus;\">".to_owned()), Just("</failure>".to_owned()),
            Just("<skipped/>".to_owned()), Just("<![CDATA[".to_owned()), Just("]]>".to_owned()),
            "[a-z<>&;\"'/= é]{0,8}",
        ], 0..30)) {
            let _ = parse_junit(&parts.concat());
        }

        #[test]
        fn every_case_written_is_read_back(points in proptest::collection::vec(
            (0u8..3, "[a-z_]{1,12}", "[a-z<>&\" ]{0,12}"), 0..30)) {
            let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            let mut xml = String::from("<testsuites><testsuite name=\"s\">");
            for (kind, name, message) in &points {
                xml += &match kind {
                    0 => format!("<testcase name=\"{name}\"/>"),
                    1 => format!("<testcase name=\"{name}\"><failure message=\"{}\"/></testcase>", escape(message)),
                    _ => format!("<testcase name=\"{name}\"><skipped/></testcase>"),
                };
            }
            xml += "</testsuite></testsuites>";
            let cases = parse_junit(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
            prop_assert_eq!(cases.len(), points.len());
            for (c, (kind, name, message)) in cases.iter().zip(&points) {
                prop_assert_eq!(&c.name, name);
                let want = [CaseStatus::Passed, CaseStatus::Failed, CaseStatus::Skipped][usize::from(*kind)];
                prop_assert_eq!(c.status, want);
                if *kind == 1 {
                    let want = short(message);
                    prop_assert_eq!(c.message.as_deref(), want.as_deref());
                }
            }
        }
    }
}
