//! One lab, start to end, on one fresh agent session.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use labgrade_guest::{AgentSession, Guest, GuestError, ScratchDisk};
use labgrade_proto::{PathFacts, StepOutcome};
use labgrade_report::{
    CheckReport, CheckStatus, EngineReport, FailedCommandReport, LabReport, LabStatus,
    SnapshotReport, StepReport,
};
use labgrade_spec::{Fact, Lab, Step};

use crate::judge::{judge_exit, judge_fact, judge_output};
use crate::{GuestCapabilities, ms};

/// Runs one lab and reports it. Never fails: a guest that breaks makes an `Error` report.
pub fn run_lab(guest: &dyn Guest, lab: &Lab, caps: &GuestCapabilities) -> LabReport {
    let mut started = Instant::now();
    let mut report = LabReport::new(lab);
    if let Some(pending) = &lab.pending {
        report.status = LabStatus::Skip;
        report.reason = Some(format!("pending: {pending}"));
    } else if let Some(missing) = caps.missing(&lab.needs) {
        // Already known to be missing: no session needed to say so.
        report.status = LabStatus::Skip;
        report.reason = Some(missing);
    } else {
        match guest.start_session() {
            Ok(mut session) => {
                // The lab's time starts when its session is ready: waiting for a VM to boot, or
                // for a free port, is the guest's time, not the lab's.
                started = Instant::now();
                caps.note_hello(session.hello());
                let outcome = caps.ensure(&mut session, &lab.needs).and_then(|()| {
                    match caps.missing(&lab.needs) {
                        Some(missing) => {
                            report.status = LabStatus::Skip;
                            report.reason = Some(missing);
                            Ok(())
                        }
                        None => attach_disks(&mut session, lab, caps)
                            .and_then(|()| start_engine(&mut session, lab, caps, &mut report))
                            .and_then(|()| drive(&mut session, lab, &mut report)),
                    }
                });
                if let Err(e) = outcome {
                    report.status = LabStatus::Error;
                    report.reason = Some(e.to_string());
                }
                let _ = session.shutdown();
            }
            Err(e) => {
                report.status = LabStatus::Error;
                report.reason = Some(e.to_string());
            }
        }
    }
    report.duration_ms = ms(started);
    report
}

