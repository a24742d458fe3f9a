//! The committed JSON Schemas are the ones the types generate. To accept a deliberate change to
//! the contract: `LABGRADE_UPDATE_SCHEMA=1 cargo nextest run -p cli --test schema`, then review the
//! diff (and bump `SCHEMA_VERSION` if a field was renamed, removed or changed meaning).

fn check(file: &str, schema: serde_json::Value) {
    let path = labgrade_test_support::workspace_root()
        .join("crates/labgrade-report/schema")
        .join(file);
    let generated = serde_json::to_string_pretty(&schema).unwrap_or_else(|e| panic!("{e}")) + "\n";
    if std::env::var_os("LABGRADE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what the report types generate; if the change is meant, regenerate it with \
         LABGRADE_UPDATE_SCHEMA=1 and review the diff:\n{}",
        path.display(),
        similar::TextDiff::from_lines(&committed, &generated).unified_diff()
    );
}

#[test]
fn the_committed_run_report_schema_is_generated_from_the_types() {
    check(
        "run-report.schema.json",
        labgrade_report::run_report_schema(),
    );
}

#[test]
fn the_committed_matrix_report_schema_is_generated_from_the_types() {
    check(
        "matrix-report.schema.json",
        labgrade_report::matrix_report_schema(),
    );
}

#[test]
fn the_committed_grade_report_schema_is_generated_from_the_types() {
    check(
        "grade-report.schema.json",
        labgrade_grade::grade_report_schema(),
    );
}
