//! `labgrade course --static` against the real course (`/work/shared/course`, read only): a copy
//! of module lx11-containers with errors injected shows each at its file and line with its
//! kind, and nothing else new; the whole curriculum runs without a crash within the exit-code
//! contract (0 no course error, 1 course errors, 2 no course dir).
//!
//! The copy is no git repository, so exec bits are judged by file mode: the copy keeps each
//! file's mode as the course has it (the course's read-only copy keeps git's 755 / 644 as
//! 555 / 444), plus the owner's write bit so errors can be injected.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn course_root() -> PathBuf {
    labgrade_test_support::workspace_root().join("../shared/course/foundations/linux")
}

/// Copies `src` to `dst`: files keep their mode (with the owner's write bit added).
fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().unwrap_or_else(|e| panic!("{e}"));
        if kind.is_dir() {
            copy_tree(&entry.path(), &to);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
            let mode = std::fs::metadata(entry.path())
                .unwrap_or_else(|e| panic!("{e}"))
                .permissions()
                .mode();
            set_mode(&to, mode | 0o200);
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn course(path: &Path, cwd: &Path, cache: &Path, format: &str) -> Output {
    std::process::Command::new(labgrade_test_support::exe())
        .arg("course")
        .arg(path)
        .args(["--static", "--format", format, "--labs"])
        .arg(labgrade_test_support::workspace_root().join("labs"))
        .current_dir(cwd)
        .env("LABGRADE_CACHE_DIR", cache)
        .output()
        .unwrap_or_else(|e| panic!("labgrade: {e}"))
}

fn json_report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// (file, line, kind) of every finding.
fn findings(report: &Value) -> Vec<(String, u64, String)> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["file"].as_str().unwrap_or_default().to_owned(),
                f["line"].as_u64().unwrap_or_default(),
                f["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    let i = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not found"));
    u64::try_from(i + 1).unwrap_or_default()
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let new = f(text);
    std::fs::write(path, &new).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    new
}

#[test]
fn injected_errors_are_found_at_their_file_and_line_and_nothing_else_is_new() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The repository's shape is kept (foundations/linux/...): the lessons' own
    // ~/cloud-atlas/foundations/linux/... paths make its root the temp dir.
    let module = tmp.path().join("repo/foundations/linux/lx11-containers");
    copy_tree(&course_root().join("lx11-containers"), &module);
    let cache = tmp.path().join("cache");

    let before = course(&module, tmp.path(), &cache, "json");
    let baseline = json_report(&before);
    assert_eq!(baseline["scope"], "module");
    assert_eq!(baseline["repo_root_from"], "inferred");
    assert_eq!(baseline["exec_bits_from"], "file_mode");
    assert_eq!(baseline["lessons"].as_array().map(Vec::len), Some(12));
    labgrade_test_support::assert_matches_schema("course-report.schema.json", &baseline);
    let code = before.status.code();
    let base = findings(&baseline);
    assert_eq!(code, Some(if base.is_empty() { 0 } else { 1 }));

    // A broken relative link.
    let link_page = module.join("02-namespace-overview/README.md");
    let text = edit(&link_page, |t| {
        format!("{t}\nSee [the next lesson](../99-no-such-lesson/).\n")
    });
    let link_line = line_of(&text, "99-no-such-lesson");
    // A wrong `cd ~/cloud-atlas/...` path.
    let cd_page = module.join("08-container-networking/README.md");
    let right = "lx11-containers/08-container-networking/code";
    let text = edit(&cd_page, |t| {
        t.replacen(right, "lx11-containers/08-container-network/code", 1)
    });
    let cd_line = line_of(&text, "08-container-network/code");
    // A script that no longer parses.
    let script = module.join("09-container-security/code/seccomp-demo.sh");
    let text = edit(&script, |t| format!("{}\nif then\nfi\n", t.trim_end()));
    let syntax_line = line_of(&text, "if then");
    // A script the lesson runs as `sudo ./x.sh` without its exec bit.
    set_mode(
        &module.join("11-debugging-troubleshooting/code/silent-oom-scenario.sh"),
        0o644,
    );
    let exec_page = std::fs::read_to_string(module.join("11-debugging-troubleshooting/README.md"))
        .unwrap_or_default();
    let exec_line = line_of(&exec_page, "sudo ./silent-oom-scenario.sh");

    let after = course(&module, tmp.path(), &cache, "json");
    assert_eq!(after.status.code(), Some(1), "course errors: exit 1");
    let report = json_report(&after);
    labgrade_test_support::assert_matches_schema("course-report.schema.json", &report);
    let now = findings(&report);
    let new: Vec<&(String, u64, String)> = now.iter().filter(|f| !base.contains(f)).collect();
    let expected = [
        (
            "02-namespace-overview/README.md".to_owned(),
            link_line,
            "broken_link".to_owned(),
        ),
        (
            "08-container-networking/README.md".to_owned(),
            cd_line,
            "missing_path".to_owned(),
        ),
        (
            "09-container-security/code/seccomp-demo.sh".to_owned(),
            syntax_line,
            "script_syntax".to_owned(),
        ),
        (
            "11-debugging-troubleshooting/README.md".to_owned(),
            exec_line,
            "script_not_executable".to_owned(),
        ),
    ];
    for e in &expected {
        assert!(new.contains(&e), "{e:?} not found; new findings: {new:#?}");
    }
    // Nothing else is new, but shellcheck's own report of the same parse error in the script
    // that no longer parses (two tools, one injected error).
    let unexpected: Vec<_> = new
        .iter()
        .filter(|f| !expected.contains(f))
        .filter(|f| !(f.0 == expected[2].0 && f.2 == "shellcheck"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected new findings: {unexpected:#?}"
    );

    // The same findings in the other formats: annotations, and a failed case per lesson.
    let github =
        String::from_utf8_lossy(&course(&module, tmp.path(), &cache, "github").stdout).into_owned();
    assert!(
        github.contains(&format!(
            "::error file=02-namespace-overview/README.md,line={link_line},title=broken_link::"
        )),
        "{github}"
    );
    let junit =
        String::from_utf8_lossy(&course(&module, tmp.path(), &cache, "junit").stdout).into_owned();
    assert!(junit.matches("<testcase ").count() >= 12, "{junit}");
    assert!(
        junit.contains("name=\"08-container-networking\""),
        "{junit}"
    );
}

#[test]
fn the_whole_curriculum_runs_within_the_exit_code_contract() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = tmp.path().join("cache");
    let out = course(&course_root(), tmp.path(), &cache, "json");
    let report = json_report(&out);
    labgrade_test_support::assert_matches_schema("course-report.schema.json", &report);
    assert_eq!(report["scope"], "course");
    assert_eq!(report["lessons"].as_array().map(Vec::len), Some(132));
    let errors = report["findings"].as_array().map_or(0, Vec::len);
    assert_eq!(
        out.status.code(),
        Some(if errors == 0 { 0 } else { 1 }),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["coverage"]["lessons"], 132);
    // Every format renders the same run.
    for format in ["human", "markdown", "github", "junit"] {
        let out = course(&course_root(), tmp.path(), &cache, format);
        assert_eq!(
            out.status.code(),
            Some(if errors == 0 { 0 } else { 1 }),
            "{format}"
        );
        assert!(!out.stdout.is_empty(), "{format}");
    }

    // A PATH that is no course dir: exit 2 and a message that says so.
    let out = course(tmp.path(), tmp.path(), &cache, "human");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a course, module or lesson directory"),
        "{stderr}"
    );
}
