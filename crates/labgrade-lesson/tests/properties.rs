//! No parser of outside bytes may panic: the markdown extraction, the documented-line patterns,
//! the comparison, the shell probing and the fixer, on any input.

use labgrade_lesson::compare::{Pattern, compare, normalise};
use labgrade_lesson::{extract, fix, probe};
use proptest::prelude::*;

/// Markdown-ish text: fences, headings, output markers, placeholders, CJK, odd whitespace.
fn markdownish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("```bash\n".to_owned()),
        Just("```\n".to_owned()),
        Just("```console\n$ ".to_owned()),
        Just("## 节\n".to_owned()),
        Just("输出：\n\n".to_owned()),
        Just("Output:\n".to_owned()),
        Just("# 输出: ".to_owned()),
        Just("... abc123... Jan  4 12:00 ".to_owned()),
        Just("\\\n".to_owned()),
        Just("$(x) `y` 'q\" ".to_owned()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
        Just("\r\n\t".to_owned()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn extraction_never_panics(src in markdownish()) {
        let lesson = extract(&src);
        let lines = src.lines().count().max(1);
        for b in &lesson.blocks {
            prop_assert!(b.line >= 1 && b.line <= lines + 1);
            for d in b.documented() {
                prop_assert!(d.line >= 1 && d.line <= lines + 1);
            }
            let _ = probe::needs(&b.script());
        }
    }

    #[test]
    fn extraction_of_arbitrary_text_never_panics(src in "\\PC*") {
        let _ = extract(&src);
    }

    #[test]
    fn every_line_matches_itself(line in "\\PC{0,40}") {
        // What --fix writes back must hold on the next run.
        prop_assume!(!normalise(&line).is_empty());
        prop_assert!(Pattern::compile(&line).matches(&line), "{line:?}");
    }

    #[test]
    fn matching_never_panics(doc in markdownish(), actual in markdownish()) {
        let _ = Pattern::compile(&doc).matches(&actual);
        let docs: Vec<&str> = doc.lines().collect();
        let acts: Vec<&str> = actual.lines().collect();
        let verdicts = compare(&docs, &acts);
        prop_assert_eq!(verdicts.len(), docs.len());
        let mut last = None;
        for v in &verdicts {
            if let Some(m) = v.matched {
                prop_assert!(m < acts.len());
                prop_assert!(last.is_none_or(|l| m > l), "matches stay in order");
                last = Some(m);
            }
        }
    }

    #[test]
    fn probing_never_panics(script in "\\PC{0,80}") {
        let needs = probe::needs(&script);
        let _ = probe::probe_script(&needs);
        let _ = probe::assigned_variables(&script);
        let _ = probe::used_variables(&script);
    }

    #[test]
    fn fixing_never_panics(src in markdownish(), line in 0usize..30, doc in "\\PC{0,8}", new in proptest::option::of("\\PC{0,8}")) {
        let out = fix::apply(&src, &[fix::LineFix { line, documented: doc, replacement: new }]);
        prop_assert!(out.lines().count() <= src.lines().count() + 1);
    }
}
