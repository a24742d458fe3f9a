//! Deciding whether a fact holds: pure functions of the facts the agent read, unit-tested without
//! root or a guest.

mod diff;
mod step;

pub use diff::line_diff;
pub use step::{judge_exit, judge_output};

use labgrade_proto::{Entry, PathFacts};
use labgrade_report::{CheckReport, CheckStatus};
use labgrade_spec::{Check, Fact};

/// Judges a path fact. `baseline` is the path's facts after the step named by `unchanged_since`.
pub fn judge_fact(check: &Check, now: &PathFacts, baseline: Option<&PathFacts>) -> CheckReport {
    let v = verdict(&check.fact, now, baseline);
    CheckReport {
        subject: check.path.clone(),
        fact: check.fact.to_string(),
        line: Some(check.line),
        status: v.status,
        expected: v.expected,
        actual: v.actual,
        diff: v.diff,
    }
}

/// What a check concluded, with the evidence a reader needs to agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Held, failed, or could not be judged here.
    pub status: CheckStatus,
    /// What the lab file asks for, in words.
    pub expected: String,
    /// What the guest showed, in words.
    pub actual: String,
    /// A line diff of expected against actual, where one helps.
    pub diff: Option<String>,
}

impl Verdict {
    pub(crate) fn of(
        status: CheckStatus,
        expected: String,
        actual: String,
        diff: Option<String>,
    ) -> Verdict {
        Verdict {
            status,
            expected,
            actual,
            diff,
        }
    }
}

pub(crate) fn pass_if(ok: bool) -> CheckStatus {
    if ok {
        CheckStatus::Pass
    } else {
        CheckStatus::Fail
    }
}

fn describe(facts: &PathFacts) -> String {
    match (&facts.entry, &facts.error) {
        (_, Some(e)) => format!("unreadable: {e}"),
        (Some(e), None) => e.render_line(),
        (None, None) => "absent".to_owned(),
    }
}

fn verdict(fact: &Fact, now: &PathFacts, baseline: Option<&PathFacts>) -> Verdict {
    let entry = now.entry.as_ref();
    let shown = describe(now);
    match fact {
        Fact::Exists => Verdict::of(pass_if(entry.is_some()), "exists".into(), shown, None),
        Fact::Absent => Verdict::of(
            pass_if(entry.is_none() && now.error.is_none()),
            "absent".into(),
            shown,
            None,
        ),
        Fact::Kind(k) => Verdict::of(
            pass_if(entry.is_some_and(|e| e.kind == *k)),
            k.to_string(),
            shown,
            None,
        ),
        Fact::Whiteout(want) => Verdict::of(
            pass_if(entry.is_some_and(|e| e.is_whiteout() == *want)),
            if *want {
                "char 0:0 (a whiteout)".into()
            } else {
                "not a whiteout".into()
            },
            shown,
            None,
        ),
        Fact::Opaque(want) => Verdict::of(
            pass_if(entry.is_some_and(|e| e.is_opaque() == *want)),
            if *want {
                "dir with overlay xattr opaque=\"y\"".into()
            } else {
                "dir that is not opaque".into()
            },
            shown,
            None,
        ),
        Fact::Content(text) => match &now.text {
            Some(actual) => {
                let ok = actual == text;
                let diff = (!ok).then(|| line_diff(text, actual));
                Verdict::of(
                    pass_if(ok),
                    format!("{text:?}"),
                    format!("{actual:?}"),
                    diff,
                )
            }
            None => Verdict::of(CheckStatus::Fail, format!("{text:?}"), shown, None),
        },
        Fact::Contains(needle) => match &now.text {
            Some(actual) => Verdict::of(
                pass_if(actual.contains(needle.as_str())),
                format!("text containing {needle:?}"),
                format!("{actual:?}"),
                None,
            ),
            None => Verdict::of(
                CheckStatus::Fail,
                format!("text containing {needle:?}"),
                shown,
                None,
            ),
        },
        Fact::Size(n) => Verdict::of(
            pass_if(entry.and_then(|e| e.size) == Some(*n)),
            format!("{n} bytes"),
            entry
                .and_then(|e| e.size)
                .map_or(shown, |s| format!("{s} bytes")),
            None,
        ),
        Fact::Sha256(hex) => Verdict::of(
            pass_if(entry.and_then(|e| e.sha256.as_deref()) == Some(hex.as_str())),
            format!("sha256 {hex}"),
            entry
                .and_then(|e| e.sha256.clone())
                .map_or(shown, |d| format!("sha256 {d}")),
            None,
        ),
        Fact::Entries(names) => match &now.children {
            Some(actual) => {
                let ok = actual == names;
                let diff = (!ok).then(|| line_diff(&lines(names), &lines(actual)));
                Verdict::of(
                    pass_if(ok),
                    format!("[{}]", names.join(", ")),
                    format!("[{}]", actual.join(", ")),
                    diff,
                )
            }
            None => Verdict::of(
                CheckStatus::Fail,
                format!("[{}]", names.join(", ")),
                shown,
                None,
            ),
        },
        Fact::HasXattr(name) => Verdict::of(
            pass_if(entry.is_some_and(|e| e.xattr(name).is_some())),
            format!("overlay xattr {name}"),
            xattr_names(entry).unwrap_or(shown),
            None,
        ),
        Fact::LacksXattr(name) => Verdict::of(
            pass_if(entry.is_some_and(|e| e.xattr(name).is_none())),
            format!("no overlay xattr {name}"),
            xattr_names(entry).unwrap_or(shown),
            None,
        ),
        Fact::UnchangedSince(_) => {
            let before = baseline
                .map(describe)
                .unwrap_or_else(|| "not recorded".into());
            let same = match (baseline.and_then(|b| b.entry.as_ref()), entry) {
                (Some(a), Some(b)) => same_content(a, b),
                (None, None) => baseline.is_some(),
                _ => false,
            };
            let diff = (!same).then(|| line_diff(&before, &shown));
            Verdict::of(pass_if(same), before, shown, diff)
        }
    }
}

