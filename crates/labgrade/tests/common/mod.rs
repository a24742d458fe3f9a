//! Helpers shared by the integration tests: the binary, the labs, and skips with reasons.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use labgrade_guest::HostGuest;

/// The `labgrade` binary cargo built for these tests; the host guest starts its agent from it.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_labgrade"))
}

/// The repository's `labs/` directory.
pub fn labs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../labs")
}

/// The host guest, agent from this build.
pub fn host() -> HostGuest {
    HostGuest::new(exe())
}

/// Capabilities CI promises (`LABGRADE_REQUIRE=overlay,xfs,...`): a lab needing one of them may
/// not be skipped there, so a missing install step fails the run instead of hiding.
pub fn required_capabilities() -> Vec<String> {
    std::env::var("LABGRADE_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Prints why a test did not run its assertions; the reason shows in nextest's output.
pub fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Overlay mounts in this process's (the host's) mount table.
pub fn host_overlay_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - overlay "))
        .map(str::to_owned)
        .collect()
}
