//! The results files existing test suites leave behind, read into typed test cases so a
//! matrix report can show each subtest under its kernel: JUnit XML (by a real XML parser,
//! quick-xml) and TAP (a line format, parsed here). Outside bytes: no input makes these panic
//! (property-tested), and anything unreadable is an error saying what and where.

mod junit;
pub mod missing;
mod tap;

use labgrade_report::{ResultsFormat, SuiteResults};

pub use junit::parse_junit;
pub use tap::parse_tap;

/// Most cases kept from one file, and most characters of one message.
pub const MAX_CASES: usize = 10_000;
const MAX_MESSAGE: usize = 500;

/// Why a results file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResultsError(pub String);

/// Reads `text` as JUnit when it starts like XML, as TAP otherwise.
pub fn parse(text: &str) -> SuiteResults {
    let xml = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<');
    let (format, parsed) = if xml {
        (ResultsFormat::Junit, parse_junit(text))
    } else {
        (ResultsFormat::Tap, parse_tap(text))
    };
    match parsed {
        Ok(cases) => SuiteResults {
            format: Some(format),
            cases,
            error: None,
        },
        Err(e) => SuiteResults {
            format: Some(format),
            cases: Vec::new(),
            error: Some(e.0),
        },
    }
}

/// A message cut to a readable length, on a character boundary, trimmed.
fn short(message: &str) -> Option<String> {
    let m = message.trim();
    if m.is_empty() {
        return None;
    }
    let mut s: String = m.chars().take(MAX_MESSAGE).collect();
    if s.len() < m.len() {
        s.push('…');
    }
    Some(s)
}
