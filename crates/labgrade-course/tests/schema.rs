//! The committed JSON Schema of the course report is the one the types generate. To accept a
//! deliberate change to the contract: `LABGRADE_UPDATE_SCHEMA=1 cargo test -p labgrade-course
//! --test schema`, then review the diff (and bump `SCHEMA_VERSION` if a field was renamed,
//! removed or changed meaning).

#[test]
fn the_committed_course_report_schema_is_generated_from_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../labgrade-report/schema/course-report.schema.json");
    let generated = serde_json::to_string_pretty(&labgrade_course::course_report_schema())
        .unwrap_or_else(|e| panic!("{e}"))
        + "\n";
    if std::env::var_os("LABGRADE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what the course report types generate; if the change is meant, regenerate it \
         with LABGRADE_UPDATE_SCHEMA=1 and review the diff",
        path.display()
    );
}
