//! Deciding whether a fact holds: pure functions of the facts the agent read, unit-tested without
//! root or a guest.

use labgrade_agent::proto::{PathFacts, StepOutcome};
use labgrade_report::{CheckReport, CheckStatus};
use labgrade_snap::Entry;
use labgrade_spec::{Check, ExitExpectation, Fact, OutputCheck};
use similar::TextDiff;

/// Judges a path fact. `baseline` is the path's facts after the step named by `unchanged_since`.
pub fn judge_fact(check: &Check, now: &PathFacts, baseline: Option<&PathFacts>) -> CheckReport {
    let (status, expected, actual, diff) = verdict(&check.fact, now, baseline);
    CheckReport {
        subject: check.path.clone(),
        fact: check.fact.to_string(),
        line: Some(check.line),
        status,
        expected,
        actual,
        diff,
    }
}

type Verdict = (CheckStatus, String, String, Option<String>);

fn pass_if(ok: bool) -> CheckStatus {
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
        Fact::Exists => (pass_if(entry.is_some()), "exists".into(), shown, None),
        Fact::Absent => (
            pass_if(entry.is_none() && now.error.is_none()),
            "absent".into(),
            shown,
            None,
        ),
        Fact::Kind(k) => (
            pass_if(entry.is_some_and(|e| e.kind == *k)),
            k.to_string(),
            shown,
            None,
        ),
        Fact::Whiteout(want) => (
            pass_if(entry.is_some_and(|e| e.is_whiteout() == *want)),
            if *want {
                "char 0:0 (a whiteout)".into()
            } else {
                "not a whiteout".into()
            },
            shown,
            None,
        ),
        Fact::Opaque(want) => (
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
                (
                    pass_if(ok),
                    format!("{text:?}"),
                    format!("{actual:?}"),
                    diff,
                )
            }
            None => (CheckStatus::Fail, format!("{text:?}"), shown, None),
        },
        Fact::Contains(needle) => match &now.text {
            Some(actual) => (
                pass_if(actual.contains(needle.as_str())),
                format!("text containing {needle:?}"),
                format!("{actual:?}"),
                None,
            ),
            None => (
                CheckStatus::Fail,
                format!("text containing {needle:?}"),
                shown,
                None,
            ),
        },
        Fact::Size(n) => (
            pass_if(entry.and_then(|e| e.size) == Some(*n)),
            format!("{n} bytes"),
            entry
                .and_then(|e| e.size)
                .map_or(shown, |s| format!("{s} bytes")),
            None,
        ),
        Fact::Sha256(hex) => (
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
                (
                    pass_if(ok),
                    format!("[{}]", names.join(", ")),
                    format!("[{}]", actual.join(", ")),
                    diff,
                )
            }
            None => (
                CheckStatus::Fail,
                format!("[{}]", names.join(", ")),
                shown,
                None,
            ),
        },
        Fact::HasXattr(name) => (
            pass_if(entry.is_some_and(|e| e.xattr(name).is_some())),
            format!("overlay xattr {name}"),
            xattr_names(entry).unwrap_or(shown),
            None,
        ),
        Fact::LacksXattr(name) => (
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
            (pass_if(same), before, shown, diff)
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

/// A unified line diff, `-` expected and `+` actual.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let diff = TextDiff::from_lines(expected, actual);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push_str(change.value().trim_end_matches('\n'));
        if change.missing_newline() {
            out.push_str(" ⟨no newline at end⟩");
        }
        out.push('\n');
    }
    out
}

/// Judges how a step ended against what the lab expects.
pub fn judge_exit(expect: ExitExpectation, outcome: &StepOutcome) -> CheckReport {
    let failed: Vec<String> = outcome
        .failed
        .iter()
        .map(|f| format!("line {} exited {}", f.line, f.code))
        .collect();
    let actual = if outcome.timed_out {
        "timed out; the session was killed".to_owned()
    } else if outcome.session_ended && outcome.exit_code.is_none() {
        "the shell session ended (a command ran `exit`, or the session was killed)".to_owned()
    } else {
        let code = outcome
            .exit_code
            .map_or("none".to_owned(), |c| c.to_string());
        if failed.is_empty() {
            format!("exit code {code}, no command failed")
        } else {
            format!("exit code {code}; failed: {}", failed.join(", "))
        }
    };
    let ok = match expect {
        _ if outcome.timed_out => false,
        ExitExpectation::Success => outcome.succeeded(),
        ExitExpectation::Failure => outcome.exit_code.is_some() && !outcome.succeeded(),
        ExitExpectation::Code(c) => outcome.exit_code == Some(c),
    };
    CheckReport {
        subject: "exit".into(),
        fact: expect.to_string(),
        line: None,
        status: pass_if(ok),
        expected: expect.to_string(),
        actual,
        diff: None,
    }
}

/// Judges a fact about the step's output or the kernel log.
pub fn judge_output(
    check: &OutputCheck,
    outcome: &StepOutcome,
    kmsg_unavailable: Option<&str>,
) -> CheckReport {
    let (subject, fact, status, expected, actual, diff) = match check {
        OutputCheck::Stdout(want) => {
            let ok = &outcome.stdout == want;
            (
                "stdout",
                "is exactly".to_owned(),
                pass_if(ok),
                format!("{want:?}"),
                format!("{:?}", outcome.stdout),
                (!ok).then(|| line_diff(want, &outcome.stdout)),
            )
        }
        OutputCheck::StdoutContains(want) => (
            "stdout",
            format!("contains {want:?}"),
            pass_if(outcome.stdout.contains(want.as_str())),
            format!("contains {want:?}"),
            format!("{:?}", outcome.stdout),
            None,
        ),
        OutputCheck::StderrContains(want) => (
            "stderr",
            format!("contains {want:?}"),
            pass_if(outcome.stderr.contains(want.as_str())),
            format!("contains {want:?}"),
            format!("{:?}", outcome.stderr),
            None,
        ),
        OutputCheck::KmsgContains(want) => match kmsg_unavailable {
            Some(why) => (
                "kmsg",
                format!("contains {want:?}"),
                CheckStatus::Skip,
                format!("contains {want:?}"),
                why.to_owned(),
                None,
            ),
            None => (
                "kmsg",
                format!("contains {want:?}"),
                pass_if(outcome.kmsg.iter().any(|l| l.contains(want.as_str()))),
                format!("contains {want:?}"),
                if outcome.kmsg.is_empty() {
                    "no kernel messages".to_owned()
                } else {
                    outcome.kmsg.join(" / ")
                },
                None,
            ),
        },
    };
    CheckReport {
        subject: subject.into(),
        fact,
        line: None,
        status,
        expected,
        actual,
        diff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labgrade_agent::proto::FailedCommand;
    use labgrade_snap::EntryKind;

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
