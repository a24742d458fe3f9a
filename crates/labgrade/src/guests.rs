//! Turning a `--guest` name into a guest: `host`, or `qemu:KERNEL` with KERNEL any kernel source
//! (`debian:6.1`, `local:VMLINUZ:MODULES`, `deb:PATH`), fetched into the cache if needed.

use std::str::FromStr;

use labgrade_guest::{Guest, HostGuest};
use labgrade_kernel::{FetchOptions, KernelCache, KernelSource};
use labgrade_qemu::{BootKernel, QemuConfig, QemuGuest};

use crate::exit::CliError;

/// Where disk images for scratch disks and filesystem probes are kept: beside the kernels, or
/// in this user's private temp dir when that cache is not writable.
pub fn image_cache() -> Result<labgrade_disk::ImageCache, CliError> {
    writable_beside("disks").map(labgrade_disk::ImageCache::new)
}

fn writable_beside(name: &str) -> Result<std::path::PathBuf, CliError> {
    KernelCache::default_location()
        .writable_beside(name)
        .map_err(|source| CliError::Output {
            path: format!("the {name} cache"),
            source,
        })
}

/// How qemu guests are built, from the command line.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    /// `auto`, `kvm` or `tcg`.
    pub accel: String,
    /// Sessions (labs at once) inside one VM, and its vCPUs.
    pub sessions: usize,
    /// Scratch disks one session may need: the most any lab to run has.
    pub disks_per_session: usize,
    /// Mirror for kernel downloads, if not the machine's own.
    pub mirror: Option<String>,
    /// A writable overlay root and shared directories (qemu guests only).
    pub writable: labgrade_qemu::WritableRoot,
}

impl GuestOptions {
    /// Options for running `labs`: as many disk slots per session as the most any lab has.
    pub fn for_labs(
        accel: &str,
        sessions: usize,
        labs: &[labgrade_spec::Lab],
        mirror: Option<String>,
    ) -> GuestOptions {
        GuestOptions {
            accel: accel.to_owned(),
            sessions,
            disks_per_session: labs.iter().map(|l| l.disks.len()).max().unwrap_or(0),
            mirror,
            writable: labgrade_qemu::WritableRoot::default(),
        }
    }
}

/// A guest ready to run labs, and the kernel release it runs (for reports).
#[derive(Debug)]
pub struct ResolvedGuest {
    /// The guest.
    pub guest: Box<dyn Guest>,
    /// `uname -r` of its kernel, where labgrade chose the kernel.
    pub kernel_release: Option<String>,
}

/// Builds the guest `name`; a qemu kernel is fetched (or found in the cache) first.
pub fn resolve(name: &str, options: &GuestOptions) -> Result<ResolvedGuest, CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::Usage(format!(
            "cannot find the labgrade binary to start the agent: {e}"
        ))
    })?;
    if name == "host" {
        if options.writable != labgrade_qemu::WritableRoot::default() {
            return Err(CliError::Usage(
                "--overlay-root and --rwdir need a qemu guest (--guest qemu:KERNEL); the host guest's root is the host's".into(),
            ));
        }
        return Ok(ResolvedGuest {
            guest: Box::new(HostGuest::new(exe)),
            kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
        });
    }
    let Some(kernel) = name.strip_prefix("qemu:") else {
        return Err(CliError::Usage(format!(
            "unknown guest `{name}`; guests are `host` and `qemu:KERNEL` (e.g. qemu:debian:6.1)"
        )));
    };
    let source = KernelSource::from_str(kernel).map_err(|e| CliError::Usage(e.to_string()))?;
    let cache = KernelCache::default_location();
    let fetched = cache.fetch(
        &source,
        &FetchOptions {
            mirror: options.mirror.clone(),
            offline: false,
        },
    )?;
    let release = fetched.release.clone();
    let mut config = QemuConfig::new(
        BootKernel::from(fetched),
        exe,
        writable_beside("initramfs")?,
    );
    config.accel = options.accel.parse().map_err(CliError::Usage)?;
    config.sessions = options.sessions.max(1);
    config.disks_per_session = options.disks_per_session;
    config.writable = options.writable.clone();
    // More sessions than host CPUs still pay: a session waiting on 9p leaves its vCPU idle.
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    config.cpus = u32::try_from(options.sessions.clamp(1, host_cpus)).unwrap_or(1);
    Ok(ResolvedGuest {
        guest: Box::new(QemuGuest::new(config)),
        kernel_release: Some(release),
    })
}
