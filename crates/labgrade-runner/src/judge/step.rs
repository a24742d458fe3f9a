//! Judging how a step ended and what it printed.

use labgrade_proto::StepOutcome;
use labgrade_report::{CheckReport, CheckStatus};
use labgrade_spec::{ExitExpectation, OutputCheck};

use super::{Verdict, line_diff, pass_if};

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
    let (subject, fact, v) = match check {
        OutputCheck::Stdout(want) => {
            let ok = &outcome.stdout == want;
            (
                "stdout",
                "is exactly".to_owned(),
                Verdict::of(
                    pass_if(ok),
                    format!("{want:?}"),
                    format!("{:?}", outcome.stdout),
                    (!ok).then(|| line_diff(want, &outcome.stdout)),
                ),
            )
        }
        OutputCheck::StdoutContains(want) => (
            "stdout",
            format!("contains {want:?}"),
            Verdict::of(
                pass_if(outcome.stdout.contains(want.as_str())),
                format!("contains {want:?}"),
                format!("{:?}", outcome.stdout),
                None,
            ),
        ),
        OutputCheck::StderrContains(want) => (
            "stderr",
            format!("contains {want:?}"),
            Verdict::of(
                pass_if(outcome.stderr.contains(want.as_str())),
                format!("contains {want:?}"),
                format!("{:?}", outcome.stderr),
                None,
            ),
        ),
        OutputCheck::KmsgContains(want) => (
            "kmsg",
            format!("contains {want:?}"),
            match kmsg_unavailable {
                Some(why) => Verdict::of(
                    CheckStatus::Skip,
                    format!("contains {want:?}"),
                    why.to_owned(),
                    None,
                ),
                None => Verdict::of(
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
        ),
    };
    CheckReport {
        subject: subject.into(),
        fact,
        line: None,
        status: v.status,
        expected: v.expected,
        actual: v.actual,
        diff: v.diff,
    }
}
