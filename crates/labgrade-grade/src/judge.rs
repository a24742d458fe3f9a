//! Deciding what a task's state earns: pure functions of the facts the agent read (never of what
//! the student printed), unit-tested without root.
//!
//! The evidence a grade report keeps is bounded: a submission decides how many files a
//! directory holds and how large a file is, and a 200 000-file lower once made a 99 MB report.
//! A listing shows its first [`ENTRIES_SHOWN`] names, quoted, and how many more there are;
//! any other text is cut at [`EVIDENCE_MAX_CHARS`] (a diff at [`DIFF_MAX_CHARS`]), and each
//! says that a bound was hit.

use labgrade_report::{CheckReport, CheckStatus};
use labgrade_spec::Fact;

use crate::assignment::{GradeCheck, OverlayExpectation, TaskFact};
use crate::report::GradedCheck;
use crate::wire::{MountEntry, PathFacts};
use labgrade_proto::options::{split_escaped, unescape};

/// The overlay layers a mount shows, paths made relative to `$LAB` where they are inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayLayers {
    /// `lowerdir` (and `lowerdir+=`), highest priority first.
    pub lower: Vec<String>,
    /// `upperdir`.
    pub upper: Option<String>,
    /// `workdir`.
    pub work: Option<String>,
}

impl std::fmt::Display for OverlayLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lowerdir={}", self.lower.join(":"))?;
        if let Some(u) = &self.upper {
            write!(f, " upperdir={u}")?;
        }
        if let Some(w) = &self.work {
            write!(f, " workdir={w}")?;
        }
        Ok(())
    }
}

/// `/tmp/lab/x/` -> `x`; `./x` -> `x` (older kernels show the paths as the mounter gave them,
/// relative to its working directory, which is `$LAB`); anything outside `$LAB` stays absolute.
fn relative_to_lab(path: &str, lab: &str) -> String {
    let p = path.trim_end_matches('/');
    let lab = lab.trim_end_matches('/');
    let rel = match p.strip_prefix(lab) {
        Some("") => ".",
        Some(rest) if rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => p,
    };
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if rel.starts_with('/') {
        format!("/{}", parts.join("/"))
    } else {
        parts.join("/")
    }
}

/// Reads the layers from an overlay mount's options. Data-only lower dirs (after `::`) count as
/// lower dirs in order.
pub fn overlay_layers(options: &[String], lab: &str) -> OverlayLayers {
    let mut layers = OverlayLayers::default();
    for o in options {
        if let Some(v) = o.strip_prefix("lowerdir=") {
            layers.lower = split_escaped(v, ':')
                .iter()
                .map(|p| unescape(p))
                .filter(|p| !p.is_empty())
                .map(|p| relative_to_lab(&p, lab))
                .collect();
        } else if let Some(v) = o
            .strip_prefix("lowerdir+=")
            .or_else(|| o.strip_prefix("datadir+="))
        {
            layers.lower.push(relative_to_lab(&unescape(v), lab));
        } else if let Some(v) = o.strip_prefix("upperdir=") {
            layers.upper = Some(relative_to_lab(&unescape(v), lab));
        } else if let Some(v) = o.strip_prefix("workdir=") {
            layers.work = Some(relative_to_lab(&unescape(v), lab));
        }
    }
    layers
}

/// The mount a process sees at `at`: of the mounts there, the one no other is stacked on (its
/// id is no other's parent there). Mount order is not stacking order: a mount moved onto the
/// path (`mount --move`) keeps its older place in the table. Without ids, the last one.
fn visible_at<'a>(mounts: &'a [MountEntry], at: &str) -> Option<&'a MountEntry> {
    let here: Vec<&MountEntry> = mounts.iter().filter(|m| m.mount_point == at).collect();
    here.iter()
        .rev()
        .find(|m| m.mount_id != 0 && !here.iter().any(|o| o.parent_id == m.mount_id))
        .or(here.last())
        .copied()
}

