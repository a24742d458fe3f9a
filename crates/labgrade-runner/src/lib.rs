//! Runs labs on a guest.
//!
//! Data flows one way: a [`Lab`] (spec) goes to a [`Guest`] session (agent), whose raw outcomes
//! and facts are judged here ([`judge`]) into a [`LabReport`]. Infrastructure trouble becomes
//! `LabStatus::Error`, never a lab failure.

pub mod judge;
mod lab;
mod probe;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use labgrade_guest::{Guest, GuestError};
use labgrade_report::{LabReport, RunReport};
use labgrade_spec::Lab;

pub use lab::run_lab;
pub use probe::{ProbedCapabilities, probe_guest};

/// How a run is carried out.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Labs run at once (each in its own namespaces or VM).
    pub jobs: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Probes the guest for what the labs need, then runs the labs, up to `jobs` at a time.
/// `on_done` is called as each lab finishes (for progress bars). Reports keep the labs' order.
pub fn run_labs(
    guest: &dyn Guest,
    labs: &[Lab],
    options: RunOptions,
    on_done: &(dyn Fn(&LabReport) + Sync),
) -> Result<RunReport, GuestError> {
    let started = Instant::now();
    let mut needs: Vec<_> = labs.iter().flat_map(|l| l.needs.iter().copied()).collect();
    needs.sort();
    needs.dedup();
    let probed = probe_guest(guest, &needs, options.jobs)?;
    let probe_ms = ms(started);

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<LabReport>>> = Mutex::new(vec![None; labs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.clamp(1, labs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(lab) = labs.get(i) else { break };
                    let report = run_lab(guest, lab, &probed);
                    on_done(&report);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(report);
                    }
                }
            });
        }
    });
    let labs = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    Ok(RunReport {
        guest: guest.name(),
        privilege: Some(probed.privilege.to_string()),
        kmsg_unavailable: probed.kmsg_unavailable.clone(),
        labs,
        probe_ms,
        duration_ms: ms(started),
    })
}

pub(crate) fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
