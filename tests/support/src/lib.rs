//! What the test suites under `tests/` share: the binary under test, the checkout, the guests
//! built as `labgrade --guest` builds them, and the checks several suites make of the host
//! (nothing left mounted, running or half-written). One copy, so a suite never grows its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use labgrade_guest::HostGuest;

/// The `labgrade` binary the suites run, built from this checkout.
///
/// Cargo hands `CARGO_BIN_EXE_*` only to a package's own tests, and each suite is a package of
/// its own: the binary is the one beside the test binaries (`<target>/<profile>/labgrade`).
/// `cargo nextest run --workspace` builds it in its build phase (the labgrade package's own test
/// needs it); a run of one suite (`-p labs`) after an edit finds it older than the sources and
/// builds it first, once, under a lock. Where the tests run from an extracted `cargo nextest
/// archive` (no cargo fingerprints beside them) the archived binary is used as it is.
/// `LABGRADE_TEST_BIN` names a binary to use instead.
pub fn exe() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| locate_binary().unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

fn locate_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("LABGRADE_TEST_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let test_exe = std::env::current_exe().map_err(|e| format!("no test binary path: {e}"))?;
    // <target>/<profile>/deps/<suite>-<hash>
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in a cargo target dir", test_exe.display()))?;
    let bin = profile_dir.join("labgrade");
    if profile_dir.join(".fingerprint").is_dir() && older_than_sources(&bin) {
        build(profile_dir, &bin)?;
    }
    if !bin.is_file() {
        return Err(format!(
            "{} is missing: build it with `cargo build -p labgrade`, or name one in \
             LABGRADE_TEST_BIN",
            bin.display()
        ));
    }
    Ok(bin)
}

/// Is `bin` missing, or older than a source it is built from (the manifests, the lock file,
/// the crates' `src/`)? Not asking cargo: a `cargo build -p labgrade` resolves features for
/// labgrade alone and so rebuilds what the workspace's test build made, every time.
fn older_than_sources(bin: &Path) -> bool {
    fn newest(dir: &Path, newest_so_far: &mut std::time::SystemTime) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => newest(&path, newest_so_far),
                Ok(_) => {
                    if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                        *newest_so_far = (*newest_so_far).max(m);
                    }
                }
                Err(_) => {}
            }
        }
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = workspace_root();
    let mut latest = std::time::SystemTime::UNIX_EPOCH;
    for file in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(root.join(file)).and_then(|m| m.modified()) {
            latest = latest.max(m);
        }
    }
    for krate in std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = krate.path();
        for file in ["Cargo.toml", "build.rs"] {
            if let Ok(m) = std::fs::metadata(dir.join(file)).and_then(|m| m.modified()) {
                latest = latest.max(m);
            }
        }
        newest(&dir.join("src"), &mut latest);
    }
    latest > built
}