/// Makes the lab's disk images (cached) and hands them to the session.
fn attach_disks(
    session: &mut AgentSession,
    lab: &Lab,
    caps: &GuestCapabilities,
) -> Result<(), GuestError> {
    let disks = lab
        .disks
        .iter()
        .map(|d| {
            caps.images()
                .image(&d.format)
                .map(|image| ScratchDisk {
                    env: d.env_var(),
                    image,
                })
                .map_err(|e| GuestError::Agent {
                    message: format!(
                        "cannot make the disk `{}` ({}): {e}",
                        d.name,
                        d.format.describe()
                    ),
                    stderr: String::new(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    session.attach_disks(&disks).map(drop)
}

/// How long an engine may take to answer: minutes under TCG, a fraction of a second here.
const ENGINE_READY_MS: u64 = 180_000;

/// The name labs know the image by (`$IMAGE`).
pub const IMAGE_NAME: &str = "labgrade/busybox:latest";

/// Starts the lab's container engine in its session (a lab run per engine has one), with the
/// busybox image imported (or the `--image` pulled); the agent stops it when the session ends.
fn start_engine(
    session: &mut AgentSession,
    lab: &Lab,
    caps: &GuestCapabilities,
    report: &mut LabReport,
) -> Result<(), GuestError> {
    let Some(engine) = lab.engine else {
        return Ok(());
    };
    let (source, image) = match caps.pulled_image() {
        Some(name) => (labgrade_proto::ImageSource::Pull, name.to_owned()),
        None => {
            let rootfs = caps.rootfs().map_err(|message| GuestError::Agent {
                message,
                stderr: String::new(),
            })?;
            let rootfs_tar = rootfs.display().to_string();
            let source = labgrade_proto::ImageSource::Import { rootfs_tar };
            (source, IMAGE_NAME.to_owned())
        }
    };
    let started = session.start_engine(labgrade_proto::EngineRequest {
        engine,
        source,
        image: image.clone(),
        ready_within_ms: ENGINE_READY_MS,
    })?;
    report.engine = Some(EngineReport {
        engine,
        image,
        version: started.version,
        ready_ms: started.ready_ms,
        import_ms: started.import_ms,
    });
    Ok(())
}

/// Paths whose facts must be kept after step N, for `unchanged_since = N` checks later.
fn baselines_needed(lab: &Lab) -> BTreeMap<usize, BTreeSet<String>> {
    let mut needed: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for step in &lab.steps {
        for check in &step.checks {
            if let Fact::UnchangedSince(n) = check.fact {
                needed.entry(n).or_default().insert(check.path.clone());
            }
        }
    }
    needed
}

fn drive(session: &mut AgentSession, lab: &Lab, report: &mut LabReport) -> Result<(), GuestError> {
    let kmsg_unavailable = session.hello().kmsg_unavailable.clone();
    let needed = baselines_needed(lab);
    let mut baselines: BTreeMap<(usize, String), PathFacts> = BTreeMap::new();
    for step in &lab.steps {
        let outcome = run_step(session, step)?;
        let mut checks = vec![judge_exit(step.exit, &outcome)];
        checks.extend(
            step.output_checks
                .iter()
                .map(|c| judge_output(c, &outcome, kmsg_unavailable.as_deref())),
        );
        let ended_as_expected = checks[0].status == CheckStatus::Pass;

        // Paths to read: this step's checks, plus baselines later steps compare against.
        let mut paths: BTreeSet<String> = step.checks.iter().map(|c| c.path.clone()).collect();
        if let Some(later) = needed.get(&step.number) {
            paths.extend(later.iter().cloned());
        }
        let text_of: Vec<String> = step
            .checks
            .iter()
            .filter(|c| matches!(c.fact, Fact::Content(_) | Fact::Contains(_)))
            .map(|c| c.path.clone())
            .collect();
        let facts = if ended_as_expected && !outcome.session_ended {
            inspect(session, &paths, text_of)?
        } else {
            BTreeMap::new()
        };
        for check in &step.checks {
            let Some(now) = facts.get(&check.path) else {
                continue;
            };
            let baseline = match check.fact {
                Fact::UnchangedSince(n) => baselines.get(&(n, check.path.clone())),
                _ => None,
            };
            checks.push(judge_fact(check, now, baseline));
        }
        if let Some(later) = needed.get(&step.number) {
            for p in later {
                if let Some(f) = facts.get(p) {
                    baselines.insert((step.number, p.clone()), f.clone());
                }
            }
        }
        if ended_as_expected {
            for dir in &step.snapshots {
                report.snapshots.push(snapshot(
                    session,
                    dir,
                    &format!("{dir}@step-{}", step.number),
                )?);
            }
        }
        let failed = checks.iter().any(|c| c.status == CheckStatus::Fail);
        report.steps.push(step_report(step, outcome, checks));
        if failed {
            report.status = LabStatus::Fail;
        }
        if !ended_as_expected {
            // The state after a step that went wrong is unknown: later steps would only confuse.
            report.reason = Some(format!(
                "step {} did not end as expected; later steps were not run",
                step.number
            ));
            return Ok(());
        }
    }
    for dir in &lab.end_snapshots {
        report
            .snapshots
            .push(snapshot(session, dir, &format!("{dir}@end"))?);
    }
    Ok(())
}

fn run_step(session: &mut AgentSession, step: &Step) -> Result<StepOutcome, GuestError> {
    session.run_step(step.number, &step.run, step.timeout, None)
}

fn inspect(
    session: &mut AgentSession,
    paths: &BTreeSet<String>,
    text_of: Vec<String>,
) -> Result<BTreeMap<String, PathFacts>, GuestError> {
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let facts = session.inspect(paths.iter().cloned().collect(), text_of)?;
    Ok(facts.into_iter().map(|f| (f.path.clone(), f)).collect())
}

fn snapshot(
    session: &mut AgentSession,
    dir: &str,
    name: &str,
) -> Result<SnapshotReport, GuestError> {
    let tree = session.snapshot(dir)?;
    Ok(SnapshotReport::new(name.to_owned(), dir.to_owned(), tree))
}

fn step_report(step: &Step, outcome: StepOutcome, checks: Vec<CheckReport>) -> StepReport {
    StepReport {
        number: step.number,
        name: step.name.clone(),
        run: step.run.clone(),
        exit_code: outcome.exit_code,
        failed_commands: outcome
            .failed
            .iter()
            .map(|f| FailedCommandReport {
                line: step.run_line + f.line.saturating_sub(1),
                exit_code: f.code,
            })
            .collect(),
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        kmsg: outcome.kmsg,
        duration_ms: outcome.duration_ms,
        checks,
    }
}
