//! How long each lab took on each guest last time (and each guest of a suite matrix), kept in
//! the cache, so the next run starts the slowest first (a 5 s lab started last holds up the end
//! of a run).

use std::collections::HashMap;
use std::path::PathBuf;

use labgrade_report::{LabStatus, RunReport};

fn path(guest: &str) -> PathBuf {
    let timings = labgrade_fs::CacheDirs::default_location().dir(labgrade_fs::CacheDir::Timings);
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
    record(
        guest,
        report
            .labs
            .iter()
            .filter(|l| matches!(l.status, LabStatus::Pass | LabStatus::Fail))
            .map(|l| (l.id.clone(), l.duration_ms)),
    );
}

/// Under this key, `labgrade matrix -- CMD` keeps how long each guest took, so the next matrix
/// starts the slowest kernel first instead of last.
pub const SUITE_GUESTS: &str = "suite-guests";

/// Merges `durations` (id -> milliseconds) into what `key` keeps.
pub fn record(key: &str, durations: impl IntoIterator<Item = (String, u64)>) {
    let mut known = load(key);
    known.extend(durations);
    let file = path(key);
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(|e| e.to_string())
        .and_then(|()| serde_json::to_string(&known).map_err(|e| e.to_string()))
        .and_then(|text| {
            labgrade_fs::write_hint_atomically(&file, text.as_bytes()).map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        tracing::debug!(file = %file.display(), "timings not saved: {e}");
    }
}

/// The order to start jobs in: longest expected first (never seen counts as longest), so the
/// last job to finish is a short one; ties keep the given order.
pub fn longest_first(ids: &[&str], expected: &HashMap<String, u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(expected.get(ids[i]).copied().unwrap_or(u64::MAX)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_and_the_unknown_start_first() {
        let expected: HashMap<String, u64> = [("a", 10), ("b", 50), ("c", 20)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(
            longest_first(&["a", "b", "c", "d"], &expected),
            [3, 1, 2, 0]
        );
        assert_eq!(longest_first(&["x", "y"], &HashMap::new()), [0, 1]);
    }
}
