//! The command line as users and other tools meet it: exit codes, formats, errors that point at
//! the file, and a deliberately broken lab that must fail with a readable diff.

use labgrade_test_support as support;

use std::path::Path;
use std::process::{Command, Output};

fn labgrade(args: &[&str]) -> Output {
    Command::new(support::exe())
        .args(args)
        .current_dir(support::workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run labgrade: {e}"))
}

/// A pending lab file (a fixture), as a path `labgrade run` takes.
fn pending_lab() -> String {
    support::suite_dir()
        .join("fixtures/pending/01-not-yet.toml")
        .display()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A copy of the quick start whose expected upper content is wrong, in its own lesson dir.
fn broken_quick_start(dir: &Path) -> std::path::PathBuf {
    let original = std::fs::read_to_string(
        support::labs_dir().join("07-overlay-filesystems/01-quick-start.toml"),
    )
    .unwrap_or_else(|e| panic!("quick start lab missing: {e}"));
    let wrong = original.replace(
        r#"{ path = "upper/config.txt", content = "容器运行时修改的内容\n" }"#,
        r#"{ path = "upper/config.txt", content = "配置文件原始内容\n" }"#,
    );
    assert_ne!(
        original, wrong,
        "the quick start lab no longer has the line this test breaks"
    );
    let lesson = dir.join("07-overlay-filesystems");
    std::fs::create_dir_all(&lesson).unwrap_or_else(|e| panic!("{e}"));
    let path = lesson.join("01-quick-start.toml");
    std::fs::write(&path, wrong).unwrap_or_else(|e| panic!("{e}"));
    path
}

#[test]
#[cfg_attr(
    not(labgrade_root),
    ignore = "needs root: the quick start's report differs in a user namespace"
)]
fn a_broken_lab_fails_with_exit_1_and_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lab = broken_quick_start(dir.path());
    let out = labgrade(&["run", lab.to_str().unwrap_or_default()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    // The failing check, with expected, actual and the diff, as a person reads it.
    let check: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("✗ upper/config.txt content"))
        .take(6)
        .collect();
    insta::assert_snapshot!(check.join("\n"), @r#"
    ✗ upper/config.txt content (line 34)
        expected: "配置文件原始内容\n"
        actual:   "容器运行时修改的内容\n"
        diff (- expected, + actual):
          -配置文件原始内容
          +容器运行时修改的内容
    "#);
    assert!(
        stdout.contains("==== Start 'quick-start' (FAILED) ===="),
        "{stdout}"
    );
    assert!(stdout.contains("1 failed"), "{stdout}");
}

#[test]
fn json_carries_ids_statuses_checks_and_durations() {
    // A pending lab (a fixture: every lab of the lesson runs now) is a skip with its reason.
    let pending = pending_lab();
    let out = labgrade(&["run", "quick-start", &pending, "--format", "json"]);
    assert!(
        matches!(out.status.code(), Some(0)),
        "{}",
        text(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON: {e}"));
    assert_eq!(v["guest"], "host");
    assert_eq!(v["labs"][0]["id"], "quick-start");
    assert_eq!(v["labs"][0]["status"], "pass");
    assert!(v["labs"][0]["duration_ms"].is_u64());
    let checks = v["labs"][0]["steps"][3]["checks"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(checks >= 5, "delete step has its checks: {checks}");
    assert_eq!(
        v["labs"][0]["steps"][3]["checks"][3]["subject"],
        "upper/image-file.txt"
    );
    assert_eq!(v["labs"][1]["status"], "skip");
    assert!(
        v["labs"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("pending: "))
    );
    assert_eq!(v["schema_version"], labgrade_report::SCHEMA_VERSION);
    support::assert_matches_schema("run-report.schema.json", &v);
}

#[test]
fn junit_has_one_case_per_lab_and_the_skip_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let report = dir.path().join("junit.xml");
    let pending = pending_lab();
    let out = labgrade(&[
        "run",
        "quick-start",
        &pending,
        "--format",
        "junit",
        "-o",
        report.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "with -o nothing goes to stdout");
    let xml = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(xml.contains(r#"<testcase name="quick-start""#), "{xml}");
    assert!(
        xml.contains("<skipped message=\"pending: waits for its issue"),
        "{xml}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert_eq!(
        leftovers,
        vec![1],
        "only the report, no temp file left behind"
    );
}

#[test]
fn a_malformed_lab_is_a_usage_error_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lab = dir.path().join("bad.toml");
    std::fs::write(&lab, "title = \"t\"\nlesson = { file = \"l.md\", section = \"s\" }\n[[step]]\nrun = \"true\"\nexpect = [{ path = \"upper\", whiteuot = true }]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = labgrade(&["run", lab.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:5:29: unknown field `whiteuot`", lab.display())),
        "{stderr}"
    );
    assert!(stderr.contains("check the spelling"), "{stderr}");
}

#[test]
fn unknown_labs_and_guests_are_usage_errors() {
    // An accelerator that does not exist is refused while parsing, before any lab or kernel.
    let out = labgrade(&["run", "--accel", "warp", "quick-start"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warp"), "{}", text(&out.stderr));
    let out = labgrade(&["run", "no-such-lab"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no lab `no-such-lab`"));
    let out = labgrade(&["run", "--guest", "vagrant:none", "quick-start"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown guest `vagrant:none`"));
    // A kernel named wrongly is the user's mistake in `matrix` as in `run`.
    let missing = "local:/nonexistent/vmlinuz:/nonexistent/modules";
    for args in [
        &["run", "--guest", &format!("qemu:{missing}"), "quick-start"][..],
        &["matrix", "--kernels", missing, "quick-start"][..],
    ] {
        let out = labgrade(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A bzImage header that claims far more bytes than the file has.
fn hostile_bzimage() -> Vec<u8> {
    let mut h = vec![0u8; 0x400];
    h[0x1f1] = 0xff;
    h[0x1f4..0x1f8].copy_from_slice(&u32::MAX.to_le_bytes());
    h[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    h[0x202..0x206].copy_from_slice(b"HdrS");
    h[0x248..0x250].copy_from_slice(&[0xff; 8]);
    h
}

/// A minimal ELF64 x86-64 executable: the header, one PT_LOAD over the file and one PT_NOTE
/// holding a `Xen` note of `note_type` (18 is the PVH entry QEMU boots by).
fn small_vmlinux(note_type: u32) -> Vec<u8> {
    const LOAD: u64 = 0x100_0000;
    let mut f = vec![0u8; 64 + 2 * 56];
    f[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    let note_at = f.len() as u64;
    for word in [4u32, 8, note_type] {
        f.extend_from_slice(&word.to_le_bytes());
    }
    f.extend_from_slice(b"Xen\0");
    f.extend_from_slice(&(LOAD + 0x200).to_le_bytes());
    f.resize(0x400, 0x90);
    let len = f.len() as u64;
    for (at, p_type, off, size, align) in [(64, 1u32, 0, len, 0x1000u64), (120, 4, note_at, 24, 4)]
    {
        let mut p = Vec::new();
        p.extend_from_slice(&p_type.to_le_bytes());
        p.extend_from_slice(&5u32.to_le_bytes());
        for v in [off, LOAD + off, LOAD + off, size, size, align] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        f[at..at + 56].copy_from_slice(&p);
    }
    f
}

/// A whole bzImage (boot protocol 2.15) around `payload`, which ends in its unpacked size.
fn small_bzimage(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 5 * 512];
    f[0x1f1] = 4;
    f[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().next_multiple_of(16), 0);
    let syssize = u32::try_from((f.len() - 5 * 512) / 16).unwrap_or(0);
    f[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
    let length = u32::try_from(payload.len()).unwrap_or(0);
    f[0x24c..0x250].copy_from_slice(&length.to_le_bytes());
    f
}

#[test]
fn a_local_kernel_that_is_not_a_kernel_is_an_input_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let modules = dir.path().join("lib/modules/6.1.0-test");
    std::fs::create_dir_all(&modules).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(modules.join("modules.dep"), "").unwrap_or_else(|e| panic!("{e}"));
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut truncated = hostile_bzimage();
    truncated[0x1f4..0x1f8].copy_from_slice(&0x1000u32.to_le_bytes());
    for (name, bytes, why) in [
        ("empty", Vec::new(), "empty"),
        ("random", random, "neither"),
        ("hostile-header", hostile_bzimage(), "truncated"),
        ("truncated", truncated, "truncated"),
        (
            "text",
            b"#!/bin/sh\necho not a kernel\n".to_vec(),
            "neither",
        ),
    ]
    .into_iter()
    .chain(hostile_elves())
    {
        let image = dir.path().join(format!("vmlinuz-{name}"));
        std::fs::write(&image, bytes).unwrap_or_else(|e| panic!("{e}"));
        let guest = format!("qemu:local:{}:{}", image.display(), modules.display());
        let out = labgrade(&["exec", "--guest", &guest, "--", "true"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&image.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("not a kernel image"), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: no `{why}` in {stderr}");
    }
}

/// ELF kernels QEMU would refuse only after labgrade waited on it, and a bzImage whose xz payload
/// is garbage; each with the words its error must say.
fn hostile_elves() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut phoff = small_vmlinux(18);
    phoff[32..40].copy_from_slice(&(u64::MAX - 0x10).to_le_bytes());
    let mut note = small_vmlinux(18);
    // The PT_NOTE's p_offset, so that p_offset + p_filesz overflows u64.
    note[120 + 8..120 + 16].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
    let mut garbage = b"\xfd7zXZ\0".to_vec();
    garbage.extend((0..256u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    garbage.extend_from_slice(&0x40_0000u32.to_le_bytes());
    vec![
        ("elf-phoff-near-2^64", phoff, "program header table"),
        ("elf-note-overflow", note, "segment 1"),
        (
            "elf-no-pvh-note",
            small_vmlinux(17),
            "without a PVH entry note",
        ),
        (
            "bzimage-garbage-xz",
            small_bzimage(&garbage),
            "xz payload is corrupt",
        ),
    ]
}

#[test]
fn list_names_every_lab_with_its_needs() {
    let out = labgrade(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let labs =
        std::fs::read_dir(support::labs_dir().join("07-overlay-filesystems")).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
            })
            .count()
        });
    // A lab with `engines` is one line per engine.
    let engine_runs = labgrade_spec::load_dir(&support::labs_dir().join("07-overlay-filesystems"))
        .map_or(0, |l| l.len());
    assert!(engine_runs > labs, "some labs run per engine");
    assert_eq!(stdout.lines().count(), engine_runs);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("xfs-ftype0") && l.contains("needs overlay,xfs,xfs-v4")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("lab2-container-layers@podman")
                && l.contains("needs overlay,podman")),
        "{stdout}"
    );
}

#[test]
fn snapshot_lists_any_directory_like_the_labs_do() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("etc")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("etc/app.conf"), "modified by container\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = labgrade(&["snapshot", dir.path().to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("etc/app.conf file 0644"), "{stdout}");
    assert!(
        stdout.contains("size=22") && stdout.contains("sha256=c09f33ec4f2b4d22"),
        "{stdout}"
    );
    let out = labgrade(&["snapshot", "/no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn exec_streams_output_and_exits_with_the_commands_code() {
    let out = labgrade(&["exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"));
    let quoted = labgrade(&["exec", "--", "printf", "%s|", "it's here", ""]);
    assert_eq!(text(&quoted.stdout), "it's here||");
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn matrix_json_carries_its_schema_version_and_matches_the_schema() {
    let out = labgrade(&[
        "matrix",
        "--kernels",
        "debian:6.1",
        "--host",
        "quick-start",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON: {e}"));
    assert_eq!(v["schema_version"], labgrade_report::SCHEMA_VERSION);
    assert_eq!(v["columns"][0]["guest"], "qemu:debian:6.1");
    assert_eq!(
        v["columns"][0]["run"]["schema_version"],
        labgrade_report::SCHEMA_VERSION
    );
    support::assert_matches_schema("matrix-report.schema.json", &v);
}