fn lines(names: &[String]) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

fn xattr_names(entry: Option<&Entry>) -> Option<String> {
    entry.map(|e| {
        if e.xattrs.is_empty() {
            "no overlay xattrs".to_owned()
        } else {
            e.xattrs
                .iter()
                .map(|x| format!("{}={}", x.name, x.value))
                .collect::<Vec<_>>()
                .join(" ")
        }
    })
}

/// Everything a snapshot shows, compared: type, mode, owner, size, device, target, xattrs, digest.
fn same_content(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.size == b.size
        && a.rdev == b.rdev
        && a.link_target == b.link_target
        && a.xattrs == b.xattrs
        && a.sha256 == b.sha256
}

#[cfg(test)]
mod tests {
    use super::*;
    use labgrade_proto::EntryKind;
    use labgrade_proto::{FailedCommand, StepOutcome};
    use labgrade_spec::{ExitExpectation, OutputCheck};

    fn file(path: &str, text: &str) -> PathFacts {
        PathFacts {
            path: path.into(),
            entry: Some(Entry {
                path: path.into(),
                kind: EntryKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: Some(text.len() as u64),
                rdev: None,
                link_target: None,
                xattrs: vec![],
                sha256: Some(labgrade_snap::sha256_bytes(text.as_bytes())),
            }),
            text: Some(text.into()),
            children: None,
            error: None,
        }
    }

    fn whiteout(path: &str) -> PathFacts {
        let mut f = file(path, "");
        if let Some(e) = f.entry.as_mut() {
            e.kind = EntryKind::Char;
            e.mode = 0;
            e.size = None;
            e.sha256 = None;
            e.rdev = Some((0, 0));
        }
        f.text = None;
        f
    }

    fn check(path: &str, fact: Fact) -> Check {
        Check {
            path: path.into(),
            fact,
            line: 7,
        }
    }

