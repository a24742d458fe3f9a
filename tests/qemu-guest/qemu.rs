//! The qemu guest itself: an agent under /tmp, a guest that cannot start its agent, scratch disks
//! on reused slots. (Every lab on every kernel is in `labs.rs`.)

use labgrade_test_support as support;

/// Runs `uname -r` through a fresh session of `guest`.
fn uname(guest: &labgrade_qemu::QemuGuest) -> Result<String, labgrade_guest::GuestError> {
    use labgrade_guest::Guest;
    let mut session = guest.start_session()?;
    let outcome = session.run_step(1, "uname -r", std::time::Duration::from_secs(60), None);
    let _ = session.shutdown();
    Ok(outcome?.stdout.trim().to_owned())
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn an_agent_kept_under_tmp_still_starts_in_the_guest() {
    // The guest once put a tmpfs over the host's /tmp, hiding an agent built there (CI clones do).
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let exe = dir.path().join("labgrade");
    std::fs::copy(support::exe(), &exe).unwrap_or_else(|e| panic!("{e}"));
    let guest = match support::qemu_guest_with("debian:6.1", |c| {
        c.agent_exe = exe.clone();
        c.boot_timeout = std::time::Duration::from_secs(60);
    }) {
        Ok(g) => g,
        Err(reason) => panic!("{reason}"),
    };
    assert_eq!(
        uname(&guest).unwrap_or_else(|e| panic!("{e}")),
        support::cached_release("debian:6.1")
    );
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn a_guest_that_cannot_start_its_agent_fails_in_bounded_time_with_the_console() {
    let guest = match support::qemu_guest_with("debian:6.1", |c| {
        c.agent_exe = "/nonexistent/labgrade".into();
        c.boot_timeout = std::time::Duration::from_secs(30);
    }) {
        Ok(g) => g,
        Err(reason) => panic!("{reason}"),
    };
    let started = std::time::Instant::now();
    let err = match uname(&guest) {
        Ok(out) => panic!("a guest without an agent answered: {out}"),
        Err(e) => e.to_string(),
    };
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("failed to boot") || err.contains("failed:"),
        "{err}"
    );
    assert!(
        err.contains(
            "labgrade-init: the agent /nonexistent/labgrade is not executable inside the guest"
        ),
        "{err}"
    );
}

/// Runs `script` as one step of `session`, returning stdout; panics with the step's stderr if
/// it failed.
fn step(session: &mut labgrade_guest::AgentSession, script: &str) -> String {
    match session.run_step(1, script, std::time::Duration::from_secs(60), None) {
        Ok(o) if o.succeeded() => o.stdout,
        other => panic!("`{script}` failed: {other:?}"),
    }
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn each_session_gets_its_scratch_disk_as_new_even_on_a_reused_slot() {
    use labgrade_guest::{Guest, ScratchDisk};
    let guest = match support::qemu_guest_with("debian:6.1", |c| c.disks_per_session = 1) {
        Ok(g) => g,
        Err(reason) => panic!("{reason}"),
    };
    let format = labgrade_spec::DiskFormat {
        fs: labgrade_spec::Filesystem::Ext4,
        mkfs: vec![],
        size_mib: 64,
    };
    let image = support::images()
        .image(&format)
        .unwrap_or_else(|e| panic!("{e}"));
    let disks = [ScratchDisk {
        env: "DISK_SCRATCH".into(),
        image,
    }];
    // One port, one slot: the second session gets the very disk the first one wrote to, left
    // mounted when its session ended.
    for round in 0..2 {
        let mut session = guest.start_session().unwrap_or_else(|e| panic!("{e}"));
        let attached = session
            .attach_disks(&disks)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(attached[0].device.starts_with("/dev/vd"), "{attached:?}");
        let listing = step(
            &mut session,
            "mkdir -p $LAB/d && mount $DISK_SCRATCH $LAB/d && ls $LAB/d && \
             echo round > $LAB/d/mark && sync",
        );
        assert_eq!(
            listing, "lost+found\n",
            "round {round}: the disk is not as mkfs made it"
        );
        let _ = session.shutdown();
    }
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn an_agent_behind_an_absolute_symlink_still_starts_in_the_guest() {
    // The guest sees the host root over 9p: an absolute symlink resolves inside the guest, so
    // the guest must be given the agent's real path (a symlinked target dir made it "not
    // executable inside the guest").
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let link = dir.path().join("labgrade");
    std::os::unix::fs::symlink(support::exe(), &link).unwrap_or_else(|e| panic!("{e}"));
    let spec: labgrade_runner::GuestSpec =
        "qemu:debian:6.1".parse().unwrap_or_else(|e| panic!("{e}"));
    let options = labgrade_runner::GuestOptions {
        sessions: 1,
        offline: true,
        ..labgrade_runner::GuestOptions::default()
    };
    let mut config = spec
        .qemu_config(&link, &options)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a qemu spec makes a VM config"));
    config.boot_timeout = std::time::Duration::from_secs(60);
    let guest = labgrade_qemu::QemuGuest::new(config);
    assert_eq!(
        uname(&guest).unwrap_or_else(|e| panic!("{e}")),
        support::cached_release("debian:6.1")
    );
}

#[test]
#[cfg_attr(
    not(labgrade_qemu),
    ignore = "needs QEMU and the four kernels in the cache (bash scripts/test-all installs and fetches them)"
)]
fn same_size_rewrites_within_a_tick_never_get_a_stale_digest_on_6_1() {
    // 6.1 keeps coarse timestamps (one tick): a rewrite right after a write keeps the file's
    // (size, mtime, ctime), and only the racily-clean rule keeps the digest cache honest.
    use labgrade_guest::Guest;
    let guest = support::qemu_guest("debian:6.1", 1).unwrap_or_else(|e| panic!("{e}"));
    let mut session = guest.start_session().unwrap_or_else(|e| panic!("{e}"));
    let script = format!(
        "'{}' __probe-digest-cache /tmp 2000",
        support::exe().display()
    );
    let out = step(&mut session, &script);
    let _ = session.shutdown();
    let field = |name: &str| -> u32 {
        out.split_whitespace()
            .find_map(|w| {
                w.strip_prefix(&format!("{name}="))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
    };
    assert_eq!(field("rounds"), 2000, "{out}");
    assert_eq!(field("stale"), 0, "{out}");
    assert!(
        field("same_version") > 0,
        "no rewrite kept its version: the probe did not meet a coarse clock ({out})"
    );
}