/// `cargo build -p labgrade` into the target dir the tests were built in: the first test to
/// get the lock builds, the others find the binary fresh when they get it.
fn build(profile_dir: &Path, bin: &Path) -> Result<(), String> {
    let lock_path = profile_dir.join("labgrade-test-build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("{}: {e}", lock_path.display()))?;
    if !older_than_sources(bin) {
        return Ok(());
    }
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no target dir", profile_dir.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    // --frozen: the run that built these tests resolved and fetched everything already.
    let out = Command::new(&cargo)
        .args([
            "build", "--frozen", "-q", "-p", "labgrade", "--bin", "labgrade",
        ])
        .args(["--profile", &profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p labgrade failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Cargo leaves a binary it found fresh as it was: stamp it, so it is not older than a
    // source cargo does not build it from (a test file in a crate's src/, say) at the next look.
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        bin,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(())
}

/// The checkout's root: tests run from `tests/<suite>/`, or from a remapped checkout when they
/// come from an archive (cargo and nextest both set `CARGO_MANIFEST_DIR` at run time).
pub fn workspace_root() -> PathBuf {
    suite_dir().join("../..")
}

/// The running suite's own directory (`tests/<suite>`), where its fixtures are.
pub fn suite_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_owned())
}

/// The repository's `labs/` directory.
pub fn labs_dir() -> PathBuf {
    workspace_root().join("labs")
}

/// The host guest, agent from this build.
pub fn host() -> HostGuest {
    HostGuest::new(exe())
}

/// The host guest as `labgrade grade` makes it (agents reap their sandboxes' cgroups).
pub fn grading_host() -> HostGuest {
    HostGuest::for_grading(exe())
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

/// The tests run as root (CI does): what a user namespace cannot do is then tested for real.
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

/// The kernels the qemu tests run on: the matrix.
pub const KERNELS: [&str; 4] = ["debian:5.10", "debian:6.1", "debian:6.12", "debian:7"];

/// Where tests keep disk images: the same cache as `labgrade` itself.
pub fn images() -> labgrade_disk::ImageCache {
    labgrade_runner::image_cache().unwrap_or_else(|e| panic!("no disk cache: {e}"))
}

/// A qemu guest for a cached kernel, or the reason there is none.
pub fn qemu_guest(kernel: &str, sessions: usize) -> Result<labgrade_qemu::QemuGuest, String> {
    qemu_guest_with(kernel, |c| c.sessions = sessions)
}

/// Like [`qemu_guest`], with the configuration adjusted by `tune`: built by the same
/// [`labgrade_runner::GuestSpec`] as `labgrade --guest qemu:KERNEL`, from the cache only.
pub fn qemu_guest_with(
    kernel: &str,
    tune: impl FnOnce(&mut labgrade_qemu::QemuConfig),
) -> Result<labgrade_qemu::QemuGuest, String> {
    let spec: labgrade_runner::GuestSpec = format!("qemu:{kernel}")
        .parse()
        .map_err(|e: labgrade_runner::LaunchError| e.to_string())?;
    let options = labgrade_runner::GuestOptions {
        sessions: 1,
        offline: true,
        ..labgrade_runner::GuestOptions::default()
    };
    let mut config = spec
        .qemu_config(&exe(), &options)
        .map_err(|e| format!("{kernel}: {e}; fetch it: labgrade kernel fetch {kernel}"))?
        .ok_or_else(|| format!("{kernel} is not a qemu guest"))?;
    config.cpus = 1;
    tune(&mut config);
    Ok(labgrade_qemu::QemuGuest::new(config))
}

/// `uname -r` of a cached kernel, as the cache recorded it when it was fetched.
pub fn cached_release(kernel: &str) -> String {
    use std::str::FromStr;
    let source = labgrade_kernel::KernelSource::from_str(kernel).unwrap_or_else(|e| panic!("{e}"));
    let options = labgrade_kernel::FetchOptions {
        mirror: None,
        offline: true,
    };
    labgrade_kernel::KernelCache::default_location()
        .fetch(&source, &options)
        .unwrap_or_else(|e| panic!("{kernel} is not cached: {e}"))
        .release
}

/// A one-lab run report, for printing a lab's evidence in a test's output.
pub fn one_lab_run(
    guest: &str,
    caps: &labgrade_runner::GuestCapabilities,
    report: &labgrade_report::LabReport,
) -> labgrade_report::RunReport {
    labgrade_report::RunReport {
        schema_version: labgrade_report::SCHEMA_VERSION,
        guest: guest.to_owned(),
        privilege: caps.hello().map(|h| h.privilege),
        kmsg_unavailable: caps.hello().and_then(|h| h.kmsg_unavailable),
        labs: vec![report.clone()],
        probe_ms: 0,
        duration_ms: 0,
    }
}

/// Validates a JSON report against the committed schema `file` (under
/// `crates/labgrade-report/schema/`), listing every violation.
pub fn assert_matches_schema(file: &str, report: &serde_json::Value) {
    let path = workspace_root()
        .join("crates/labgrade-report/schema")
        .join(file);
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let validator =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match {file}:\n{}",
        errors.join("\n")
    );
}

/// Fails, listing them, if `dir` holds anything (a missing dir is empty).
pub fn assert_empty_dir(dir: &Path, what: &str) {
    let left: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{what}: {left:?}");
}

/// Fails if a cache labgrade writes into (initramfs, disk images) holds a half-written entry:
/// what a killed labgrade left must be a scratch name that the next run sweeps, never an entry.
pub fn assert_no_half_written_cache_files() {
    use labgrade_fs::CacheDir;
    let partial: Vec<PathBuf> = [CacheDir::Initramfs, CacheDir::Disks]
        .into_iter()
        .filter_map(|d| labgrade_runner::writable_cache_dir(d).ok())
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(partial.is_empty(), "half-written cache files: {partial:?}");
}

/// pid -> (ppid, cmdline) for every process.
pub fn processes() -> std::collections::HashMap<i32, (i32, String)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces and parens: the ppid is the 2nd field after the last ')'.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .trim()
            .to_owned();
        out.insert(pid, (ppid, cmdline));
    }
    out
}

/// Every process descended from `root`, with its command line.
pub fn descendants(root: i32) -> Vec<(i32, String)> {
    let procs = processes();
    let mut found = vec![root];
    let mut out = Vec::new();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (pid, (ppid, cmd)) in &procs {
            if *ppid == parent && !found.contains(pid) {
                found.push(*pid);
                out.push((*pid, cmd.clone()));
            }
        }
        i += 1;
    }
    out
}

/// Polls `probe` until it answers, failing the test after `limit`.
pub fn wait_for<T>(
    what: &str,
    limit: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
