//! Renderers of drift reports: human (a terminal), markdown (a page for a pull request). JSON is
//! the report itself through serde.

use std::fmt::Write;

use crate::report::{
    BlockReport, BlockStatus, DriftReport, Holds, KernelsReport, LineReport, LineStatus,
};

/// Documented lines against what the block printed, as a unified line diff.
fn line_diff(block: &BlockReport) -> String {
    let documented: String = block
        .documented
        .iter()
        .map(|d| format!("{}\n", d.text))
        .collect();
    let actual = block.actual.clone().unwrap_or_default();
    similar::TextDiff::from_lines(&documented, &actual)
        .unified_diff()
        .context_radius(2)
        .header("documented", "actual")
        .to_string()
}

fn verdict(l: &LineReport) -> &'static str {
    match (l.status, &l.accepted) {
        (LineStatus::Match, _) => "match",
        (LineStatus::Drift, Some(_)) => "drift (accepted)",
        (LineStatus::Drift, None) => "DRIFT",
    }
}

fn header(r: &DriftReport) -> String {
    let kernel = r
        .kernel_release
        .as_deref()
        .map(|k| format!(" ({k})"))
        .unwrap_or_default();
    format!("labgrade drift {} on {}{kernel}", r.lesson, r.guest)
}

fn summary(r: &DriftReport) -> String {
    let t = r.totals();
    format!(
        "{} blocks ran, {} skipped, {} timed out; documented lines: {} match, {} drift accepted by the baseline, {} new drift; {} stale baseline entries ({} ms)",
        t.ran, t.skipped, t.timed_out, t.matched, t.accepted, t.new_drift, t.stale, r.duration_ms
    )
}

/// The report for a terminal: every block, drift with documented against actual and a line
/// diff, skips with their reasons, stale baseline entries.
pub fn human(r: &DriftReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", header(r));
    for note in &r.notes {
        let _ = writeln!(s, "note: {note}");
    }
    for b in &r.blocks {
        let what = match b.status {
            BlockStatus::Match if b.documented.is_empty() => {
                format!("ran (nothing documented), exit {}", exit(b))
            }
            BlockStatus::Match => format!("match ({} documented lines)", b.lines.len()),
            BlockStatus::Drift => "drift".to_owned(),
            BlockStatus::Skipped => format!("skipped: {}", b.reason.as_deref().unwrap_or("")),
            BlockStatus::Timeout => format!("TIMEOUT: {}", b.reason.as_deref().unwrap_or("")),
        };
        let _ = writeln!(s, "  line {:>4}  [{}]  {what}", b.line, b.section);
        if b.status != BlockStatus::Drift {
            continue;
        }
        for l in b.lines.iter().filter(|l| l.status == LineStatus::Drift) {
            let _ = writeln!(s, "    line {:>4}: {}", l.line, verdict(l));
            let _ = writeln!(s, "      documented: {}", l.documented);
            let _ = writeln!(
                s,
                "      actual:     {}",
                l.actual.as_deref().unwrap_or("(nothing printed there)")
            );
            if let Some(why) = &l.accepted {
                let _ = writeln!(s, "      accepted:   {why}");
            }
        }
        if b.lines
            .iter()
            .any(|l| l.status == LineStatus::Drift && l.accepted.is_none())
        {
            for line in line_diff(b).lines() {
                let _ = writeln!(s, "      {line}");
            }
        }
    }
    for e in &r.stale {
        let _ = writeln!(
            s,
            "stale baseline entry: [{}] {:?} no longer diverges (reason was: {})",
            e.section, e.documented, e.reason
        );
    }
    let _ = writeln!(s, "{}", summary(r));
    s
}

