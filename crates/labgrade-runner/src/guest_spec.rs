//! A guest from its name: `host`, or `qemu:KERNEL` with KERNEL any kernel source (`debian:6.1`,
//! `local:VMLINUZ:MODULES`, `deb:PATH`), or `vagrant:NAME` (a directory under `vagrant/`, or a
//! box name with a `/`). The CLI, the tests and every command that runs
//! something on a guest build guests here, so a new backend (`vagrant:BOX`) is added once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use labgrade_fs::{CacheDir, CacheDirs};
use labgrade_guest::{Guest, HostGuest};
use labgrade_kernel::{FetchOptions, KernelCache, KernelError, KernelSource};
use labgrade_qemu::{Accel, BootKernel, QemuConfig, QemuGuest, RootExport};

/// Where something runs, as the user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSpec {
    /// This machine, each session in private namespaces.
    Host,
    /// A kernel booted under QEMU.
    Qemu(KernelSource),
    /// A Vagrant machine (libvirt provider): `vagrant:NAME`.
    Vagrant(VagrantName),
}

// ---- vagrant guests (labgrade-vagrant) ----

/// A `vagrant:NAME` guest: how the user named it and what Vagrant brings up for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VagrantName {
    /// `bookworm`, `ubuntu-22.04`, `rhel-9`, or a box name such as `generic/ubuntu2204`.
    pub name: String,
    /// Its Vagrantfile directory, or the box.
    pub source: labgrade_vagrant::BoxSource,
}

/// Where the `vagrant/` directories are: `$LABGRADE_VAGRANT_DIR`, else the source tree's.
pub fn vagrant_dir() -> PathBuf {
    std::env::var_os("LABGRADE_VAGRANT_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vagrant"),
            PathBuf::from,
        )
}

impl FromStr for VagrantName {
    type Err = LaunchError;

    fn from_str(name: &str) -> Result<VagrantName, LaunchError> {
        let dir = vagrant_dir().join(name);
        let source = if !name.is_empty()
            && !name.contains("..")
            && !name.contains('/')
            && dir.join("Vagrantfile").is_file()
        {
            labgrade_vagrant::BoxSource::Vagrantfile(std::fs::canonicalize(&dir).unwrap_or(dir))
        } else if is_box_name(name) {
            labgrade_vagrant::BoxSource::Box(name.to_owned())
        } else {
            return Err(LaunchError::Unknown(format!("vagrant:{name}")));
        };
        Ok(VagrantName {
            name: name.to_owned(),
            source,
        })
    }
}

/// A Vagrant Cloud style box name, `owner/name`: never a path.
fn is_box_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    name.split_once('/')
        .is_some_and(|(owner, boxname)| part(owner) && part(boxname))
}

// ---- end vagrant guests ----

/// Why a guest could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The name is not a guest labgrade knows: the user's mistake (exit 2).
    #[error(
        "unknown guest `{0}`; guests are `host`, `qemu:KERNEL` (e.g. qemu:debian:6.1, \
         qemu:local:VMLINUZ:MODULES_DIR) and `vagrant:NAME` (NAME a directory under vagrant/, \
         e.g. vagrant:bookworm, or a box name such as vagrant:generic/ubuntu2204)"
    )]
    Unknown(String),
    /// The kernel could not be had: a bad selector is the user's, the archive's trouble is not.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A writable root or shared directory was asked of a guest that cannot have one (exit 2).
    #[error(
        "--overlay-root and --rwdir need a qemu guest (--guest qemu:KERNEL); the host guest's root is the host's"
    )]
    NotWritable,
    /// An archive kernel's cached image is not bootable: the cache was damaged (exit 3).
    #[error(
        "the cached kernel image {path} is not bootable: {source}; delete {entry} and fetch \
         again (labgrade kernel fetch {name})"
    )]
    CachedImage {
        /// The image.
        path: PathBuf,
        /// Its cache entry, to delete.
        entry: PathBuf,
        /// The kernel source, to fetch again.
        name: String,
        /// What is wrong with the image.
        #[source]
        source: labgrade_kernel::ImageError,
    },
    /// A cache directory could not be made or written (exit 3).
    #[error("cannot use the {what} cache: {source}")]
    Cache {
        /// Which cache.
        what: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

impl LaunchError {
    /// Is this the user's input at fault (exit 2) rather than the machinery (exit 3)?
    pub fn is_usage(&self) -> bool {
        match self {
            LaunchError::Unknown(_) | LaunchError::NotWritable => true,
            LaunchError::Kernel(e) => e.is_usage(),
            LaunchError::Cache { .. } | LaunchError::CachedImage { .. } => false,
        }
    }
}

impl FromStr for GuestSpec {
    type Err = LaunchError;

    fn from_str(name: &str) -> Result<GuestSpec, LaunchError> {
        if name == "host" {
            return Ok(GuestSpec::Host);
        }
        if let Some(vagrant) = name.strip_prefix("vagrant:") {
            return Ok(GuestSpec::Vagrant(vagrant.parse()?));
        }
        match name.strip_prefix("qemu:") {
            Some(kernel) => Ok(GuestSpec::Qemu(KernelSource::from_str(kernel)?)),
            None => Err(LaunchError::Unknown(name.to_owned())),
        }
    }
}

impl fmt::Display for GuestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestSpec::Host => f.write_str("host"),
            GuestSpec::Qemu(k) => write!(f, "qemu:{k}"),
            GuestSpec::Vagrant(v) => write!(f, "vagrant:{}", v.name),
        }
    }
}

