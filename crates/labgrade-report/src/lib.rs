//! Reports and their renderers.
//!
//! A run produces a [`RunReport`]: plain data, serialised as-is by `--format json`. Every other
//! output (the terminal, JUnit, later markdown and Gradescope) is a renderer of that data and
//! nothing else, so all formats always tell the same facts.

mod human;
mod junit;
mod matrix;
mod model;
mod schema;
mod suite;

pub use human::{render_human, render_timings};
pub use junit::render_junit;
pub use matrix::{
    Cell, Difference, MatrixColumn, MatrixReport, Observed, Subject, render_matrix_human,
    render_matrix_markdown,
};
pub use model::{
    CheckReport, CheckStatus, EngineReport, FailedCommandReport, LabReport, LabStatus, RunReport,
    SCHEMA_VERSION, SnapshotReport, StepReport, Totals,
};
pub use schema::{matrix_report_schema, run_report_schema};
pub use suite::{
    CaseReport, CaseStatus, Missing, MissingInGuest, ResultsFormat, SuiteReport, SuiteResults,
    SuiteRun, SuiteStatus, render_suite_human, render_suite_junit, render_suite_markdown,
};

/// `--format json`: the report as pretty JSON.
pub fn render_json(report: &RunReport) -> serde_json::Result<String> {
    serde_json::to_string_pretty(report)
}