/// Judges "`at` is an overlay mount with these layers" against the mounts under `$LAB` (in
/// mount order; the topmost at a path is the one a process sees).
pub fn judge_overlay(want: &OverlayExpectation, lab: &str, mounts: &[MountEntry]) -> CheckReport {
    let at = relative_to_lab(&want.at, "");
    let expected = OverlayLayers {
        lower: want.lower.iter().map(|p| relative_to_lab(p, "")).collect(),
        upper: want.upper.as_deref().map(|p| relative_to_lab(p, "")),
        work: want.work.as_deref().map(|p| relative_to_lab(p, "")),
    };
    let top = visible_at(mounts, &at);
    let (ok, actual) = match top {
        None => (false, format!("nothing is mounted at {at}")),
        Some(m) if m.fstype != "overlay" => {
            (false, format!("a {} mount (source {})", m.fstype, m.source))
        }
        Some(m) => {
            let got = overlay_layers(&m.super_options, lab);
            let ok = got.lower == expected.lower
                && (expected.upper.is_none() || got.upper == expected.upper)
                && (expected.work.is_none() || got.work == expected.work);
            (ok, format!("overlay {got}"))
        }
    };
    CheckReport {
        subject: at,
        fact: "overlay mount".into(),
        line: None,
        status: if ok {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        expected: format!("overlay {expected}"),
        actual,
        diff: None,
    }
}

/// Most names of a directory listing (an `entries` fact) a grade report shows.
pub const ENTRIES_SHOWN: usize = 50;

/// Most bytes of an evidence text (`expected`, `actual`) a grade report keeps.
pub const EVIDENCE_MAX_CHARS: usize = 4096;

/// Most bytes of an evidence diff a grade report keeps.
pub const DIFF_MAX_CHARS: usize = 8192;

/// `["a", "b", … and 199998 more (200000 names)]`: names quoted (and their control
/// characters escaped) so a name holding `, ` or a newline cannot pass for two, and at most
/// [`ENTRIES_SHOWN`] of them.
fn names_list(names: &[String]) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(ENTRIES_SHOWN)
        .map(|n| format!("{n:?}"))
        .collect();
    if names.len() > ENTRIES_SHOWN {
        shown.push(format!(
            "… and {} more ({} names)",
            names.len() - ENTRIES_SHOWN,
            names.len()
        ));
    }
    format!("[{}]", shown.join(", "))
}

/// `text` cut to at most `max` bytes (at a char boundary, at a line end for `by_line`), with a
/// note of how much there was.
fn bounded(text: String, max: usize, by_line: bool) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if by_line && let Some(nl) = text[..cut].rfind('\n') {
        cut = nl + 1;
    }
    let sep = if by_line { "" } else { " " };
    format!(
        "{}{sep}… [cut: {cut} of {} bytes shown]",
        &text[..cut],
        text.len()
    )
}

/// The evidence as a grade report keeps it: a listing as [`names_list`], every text bounded.
fn bound_evidence(mut e: CheckReport, fact: Option<&Fact>, now: Option<&PathFacts>) -> CheckReport {
    if let (Some(Fact::Entries(want)), Some(Some(found))) = (fact, now.map(|n| n.children.as_ref()))
    {
        e.expected = names_list(want);
        e.actual = names_list(found);
    } else if let Some(Fact::Entries(want)) = fact {
        e.expected = names_list(want);
    }
    e.expected = bounded(e.expected, EVIDENCE_MAX_CHARS, false);
    e.actual = bounded(e.actual, EVIDENCE_MAX_CHARS, false);
    e.diff = e.diff.map(|d| bounded(d, DIFF_MAX_CHARS, true));
    e
}

/// Judges every fact of a check; it earns its points only if all hold.
pub fn score_check(
    check: &GradeCheck,
    facts: &[PathFacts],
    mounts: &[MountEntry],
    lab: &str,
) -> GradedCheck {
    let evidence: Vec<CheckReport> = check
        .facts
        .iter()
        .map(|f| match f {
            TaskFact::Overlay(want) => bound_evidence(judge_overlay(want, lab, mounts), None, None),
            TaskFact::Path(c) => match facts.iter().find(|p| p.path == c.path) {
                Some(now) => bound_evidence(
                    labgrade_runner::judge::judge_fact(c, now, None),
                    Some(&c.fact),
                    Some(now),
                ),
                None => bound_evidence(
                    CheckReport {
                        subject: c.path.clone(),
                        fact: c.fact.to_string(),
                        line: Some(c.line),
                        status: CheckStatus::Fail,
                        expected: c.fact.to_string(),
                        actual: "not read".into(),
                        diff: None,
                    },
                    None,
                    None,
                ),
            },
        })
        .collect();
    let passed = evidence.iter().all(|e| e.status == CheckStatus::Pass);
    GradedCheck {
        name: check.name.clone(),
        score: if passed { check.points } else { 0 },
        max_score: check.points,
        passed,
        visibility: check.visibility,
        feedback: (!passed).then(|| check.feedback.clone()).flatten(),
        evidence,
    }
}