/// How guests are built, beyond their name.
#[derive(Debug, Clone, Default)]
pub struct GuestOptions {
    /// For qemu guests: KVM, TCG, or probe.
    pub accel: Accel,
    /// Sessions (labs at once) inside one VM, and its vCPUs.
    pub sessions: usize,
    /// Scratch disks one session may need: the most any lab to run has.
    pub disks_per_session: usize,
    /// Mirror for kernel downloads, if not the machine's own.
    pub mirror: Option<String>,
    /// Answer only from the kernel cache, never the network.
    pub offline: bool,
    /// A writable overlay root and shared directories (qemu guests only).
    pub writable: labgrade_qemu::WritableRoot,
    /// Vagrant guests: leave the machine up afterwards and reuse a kept one (`--keep`).
    pub keep: bool,
}

impl GuestOptions {
    /// Options for running `labs`: as many disk slots per session as the most any lab has.
    pub fn for_labs(
        accel: Accel,
        sessions: usize,
        labs: &[labgrade_spec::Lab],
        mirror: Option<String>,
    ) -> GuestOptions {
        GuestOptions {
            accel,
            sessions,
            disks_per_session: labs.iter().map(|l| l.disks.len()).max().unwrap_or(0),
            mirror,
            offline: false,
            writable: labgrade_qemu::WritableRoot::default(),
            keep: false,
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

/// A directory of the cache this user can write, for what labgrade derives (disk images,
/// initramfs images).
pub fn writable_cache_dir(what: CacheDir) -> Result<PathBuf, LaunchError> {
    CacheDirs::default_location()
        .writable(what)
        .map_err(|source| LaunchError::Cache {
            what: what.name().to_owned(),
            source,
        })
}

/// Where disk images for scratch disks and filesystem probes are kept.
pub fn image_cache() -> Result<labgrade_disk::ImageCache, LaunchError> {
    writable_cache_dir(CacheDir::Disks).map(labgrade_disk::ImageCache::new)
}

impl GuestSpec {
    /// The VM configuration of a qemu guest, its kernel fetched (or found in the cache) first;
    /// `None` for guests that are not VMs.
    pub fn qemu_config(
        &self,
        agent_exe: &Path,
        options: &GuestOptions,
    ) -> Result<Option<QemuConfig>, LaunchError> {
        let GuestSpec::Qemu(source) = self else {
            return Ok(None);
        };
        let fetched = KernelCache::default_location().fetch(
            source,
            &FetchOptions {
                mirror: options.mirror.clone(),
                offline: options.offline,
            },
        )?;
        // The guest sees the host's root over 9p: a path through an absolute symlink would
        // resolve inside the guest, so the agent is named by its real path.
        let agent_exe =
            std::fs::canonicalize(agent_exe).unwrap_or_else(|_| agent_exe.to_path_buf());
        let cache_dir = writable_cache_dir(CacheDir::Initramfs)?;
        let vmlinuz = fetched.vmlinuz.clone();
        let name = fetched.name.clone();
        let kernel = BootKernel::prepare(fetched, &cache_dir)
            .map_err(|e| bad_image(source, vmlinuz, name, e))?;
        let mut config = QemuConfig::new(kernel, agent_exe, cache_dir);
        config.accel = options.accel;
        config.sessions = options.sessions.max(1);
        config.disks_per_session = options.disks_per_session;
        config.writable = options.writable.clone();
        // More sessions than host CPUs still pay: a session waiting on 9p leaves its vCPU idle.
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        config.cpus = u32::try_from(options.sessions.clamp(1, host_cpus)).unwrap_or(1);
        Ok(Some(config))
    }

    /// Builds the guest; `agent_exe` is the labgrade binary whose `__agent` runs inside it.
    pub fn launch(
        &self,
        agent_exe: &Path,
        options: &GuestOptions,
    ) -> Result<ResolvedGuest, LaunchError> {
        // ---- vagrant guests ----
        if let GuestSpec::Vagrant(v) = self {
            if options.writable != labgrade_qemu::WritableRoot::default() {
                return Err(LaunchError::NotWritable);
            }
            let mut config = labgrade_vagrant::VagrantConfig::new(
                &v.name,
                v.source.clone(),
                agent_exe.to_path_buf(),
                writable_cache_dir(CacheDir::Vagrant)?,
            );
            config.keep = options.keep;
            return Ok(ResolvedGuest {
                guest: Box::new(labgrade_vagrant::VagrantGuest::new(config)),
                kernel_release: None,
            });
        }
        // ---- end vagrant guests ----
        match self.qemu_config(agent_exe, options)? {
            Some(config) => {
                let release = config.kernel.release.clone();
                Ok(ResolvedGuest {
                    guest: Box::new(QemuGuest::new(config)),
                    kernel_release: Some(release),
                })
            }
            None if options.writable != labgrade_qemu::WritableRoot::default() => {
                Err(LaunchError::NotWritable)
            }
            None => Ok(ResolvedGuest {
                guest: Box::new(HostGuest::new(agent_exe)),
                kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| s.trim().to_owned()),
            }),
        }
    }
}

/// Guests for grading untrusted submissions, one per submission ([`GradingGuests::fresh`]).
pub struct GradingGuests {
    name: String,
    make: Box<dyn Fn() -> Box<dyn Guest> + Send + Sync>,
}

impl fmt::Debug for GradingGuests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GradingGuests")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl GradingGuests {
    /// A guest for one submission: on `qemu:` a VM of its own, booted on its first task and
    /// stopped when the guest is dropped; on `host` a handle of the host guest, which gives
    /// every task a fresh sandbox anyway.
    pub fn fresh(&self) -> Box<dyn Guest> {
        (self.make)()
    }

    /// The guests' name, e.g. `qemu:debian:6.1`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl GuestSpec {
    /// Guests for grading: code graded in a VM is root there, so a `qemu:` guest exports only
    /// a root staged for it ([`RootExport::Minimal`]: programs, a made /etc, the agent; never
    /// the host's files, the assignment or other submissions) and each submission gets a
    /// machine of its own with one session (its tasks run one after another). The kernel is
    /// fetched once, here. A `vagrant:` machine takes half a minute to come up and its name is
    /// one per box, so a batch shares the one machine, as before.
    pub fn launch_for_grading(
        &self,
        agent_exe: &Path,
        options: &GuestOptions,
    ) -> Result<GradingGuests, LaunchError> {
        let name = self.to_string();
        match self {
            GuestSpec::Host => {
                let exe = agent_exe.to_path_buf();
                Ok(GradingGuests {
                    name,
                    make: Box::new(move || Box::new(HostGuest::for_grading(exe.clone()))),
                })
            }
            GuestSpec::Qemu(_) => {
                let options = GuestOptions {
                    sessions: 1,
                    ..options.clone()
                };
                let mut config = self
                    .qemu_config(agent_exe, &options)?
                    .ok_or_else(|| LaunchError::Unknown(name.clone()))?;
                config.root = RootExport::Minimal;
                Ok(GradingGuests {
                    name,
                    make: Box::new(move || Box::new(QemuGuest::new(config.clone()))),
                })
            }
            GuestSpec::Vagrant(_) => {
                let shared: std::sync::Arc<dyn Guest> =
                    std::sync::Arc::from(self.launch(agent_exe, options)?.guest);
                Ok(GradingGuests {
                    name,
                    make: Box::new(move || Box::new(std::sync::Arc::clone(&shared))),
                })
            }
        }
    }
}

/// A kernel image that cannot boot: the user's file (`local:`, `deb:`) is their input error,
/// naming it; an archive kernel's is a damaged cache entry.
fn bad_image(
    source: &KernelSource,
    path: PathBuf,
    name: String,
    e: labgrade_kernel::ImageError,
) -> LaunchError {
    match source {
        KernelSource::Local { .. } => LaunchError::Kernel(KernelError::Local {
            path,
            why: format!(
                "not a kernel image: {e}; give the kernel image, e.g. /boot/vmlinuz-RELEASE"
            ),
        }),
        KernelSource::Deb { path: deb } => LaunchError::Kernel(KernelError::Deb {
            path: deb.clone(),
            why: format!(
                "its kernel image {} is not a bootable kernel image: {e}",
                path.display()
            ),
        }),
        KernelSource::Debian { .. } => {
            // The image lies under the cache entry <root>/<release>/.
            let entry = path
                .strip_prefix(KernelCache::default_location().root())
                .ok()
                .and_then(|rel| rel.components().next())
                .map(|c| KernelCache::default_location().root().join(c))
                .unwrap_or_else(|| path.clone());
            LaunchError::CachedImage {
                path,
                entry,
                name,
                source: e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_image_is_the_users_when_it_is_their_file_and_the_caches_otherwise() {
        let path = KernelCache::default_location()
            .root()
            .join("6.1.0-50-amd64/boot/vmlinuz-6.1.0-50-amd64");
        let local = KernelSource::Local {
            vmlinuz: path.clone(),
            modules: PathBuf::from("/lib/modules/x"),
        };
        let e = bad_image(
            &local,
            path.clone(),
            "local".into(),
            labgrade_kernel::ImageError::NoPvhNote,
        );
        assert!(e.is_usage(), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        let debian = KernelSource::Debian {
            selector: "6.1".into(),
        };
        let e = bad_image(
            &debian,
            path,
            "debian:6.1".into(),
            labgrade_kernel::ImageError::Empty,
        );
        assert!(!e.is_usage(), "{e}");
        let entry = KernelCache::default_location()
            .root()
            .join("6.1.0-50-amd64");
        assert!(
            e.to_string()
                .contains(&format!("delete {} and fetch again", entry.display())),
            "{e}"
        );
    }

    #[test]
    fn names_parse_into_specs_and_back() -> Result<(), LaunchError> {
        assert_eq!("host".parse::<GuestSpec>()?, GuestSpec::Host);
        let q: GuestSpec = "qemu:debian:6.1".parse()?;
        assert_eq!(q.to_string(), "qemu:debian:6.1");
        let unknown = "vagrant:none".parse::<GuestSpec>();
        assert!(
            unknown.as_ref().is_err_and(LaunchError::is_usage),
            "{unknown:?}"
        );
        let bookworm: GuestSpec = "vagrant:bookworm".parse()?;
        assert_eq!(bookworm.to_string(), "vagrant:bookworm");
        let named: GuestSpec = "vagrant:generic/ubuntu2204".parse()?;
        assert!(
            matches!(&named, GuestSpec::Vagrant(v) if v.source == labgrade_vagrant::BoxSource::Box("generic/ubuntu2204".into())),
            "{named:?}"
        );
        let unknown = "vagrant:../etc".parse::<GuestSpec>();
        assert!(
            unknown.as_ref().is_err_and(LaunchError::is_usage),
            "{unknown:?}"
        );
        let bad_kernel = "qemu:nonsense".parse::<GuestSpec>();
        assert!(
            bad_kernel.as_ref().is_err_and(LaunchError::is_usage),
            "{bad_kernel:?}"
        );
        Ok(())
    }
}
