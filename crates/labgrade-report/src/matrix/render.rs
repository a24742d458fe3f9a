//! The matrix as text: a table for a terminal, a page for a course's site. Text is made here
//! only, from the typed cells and differences.

use std::fmt::Write as _;

use super::{Cell, MatrixReport};
use crate::model::LabStatus;

/// (lab, guest, cell) of every cell that did not pass and says why.
fn not_passed(m: &MatrixReport) -> Vec<(String, &str, LabStatus, &str)> {
    let mut out = Vec::new();
    for id in m.lab_ids() {
        for c in &m.columns {
            let cell = c.cell(&id);
            if let (Some(status), Some(reason)) = (cell.status(), cell.reason())
                && status != LabStatus::Pass
            {
                out.push((id.clone(), c.guest.as_str(), status, reason));
            }
        }
    }
    out
}

fn word(cell: Cell<'_>) -> &'static str {
    cell.status().map_or("-", LabStatus::word)
}

/// The matrix for a terminal: a table, the skip reasons, then the differences.
pub fn render_matrix_human(m: &MatrixReport) -> String {
    let ids = m.lab_ids();
    let width = ids.iter().map(String::len).max().unwrap_or(3).max(3);
    let col = m
        .columns
        .iter()
        .map(|c| c.guest.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:width$}", "lab");
    for c in &m.columns {
        let _ = write!(out, "  {:col$}", c.guest);
    }
    out.push('\n');
    for id in &ids {
        let _ = write!(out, "{id:width$}");
        for c in &m.columns {
            let _ = write!(out, "  {:col$}", word(c.cell(id)));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\nkernels:");
    for c in &m.columns {
        let _ = writeln!(out, "  {}: {}", c.guest, c.kernel_text());
    }
    let mut reasons = String::new();
    for (id, guest, status, reason) in not_passed(m) {
        let _ = writeln!(reasons, "  {id} on {guest}: {}: {reason}", status.word());
    }
    if !reasons.is_empty() {
        let _ = write!(out, "\nnot passed, and why:\n{reasons}");
    }
    let diffs = m.differences();
    let _ = writeln!(out, "\ndifferences across guests ({}):", diffs.len());
    for d in &diffs {
        let _ = writeln!(out, "  {} · {}", d.lab, d.subject);
        for (g, v) in &d.by_guest {
            let _ = writeln!(out, "      {g:col$}  {v}");
        }
    }
    out
}

/// The matrix as a page a course maintainer can publish.
pub fn render_matrix_markdown(m: &MatrixReport) -> String {
    let ids = m.lab_ids();
    let mut out = String::from("# Lab results by kernel\n\n| lab |");
    for c in &m.columns {
        let _ = write!(out, " {} |", c.guest);
    }
    out.push_str("\n| --- |");
    for _ in &m.columns {
        out.push_str(" --- |");
    }
    out.push('\n');
    for id in &ids {
        let _ = write!(out, "| `{id}` |");
        for c in &m.columns {
            let mark = match c.cell(id).status() {
                Some(LabStatus::Pass) => "✅ pass",
                Some(LabStatus::Fail) => "❌ fail",
                Some(LabStatus::Skip) => "⏭ skip",
                Some(LabStatus::Error) => "⚠️ error",
                None => "–",
            };
            let _ = write!(out, " {mark} |");
        }
        out.push('\n');
    }
    out.push_str("\n## Kernels\n\n");
    for c in &m.columns {
        let _ = writeln!(out, "- **{}**: {}", c.guest, c.kernel_text());
    }
    let mut reasons = String::new();
    for (id, guest, status, reason) in not_passed(m) {
        let reason = reason.replace('|', "\\|");
        let _ = writeln!(
            reasons,
            "- `{id}` on {guest}: {}: {reason}",
            status.word().to_lowercase()
        );
    }
    if !reasons.is_empty() {
        let _ = write!(out, "\n## Skips and failures\n\n{reasons}");
    }
    let diffs = m.differences();
    out.push_str("\n## What differs between kernels\n\n");
    if diffs.is_empty() {
        out.push_str("Nothing: every snapshot and kernel message is the same on every kernel.\n");
    }
    for d in &diffs {
        let _ = writeln!(
            out,
            "### `{}` — {}\n\n| guest | shows |\n| --- | --- |",
            d.lab, d.subject
        );
        for (g, v) in &d.by_guest {
            let _ = writeln!(
                out,
                "| {g} | `{}` |",
                v.to_string().replace('|', "\\|").replace('`', "'")
            );
        }
        out.push('\n');
    }
    out
}
