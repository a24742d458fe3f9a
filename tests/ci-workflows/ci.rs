//! The CI's own promises: the workflow files pass actionlint (and actionlint does catch a broken
//! one), and the partitions `.github/workflows/ci.yml` runs an archive in together run every test
//! exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    labgrade_test_support::workspace_root()
}

/// Every workflow the project ships: its own `.github/workflows` and each assignment's
/// `classroom.yml` (copied into template repositories, so it must lint clean there too).
fn workflows() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(".github/workflows"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.extend(
        std::fs::read_dir(repo().join("assignments"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("classroom.yml"))
            .filter(|p| p.is_file()),
    );
    files.sort();
    files
}

#[test]
fn the_workflows_include_ci_and_the_assignments_classroom_workflow() {
    let files = workflows();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(".github/workflows/ci.yml")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("overlay-basics/classroom.yml")),
        "{files:?}"
    );
}

#[test]
#[cfg_attr(
    not(labgrade_actionlint),
    ignore = "needs actionlint on PATH (scripts/test-all installs it into a venv from PyPI)"
)]
fn workflows_pass_actionlint_and_a_broken_one_does_not() {
    let out = Command::new("actionlint")
        .current_dir(repo())
        .args(workflows())
        .output()
        .unwrap_or_else(|e| panic!("cannot run actionlint: {e}"));
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ matrix.nope }}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("actionlint")
        .arg(&broken)
        .output()
        .unwrap_or_else(|e| panic!("cannot run actionlint: {e}"));
    assert!(!out.status.success(), "actionlint passed a broken workflow");
}

/// `binary-id test-name` of every test the archive's list selects, with these arguments.
fn listed(archive: &Path, workspace: &Path, extra: &[&str]) -> Vec<String> {
    let out = Command::new("cargo")
        // Not the profile of the nextest run this test is in (NEXTEST_PROFILE=ci under CI):
        // the fixture workspace has only the default one.
        .env_remove("NEXTEST_PROFILE")
        .args([
            "nextest",
            "list",
            "--run-ignored",
            "all",
            "--message-format",
            "json",
        ])
        .arg("--archive-file")
        .arg(archive)
        .arg("--workspace-remap")
        .arg(workspace)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo nextest list: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("nextest list JSON: {e}"));
    let mut names = Vec::new();
    for (binary, suite) in list["rust-suites"].as_object().into_iter().flatten() {
        for (name, case) in suite["testcases"].as_object().into_iter().flatten() {
            if case["filter-match"]["status"] == "matches" {
                names.push(format!("{binary} {name}"));
            }
        }
    }
    names
}

#[test]
#[cfg_attr(
    not(labgrade_nextest),
    ignore = "needs cargo-nextest (scripts/test-all installs it)"
)]
fn archive_partitions_together_run_every_test_exactly_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fixture = dir.path().join("partition-crate");
    std::fs::create_dir_all(fixture.join("src")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(fixture.join("tests")).unwrap_or_else(|e| panic!("{e}"));
    let source = labgrade_test_support::suite_dir().join("fixtures/partition-crate");
    for file in ["Cargo.toml", "src/lib.rs", "tests/more.rs"] {
        std::fs::copy(source.join(file), fixture.join(file)).unwrap_or_else(|e| panic!("{e}"));
    }
    let archive = dir.path().join("tests.tar.zst");
    let out = Command::new("cargo")
        .env_remove("NEXTEST_PROFILE")
        .args(["nextest", "archive", "--offline", "--archive-file"])
        .arg(&archive)
        .arg("--target-dir")
        .arg(dir.path().join("target"))
        .current_dir(&fixture)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo nextest archive: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = listed(&archive, &fixture, &[]);
    assert_eq!(all.len(), 22, "{all:?}");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for k in 1..=3 {
        let part = listed(&archive, &fixture, &["--partition", &format!("hash:{k}/3")]);
        assert!(!part.is_empty(), "partition {k}/3 is empty");
        for name in part {
            *seen.entry(name).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "in more than one partition: {twice:?}");
    let mut all_sorted = all;
    all_sorted.sort();
    assert_eq!(seen.into_keys().collect::<Vec<_>>(), all_sorted);
}