fn exit(b: &BlockReport) -> String {
    b.exit_code.map_or("-".to_owned(), |c| c.to_string())
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A page a maintainer can attach to a pull request.
pub fn markdown(r: &DriftReport) -> String {
    let mut s = String::new();
    let t = r.totals();
    let _ = writeln!(s, "## Lesson drift: `{}` on `{}`\n", r.lesson, r.guest);
    if let Some(k) = &r.kernel_release {
        let _ = writeln!(s, "Kernel `{k}`.\n");
    }
    let verdict_line = if t.has_failures() {
        format!("**{} new drift**, {} timed out.", t.new_drift, t.timed_out)
    } else {
        "**No new drift.**".to_owned()
    };
    let _ = writeln!(s, "{verdict_line} {}\n", summary(r));
    for note in &r.notes {
        let _ = writeln!(s, "> {note}\n");
    }
    let _ = writeln!(
        s,
        "| line | section | status | detail |\n| ---: | --- | --- | --- |"
    );
    for b in &r.blocks {
        let (status, detail) = match b.status {
            BlockStatus::Match => ("match", format!("{} documented lines hold", b.lines.len())),
            BlockStatus::Drift => {
                let new = b
                    .lines
                    .iter()
                    .filter(|l| l.status == LineStatus::Drift && l.accepted.is_none())
                    .count();
                let acc = b.lines.iter().filter(|l| l.accepted.is_some()).count();
                ("drift", format!("{new} new, {acc} accepted"))
            }
            BlockStatus::Skipped => ("skipped", b.reason.clone().unwrap_or_default()),
            BlockStatus::Timeout => ("**timeout**", b.reason.clone().unwrap_or_default()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {status} | {} |",
            b.line,
            md_cell(&b.section),
            md_cell(&detail)
        );
    }
    for b in r.blocks.iter().filter(|b| b.status == BlockStatus::Drift) {
        let _ = writeln!(s, "\n### Line {}: {}\n", b.line, b.section);
        for l in b.lines.iter().filter(|l| l.status == LineStatus::Drift) {
            let _ = writeln!(
                s,
                "- line {} ({}): documented `{}`, prints `{}`{}",
                l.line,
                verdict(l),
                l.documented.replace('`', "'"),
                l.actual.as_deref().unwrap_or("(nothing)").replace('`', "'"),
                l.accepted
                    .as_deref()
                    .map(|a| format!(" — accepted: {a}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(s, "\n```diff\n{}```", line_diff(b));
    }
    if !r.stale.is_empty() {
        let _ = writeln!(s, "\n### Stale baseline entries\n");
        for e in &r.stale {
            let _ = writeln!(
                s,
                "- [{}] `{}` no longer diverges: remove it",
                e.section, e.documented
            );
        }
    }
    s
}

fn holds_mark(h: Holds) -> &'static str {
    match h {
        Holds::Yes => "yes",
        Holds::Accepted => "accepted",
        Holds::No => "NO",
        Holds::NotRun => "-",
    }
}

/// Per documented line, on which guests it holds; then each guest's summary.
pub fn kernels_human(r: &KernelsReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "labgrade drift {} on {}", r.lesson, r.guests.join(", "));
    let width = r.guests.iter().map(String::len).max().unwrap_or(4).max(8);
    let _ = write!(s, "  line ");
    for g in &r.guests {
        let _ = write!(s, " {g:>width$}");
    }
    let _ = writeln!(s, "  documented");
    for l in &r.lines {
        let _ = write!(s, "  {:>4} ", l.line);
        for v in &l.verdicts {
            let _ = write!(s, " {:>width$}", holds_mark(*v));
        }
        let _ = writeln!(s, "  {}", l.documented);
    }
    for run in &r.runs {
        let _ = writeln!(s, "{}: {}", run.guest, summary(run));
    }
    s
}

/// The same as a markdown table.
pub fn kernels_markdown(r: &KernelsReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Lesson drift across kernels: `{}`\n", r.lesson);
    let _ = write!(s, "| line | documented |");
    for g in &r.guests {
        let _ = write!(s, " `{g}` |");
    }
    let _ = write!(s, "\n| ---: | --- |");
    for _ in &r.guests {
        let _ = write!(s, " --- |");
    }
    let _ = writeln!(s);
    for l in &r.lines {
        let _ = write!(
            s,
            "| {} | `{}` |",
            l.line,
            md_cell(&l.documented).replace('`', "'")
        );
        for v in &l.verdicts {
            let _ = write!(s, " {} |", holds_mark(*v));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s);
    for run in &r.runs {
        let _ = writeln!(s, "- `{}`: {}", run.guest, summary(run));
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::run::{BlockRun, LessonRun};
    use crate::{Baseline, RunMeta};

    fn report() -> crate::DriftReport {
        let src = "## 部分\n\n```bash\necho 'version 2'\n# 输出: version 1\necho ok\n# 输出: ok\n```\n\n```bash\ndocker ps\n```\n";
        let lesson = crate::extract(src);
        let run = LessonRun {
            blocks: vec![
                BlockRun::Ran {
                    outputs: vec!["version 2\n".into(), "ok\n".into()],
                    exit_code: Some(0),
                },
                BlockRun::Skipped("the docker engine is not running here".into()),
            ],
            root: true,
            duration: std::time::Duration::from_millis(12),
        };
        let mut r = crate::judge(
            &lesson,
            &run,
            &RunMeta {
                lesson: "l.md".into(),
                guest: "host".into(),
                kernel_release: Some("6.18".into()),
            },
        );
        let baseline = Baseline::parse(
            "[[accepted]]\nsection = \"部分\"\ndocumented = \"gone\"\nreason = \"was true once\"\n\
             [[accepted]]\nsection = \"部分\"\ndocumented = \"ok\"\nreason = \"stale now\"\n",
            std::path::Path::new("b.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        baseline.apply(&mut r);
        r
    }

    #[test]
    fn human_report() {
        insta::assert_snapshot!(super::human(&report()));
    }

    #[test]
    fn markdown_report() {
        insta::assert_snapshot!(super::markdown(&report()));
    }

    #[test]
    fn json_report_names_status_and_reason() {
        let json = serde_json::to_value(report()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["blocks"][0]["status"], "drift");
        assert_eq!(json["blocks"][0]["lines"][0]["actual"], "version 2");
        assert_eq!(json["blocks"][1]["status"], "skipped");
        assert_eq!(
            json["blocks"][1]["reason"],
            "the docker engine is not running here"
        );
        assert_eq!(json["stale"][0]["documented"], "ok");
    }
}
