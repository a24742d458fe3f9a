use std::path::Path;

use crate::{Capability, ExitExpectation, Fact, SpecError, parse_lab};

const GOOD: &str = r#"
title = "Lab 1: copy-up creates the parent directory in upper"
lesson = { file = "07-overlay-filesystems.md", section = "Lab 1：手动挂载 OverlayFS" }
needs = ["overlay"]

[[step]]
name = "prepare"
run = """
mkdir -p $LAB/{lower,upper,work,merged}/etc
echo "original content" > $LAB/lower/etc/app.conf
"""

[[step]]
name = "mount"
run = "mount -t overlay overlay -o lowerdir=$LAB/lower,upperdir=$LAB/upper,workdir=$LAB/work $LAB/merged"
fails = true
kmsg_contains = "workdir"
expect = [
  { path = "upper/etc", kind = "dir", opaque = false },
  { path = "lower/etc/app.conf", unchanged_since = "prepare", content = "original content\n" },
]
snapshot = "upper"
"#;

fn invalid(text: &str) -> String {
    match parse_lab(Path::new("labs/x/01-bad.toml"), text) {
        Ok(_) => "parsed fine".into(),
        Err(SpecError::Invalid(e)) => format!("{e}\nhelp: {}", e.help.clone().unwrap_or_default()),
        Err(e) => format!("{e}"),
    }
}

#[test]
fn a_good_lab_parses_into_typed_steps_and_checks() -> Result<(), SpecError> {
    let lab = parse_lab(Path::new("labs/07/02-lab1-nested-copy-up.toml"), GOOD)?;
    assert_eq!(lab.id, "lab1-nested-copy-up");
    assert_eq!(lab.needs, vec![Capability::Overlay]);
    assert_eq!(lab.steps.len(), 2);
    assert_eq!(lab.steps[0].run_line, 9);
    let mount = &lab.steps[1];
    assert_eq!(mount.exit, ExitExpectation::Failure);
    assert_eq!(mount.snapshots, vec!["upper".to_owned()]);
    let facts: Vec<_> = mount
        .checks
        .iter()
        .map(|c| (c.path.as_str(), c.fact.clone(), c.line))
        .collect();
    assert_eq!(
        facts,
        vec![
            ("upper/etc", Fact::Kind(labgrade_proto::EntryKind::Dir), 19),
            ("upper/etc", Fact::Opaque(false), 19),
            (
                "lower/etc/app.conf",
                Fact::Content("original content\n".into()),
                20
            ),
            ("lower/etc/app.conf", Fact::UnchangedSince(1), 20),
        ]
    );
    assert_eq!(lab.end_snapshots, vec!["upper".to_owned()]);
    Ok(())
}

