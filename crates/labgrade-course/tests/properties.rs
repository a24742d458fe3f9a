//! No parser of outside bytes may panic: the link and path extraction of any markdown, the shell
//! reader, link classification, the tools' outputs and a lab file's text.

use std::path::PathBuf;

use labgrade_course::checks::{self, Counts, Page, Resolve, link_target};
use labgrade_course::commands::script_instructions;
use labgrade_course::scripts::{parse_bash_n, parse_shellcheck, script_kind};
use labgrade_course::sections::lesson_key_line;
use labgrade_course::view::MapView;
use proptest::prelude::*;

/// Markdown-ish text with the pieces the checks look for.
fn markdownish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("```bash\n".to_owned()),
        Just("```\n".to_owned()),
        Just("```console\n$ ".to_owned()),
        Just("## 节\n".to_owned()),
        Just("[a](../x/#y) ".to_owned()),
        Just("![i](%zz%2".to_owned()),
        Just("[r]: <./a b>\n".to_owned()),
        Just("cd ~/cloud-atlas/".to_owned()),
        Just("git sparse-checkout set ".to_owned()),
        Just("sudo -u ".to_owned()),
        Just("./x.sh ".to_owned()),
        Just("chmod 7".to_owned()),
        Just("<<'EOF'\n".to_owned()),
        Just("EOF\n".to_owned()),
        Just("&& || ; | & > >> 2>&1 < <<< >( $( \\\n".to_owned()),
        Just("'\"`".to_owned()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
        Just("\r\n\t".to_owned()),
    ];
    proptest::collection::vec(piece, 0..32).prop_map(|v| v.concat())
}

fn check(src: &str) {
    let lesson = labgrade_lesson::extract(src);
    let resolve = Resolve {
        repo_root: PathBuf::from("/r"),
        clone_path: "~/cloud-atlas".into(),
        course_root: PathBuf::from("/r/c"),
        whole_repo: false,
    };
    let page = Page {
        file: "m/a/README.md".into(),
        abs: PathBuf::from("/r/c/m/a/README.md"),
        lesson: None,
    };
    let view = MapView::default().file("/r/c/m/a/code/x.sh", false);
    let mut counts = Counts::default();
    let lines = src.lines().count().max(1);
    let mut findings = checks::check_links(&page, &lesson, &resolve, &view, &mut counts);
    findings.extend(checks::check_paths(
        &page,
        &lesson,
        &resolve,
        &view,
        &mut counts,
    ));
    for f in findings {
        assert!(f.line >= 1 && f.line <= lines + 1, "{f:?}");
    }
}

proptest! {
    #[test]
    fn link_and_path_extraction_never_panics(src in markdownish()) {
        check(&src);
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC*") {
        check(&src);
        let mut out = Vec::new();
        script_instructions(&src, 1, &mut out);
        let _ = link_target(&src);
        let _ = parse_bash_n(&src);
        let _ = parse_shellcheck(&src);
        let _ = lesson_key_line(&src);
    }

    #[test]
    fn any_bytes_are_some_kind_of_file(name in "\\PC{0,12}", head in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = script_kind(&name, &head);
    }
}
