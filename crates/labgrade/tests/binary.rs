//! The binary itself starts and names its version. The suites under `tests/` run it; this test
//! also makes `cargo nextest run --workspace` build it in its build phase (cargo builds a
//! package's binaries for its integration tests), so no suite's first test waits for it.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_binary_starts_and_names_its_version() {
    // From an archive nextest says where the binary is now; cargo's path is the build's.
    let exe = std::env::var_os("NEXTEST_BIN_EXE_labgrade").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_labgrade")),
        PathBuf::from,
    );
    let out = Command::new(&exe)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("labgrade {}\n", env!("CARGO_PKG_VERSION"))
    );
}
