//! The terminal report: each lab, each step, each check with expected against actual, skips with
//! their reasons, and a greppable block with the full evidence for every lab that did not pass.

use std::fmt::Write as _;

use crate::model::{CheckReport, CheckStatus, LabReport, LabStatus, RunReport, StepReport};

/// Renders a run for a person at a terminal.
pub fn render_human(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "labgrade run · guest {}", report.guest);
    if let Some(p) = &report.privilege {
        let _ = writeln!(out, "running as {p}");
    }
    if let Some(k) = &report.kmsg_unavailable {
        let _ = writeln!(out, "kernel log checks are skipped: {k}");
    }
    for lab in &report.labs {
        out.push('\n');
        lab_summary(&mut out, lab);
    }
    let failing: Vec<&LabReport> = report
        .labs
        .iter()
        .filter(|l| matches!(l.status, LabStatus::Fail | LabStatus::Error))
        .collect();
    for lab in failing {
        out.push('\n');
        evidence_block(&mut out, lab);
    }
    let t = report.totals();
    let _ = writeln!(
        out,
        "\n{} passed, {} failed, {} skipped, {} errors ({} labs in {})",
        t.passed,
        t.failed,
        t.skipped,
        t.errors,
        report.labs.len(),
        secs(report.duration_ms)
    );
    out
}

/// Per-lab and per-step wall times, slowest labs first, for `--timings`.
pub fn render_timings(report: &RunReport) -> String {
    let mut out = String::from("timings (wall):\n");
    let _ = writeln!(
        out,
        "  {:>9}  probing capabilities (summed over sessions, alongside labs)",
        secs(report.probe_ms)
    );
    let mut labs: Vec<&LabReport> = report.labs.iter().collect();
    labs.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.id.cmp(&b.id)));
    for lab in labs {
        let _ = writeln!(
            out,
            "  {:>9}  {} ({})",
            secs(lab.duration_ms),
            lab.id,
            lab.status.word()
        );
        if let Some(e) = &lab.engine {
            let _ = writeln!(
                out,
                "  {:>9}    {} {} answering, then {} getting {}",
                secs(e.ready_ms + e.import_ms),
                e.engine,
                secs(e.ready_ms),
                secs(e.import_ms),
                e.image
            );
        }
        for s in &lab.steps {
            let _ = writeln!(out, "  {:>9}    {}", secs(s.duration_ms), step_label(s));
        }
    }
    let _ = writeln!(
        out,
        "  {:>9}  total, {} labs",
        secs(report.duration_ms),
        report.labs.len()
    );
    out
}

fn secs(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

fn step_label(s: &StepReport) -> String {
    match &s.name {
        Some(n) => format!("step {} ({n})", s.number),
        None => format!("step {}", s.number),
    }
}

fn lab_summary(out: &mut String, lab: &LabReport) {
    let _ = writeln!(
        out,
        "{} {} — {} [{}]",
        lab.status.word(),
        lab.id,
        lab.title,
        secs(lab.duration_ms)
    );
    let _ = writeln!(
        out,
        "     lesson: {} § {}",
        lab.lesson.file, lab.lesson.section
    );
    if let Some(reason) = &lab.reason {
        let _ = writeln!(out, "     reason: {reason}");
    }
    for step in &lab.steps {
        let ok = step.checks.iter().all(|c| c.status != CheckStatus::Fail);
        let _ = writeln!(
            out,
            "  {} {}: {}",
            if ok { "ok  " } else { "FAIL" },
            step_label(step),
            first_line(&step.run)
        );
        for c in &step.checks {
            check_line(out, c);
        }
    }
    for snap in &lab.snapshots {
        let _ = writeln!(
            out,
            "  snapshot {} ({} entries)",
            snap.name,
            snap.text.lines().count()
        );
    }
}

fn first_line(run: &str) -> String {
    let mut lines = run
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let first = lines.next().unwrap_or("").to_owned();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

fn check_line(out: &mut String, c: &CheckReport) {
    let mark = match c.status {
        CheckStatus::Pass => "✓",
        CheckStatus::Fail => "✗",
        CheckStatus::Skip => "-",
    };
    let at = c.line.map(|l| format!(" (line {l})")).unwrap_or_default();
    match c.status {
        // The fact already says what was expected: the actual value is the evidence.
        CheckStatus::Pass if c.expected == c.actual || c.expected == c.fact => {
            let _ = writeln!(
                out,
                "       {mark} {} {}: {}{at}",
                c.subject,
                c.fact,
                one_line(&c.actual)
            );
        }
        CheckStatus::Pass => {
            let _ = writeln!(
                out,
                "       {mark} {} {}: expected {}, actual {}{at}",
                c.subject,
                c.fact,
                one_line(&c.expected),
                one_line(&c.actual)
            );
        }
        CheckStatus::Skip => {
            let _ = writeln!(
                out,
                "       {mark} {} {}: skipped, {}{at}",
                c.subject, c.fact, c.actual
            );
        }
        CheckStatus::Fail => {
            let _ = writeln!(out, "       {mark} {} {}{at}", c.subject, c.fact);
            let _ = writeln!(out, "           expected: {}", one_line(&c.expected));
            let _ = writeln!(out, "           actual:   {}", one_line(&c.actual));
            if let Some(diff) = &c.diff {
                let _ = writeln!(out, "           diff (- expected, + actual):");
                for l in diff.lines() {
                    let _ = writeln!(out, "             {l}");
                }
            }
        }
    }
}

fn one_line(s: &str) -> String {
    const MAX: usize = 160;
    let flat = s.replace('\n', "⏎");
    if flat.chars().count() > MAX {
        let cut: String = flat.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// `==== Start 'id' (FAILED) ====` ... `==== End 'id' ====`: everything the guest said, so a
/// failure can be understood from a CI log alone.
fn evidence_block(out: &mut String, lab: &LabReport) {
    let _ = writeln!(
        out,
        "==== Start '{}' ({}) ====",
        lab.id,
        if lab.status == LabStatus::Error {
            "ERROR"
        } else {
            "FAILED"
        }
    );
    let _ = writeln!(out, "file: {}", lab.file);
    if let Some(reason) = &lab.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    for s in &lab.steps {
        let _ = writeln!(
            out,
            "--- {} exit={:?} failed=[{}] ({} ms)",
            step_label(s),
            s.exit_code,
            s.failed_commands
                .iter()
                .map(|f| format!("file line {}: exit {}", f.line, f.exit_code))
                .collect::<Vec<_>>()
                .join(", "),
            s.duration_ms
        );
        let _ = writeln!(out, "$ {}", s.run.trim_end().replace('\n', "\n$ "));
        for (name, text) in [("stdout", &s.stdout), ("stderr", &s.stderr)] {
            if !text.is_empty() {
                let _ = writeln!(out, "[{name}]\n{}", text.trim_end());
            }
        }
        if !s.kmsg.is_empty() {
            let _ = writeln!(out, "[kernel]\n{}", s.kmsg.join("\n"));
        }
    }
    for snap in &lab.snapshots {
        let _ = writeln!(out, "[snapshot {}]\n{}", snap.name, snap.text.trim_end());
    }
    let _ = writeln!(out, "==== End '{}' ====", lab.id);
}