    #[test]
    fn wrong_content_fails_with_a_line_diff() {
        let r = judge_fact(
            &check(
                "upper/config.txt",
                Fact::Content("容器运行时修改的内容\n".into()),
            ),
            &file("upper/config.txt", "配置文件原始内容\n"),
            None,
        );
        assert_eq!(r.status, CheckStatus::Fail);
        insta::assert_snapshot!(r.diff.unwrap_or_default(), @r"
        -容器运行时修改的内容
        +配置文件原始内容
        ");
    }

    #[test]
    fn a_mebibyte_of_lines_fails_with_a_summary_instead_of_a_quadratic_diff() {
        let big = "x\n".repeat(1 << 19);
        let mut one_line_off = big.clone();
        one_line_off.replace_range(1 << 19..(1 << 19) + 1, "y");
        for expected in ["a short\nexpected text\n", one_line_off.as_str()] {
            let r = judge_fact(
                &check("upper/big", Fact::Content(expected.into())),
                &file("upper/big", &big),
                None,
            );
            assert_eq!(r.status, CheckStatus::Fail);
            let diff = r.diff.unwrap_or_default();
            assert!(
                diff.starts_with("not diffed line by line"),
                "{}",
                &diff[..diff.len().min(500)]
            );
            assert!(
                diff.contains("found 1048576 bytes in 524288 lines"),
                "{diff}"
            );
            assert!(diff.contains("first difference at line "), "{diff}");
        }
    }

    #[test]
    fn a_whiteout_is_judged_by_char_0_0() {
        let c = check("upper/image-file.txt", Fact::Whiteout(true));
        assert_eq!(
            judge_fact(&c, &whiteout("upper/image-file.txt"), None).status,
            CheckStatus::Pass
        );
        assert_eq!(
            judge_fact(&c, &file("upper/image-file.txt", ""), None).status,
            CheckStatus::Fail
        );
        let absent = PathFacts {
            entry: None,
            text: None,
            ..file("x", "")
        };
        assert_eq!(judge_fact(&c, &absent, None).status, CheckStatus::Fail);
        assert_eq!(
            judge_fact(&check("x", Fact::Absent), &absent, None).status,
            CheckStatus::Pass
        );
    }

    #[test]
    fn unchanged_since_compares_everything_but_times() {
        let c = check("lower/config.txt", Fact::UnchangedSince(1));
        let before = file("lower/config.txt", "a\n");
        assert_eq!(
            judge_fact(&c, &file("lower/config.txt", "a\n"), Some(&before)).status,
            CheckStatus::Pass
        );
        let changed = judge_fact(&c, &file("lower/config.txt", "b\n"), Some(&before));
        assert_eq!(changed.status, CheckStatus::Fail);
        assert!(
            changed
                .diff
                .is_some_and(|d| d.contains("-lower/config.txt file 0644 0:0 size=2"))
        );
        assert_eq!(
            judge_fact(&c, &file("lower/config.txt", "a\n"), None).status,
            CheckStatus::Fail
        );
    }

    #[test]
    fn an_expected_failure_needs_a_failed_command_not_a_dead_session() {
        let failed = StepOutcome {
            exit_code: Some(32),
            failed: vec![FailedCommand { line: 1, code: 32 }],
            ..StepOutcome::default()
        };
        assert_eq!(
            judge_exit(ExitExpectation::Failure, &failed).status,
            CheckStatus::Pass
        );
        assert_eq!(
            judge_exit(ExitExpectation::Code(32), &failed).status,
            CheckStatus::Pass
        );
        assert_eq!(
            judge_exit(ExitExpectation::Success, &failed).status,
            CheckStatus::Fail
        );
        let dead = StepOutcome {
            session_ended: true,
            ..StepOutcome::default()
        };
        assert_eq!(
            judge_exit(ExitExpectation::Failure, &dead).status,
            CheckStatus::Fail
        );
        let timed_out = StepOutcome {
            timed_out: true,
            ..StepOutcome::default()
        };
        assert_eq!(
            judge_exit(ExitExpectation::Failure, &timed_out).status,
            CheckStatus::Fail
        );
    }

    #[test]
    fn kmsg_checks_skip_where_the_log_cannot_be_read() {
        let o = StepOutcome {
            kmsg: vec!["overlayfs: workdir and upperdir must reside under the same mount".into()],
            ..StepOutcome::default()
        };
        let c = OutputCheck::KmsgContains("must reside under the same mount".into());
        assert_eq!(judge_output(&c, &o, None).status, CheckStatus::Pass);
        assert_eq!(
            judge_output(&c, &o, Some("no CAP_SYSLOG")).status,
            CheckStatus::Skip
        );
        assert_eq!(
            judge_output(&c, &StepOutcome::default(), None).status,
            CheckStatus::Fail
        );
    }
}
