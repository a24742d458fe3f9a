//! Everything that can go wrong while getting a kernel, each saying what failed and what to do next.

use std::path::PathBuf;

/// The kernel source forms, shown with every selector error.
pub(crate) const VALID_FORMS: &str = "debian:6.1, debian:7 (major[.minor] of Linux), \
debian:bookworm (a suite), debian:6.1.176-1 (a package version), debian:6.1.0-50-amd64 \
(a kernel release), local:VMLINUZ:MODULES_DIR, deb:linux-image-RELEASE_VERSION_amd64.deb";

/// Why a kernel could not be had. Callers map [`KernelError::is_usage`] errors to "fix your
/// arguments" and the rest to "the machinery (network, archive, disk) failed".
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel source as written is not one labgrade understands.
    #[error("`{given}` is not a kernel source: {why}\n  valid forms: {VALID_FORMS}")]
    Selector {
        /// What was given.
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// No Debian suite labgrade knows ships the Linux version asked for.
    #[error(
        "no single Debian suite ships Linux {version}; known: {known}; or name a suite \
         (debian:bookworm-backports) or an exact package version (debian:6.1.176-1)"
    )]
    UnknownVersion {
        /// The version asked for.
        version: String,
        /// The versions labgrade can map to a suite.
        known: String,
    },
    /// The suite's current kernel is not the version asked for.
    #[error(
        "debian:{selector} asks for Linux {wanted}, but {suite} has {found}; name the suite \
         (debian:{suite}) to take it anyway, or ask for that kernel's major.minor"
    )]
    VersionMismatch {
        /// The selector.
        selector: String,
        /// The major[.minor] asked for.
        wanted: String,
        /// The suite searched.
        suite: String,
        /// The kernel package and version the suite has, and the mirror.
        found: String,
    },
    /// The archive does not have the package (or version) the selector names.
    #[error("{what} is not in {suite} on {mirror}: {hint}")]
    NotInArchive {
        /// The package or version looked for.
        what: String,
        /// The suite(s) searched.
        suite: String,
        /// The mirror searched.
        mirror: String,
        /// What to do instead.
        hint: String,
    },
    /// No `--mirror` and no Debian mirror in the machine's apt sources.
    #[error(
        "no Debian mirror is configured on this machine (looked for a `deb` source of a Debian \
         suite in {looked}); pass --mirror URI (the base URI of a Debian archive)"
    )]
    NoMirror {
        /// The files read.
        looked: String,
    },
    /// A helper program (apt-get, apt-cache, dpkg-deb, apt-config) ran and failed.
    #[error("`{command}` failed ({status}) while {doing}:\n{stderr}\n  {hint}")]
    Command {
        /// The command line, for running it by hand.
        command: String,
        /// What labgrade was doing.
        doing: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
        /// What to check next.
        hint: String,
    },
    /// A helper program could not be started at all.
    #[error("cannot run {program} ({source}); it comes with Debian's `{package}` package")]
    Spawn {
        /// The program.
        program: String,
        /// The package that provides it.
        package: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory of the cache could not be read or written.
    #[error("cannot {doing} {path}: {source}")]
    Io {
        /// What labgrade was doing.
        doing: String,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Unpacked packages that do not hold a bootable kernel and its modules.
    #[error("{dir} holds no usable kernel: {why}")]
    Layout {
        /// The unpacked tree.
        dir: PathBuf,
        /// What is missing.
        why: String,
    },
    /// Offline, and the kernel is not in the cache.
    #[error(
        "{name} is not in the kernel cache at {root}, and the network may not be used; \
         fetch it first: labgrade kernel fetch {name}"
    )]
    NotCached {
        /// The kernel source.
        name: String,
        /// The cache root.
        root: PathBuf,
    },
    /// A `local:` kernel whose files are not there or not what they should be.
    #[error("local kernel {path}: {why}")]
    Local {
        /// The offending path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A `deb:` package that is missing or not a kernel package.
    #[error("{path}: {why}")]
    Deb {
        /// The package file.
        path: PathBuf,
        /// What is wrong and what to give instead.
        why: String,
    },
    /// A cache bookkeeping file that cannot be parsed.
    #[error("kernel cache file {path} is damaged ({why}); delete it and fetch again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        why: String,
    },
}

impl KernelError {
    /// Is this the caller's mistake (a bad selector, a missing local file, a version the archive
    /// does not have) rather than the network, the archive tools or the disk failing?
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            KernelError::Selector { .. }
                | KernelError::UnknownVersion { .. }
                | KernelError::VersionMismatch { .. }
                | KernelError::NotInArchive { .. }
                | KernelError::Local { .. }
                | KernelError::Deb { .. }
        )
    }

    pub(crate) fn io(doing: &str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let doing = doing.to_owned();
        let path = path.to_path_buf();
        move |source| KernelError::Io {
            doing,
            path,
            source,
        }
    }
}
