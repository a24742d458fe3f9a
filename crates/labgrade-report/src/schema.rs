//! JSON Schemas of the reports, generated from the types. They are committed under
//! `crates/labgrade-report/schema/` so that a change to the contract shows as a diff in review;
//! a test fails when the committed files and the types disagree.

/// The JSON Schema of `labgrade run --format json`.
pub fn run_report_schema() -> serde_json::Value {
    serde_json::Value::from(schemars::schema_for!(crate::RunReport))
}

/// The JSON Schema of `labgrade matrix --format json`.
pub fn matrix_report_schema() -> serde_json::Value {
    serde_json::Value::from(schemars::schema_for!(crate::MatrixReport))
}
