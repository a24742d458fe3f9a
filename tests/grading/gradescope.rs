//! The Gradescope autograder zip, unpacked and run as Gradescope does: `/autograder/source`,
//! `/autograder/submission` and `/autograder/results` under a temporary root, `setup.sh` once,
//! then `run_autograder` per submission.

use labgrade_test_support as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use labgrade_elf::GlibcVersion;
use rstest::rstest;
use serial_test::file_serial;

fn assignment_dir() -> PathBuf {
    support::workspace_root().join("assignments/overlay-basics")
}

#[test]
fn the_labgrade_binary_starts_on_ubuntu_22_04_and_rhel_9() {
    let exe = std::fs::read(support::exe()).unwrap_or_else(|e| panic!("{e}"));
    let needed = labgrade_elf::glibc_needed(&exe)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("labgrade links glibc"));
    // RHEL 9's 2.34 is the older of the two (Gradescope's Ubuntu 22.04 has 2.35).
    assert!(
        needed <= GlibcVersion::RHEL_9 && needed <= GlibcVersion::UBUNTU_22_04,
        "labgrade needs glibc {needed}"
    );
}

/// Unpacks the zip into `root/autograder/source` as Gradescope does, keeping the modes.
fn unpack(zip_path: &Path, source: &Path) {
    let file = std::fs::File::open(zip_path).unwrap_or_else(|e| panic!("{e}"));
    let mut zip = zip::ZipArchive::new(file).unwrap_or_else(|e| panic!("{e}"));
    zip.extract(source).unwrap_or_else(|e| panic!("{e}"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{e}")) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[rstest]
#[case::reference("reference", 100)]
#[case::empty("empty", 0)]
#[file_serial(grade_host)]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: Gradescope runs run_autograder as root, and the sandbox maps a uid of its own"
)]
fn the_package_grades_in_an_autograder_layout_as_labgrade_grade_does(
    #[case] submission: &str,
    #[case] want: u64,
) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let zip_path = dir.path().join("autograder.zip");
    let out = Command::new(support::exe())
        .args(["gradescope-package", "--assignment"])
        .arg(assignment_dir())
        .arg("-o")
        .arg(&zip_path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let root = dir.path().join("autograder");
    let source = root.join("source");
    unpack(&zip_path, &source);
    assert!(!source.join("assignments/overlay-basics/reference").exists());
    let setup = Command::new("bash")
        .arg(source.join("setup.sh"))
        .current_dir(&source)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    std::fs::copy(source.join("run_autograder"), root.join("run_autograder"))
        .unwrap_or_else(|e| panic!("{e}"));
    copy_dir(&assignment_dir().join(submission), &root.join("submission"));

    let run = Command::new(root.join("run_autograder"))
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let results = std::fs::read_to_string(root.join("results/results.json"))
        .unwrap_or_else(|e| panic!("no results.json: {e}"));
    let results: serde_json::Value =
        serde_json::from_str(&results).unwrap_or_else(|e| panic!("{e}: {results}"));
    assert_eq!(results["score"], want, "{results:#}");
    assert_eq!(results["max_score"], 100);
    let tests = results["tests"].as_array().cloned().unwrap_or_default();
    assert_eq!(tests.len(), 12, "one entry per check");
    let earned: u64 = tests.iter().filter_map(|t| t["score"].as_u64()).sum();
    assert_eq!(earned, want);
}

#[test]
fn a_package_of_a_broken_assignment_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let assignment = dir.path().join("broken");
    std::fs::create_dir(&assignment).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        assignment.join("assignment.toml"),
        "title = \"x\"\n[[task]]\nid = 3\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let zip_path = dir.path().join("autograder.zip");
    let out = Command::new(support::exe())
        .args(["gradescope-package", "--assignment"])
        .arg(&assignment)
        .arg("-o")
        .arg(&zip_path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("assignment.toml"), "{stderr}");
    assert!(!zip_path.exists());
}