/// The check failed without being judged (no entry file, say): no points, the reason as evidence.
pub fn unjudged(check: &GradeCheck, why: &str) -> GradedCheck {
    GradedCheck {
        name: check.name.clone(),
        score: 0,
        max_score: check.points,
        passed: false,
        visibility: check.visibility,
        feedback: check.feedback.clone(),
        evidence: vec![CheckReport {
            subject: "submission".into(),
            fact: "task ran".into(),
            line: None,
            status: CheckStatus::Fail,
            expected: "the task's entry file".into(),
            actual: bounded(why.to_owned(), EVIDENCE_MAX_CHARS, false),
            diff: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(options: &str) -> MountEntry {
        MountEntry {
            mount_id: 0,
            parent_id: 0,
            mount_point: "merged".into(),
            fstype: "overlay".into(),
            source: "overlay".into(),
            super_options: options.split(',').map(str::to_owned).collect(),
        }
    }

    fn want(lower: &[&str]) -> OverlayExpectation {
        OverlayExpectation {
            at: "merged".into(),
            lower: lower.iter().map(|s| (*s).to_owned()).collect(),
            upper: Some("upper".into()),
            work: Some("work".into()),
        }
    }

    const LAB: &str = "/tmp/lab";

    #[test]
    fn layers_in_the_asked_order_pass_in_any_spelling() {
        for opts in [
            "rw,lowerdir=/tmp/lab/l3:/tmp/lab/l2:/tmp/lab/l1,upperdir=/tmp/lab/upper,workdir=/tmp/lab/work",
            "rw,lowerdir=l3:./l2:l1/,upperdir=upper,workdir=work",
            "rw,lowerdir+=/tmp/lab/l3,lowerdir+=/tmp/lab/l2,lowerdir+=/tmp/lab/l1,upperdir=/tmp/lab//upper,workdir=/tmp/lab/work",
        ] {
            let r = judge_overlay(&want(&["l3", "l2", "l1"]), LAB, &[overlay(opts)]);
            assert_eq!(r.status, CheckStatus::Pass, "{opts}: {r:?}");
        }
    }

    #[test]
    fn reversed_layers_or_the_wrong_upper_fail_and_say_what_was_found() {
        let r = judge_overlay(
            &want(&["l3", "l2", "l1"]),
            LAB,
            &[overlay(
                "rw,lowerdir=/tmp/lab/l1:/tmp/lab/l2:/tmp/lab/l3,upperdir=/tmp/lab/upper,workdir=/tmp/lab/work",
            )],
        );
        assert_eq!(r.status, CheckStatus::Fail);
        assert_eq!(
            r.actual,
            "overlay lowerdir=l1:l2:l3 upperdir=upper workdir=work"
        );
        let r = judge_overlay(
            &want(&["lower"]),
            LAB,
            &[overlay(
                "rw,lowerdir=/tmp/lab/lower,upperdir=/tmp/lab/work,workdir=/tmp/lab/upper",
            )],
        );
        assert_eq!(r.status, CheckStatus::Fail);
    }

    #[test]
    fn only_the_topmost_mount_counts_and_a_bind_mount_is_no_overlay() {
        let bind = MountEntry {
            mount_id: 0,
            parent_id: 0,
            mount_point: "merged".into(),
            fstype: "tmpfs".into(),
            source: "labgrade-sandbox".into(),
            super_options: vec!["rw".into()],
        };
        let good =
            overlay("rw,lowerdir=/tmp/lab/lower,upperdir=/tmp/lab/upper,workdir=/tmp/lab/work");
        let r = judge_overlay(&want(&["lower"]), LAB, &[good.clone(), bind.clone()]);
        assert_eq!(r.status, CheckStatus::Fail);
        assert_eq!(r.actual, "a tmpfs mount (source labgrade-sandbox)");
        let r = judge_overlay(&want(&["lower"]), LAB, &[bind, good]);
        assert_eq!(r.status, CheckStatus::Pass);
        let r = judge_overlay(&want(&["lower"]), LAB, &[]);
        assert_eq!(r.actual, "nothing is mounted at merged");
    }

    #[test]
    fn a_tmpfs_moved_on_top_of_the_overlay_is_what_merged_shows_whatever_the_table_order() {
        // `mount --move` of an older tmpfs onto merged: it keeps its earlier line in the
        // table, but its parent is the overlay's mount, so it is the one on top.
        let moved = MountEntry {
            mount_id: 40,
            parent_id: 41,
            mount_point: "merged".into(),
            fstype: "tmpfs".into(),
            source: "fake".into(),
            super_options: vec!["rw".into()],
        };
        let good = MountEntry {
            mount_id: 41,
            parent_id: 30,
            ..overlay("rw,lowerdir=/tmp/lab/lower,upperdir=/tmp/lab/upper,workdir=/tmp/lab/work")
        };
        let r = judge_overlay(&want(&["lower"]), LAB, &[moved, good.clone()]);
        assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
        assert_eq!(r.actual, "a tmpfs mount (source fake)");
        let r = judge_overlay(&want(&["lower"]), LAB, &[good]);
        assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    }

    fn listing_check(want: &[&str]) -> GradeCheck {
        GradeCheck {
            name: "lower holds the layer".into(),
            points: 5,
            visibility: crate::assignment::Visibility::Shown,
            feedback: None,
            facts: vec![TaskFact::Path(labgrade_spec::Check {
                path: "lower".into(),
                fact: Fact::Entries(want.iter().map(|s| (*s).to_owned()).collect()),
                line: 9,
            })],
            line: 8,
        }
    }

    fn listing(names: Vec<String>) -> PathFacts {
        PathFacts {
            path: "lower".into(),
            entry: None,
            text: None,
            children: Some(names),
            error: None,
        }
    }

    #[test]
    fn a_huge_listing_shows_its_first_names_and_how_many_more() {
        let names: Vec<String> = (0..200_000).map(|i| format!("file-{i:06}")).collect();
        let g = score_check(&listing_check(&["a", "b"]), &[listing(names)], &[], LAB);
        assert!(!g.passed);
        let e = &g.evidence[0];
        assert_eq!(e.expected, r#"["a", "b"]"#);
        assert!(
            e.actual.starts_with(r#"["file-000000", "file-000001", "#),
            "{}",
            e.actual
        );
        assert!(
            e.actual
                .ends_with(r#""file-000049", … and 199950 more (200000 names)]"#),
            "{}",
            e.actual
        );
        let diff = e.diff.as_deref().unwrap_or_default();
        assert!(diff.len() <= DIFF_MAX_CHARS + 64, "{}", diff.len());
        let json = serde_json::to_string(&g).unwrap_or_else(|e| panic!("{e}"));
        assert!(json.len() < 20_000, "{} bytes", json.len());
    }

    #[test]
    fn listed_names_are_quoted_so_one_cannot_pass_for_two() {
        let g = score_check(
            &listing_check(&["a", "b"]),
            &[listing(vec!["a, b".into(), "\x1b[2J\n# x".into()])],
            &[],
            LAB,
        );
        assert_eq!(g.evidence[0].actual, r#"["a, b", "\u{1b}[2J\n# x"]"#);
    }

    #[test]
    fn long_evidence_is_cut_and_says_a_bound_was_hit() {
        let text = "é".repeat(EVIDENCE_MAX_CHARS);
        let cut = bounded(text.clone(), EVIDENCE_MAX_CHARS, false);
        assert!(
            cut.ends_with(&format!(
                " … [cut: {EVIDENCE_MAX_CHARS} of {} bytes shown]",
                text.len()
            )),
            "{cut}"
        );
        let diff = "-line\n".repeat(DIFF_MAX_CHARS);
        let cut = bounded(diff.clone(), DIFF_MAX_CHARS, true);
        assert!(
            cut.ends_with(&format!(
                "-line\n… [cut: 8190 of {} bytes shown]",
                diff.len()
            )),
            "{cut}"
        );
        assert_eq!(bounded("short".into(), 10, false), "short");
    }

    proptest::proptest! {
        #[test]
        fn any_overlay_options_parse_without_panicking(opts in proptest::collection::vec("\\PC*", 0..6)) {
            let _ = overlay_layers(&opts, LAB);
        }
    }

    #[test]
    fn a_layer_outside_lab_stays_absolute_and_does_not_match() {
        let r = judge_overlay(
            &want(&["lower"]),
            LAB,
            &[overlay(
                "rw,lowerdir=/etc,upperdir=/tmp/lab/upper,workdir=/tmp/lab/work",
            )],
        );
        assert_eq!(r.status, CheckStatus::Fail);
        assert!(r.actual.contains("lowerdir=/etc"), "{}", r.actual);
    }
}
