//! Extraction from fixture lessons written for these tests, in Chinese, Japanese and English:
//! which blocks are shell, their sections and parts, and which documented line goes with which
//! commands. The snapshots are the reviewed truth.

use std::fmt::Write;
use std::path::Path;

use labgrade_lesson::extract;

fn outline(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lesson = extract(&src);
    let mut s = String::new();
    for b in &lesson.blocks {
        let _ = writeln!(
            s,
            "block line {} part {} lang {:?} [{}]",
            b.line, b.part, b.language, b.section
        );
        for seg in &b.segments {
            let _ = writeln!(s, "  segment line {}: {:?}", seg.line, seg.script);
            for d in &seg.documented {
                let _ = writeln!(
                    s,
                    "    documented line {} {:?}: {:?}",
                    d.line, d.origin, d.text
                );
            }
        }
    }
    for o in &lesson.orphan_outputs {
        let _ = writeln!(s, "orphan output at line {o}");
    }
    s
}

#[test]
fn chinese_fixture() {
    insta::assert_snapshot!(outline("zh-drift.md"));
}

#[test]
fn japanese_fixture() {
    insta::assert_snapshot!(outline("ja-timeout.md"));
}

#[test]
fn english_console_fixture() {
    insta::assert_snapshot!(outline("en-console.md"));
}

#[test]
fn the_real_lesson() {
    insta::assert_snapshot!(outline(
        "../../../../../shared/lessons/07-overlay-filesystems.md"
    ));
}
