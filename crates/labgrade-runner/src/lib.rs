//! Runs labs on a guest.
//!
//! Data flows one way: a [`Lab`] (spec) goes to a [`Guest`] session (agent), whose raw outcomes
//! and facts are judged here ([`judge`]) into a [`LabReport`]. Infrastructure trouble becomes
//! `LabStatus::Error`, never a lab failure.

mod guest_spec;
pub mod judge;
mod lab;
mod probe;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use labgrade_disk::ImageCache;
use labgrade_guest::{Guest, GuestError};
use labgrade_report::{LabReport, RunReport};
use labgrade_spec::Lab;

pub use guest_spec::{
    GradingGuests, GuestOptions, GuestSpec, LaunchError, ResolvedGuest, image_cache,
    writable_cache_dir,
};
pub use lab::run_lab;
pub use probe::GuestCapabilities;

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Labs run at once (each in its own namespaces or VM).
    pub jobs: usize,
    /// How long each lab took last time on this guest (lab id -> ms): the longest start first,
    /// so a slow lab does not start last and hold up the end of the run. Labs without a figure
    /// start before all others. Reports keep the labs' own order either way.
    pub expected_ms: std::collections::HashMap<String, u64>,
    /// Where the filesystem images for scratch disks and XFS probes are made and kept.
    pub images: ImageCache,
    /// The container image engine labs pull (`--image NAME`); `None`: labgrade's busybox image,
    /// imported without a registry.
    pub image: Option<String>,
}

impl RunOptions {
    /// One lab per CPU, no timings known.
    pub fn new(images: ImageCache) -> RunOptions {
        RunOptions {
            jobs: default_jobs(),
            expected_ms: std::collections::HashMap::new(),
            images,
            image: None,
        }
    }
}

/// Labs (or guests) at once unless told otherwise: one per CPU.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The order to start labs in: longest expected first, unknown ones before those.
fn start_order(labs: &[Lab], expected_ms: &std::collections::HashMap<String, u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..labs.len()).collect();
    order.sort_by_key(|i| {
        std::cmp::Reverse(expected_ms.get(&labs[*i].id).copied().unwrap_or(u64::MAX))
    });
    order
}

/// Runs the labs, up to `jobs` at a time; capabilities are probed as labs first need them.
/// `on_done` is called as each lab finishes (for progress bars). Reports keep the labs' order.
pub fn run_labs(
    guest: &dyn Guest,
    labs: &[Lab],
    options: RunOptions,
    on_done: &(dyn Fn(&LabReport) + Sync),
) -> Result<RunReport, GuestError> {
    let started = Instant::now();
    let caps = GuestCapabilities::new(options.images.clone()).pulling(options.image.clone());
    let order = start_order(labs, &options.expected_ms);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<LabReport>>> = Mutex::new(vec![None; labs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.clamp(1, labs.len().max(1)) {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let lab = &labs[i];
                    // A bug of ours in one lab is that lab's error, never a lab missing from the
                    // report or a run that dies with exit 101.
                    let report =
                        std::panic::catch_unwind(AssertUnwindSafe(|| run_lab(guest, lab, &caps)))
                            .unwrap_or_else(|panic| {
                                LabReport::error(
                                    lab,
                                    format!("labgrade itself failed: {}", panic_text(&*panic)),
                                )
                            });
                    on_done(&report);
                    results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(report);
                }
            });
        }
    });
    // Every lab asked for is in the report, in the order asked: one that no worker reported
    // (a worker that died outside a lab) is an error, so the run cannot exit 0.
    let labs = results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .zip(labs)
        .map(|(report, lab)| {
            report.unwrap_or_else(|| LabReport::error(lab, "no worker reported this lab".into()))
        })
        .collect();
    Ok(RunReport {
        schema_version: labgrade_report::SCHEMA_VERSION,
        guest: guest.name(),
        privilege: caps.hello().map(|h| h.privilege),
        kmsg_unavailable: caps.hello().and_then(|h| h.kmsg_unavailable),
        labs,
        probe_ms: u64::try_from(caps.probe_time().as_millis()).unwrap_or(u64::MAX),
        duration_ms: ms(started),
    })
}

/// The message a panic carried, for a report.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

pub(crate) fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_and_unknown_labs_start_first_and_ties_keep_their_order()
    -> Result<(), labgrade_spec::SpecError> {
        let lab = |name: &str| {
            labgrade_spec::parse_lab(
                std::path::Path::new(&format!("{name}.toml")),
                "title = \"t\"\nlesson = { file = \"l\", section = \"s\" }\n[[step]]\nrun = \"true\"\n",
            )
        };
        let labs = vec![lab("a")?, lab("b")?, lab("c")?, lab("d")?];
        let expected = [
            ("a".to_owned(), 10),
            ("b".to_owned(), 500),
            ("d".to_owned(), 10),
        ]
        .into_iter()
        .collect();
        assert_eq!(start_order(&labs, &expected), vec![2, 1, 0, 3]);
        Ok(())
    }
}
