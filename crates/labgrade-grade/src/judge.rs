//! Deciding what a task's state earns: pure functions of the facts the agent read (never of what
//! the student printed), unit-tested without root.

use labgrade_report::{CheckReport, CheckStatus};

use crate::assignment::{GradeCheck, OverlayExpectation, TaskFact};
use crate::report::GradedCheck;
use crate::wire::{MountEntry, PathFacts};

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

/// Splits a list at `sep` bytes not escaped with a backslash, dropping the escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Reads the layers from an overlay mount's options. Data-only lower dirs (after `::`) count as
/// lower dirs in order.
pub fn overlay_layers(options: &[String], lab: &str) -> OverlayLayers {
    let mut layers = OverlayLayers::default();
    let unescape = |v: &str| split_unescaped(v, '\0').concat();
    for o in options {
        if let Some(v) = o.strip_prefix("lowerdir=") {
            layers.lower = split_unescaped(v, ':')
                .into_iter()
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
            TaskFact::Overlay(want) => judge_overlay(want, lab, mounts),
            TaskFact::Path(c) => match facts.iter().find(|p| p.path == c.path) {
                Some(now) => labgrade_runner::judge::judge_fact(c, now, None),
                None => CheckReport {
                    subject: c.path.clone(),
                    fact: c.fact.to_string(),
                    line: Some(c.line),
                    status: CheckStatus::Fail,
                    expected: c.fact.to_string(),
                    actual: "not read".into(),
                    diff: None,
                },
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
            actual: why.to_owned(),
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
