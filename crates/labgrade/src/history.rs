//! How long each lab took on each guest last time, kept in the cache, so the next run starts the
//! slowest labs first (a 5 s lab started last holds up the end of a run).

use std::collections::HashMap;
use std::path::PathBuf;

use labgrade_report::{LabStatus, RunReport};

fn path(guest: &str) -> PathBuf {
    let timings = labgrade_kernel::KernelCache::default_location().beside("timings");
    let name: String = guest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    timings.join(format!("{name}.json"))
}

/// Lab id -> milliseconds of its last run on `guest`; empty when there is no history.
pub fn load(guest: &str) -> HashMap<String, u64> {
    std::fs::read(path(guest))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records the labs that ran (not the skipped ones) for the next run on the same guest. A cache
/// that cannot be written costs only the ordering, so failures are logged, not raised.
pub fn save(guest: &str, report: &RunReport) {
    let mut known = load(guest);
    for lab in report
        .labs
        .iter()
        .filter(|l| matches!(l.status, LabStatus::Pass | LabStatus::Fail))
    {
        known.insert(lab.id.clone(), lab.duration_ms);
    }
    let file = path(guest);
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(|e| e.to_string())
        .and_then(|()| serde_json::to_string(&known).map_err(|e| e.to_string()))
        .and_then(|text| {
            labgrade_fs::write_atomically(&file, text.as_bytes()).map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        tracing::debug!(file = %file.display(), "lab timings not saved: {e}");
    }
}