#[test]
fn a_misspelt_field_names_file_line_and_column() {
    let text = GOOD.replace("content = \"original", "contnet = \"original");
    insta::assert_snapshot!(invalid(&text), @"
    labs/x/01-bad.toml:20:63: unknown field `contnet`, expected one of `path`, `exists`, `absent`, `kind`, `whiteout`, `opaque`, `content`, `contains`, `size`, `sha256`, `entries`, `xattr`, `no_xattr`, `unchanged_since`
    help: check the spelling; the lab file format is described in labs/README.md
    ");
}

#[test]
fn an_unknown_capability_lists_the_known_ones() {
    let text = GOOD.replace("needs = [\"overlay\"]", "needs = [\"overlay\", \"dokcer\"]");
    insta::assert_snapshot!(invalid(&text), @"
    labs/x/01-bad.toml:4:21: unknown capability `dokcer`
    help: known capabilities: `overlay` (overlay mounts work), `trusted-xattr` (trusted.* xattrs can be set (real root)), `metacopy` (overlay accepts metacopy=on), `xfs` (mkfs.xfs works and an XFS image mounts on a loop device), `xfs-v4` (the kernel mounts XFS V4 (crc=0, ftype=0) images), `ext4` (an ext4 image mounts on a loop device), `docker` (dockerd, docker, containerd and runc are installed), `podman` (podman and runc are installed)
    ");
}

#[test]
fn a_lab_with_engines_runs_once_per_engine_each_needing_it() {
    let text = GOOD.replace(
        "needs = [\"overlay\"]",
        "needs = [\"overlay\"]\nengines = [\"docker\", \"podman\"]",
    );
    let lab =
        parse_lab(Path::new("labs/x/07-lab2.toml"), &text).unwrap_or_else(|e| panic!("{e:?}"));
    let runs = lab.per_engine();
    let ids: Vec<&str> = runs.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["lab2@docker", "lab2@podman"]);
    assert_eq!(runs[1].engine, Some(labgrade_proto::Engine::Podman));
    assert_eq!(runs[1].needs, vec![Capability::Overlay, Capability::Podman]);
    assert_eq!(runs[0].file_id(), "lab2");
    let bad = GOOD.replace("needs = [\"overlay\"]", "engines = [\"lxc\"]");
    insta::assert_snapshot!(invalid(&bad), @"
    labs/x/01-bad.toml:4:12: unknown container engine `lxc`
    help: engines: docker, podman
    ");
}

#[test]
fn unchanged_since_must_name_an_earlier_step() {
    let text = GOOD.replace(
        "unchanged_since = \"prepare\"",
        "unchanged_since = \"mount\"",
    );
    insta::assert_snapshot!(invalid(&text), @"
    labs/x/01-bad.toml:20:52: `unchanged_since` must name an earlier step (this is step 2)
    help: use the number of an earlier step (1-based) or its `name`
    ");
}

#[test]
fn paths_may_not_leave_the_lab() {
    let text = GOOD.replace("path = \"upper/etc\"", "path = \"../etc\"");
    insta::assert_snapshot!(invalid(&text), @r#"
    labs/x/01-bad.toml:19:12: `../etc` leaves $LAB with `..`
    help: check paths are relative to $LAB, e.g. "upper/etc/app.conf"
    "#);
}

#[test]
fn broken_toml_is_an_error_not_a_panic() {
    insta::assert_snapshot!(invalid("title = \"x\nlesson = 3"), @r#"
    labs/x/01-bad.toml:1:11: invalid basic string, expected `"`
    help: this is not valid TOML here
    "#);
    insta::assert_snapshot!(invalid("title = \"x\"\nlesson = { file = \"a\", section = \"b\" }\n"), @r#"
    labs/x/01-bad.toml:1:1: a lab needs at least one [[step]]
    help: add a [[step]] with `run = "..."`, or `pending = "reason"` if it cannot run yet
    "#);
}

#[test]
fn a_check_that_asserts_nothing_is_refused() {
    let text = GOOD.replace(
        "{ path = \"upper/etc\", kind = \"dir\", opaque = false }",
        "{ path = \"upper/etc\" }",
    );
    insta::assert_snapshot!(invalid(&text), @"
    labs/x/01-bad.toml:19:12: the check on `upper/etc` asserts nothing
    help: add a fact: exists, absent, kind, whiteout, opaque, content, contains, size, sha256, entries, xattr, no_xattr or unchanged_since
    ");
}

const WITH_DISK: &str = r#"
title = "upper on XFS without d_type"
lesson = { file = "07-overlay-filesystems.md", section = "s" }
needs = ["overlay"]

[[disk]]
name = "xfs"
fs = "xfs"
mkfs = "-m crc=0  -n ftype=0"

[[step]]
run = "mount $DISK_XFS $LAB/xfs"
"#;

#[test]
fn a_disk_is_typed_and_brings_its_filesystem_need() -> Result<(), SpecError> {
    let lab = parse_lab(Path::new("labs/x/13-xfs.toml"), WITH_DISK)?;
    assert_eq!(lab.needs, vec![Capability::Overlay, Capability::Xfs]);
    let ext4 = parse_lab(
        Path::new("labs/x/15-ext4.toml"),
        &WITH_DISK.replace("fs = \"xfs\"", "fs = \"ext4\""),
    )?;
    assert_eq!(ext4.needs, vec![Capability::Overlay, Capability::Ext4]);
    assert_eq!(lab.disks.len(), 1);
    let disk = &lab.disks[0];
    assert_eq!(disk.env_var(), "DISK_XFS");
    assert_eq!(
        disk.format,
        crate::DiskFormat {
            fs: crate::Filesystem::Xfs,
            mkfs: ["-m", "crc=0", "-n", "ftype=0"].map(String::from).to_vec(),
            size_mib: crate::DEFAULT_DISK_MIB,
        }
    );
    assert_eq!(
        disk.format.describe(),
        "mkfs.xfs -m crc=0 -n ftype=0, 300 MiB"
    );
    Ok(())
}

#[test]
fn a_bad_disk_says_what_would_do() {
    insta::assert_snapshot!(invalid(&WITH_DISK.replace("fs = \"xfs\"", "fs = \"btrfs\"")), @"
    labs/x/01-bad.toml:8:6: unknown filesystem `btrfs`
    help: scratch disks can be: ext4, xfs
    ");
    insta::assert_snapshot!(invalid(&WITH_DISK.replace("name = \"xfs\"", "name = \"my disk\"")), @"
    labs/x/01-bad.toml:7:8: disk name `my disk` cannot name a shell variable
    help: use lower-case letters, digits and `_`, e.g. `name = \"xfs\"` for $DISK_XFS
    ");
    insta::assert_snapshot!(invalid(&WITH_DISK.replace("fs = \"xfs\"", "fs = \"xfs\"\nsize = \"9T\"")), @"
    labs/x/01-bad.toml:9:8: disk size `9T` is not a size from 1M to 4096M
    help: write it like `300M` or `1G`
    ");
}

mod prop {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A lab file is the user's bytes: loading any of them is a lab or an error, never a panic.
        #[test]
        fn any_text_loads_or_errs(text in "\\PC{0,300}") {
            let _ = crate::parse_lab(std::path::Path::new("01-x.toml"), &text);
        }

        #[test]
        fn lab_shaped_toml_loads_or_errs(
            title in "\\PC{0,20}",
            needs in proptest::collection::vec("[a-z-]{0,10}", 0..4),
            run in "\\PC{0,40}",
            path in "[a-z./ ]{0,20}",
            fact in prop_oneof![Just("content = \"x\""), Just("whiteout = true"), Just("unchanged_since = 3"), Just("kind = \"nope\""), Just("size = -1"), Just("entries = [1]")],
            disk in prop_oneof![Just(""), Just("[[disk]]\nname = \"d\"\nfs = \"xfs\"\nsize = \"99T\"\n"), Just("[[disk]]\nname = \"\"\nfs = \"btrfs\"\n")],
        ) {
            let needs: Vec<String> = needs.iter().map(|n| format!("{n:?}")).collect();
            let text = format!(
                "title = {title:?}\nlesson = {{ file = \"l\", section = \"s\" }}\nneeds = [{}]\n{disk}[[step]]\nrun = {run:?}\nexpect = [{{ path = {path:?}, {fact} }}]\n",
                needs.join(", ")
            );
            let _ = crate::parse_lab(std::path::Path::new("01-x.toml"), &text);
        }
    }
}
