//! Errors a course maintainer reads: file, line, column, what is wrong and what to do.

use std::ops::Range;
use std::path::PathBuf;

use miette::{NamedSource, SourceSpan};

/// A lab file that cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SpecError {
    /// The file could not be read at all.
    #[error("cannot read lab file {path}: {source}")]
    #[diagnostic(code(labgrade::spec::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid lab.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<InvalidLab>),
}

/// A mistake at a place in a lab file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(labgrade::spec::invalid))]
pub struct InvalidLab {
    /// The file, as given.
    pub file: String,
    /// 1-based line of the mistake.
    pub line: usize,
    /// 1-based column (in characters) of the mistake.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    /// What to do about it.
    #[help]
    pub help: Option<String>,
}

impl InvalidLab {
    /// The error for a mistake at byte range `span` of `text` (file `file`): line and column
    /// are computed, the snippet is kept for miette. Other formats built on lab files use it.
    pub fn error(
        file: &str,
        text: &str,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> SpecError {
        let start = span.start.min(text.len());
        let (line, column) = line_col(text, start);
        let message = message.into();
        let label = message.lines().next().unwrap_or("here").to_owned();
        SpecError::Invalid(Box::new(InvalidLab {
            file: file.to_owned(),
            line,
            column,
            message,
            src: NamedSource::new(file, text.to_owned()),
            span: (start, span.end.min(text.len()).saturating_sub(start)).into(),
            label,
            help,
        }))
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        let text = "a = 1\nb = \"这是\"x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        let x = text.find('x').unwrap_or_default();
        assert_eq!(line_col(text, x), (2, 9));
    }
}
